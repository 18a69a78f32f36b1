/**
 * DESIGN.md §3: a client connected before a handoff cannot tell it happened, except for latency.
 *
 * One scene, built from real clients of three kinds (python3-dbus/libdbus, dbus-next, busctl and
 * dbus-send) plus raw sockets for what no library does on purpose, is handed off once, then five
 * times in a row, and everything it holds is checked afterwards: unique names, bus id, names and
 * owner queues (with their flags), match rules (an arg0 filter too), a half-sent message, a
 * reader that stopped reading with megabytes queued for it, a method call awaiting its reply,
 * connections stopped before and in the middle of authentication. No one may see a disconnect,
 * a NameOwnerChanged, NameLost or NameAcquired for anything that existed before.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOn, startOn } from '../harness/clients.js';
import { MessageClass, NAME_FLAG, NextClient, REQUEST_NAME_REPLY } from '../harness/dbus-next-client.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import type { LongRunning } from '../harness/long-running.js';
import { ECHO_INTERFACE, ECHO_PATH, startEchoService, startSignalSubscriber } from '../harness/python-clients.js';
import { describeResult } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { useCleanup } from '../harness/use-bus.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import {
  busStatus,
  cmdline,
  handoffByCli,
  handoffByMethod,
  handoffBySignal,
  logLines,
  supportPath,
  watchDisconnect,
} from './support/ferrybus.js';
import { RawClient, readBody, TYPE } from './support/raw-client.js';

const ECHO = 'org.ferrybus.Test.Echo';
const NAME_A = 'org.ferrybus.Test.Fidelity.A';
const NAME_B = 'org.ferrybus.Test.Fidelity.B';
const SIGNAL_IFACE = 'org.ferrybus.Test.Fidelity';
const SEQ_IFACE = 'org.ferrybus.Test.Fidelity.Seq';
const DRIVER = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
/** Signals per batch to the reader that stopped reading, and their payload: ~1 MiB a batch, far more than socket buffers hold. */
const SEQ_BATCH = 128;
const SEQ_PAYLOAD = 8 * 1024;

const payloadOf = (seq: number) => `seq-${seq}-`.padEnd(SEQ_PAYLOAD, String.fromCharCode(97 + (seq % 26)));

/** Everything a handoff must carry, alive on one bus. */
interface Scene {
  bus: RunningBus;
  /** dbus-next: sees every NameOwnerChanged on the bus; also asks for handoffs and Status. */
  watcher: NextClient;
  owner: NextClient;
  queuer: NextClient;
  subscriber: NextClient;
  emitter: NextClient;
  echo: { proc: LongRunning; uniqueName: string };
  holder: { proc: LongRunning; uniqueName: string };
  filtered: { proc: LongRunning; uniqueName: string };
  half: RawClient;
  halfCall: { serial: number; bytes: Buffer };
  slow: RawClient;
  service: RawClient;
  caller: RawClient;
  pendingSerial: number;
  /** Connected, nothing sent yet / AUTH answered OK but no BEGIN yet. */
  silent: RawClient;
  midAuth: RawClient;
  nextSeq: number;
  disconnects: Array<() => string | undefined>;
  /** Every unique and well-known name that existed before the first handoff. */
  protectedNames: Set<string>;
}

async function driverCall(c: NextClient, member: string, signature = '', body: unknown[] = []): Promise<unknown[]> {
  return c.driver(member, signature, body);
}

async function requestName(c: NextClient, name: string, flags: number): Promise<number> {
  const [reply] = await driverCall(c, 'RequestName', 'su', [name, flags]);
  return reply as number;
}

/** Sends a batch of sequence-numbered signals that only the slow reader subscribed to. */
async function emitSeqBatch(s: Scene): Promise<void> {
  for (let i = 0; i < SEQ_BATCH; i++) {
    const seq = s.nextSeq++;
    s.emitter.bus.send(MessageClass.newSignal('/org/ferrybus/Test', SEQ_IFACE, 'Seq', 'us', [seq, payloadOf(seq)]));
  }
  // One round trip: every signal sent before it has been routed (queued for the slow reader).
  await s.emitter.ping();
}

