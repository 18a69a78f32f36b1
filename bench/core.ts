/**
 * The bus core alone, in this process, without sockets: what parsing and routing cost per
 * message next to what a routed message costs the daemon in total (the round-trip scenario).
 *
 *   npm run bench:core [-- --rounds=N]
 *
 * - parse: parseMessage of a typical method call (destination, path, interface, member,
 *   signature, sender; one string argument).
 * - route: one call from A to B and B's reply, each parsed and routed (Bus.receive: reply
 *   registry, SENDER stitched in, handed to a sink that keeps nothing).
 *
 * Wall-clock ns per operation on one thread, the median of `rounds` rounds after as many
 * warm-up rounds. Printed only: a tool for looking at the core, not a figure against the
 * reference buses (they have no such layer to measure apart).
 */
import { Buffer } from 'node:buffer';
import { Bus, type BusSink } from '../src/bus/bus.js';
import type { Credentials } from '../src/bus/peer.js';
import { encodeMessage, encodeWithArgs, MessageType, parseMessage } from '../src/wire/message.js';
import { median } from './stats.js';

const SELF: Credentials = { uid: 1000, gid: 1000, pid: 1, groups: [1000] };
const CLIENT: Credentials = { uid: 1000, gid: 1000, pid: 4242, groups: [1000] };
const OPS_PER_ROUND = 200_000;

function nsPerOp(rounds: number, opsPerRound: number, round: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < 2 * rounds; i++) {
    const t0 = process.hrtime.bigint();
    round();
    if (i >= rounds) times.push(Number(process.hrtime.bigint() - t0) / opsPerRound);
  }
  return median(times);
}

function typicalCall(serial: number, destination: string, sender?: string): Buffer {
  return encodeWithArgs(
    { type: MessageType.MethodCall, serial, destination, sender, path: '/org/example/Bench', interface: 'org.example.Bench', member: 'Ping', signature: 's' },
    ['hello, world!'],
  );
}

function main(): void {
  const roundsArg = process.argv.find((a) => a.startsWith('--rounds='));
  const rounds = roundsArg ? Number(roundsArg.slice('--rounds='.length)) : 5;
  if (!(rounds >= 1)) throw new Error('--rounds takes a positive number');

  const one = typicalCall(7, 'com.example.Echo', ':1.42');
  let sink = 0;
  const parse = nsPerOp(rounds, OPS_PER_ROUND, () => {
    for (let i = 0; i < OPS_PER_ROUND; i++) sink += parseMessage(one).header.serial;
  });

  let delivered = 0;
  const nullSink: BusSink = { send: () => void delivered++, disconnect: () => {} };
  const bus = new Bus(nullSink, { guid: 'f'.repeat(32), machineId: 'a'.repeat(32), kind: 'session', self: SELF, limits: {} });
  const hello = () =>
    parseMessage(encodeMessage({ type: MessageType.MethodCall, serial: 1, destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'Hello', signature: '' }));
  const a = bus.attach(CLIENT);
  bus.receive(a, hello());
  const b = bus.attach(CLIENT);
  bus.receive(b, hello());
  // Serials cycle through 1 000: each call is answered before its serial comes round again.
  const calls = Array.from({ length: 1000 }, (_, i) => typicalCall(10 + i, b.uniqueName!));
  const replies = Array.from({ length: 1000 }, (_, i) =>
    encodeWithArgs({ type: MessageType.MethodReturn, serial: 10 + i, replySerial: 10 + i, destination: a.uniqueName!, signature: 's' }, ['hello, world!']),
  );
  const pairs = OPS_PER_ROUND / 2;
  const route = nsPerOp(rounds, OPS_PER_ROUND, () => {
    for (let i = 0; i < pairs; i++) {
      bus.receive(a, parseMessage(calls[i % 1000]!));
      bus.receive(b, parseMessage(replies[i % 1000]!));
    }
  });
  if (delivered < OPS_PER_ROUND) throw new Error(`only ${delivered} messages reached the sink`);

  console.log(`bus core, in process (node ${process.version}), median of ${rounds} rounds of ${OPS_PER_ROUND} operations:`);
  console.log(`  parse a typical method call:          ${parse.toFixed(0)} ns`);
  console.log(`  parse and route a message (call/reply): ${route.toFixed(0)} ns`);
  if (sink < 0) console.log(sink); // keeps the parse loop's result alive
}

main();
