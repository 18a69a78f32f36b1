/**
 * Zero loss under load (DESIGN.md §3): 22 independent client processes (services answering
 * calls under well-known names, pipelined callers, signal emitters and subscribers; half on the
 * project's own src/wire, half on dbus-next) exchange sequence-numbered traffic while the daemon
 * hands off 50 times in a row, and a connect() loop runs throughout. Raw clients cut every write
 * inside a message (a handoff finds half-received bytes), some signals carry 16 KiB and two
 * subscribers stop reading half of the time (a handoff finds bytes handed to socket.write and not
 * yet sent). Only correctness is asserted; throughput and pauses are printed for the CI log.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageClass, MessageType, NextClient } from '../harness/dbus-next-client.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { type LongRunning, startLongRunning } from '../harness/long-running.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { startBus } from '../harness/start-bus.js';
import { withTimeout } from '../harness/timeout.js';
import { expectNoLoss, type LoadPeer, type LoadReport, percentile, trafficOf } from './support/load-checks.js';

const SUPPORT = fileURLToPath(new URL('./support/', import.meta.url));
const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

const HANDOFFS = 50;
/** Every CLI_EVERY-th handoff goes through `ferrybus handoff`, the others through the bus method. */
const CLI_EVERY = 10;
const SERVICES = ['raw', 'next', 'raw', 'next'].map((lib, i) => ({ lib, name: `org.ferrybus.Load.S${i}` }));
const SUBSCRIBERS = ['raw', 'next', 'raw', 'next', 'raw', 'next', 'raw', 'next'];
/** These stop reading half of the time: the bus's writes to them back up past the socket buffer. */
const STALLING_SUBSCRIBERS = 2;
const CALLERS = ['raw', 'next', 'raw', 'next', 'raw', 'next'];
const EMITTERS = ['raw', 'next', 'raw', 'next'];
/** Every 64th signal carries 16 KiB, so a stalled reader's backlog outgrows the socket buffer. */
const PAYLOAD = ['--payload-every', '64', '--payload-bytes', '16384'];

interface Peer extends LoadPeer {
  proc: LongRunning;
}

interface LoopReport {
  attempts: number;
  helloAnswered: number;
  failures: Record<string, number>;
  examples: string[];
  maxMs: number;
}

/** Asks a client for its report (SIGUSR2) and waits for it. */
async function report<T>(proc: LongRunning): Promise<T> {
  if (proc.exit) throw new Error(`${proc.command} exited before it was asked to report\n${proc.describe()}`);
  const from = proc.mark();
  process.kill(proc.pid, 'SIGUSR2');
  const m = await proc.waitFor(/^report (.*)$/m, { from, timeoutMs: 60_000 });
  return JSON.parse(m[1]!) as T;
}

