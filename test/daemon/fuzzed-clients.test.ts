import * as net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixPathAddress } from '../harness/address.js';
import { NextClient } from '../harness/dbus-next-client.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { waitForAddressLine } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { marshal } from '../../src/wire/marshal.js';
import { encodeMessage, MessageType } from '../../src/wire/message.js';
import { Variant } from '../../src/wire/values.js';

/** A small seeded PRNG (mulberry32): a failure names its seed and can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HELLO = encodeMessage({
  type: MessageType.MethodCall, serial: 1, destination: 'org.freedesktop.DBus',
  path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'Hello',
});

/** Valid messages of every kind, to be mutated. */
const SEEDS: Buffer[] = [
  encodeMessage({
    type: MessageType.MethodCall, serial: 2, destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus', member: 'RequestName', signature: 'su', body: marshal('su', ['org.ferrybus.Fuzz', 0]),
  }),
  encodeMessage({
    type: MessageType.MethodCall, serial: 3, destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus', member: 'AddMatch', signature: 's', body: marshal('s', ["type='signal',arg0='x'"]),
  }),
  encodeMessage({
    type: MessageType.Signal, serial: 4, path: '/org/ferrybus/Fuzz', interface: 'org.ferrybus.Fuzz', member: 'S',
    signature: 'a{sv}', body: marshal('a{sv}', [new Map([['k', new Variant('as', ['a', 'b'])]])]),
  }),
  encodeMessage({
    type: MessageType.MethodCall, serial: 5, destination: 'org.ferrybus.Bystander', path: '/', interface: 'org.ferrybus.Fuzz',
    member: 'M', signature: '(ayv)', body: marshal('(ayv)', [[Buffer.from('bytes'), new Variant('u', 7)]]),
  }),
  // Addressed to the bystander: a body its library cannot parse must never reach it.
  encodeMessage({
    type: MessageType.MethodCall, serial: 7, destination: 'org.ferrybus.Bystander', path: '/', interface: 'org.ferrybus.Fuzz',
    member: 'N', flags: 1, signature: 'sa{sv}', body: marshal('sa{sv}', ['text', new Map([['n', new Variant('x', 5n)]])]),
  }),
  encodeMessage({
    type: MessageType.Signal, serial: 8, destination: 'org.ferrybus.Bystander', path: '/org/ferrybus/Fuzz', interface: 'org.ferrybus.Fuzz',
    member: 'T', signature: 'asv', body: marshal('asv', [['a', 'bc'], new Variant('(sb)', ['d', true])]),
  }),
  encodeMessage({ type: MessageType.Error, serial: 6, replySerial: 1, errorName: 'a.b.C', destination: ':1.1', signature: 's', body: marshal('s', ['e']) }),
];

function mutate(random: () => number, msg: Buffer): Buffer {
  const out = Buffer.from(msg);
  const kind = Math.floor(random() * 4);
  if (kind === 0) {
    for (let i = 0; i < 1 + random() * 4; i++) out[Math.floor(random() * out.length)] = Math.floor(random() * 256);
    return out;
  }
  if (kind === 1) return out.subarray(0, Math.floor(random() * out.length));
  if (kind === 2) {
    const at = Math.floor(random() * out.length);
    return Buffer.concat([out.subarray(0, at), Buffer.from([Math.floor(random() * 256)]), out.subarray(at)]);
  }
  // Flip one bit of the fixed header or the field array: lengths, types, signatures.
  const at = Math.floor(random() * Math.min(out.length, 64));
  out[at]! ^= 1 << Math.floor(random() * 8);
  return out;
}

describe('clients sending mutated messages', () => {
  let dir: string;
  let daemon: LongRunning;
  let address: string;
  let socketPath: string;
  let bystander: NextClient;

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-fuzz');
    socketPath = path.join(dir, 'bus');
    daemon = startLongRunning(process.execPath, [
      path.join(REPO_ROOT, 'dist/src/cli/main.js'), 'daemon', '--nofork', '--print-address=1', `--address=${unixPathAddress(socketPath)}`,
    ]);
    address = await waitForAddressLine(daemon);
    bystander = await NextClient.connect(address);
    await bystander.driver('RequestName', 'su', ['org.ferrybus.Bystander', 4]);
  });

  afterAll(async () => {
    await bystander?.disconnect().catch(() => {});
    await daemon?.stop();
    await removeTempDir(dir);
  });

  it('never bring the bus down nor disturb anyone else (600 connections, seeded)', async () => {
    const seed = Number(process.env.FERRYBUS_FUZZ_SEED ?? Date.now() % 100000);
    const random = rng(seed);
    const uid = Buffer.from(String(process.getuid!())).toString('hex');
    const auth = Buffer.from(`\0AUTH EXTERNAL ${uid}\r\nBEGIN\r\n`);
    for (let round = 0; round < 60; round++) {
      await Promise.all(
        Array.from({ length: 10 }, () =>
          new Promise<void>((resolve) => {
            const stream = [auth, HELLO];
            for (let i = 0; i < 1 + random() * 5; i++) stream.push(mutate(random, SEEDS[Math.floor(random() * SEEDS.length)]!));
            const socket = net.connect({ path: socketPath });
            socket.on('error', () => resolve());
            socket.on('close', () => resolve());
            socket.on('data', () => {});
            socket.once('connect', () => {
              socket.write(Buffer.concat(stream));
              // Give the bus a moment to answer or drop the client, then hang up ourselves.
              setTimeout(() => socket.destroy(), 20);
            });
          }),
        ),
      );
      // After every round the bystander still owns its name and the bus still answers.
      const [owner] = await bystander.driver('GetNameOwner', 's', ['org.ferrybus.Bystander']);
      expect(owner, `seed ${seed}, round ${round}`).toBe(bystander.uniqueName);
    }
    expect(daemon.exit, `seed ${seed}\n${daemon.stderr.slice(-2000)}`).toBeUndefined();
    expect(daemon.stderr, `seed ${seed}`).not.toContain('internal-error');
  });
});