const seqCount = (c: RawClient) => c.received.filter((m) => m.header.member === 'Seq').length;

/**
 * Lets the slow reader read a little, then stops it again. The bus's one outstanding write
 * completes and it hands the whole backlog to the socket as one large write, which the kernel
 * takes only in part: the handoff must then carry exactly the unsent tail of that write.
 */
async function readSome(s: Scene): Promise<void> {
  const target = seqCount(s.slow) + 40;
  s.slow.resumeReading();
  await s.slow.waitFor(() => seqCount(s.slow) >= target, `${target} Seq signals`);
  s.slow.stopReading();
}

async function buildScene(build: BuildSnapshot, defer: (fn: () => unknown) => void): Promise<Scene> {
  const bus = await startSnapshotBus(build);
  defer(() => bus.stop());
  const next = async () => {
    const c = await NextClient.connect(bus.address);
    defer(() => c.disconnect());
    return c;
  };
  const watcher = await next();
  await watcher.addMatch("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'");

  // Names and owner queues: ECHO = [python echo service, python holder],
  // A = [owner (allows replacement), python holder], B = [owner, queuer (allows replacement)].
  const echo = await startEchoService(bus, defer, ECHO);
  const owner = await next();
  expect(await requestName(owner, NAME_A, NAME_FLAG.ALLOW_REPLACEMENT)).toBe(REQUEST_NAME_REPLY.PRIMARY_OWNER);
  expect(await requestName(owner, NAME_B, 0)).toBe(REQUEST_NAME_REPLY.PRIMARY_OWNER);
  const queuer = await next();
  expect(await requestName(queuer, NAME_B, NAME_FLAG.ALLOW_REPLACEMENT)).toBe(REQUEST_NAME_REPLY.IN_QUEUE);
  const holderProc = startOn(bus, defer, SYSTEM_PYTHON, [
    supportPath('name-holder.py'),
    '--address', bus.address, '--request', `${ECHO}:0`, '--request', `${NAME_A}:0`,
  ]);
  const holderName = (await holderProc.waitFor(/^ready (\S+)$/m))[1]!;
  expect(holderProc.stdout).toContain(`requested ${ECHO} 0 ${REQUEST_NAME_REPLY.IN_QUEUE}\n`);
  expect(holderProc.stdout).toContain(`requested ${NAME_A} 0 ${REQUEST_NAME_REPLY.IN_QUEUE}\n`);
  await holderProc.waitFor(`signal NameAcquired ${holderName}\n`);

  // Match rules: an arg0-filtered python subscriber and an unfiltered dbus-next one.
  const filtered = await startSignalSubscriber(bus, defer, `type='signal',interface='${SIGNAL_IFACE}',member='Changed',arg0='wanted'`);
  const subscriber = await next();
  await subscriber.addMatch(`type='signal',interface='${SIGNAL_IFACE}',member='Changed'`);
  const emitter = await next();

  // Half a message: a call to the python echo service, cut inside its header.
  const half = await RawClient.connect(bus.socketPath);
  defer(() => half.close());
  const halfCall = half.encodeCall(
    { destination: ECHO, path: ECHO_PATH, interface: ECHO_INTERFACE, member: 'Echo' }, 's', ['half a message, then the rest ✓'],
  );

  // The reader that stops reading: subscribed to Seq signals only.
  const slow = await RawClient.connect(bus.socketPath);
  defer(() => slow.close());
  await slow.addMatch(`type='signal',interface='${SEQ_IFACE}',member='Seq'`);
  slow.stopReading();

  // A method call awaiting its reply across the handoff (the callee answers afterwards).
  const service = await RawClient.connect(bus.socketPath);
  defer(() => service.close());
  const caller = await RawClient.connect(bus.socketPath);
  defer(() => caller.close());
  const pendingSerial = caller.send(
    { type: TYPE.METHOD_CALL, destination: service.uniqueName, path: '/pending', interface: 'org.ferrybus.Test.Pending', member: 'Slow' },
    's', ['answer me later'],
  );
  await service.waitFor((m) => m.header.member === 'Slow', 'the pending call');

  const silent = await RawClient.connect(bus.socketPath, 'connected');
  defer(() => silent.close());
  const midAuth = await RawClient.connect(bus.socketPath, 'sasl-ok');
  defer(() => midAuth.close());

  const scene: Scene = {
    bus, watcher, owner, queuer, subscriber, emitter,
    echo, holder: { proc: holderProc, uniqueName: holderName }, filtered,
    half, halfCall, slow, service, caller, pendingSerial, silent, midAuth,
    nextSeq: 0,
    disconnects: [watcher, owner, queuer, subscriber, emitter].map(watchDisconnect),
    protectedNames: new Set([
      ECHO, NAME_A, NAME_B, echo.uniqueName, holderName, filtered.uniqueName,
      ...[watcher, owner, queuer, subscriber, emitter].map((c) => c.uniqueName),
      ...[half, slow, service, caller].map((c) => c.uniqueName),
    ]),
  };
  await emitSeqBatch(scene);
  await readSome(scene);
  return scene;
}