describe('handoff under load', () => {
  let bus: RunningBus;
  let watcher: NextClient;
  const procs: LongRunning[] = [];

  beforeAll(async () => {
    bus = await startBus('ferrybus');
    watcher = await NextClient.connect(bus.address);
    // Every NameOwnerChanged on the bus: none may concern a participant.
    await watcher.addMatch("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'");
  });

  afterAll(async () => {
    await Promise.allSettled(procs.map((p) => p.stop()));
    await watcher?.disconnect();
    await bus?.stop();
  });

  const start = async (role: LoadPeer['role'], lib: string, extra: string[]): Promise<Peer> => {
    const proc = startLongRunning(process.execPath, [
      path.join(SUPPORT, 'load-client.mjs'), '--lib', lib, '--role', role, '--address', bus.address,
      ...(lib === 'raw' ? ['--split-writes', 'yes'] : []), ...extra,
    ]);
    procs.push(proc);
    const m = await proc.waitFor(/^ready (.*)$/m, { timeoutMs: 30_000 });
    const ready = JSON.parse(m[1]!) as { uniqueName: string };
    return { proc, role, lib, uniqueName: ready.uniqueName };
  };

  it('50 consecutive handoffs lose, duplicate or reorder nothing, and connect() never fails', { timeout: 170_000 }, async () => {
    const [busId] = (await watcher.driver('GetId')) as [string];

    // Receivers first, so every sequence a subscriber or service sees starts at 1.
    const services = await Promise.all(
      SERVICES.map(async (s) => ({ ...(await start('service', s.lib, ['--name', s.name])), name: s.name })),
    );
    const subscribers = await Promise.all(
      SUBSCRIBERS.map((lib, i) => start('subscriber', lib, i < STALLING_SUBSCRIBERS * 2 && lib === 'raw' ? ['--stall-ms', '600'] : [])),
    );
    const targets = SERVICES.map((s) => s.name).join(',');
    const t0 = performance.now();
    const callers = await Promise.all(CALLERS.map((lib) => start('caller', lib, ['--targets', targets, '--window', '16'])));
    const emitters = await Promise.all(EMITTERS.map((lib) => start('emitter', lib, PAYLOAD)));
    const loop = startLongRunning(process.execPath, [path.join(SUPPORT, 'connect-loop.mjs'), '--address', bus.address]);
    procs.push(loop);
    await loop.waitFor(/^ready /m, { timeoutMs: 30_000 });
    const peers = [...services, ...subscribers, ...callers, ...emitters];
    expect(peers.length).toBeGreaterThanOrEqual(20);
    // From now on every peer records any name change it sees: there must be none.
    await Promise.all(
      peers.map((p) => {
        const from = p.proc.mark();
        process.kill(p.proc.pid, 'SIGHUP');
        return p.proc.waitFor(/^watching$/m, { from });
      }),
    );
    await watcher.ping();
    const watchFrom = watcher.received.length;

    const pausesUs: number[] = [];
    const generations: number[] = [];
    for (let i = 1; i <= HANDOFFS; i++) {
      if (i % CLI_EVERY === 0) {
        const r = await runClient(process.execPath, [CLI, 'handoff', '--address', bus.address, '--json'], { timeoutMs: 60_000 });
        expect(r.exitCode, describeResult(r)).toBe(0);
        const out = JSON.parse(r.stdout) as { generation: number; pauseMs: number };
        generations.push(out.generation);
        pausesUs.push(Math.round(out.pauseMs * 1000));
      } else {
        const reply = await withTimeout(
          watcher.driver('Handoff', 's', [''], 'org.ferrybus.Supervisor1'),
          60_000,
          `Handoff #${i}`,
        ).catch((err: Error) => {
          throw new Error(`${err.message}\n--- bus log (tail)\n${bus.process.text('stderr').slice(-4000)}`);
        });
        generations.push(reply[0] as number);
        pausesUs.push(Number(reply[1] as bigint));
      }
    }

    // Senders stop first and wait for every reply; then the receivers make a last round trip,
    // which the bus queues behind everything it accepted for them before.
    const senderReports = await Promise.all([...callers, ...emitters].map((p) => report<LoadReport>(p.proc)));
    const loopReport = await report<LoopReport>(loop);
    const seconds = (performance.now() - t0) / 1000;
    const receiverReports = await Promise.all([...services, ...subscribers].map((p) => report<LoadReport>(p.proc)));
    const reports = new Map([...senderReports, ...receiverReports].map((r) => [r.uniqueName, r]));

    // Statistics first, so they reach the log even when an assertion fails below.
    const { calls, signals, delivered } = trafficOf(peers, reports);
    const sorted = [...pausesUs].sort((a, b) => a - b);
    const ms = (us: number) => (us / 1000).toFixed(1);
    const carried = [...bus.process.text('stderr').matchAll(/handoff-complete:.* pendingCalls=(\d+)/g)].map((m) => Number(m[1]));
    console.log(
      [
        `handoff under load: ${peers.length} client processes + connect loop, ${HANDOFFS} handoffs in ${seconds.toFixed(1)} s`,
        `  messages: ${calls} calls + ${calls} replies + ${signals} signals × ${subscribers.length} subscribers = ${delivered} delivered, ${Math.round(delivered / seconds)} messages/s`,
        `  payload: ${(subscribers.reduce((n, p) => n + (reports.get(p.uniqueName)?.payloadBytes ?? 0), 0) / 2 ** 20).toFixed(0)} MiB delivered in 16 KiB signals; ${STALLING_SUBSCRIBERS} subscribers stall half of the time`,
        `  connect loop: ${loopReport.attempts} connects (${Math.round(loopReport.attempts / seconds)}/s), slowest Hello ${loopReport.maxMs} ms`,
        `  pause (Handoff replies): p50 ${ms(percentile(sorted, 50))} ms, p99 ${ms(percentile(sorted, 99))} ms, max ${ms(sorted[sorted.length - 1]!)} ms`,
        `  handoffs that carried calls awaiting a reply: ${carried.filter((n) => n > 0).length}/${carried.length}`,
      ].join('\n'),
    );

    expect(generations).toEqual(Array.from({ length: HANDOFFS }, (_, i) => i + 2));
    // The load really was in flight across the handoffs.
    expect(carried.filter((n) => n > 0).length).toBeGreaterThan(0);
    for (const p of peers) {
      expect(p.proc.text(), `${p.role} ${p.uniqueName} lost its connection`).not.toMatch(/^lost /m);
      expect(p.proc.exit, `${p.role} ${p.uniqueName} still running`).toBeUndefined();
    }
    expectNoLoss(peers, reports, busId);

    expect(loopReport.failures, loopReport.examples.join('\n')).toEqual({});
    expect(loopReport.helloAnswered).toBe(loopReport.attempts);
    expect(loopReport.attempts).toBeGreaterThan(HANDOFFS);

    // Nobody outside saw a participant come or go, and the bus still lists every one of them.
    const participants = new Set<string>([...peers.map((p) => p.uniqueName), ...SERVICES.map((s) => s.name), watcher.uniqueName]);
    const noc = watcher.received
      .slice(watchFrom)
      .filter((m) => m.type === MessageType.SIGNAL && m.member === 'NameOwnerChanged')
      .map((m) => m.body as string[]);
    expect(noc.filter((b) => b.some((v) => participants.has(v)))).toEqual([]);
    const [names] = (await watcher.driver('ListNames')) as [string[]];
    expect(names).toEqual(expect.arrayContaining([...participants]));
    // The watcher's own connection survived too: a call is still answered.
    const pong = await watcher.bus.call(
      new MessageClass({ destination: 'org.freedesktop.DBus', path: '/', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' }),
    );
    expect(pong?.type).toBe(MessageType.METHOD_RETURN);
  });
});