/** What a client can ask the bus about its state: must be identical before and after. */
async function observable(s: Scene) {
  const w = s.watcher;
  const queues: Record<string, unknown> = {};
  for (const name of [ECHO, NAME_A, NAME_B]) queues[name] = (await driverCall(w, 'ListQueuedOwners', 's', [name]))[0];
  return {
    id: (await driverCall(w, 'GetId'))[0],
    names: ((await driverCall(w, 'ListNames'))[0] as string[]).filter((n) => !n.startsWith(':') || s.protectedNames.has(n)).sort(),
    queues,
    echoPid: (await driverCall(w, 'GetConnectionUnixProcessID', 's', [s.echo.uniqueName]))[0],
  };
}

/** Everything that must have stayed silent since `marks`. */
function marks(s: Scene) {
  return {
    watcher: s.watcher.received.length,
    owner: s.owner.received.length,
    queuer: s.queuer.received.length,
    holder: s.holder.proc.mark(),
    stderr: s.bus.process.mark('stderr'),
    raw: [s.half, s.service, s.caller].map((c) => c.received.length),
  };
}

const isNameSignal = (m: { type: number; member?: string }) =>
  m.type === 4 && ['NameOwnerChanged', 'NameLost', 'NameAcquired'].includes(m.member ?? '');

async function expectNothingNoticed(s: Scene, from: ReturnType<typeof marks>): Promise<void> {
  // Round trips first: anything the bus emitted about the handoff is delivered before these replies.
  await s.watcher.ping();
  await s.owner.ping();
  await s.queuer.ping();
  await s.watcher.bus.call(
    new MessageClass({ destination: s.holder.uniqueName, path: '/', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' }),
  );
  const touched = s.watcher.received
    .slice(from.watcher)
    .filter((m) => m.member === 'NameOwnerChanged' && (m.body as string[]).some((n) => s.protectedNames.has(n)));
  expect(touched.map((m) => m.body), 'NameOwnerChanged about names that existed before the handoff').toEqual([]);
  expect(s.owner.received.slice(from.owner).filter((m) => isNameSignal({ type: m.type, member: m.member }))).toEqual([]);
  expect(s.queuer.received.slice(from.queuer).filter((m) => isNameSignal({ type: m.type, member: m.member }))).toEqual([]);
  expect(s.holder.proc.text('stdout', from.holder), 'python name holder saw something').toBe('');
  for (const [i, c] of [s.half, s.service, s.caller].entries()) {
    expect(c.received.slice(from.raw[i]).filter((m) => isNameSignal({ type: m.header.type, member: m.header.member }))).toEqual([]);
  }
  expect(s.disconnects.map((d) => d())).toEqual([undefined, undefined, undefined, undefined, undefined]);
  for (const c of [s.half, s.slow, s.service, s.caller, s.silent, s.midAuth]) {
    expect(c.closed).toBeUndefined();
    expect(c.corrupt).toBeUndefined();
  }
  for (const p of [s.echo.proc, s.holder.proc, s.filtered.proc]) expect(p.exit).toBeUndefined();
  const stderr = s.bus.process.text('stderr', from.stderr);
  expect(stderr).not.toMatch(/handoff-(failed|restore-dropped|document-unusable|listener-lost|dropped-connections)|client-dropped/);
  for (const line of logLines(s.bus.process, 'handoff-complete', from.stderr)) expect(line).toMatch(/ dropped=0$/);
}

/** Emits `wanted` and `unwanted` with dbus-send; both subscribers must see what their rules say. */
async function checkMatches(s: Scene, round: number): Promise<void> {
  for (const value of [`unwanted-${round}`, 'wanted']) {
    const r = await runOn(s.bus, 'dbus-send', [`--bus=${s.bus.address}`, '--type=signal', '/org/ferrybus/Test', `${SIGNAL_IFACE}.Changed`, `string:${value}`]);
    expect(r.exitCode, describeResult(r)).toBe(0);
  }
  await s.subscriber.waitFor(
    (m) => m.member === 'Changed' && s.subscriber.signals('Changed').filter((x) => x.body[0] === 'wanted').length === round + 1,
    `wanted #${round + 1}`,
  );
  expect(s.subscriber.signals('Changed').map((m) => m.body[0])).toEqual(
    Array.from({ length: round + 1 }, (_, i) => [`unwanted-${i}`, 'wanted']).flat(),
  );
  await s.filtered.proc.waitFor(new RegExp(`(signal ${SIGNAL_IFACE}\\.Changed wanted\\n){${round + 1}}`));
  expect(s.filtered.proc.lines().slice(1)).toEqual(Array(round + 1).fill(`signal ${SIGNAL_IFACE}.Changed wanted`));
}

/** Writes the half message in pieces: piece i before handoff i, the last piece after the last handoff. */
function halfPieces(bytes: Buffer, handoffs: number): Buffer[] {
  // Cut points inside the message, never at its end.
  const cuts = Array.from({ length: handoffs }, (_, i) => Math.max(5, Math.floor(((i + 1) * bytes.length) / (handoffs + 2))));
  return [...cuts, bytes.length].map((end, i) => bytes.subarray(i === 0 ? 0 : cuts[i - 1]!, end));
}

async function runHandoffs(build: BuildSnapshot, s: Scene, count: number, how: (i: number) => 'method' | 'cli' | 'signal'): Promise<number[]> {
  const before = await busStatus(s.watcher);
  expect(before.generation).toBe(1);
  const pid = s.bus.pid;
  expect(before.pid).toBe(pid);
  const pieces = halfPieces(s.halfCall.bytes, count);
  const pauses: number[] = [];
  await checkMatches(s, 0);
  const baseline = await observable(s);
  const from = marks(s);
  for (let i = 0; i < count; i++) {
    s.half.write(pieces[i]!);
    const status = await busStatus(s.watcher);
    expect(status.queuedBytes, 'the slow reader has bytes queued in the bus').toBeGreaterThan(0n);
    const generation = i + 2;
    const kind = how(i);
    const result =
      kind === 'method' ? await handoffByMethod(s.watcher, '', s.bus)
      : kind === 'cli' ? await handoffByCli(build.main, s.bus)
      : await handoffBySignal(s.bus.process, s.watcher, generation);
    expect(result.generation).toBe(generation);
    pauses.push(result.pauseMs);
    const after = await busStatus(s.watcher);
    expect(after.generation).toBe(generation);
    expect(after.pid).toBe(pid);
    // Nothing the half message carries has been answered: it is still half.
    expect(s.half.received.some((m) => m.header.replySerial === s.halfCall.serial)).toBe(false);
    await emitSeqBatch(s);
    await readSome(s);
  }
  expect(existsSync(`/proc/${pid}`)).toBe(true);
  expect(cmdline(pid)[0]).toBe('@ferrybus');
  expect(cmdline(pid)).toContain(`--handoff-generation=${count + 1}`);
  expect(await observable(s)).toEqual(baseline);
  await expectNothingNoticed(s, from);
  return pauses;
}

/** After the handoffs: everything the scene left in flight completes, exactly once, in order. */
async function checkInFlight(s: Scene, count: number): Promise<void> {
  // The rest of the half message: answered by the python service through the bus.
  const reply = s.half.waitForReply(s.halfCall.serial, 'the completed half message');
  s.half.write(halfPieces(s.halfCall.bytes, count).at(-1)!);
  expect(readBody(await reply)).toEqual(['half a message, then the rest ✓']);

  // The pending call: the callee answers now, the caller gets it.
  const call = s.service.received.find((m) => m.header.member === 'Slow')!;
  s.service.send({ type: TYPE.METHOD_RETURN, destination: s.caller.uniqueName, replySerial: call.header.serial }, 's', ['late answer']);
  expect(readBody(await s.caller.waitForReply(s.pendingSerial, 'the pending call reply'))).toEqual(['late answer']);

  // The slow reader reads at last: every signal, once, in order, intact.
  s.slow.resumeReading();
  const total = s.nextSeq;
  await s.slow.waitFor(() => seqCount(s.slow) >= total, `${total} Seq signals`, 20_000);
  await s.slow.call({ ...DRIVER, member: 'GetId' }); // a round trip: nothing more is on its way
  const seqs = s.slow.received.filter((m) => m.header.member === 'Seq').map((m) => readBody(m));
  expect(seqs.length).toBe(total);
  const wrong = seqs.findIndex(([seq, payload], i) => seq !== i || payload !== payloadOf(i));
  expect(wrong, `first Seq signal out of order, duplicated or damaged: #${wrong}`).toBe(-1);

  // Connections stopped before and during authentication finish it; unique names are never reused.
  await s.midAuth.begin();
  await s.silent.authenticate();
  await s.silent.begin();
  for (const c of [s.midAuth, s.silent]) {
    expect(c.uniqueName).toMatch(/^:1\.[0-9]+$/);
    expect(s.protectedNames.has(c.uniqueName)).toBe(false);
  }
  expect(s.midAuth.uniqueName).not.toBe(s.silent.uniqueName);

  // Stock clients that connect now reach the services that were there before.
  const viaBusctl = await runOn(s.bus, 'busctl', [`--address=${s.bus.address}`, 'call', ECHO, ECHO_PATH, ECHO_INTERFACE, 'Echo', 's', 'after']);
  expect(viaBusctl.stdout, describeResult(viaBusctl)).toBe('s "after"\n');
  const viaPython = await runOn(s.bus, SYSTEM_PYTHON, [fixturePath('echo-client.py'), '--address', s.bus.address, '--name', ECHO, '--text', 'after ✓']);
  expect(viaPython.stdout, describeResult(viaPython)).toBe('reply: after ✓\n');
  await checkMatches(s, 1);
}

describe('state fidelity: a client cannot tell a handoff happened', () => {
  const defer = useCleanup();
  let build: BuildSnapshot;
  beforeAll(async () => {
    build = await snapshotBuild();
  });
  afterAll(() => build?.remove());
  const report = (what: string, pauses: number[]) =>
    console.log(`handoff pauses (${what}): ${pauses.map((p) => p.toFixed(1)).join(', ')} ms`);

  it('one handoff (ferrybus handoff --json) keeps names, queues, matches, a half message, a full outbound queue and a pending call', async () => {
    const s = await buildScene(build, defer);
    const cliPid = s.bus.pid;
    report('one, with ~1 MiB queued', await runHandoffs(build, s, 1, () => 'cli'));
    await checkInFlight(s, 1);
    expect(s.bus.pid).toBe(cliPid);

    // Flags crossed too: A's owner allowed replacement, B's did not.
    const taker = await NextClient.connect(s.bus.address);
    defer(() => taker.disconnect());
    expect(await requestName(taker, NAME_A, NAME_FLAG.REPLACE_EXISTING | NAME_FLAG.DO_NOT_QUEUE)).toBe(REQUEST_NAME_REPLY.PRIMARY_OWNER);
    await s.owner.waitForSignal('NameLost', [NAME_A]);
    expect(await requestName(taker, NAME_B, NAME_FLAG.REPLACE_EXISTING | NAME_FLAG.DO_NOT_QUEUE)).toBe(REQUEST_NAME_REPLY.EXISTS);
    // The queue order crossed: when B's owner lets go, the queuer is next.
    await driverCall(s.owner, 'ReleaseName', 's', [NAME_B]);
    await s.queuer.waitForSignal('NameAcquired', [NAME_B]);
    await s.watcher.waitForSignal('NameOwnerChanged', [NAME_B, s.owner.uniqueName, s.queuer.uniqueName]);
  });

  it('five consecutive handoffs (bus method, CLI, SIGUSR2) lose, repeat and reorder nothing', async () => {
    const s = await buildScene(build, defer);
    const order = ['method', 'cli', 'signal', 'method', 'cli'] as const;
    report('five, queue growing by ~1 MiB each', await runHandoffs(build, s, order.length, (i) => order[i]!));
    await checkInFlight(s, order.length);
    expect(logLines(s.bus.process, 'handoff-complete').length).toBe(order.length);
  });

  it('two buses of one user handing off at the same moment each keep their own state', async () => {
    // Both write their document into the same directory (/run/ferrybus/handoff for root), for
    // the same generation, within the same few milliseconds.
    const buses = await Promise.all([startSnapshotBus(build), startSnapshotBus(build)]);
    for (const b of buses) defer(() => b.stop());
    const clients = await Promise.all(buses.map((b) => NextClient.connect(b.address)));
    for (const c of clients) defer(() => c.disconnect());
    for (const [i, c] of clients.entries()) expect(await requestName(c, `${NAME_A}${i}`, 0)).toBe(REQUEST_NAME_REPLY.PRIMARY_OWNER);
    const ids = await Promise.all(clients.map(async (c) => (await driverCall(c, 'GetId'))[0]));
    const gone = clients.map(watchDisconnect);
    for (const generation of [2, 3]) {
      const froms = buses.map((b) => b.process.mark('stderr'));
      // An answer from each bus first: see handoffBySignal for why a new image must be asked.
      await Promise.all(clients.map((c) => c.ping()));
      for (const b of buses) process.kill(b.pid, 'SIGUSR2');
      await Promise.all(
        buses.map((b, i) =>
          b.process.waitFor(new RegExp(`handoff-(complete|document-unusable|failed): .*`), { stream: 'stderr', from: froms[i], timeoutMs: 30_000 }),
        ),
      );
      for (const [i, b] of buses.entries()) {
        const line = logLines(b.process, 'handoff-complete', froms[i]);
        expect(line, b.process.text('stderr', froms[i])).toHaveLength(1);
        expect(line[0]).toMatch(new RegExp(`generation=${generation} .* connections=1 names=1 .* dropped=0$`));
      }
    }
    for (const [i, c] of clients.entries()) {
      expect(gone[i]!()).toBeUndefined();
      expect((await driverCall(c, 'GetId'))[0]).toBe(ids[i]);
      expect((await driverCall(c, 'GetNameOwner', 's', [`${NAME_A}${i}`]))[0]).toBe(c.uniqueName);
    }
  });
});
