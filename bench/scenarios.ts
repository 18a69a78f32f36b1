import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLongRunning, type LongRunning } from '../test/harness/long-running.js';
import type { BenchBus, BusName } from './buses.js';
import { connectLoop, emitSignals, Peers, sdbusCallerPath } from './clients.js';
import { systemPolicyConfig } from './system-policy.js';
import { waitForName } from './raw-client.js';

export const ECHO_NAME = 'com.example.Echo';

/** What one measured drive produced. */
export interface DriveResult {
  /** Messages the bus delivered to a receiver (a call and its reply are 2), or connections. */
  units: number;
  /** Anything the clients reported as failed; a run with errors is not counted. */
  errors: string[];
}

export interface Prepared {
  /** Runs the workload with `count` (calls, signals or connections); may be called again. */
  drive(count: number): Promise<DriveResult>;
  cleanup(): Promise<void>;
}

export interface Scenario {
  id: string;
  title: string;
  /** 'msg': cost per 100k routed messages; 'conn': cost per connection. */
  unit: 'msg' | 'conn';
  /** Parameters at scale 1 (counts are multiplied by the scale). */
  params: Record<string, number>;
  scaled: readonly string[];
  describe: string;
  prepare(bus: BenchBus, params: Record<string, number>): Promise<Prepared>;
  /** The busconfig the bus runs under (default: the permissive one). */
  config?: (listen: string) => string;
  /** The buses it runs on (default: all). */
  buses?: readonly BusName[];
  /**
   * <limit> values for ferrybus and dbus-daemon, on the permissive config (e.g. more connections
   * per user than the compiled-in 256); dbus-broker runs with the harness controller's quotas.
   */
  limits?: Readonly<Record<string, number>>;
  /** Drives the bus with bench/clients/dbus-bench-client.c (compiled before the run starts). */
  usesBenchClient?: boolean;
}

const SETPRIV = '/usr/bin/setpriv';
const DIE_WITH_PARENT = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'SIGKILL', '--'] : [];

/** Runs a short-lived client to completion; stdout/stderr collected, killed (by PID) on timeout. */
export function runToEnd(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input: Buffer | undefined,
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, ...rest] = [...DIE_WITH_PARENT, file, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, rest, { env: { ...process.env, ...env }, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`${file} ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (input) child.stdin!.end(input);
  });
}

const sessionEnv = (bus: BenchBus) => ({ DBUS_SESSION_BUS_ADDRESS: bus.address });

/** dbus-test-tool echo owning ECHO_NAME, ready once the name has an owner. */
export async function startEcho(bus: BenchBus): Promise<LongRunning> {
  const echo = startLongRunning('dbus-test-tool', ['echo', `--name=${ECHO_NAME}`], { env: sessionEnv(bus) });
  try {
    await waitForName(bus.socketPath, ECHO_NAME);
  } catch (err) {
    await echo.stop();
    throw new Error(`echo service did not come up on ${bus.name}: ${(err as Error).message}\n${echo.describe()}`);
  }
  return echo;
}

/** A policy bench that measured a bus not enforcing its policy would measure nothing. */
async function expectDenied(bus: BenchBus, echo: LongRunning, iface: string): Promise<void> {
  const r = await runToEnd('dbus-send', [`--bus=${bus.address}`, '--print-reply', `--dest=${ECHO_NAME}`, '/', `${iface}.Probe`], {}, undefined, 10_000);
  if (/org\.freedesktop\.DBus\.Error\.AccessDenied/.test(r.stderr)) return;
  await echo.stop();
  throw new Error(`${bus.name} did not refuse a call the policy denies (${iface}.Probe): exit ${r.code}, ${r.stderr.trim()}`);
}

/** spam → bus → echo → bus → spam: `count` calls with `queue` in flight. */
export function spamScenario(
  id: string,
  title: string,
  params: Record<string, number>,
  payload: (p: Record<string, number>) => Buffer | undefined,
  describe: string,
  /** Under a policy: a call on this interface must be refused, proving the policy is in force. */
  enforced?: string,
): Scenario {
  return {
    id,
    title,
    unit: 'msg',
    params,
    scaled: ['count'],
    describe,
    async prepare(bus, p) {
      const echo = await startEcho(bus);
      if (enforced) await expectDenied(bus, echo, enforced);
      const input = payload(p);
      return {
        async drive(count) {
          const args = ['spam', `--dest=${ECHO_NAME}`, `--count=${count}`, `--queue=${p.queue}`];
          if (input) args.push('--bytes', '--stdin');
          const r = await runToEnd('dbus-test-tool', args, sessionEnv(bus), input, 180_000);
          const errors: string[] = [];
          if (r.code !== 0) errors.push(`dbus-test-tool spam exited with ${r.code}`);
          const failed = r.stderr.split('\n').filter((l) => /fail|error/i.test(l));
          if (failed.length > 0) errors.push(`${failed.length} error lines from spam, first: ${failed[0]}`);
          return { units: 2 * count, errors };
        },
        async cleanup() {
          await echo.stop();
        },
      };
    },
  };
}

/**
 * A caller program → dbus-test-tool echo, one call in flight: `caller()` names the program and
 * its arguments before the address, the echo's name and the count; it prints "done COUNT".
 */
function callerRoundTrip(id: string, title: string, describe: string, caller: () => [file: string, ...args: string[]]): Scenario {
  return {
    id,
    title,
    unit: 'msg',
    params: { count: 50_000 },
    scaled: ['count'],
    describe,
    async prepare(bus) {
      const [file, ...args] = caller();
      const echo = await startEcho(bus);
      return {
        async drive(count) {
          const r = await runToEnd(file, [...args, bus.address, ECHO_NAME, String(count)], {}, undefined, 300_000);
          const errors: string[] = [];
          if (r.code !== 0 || !r.stdout.includes(`done ${count}`)) {
            errors.push(`${path.basename(args[0] ?? file)} exited with ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
          }
          return { units: 2 * count, errors };
        },
        async cleanup() {
          await echo.stop();
        },
      };
    },
  };
}

/** python3-dbus calls carrying one fd each → dbus-test-tool echo (which negotiated fds too). */
const fdRoundTrip = callerRoundTrip('roundtrip-fd', 'method round trip with one unix fd per call',
  'bench/fd-caller.py (python3-dbus) → dbus-test-tool echo, one call in flight, each call carrying a pipe fd; routed messages = 2 × count',
  () => ['/usr/bin/python3', path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'fd-caller.py')]);

/** sd-bus calls (bench/clients/sdbus-caller.c) → dbus-test-tool echo: the round trip with systemd's client library. */
const sdbusRoundTrip = callerRoundTrip('roundtrip-sdbus', 'method round trip from an sd-bus client',
  'bench/clients/sdbus-caller.c (sd-bus, unix fds negotiated) → dbus-test-tool echo, one call in flight, ' +
    'a string argument; routed messages = 2 × count',
  () => [sdbusCallerPath()]);

/** The shape of a signal fan-out run: who subscribes, what else is connected. */
export interface FanOutShape {
  /** Subscriber processes, one connection each, each with one rule matching the bench signal. */
  subscribers: number;
  /** Match rules per connection (subscribers: 1 matching + rules-1 that match nothing sent). */
  rules: number;
  /** More connections, in one process, each with `rules` rules that match nothing sent. */
  idlePeers: number;
  /** The emitter makes a GetId round trip to the bus every `window` signals. */
  window: number;
}

/**
 * libdbus clients (bench/clients/dbus-bench-client.c): `subscribers` processes, `idlePeers` more
 * connections in one process, and per drive an emitter process. A drive ends when every
 * subscriber has received every signal; then each subscriber must hold exactly what was sent,
 * and the idle peers nothing.
 */
export async function prepareFanOut(bus: BenchBus, shape: FanOutShape): Promise<Prepared> {
  const started: Peers[] = [];
  let idle: Peers | undefined;
  try {
    const subs = await Promise.allSettled(
      Array.from({ length: shape.subscribers }, () => Peers.start(bus, { connections: 1, rules: shape.rules, matching: 1 })),
    );
    for (const r of subs) if (r.status === 'fulfilled') started.push(r.value);
    const failed = subs.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (shape.idlePeers > 0) idle = await Peers.start(bus, { connections: shape.idlePeers, rules: shape.rules, matching: 0, readyTimeoutMs: 120_000 });
  } catch (err) {
    await Promise.all(started.map((p) => p.stop()));
    throw err;
  }
  const subscribers = started;
  return {
    async drive(count) {
      const settled = await Promise.allSettled([
        emitSignals(bus, count, shape.window),
        ...subscribers.map((s) => s.expect(count, 180_000)),
      ]);
      const errors = settled.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message.split('\n')[0]!] : []));
      if (errors.length === 0) {
        const counts = await Promise.all(subscribers.map((s) => s.count()));
        if (counts.some((c, i) => c !== subscribers[i]!.expectedTotal)) {
          errors.push(`subscribers received ${counts.join(',')} signals in total, expected ${subscribers[0]!.expectedTotal} each`);
        }
        if (idle) {
          const stray = await idle.count();
          if (stray !== 0) errors.push(`${stray} signals reached connections whose rules do not match them`);
        }
      }
      return { units: count * subscribers.length, errors };
    },
    async cleanup() {
      await Promise.all([...subscribers, ...(idle ? [idle] : [])].map((p) => p.stop()));
    },
  };
}

const fanOut: Scenario = {
  id: 'fanout',
  title: 'signal fan-out to 10 subscribers',
  unit: 'msg',
  params: { count: 60_000, subscribers: 10, window: 128 },
  scaled: ['count'],
  describe:
    'libdbus clients (bench/clients/dbus-bench-client.c): one emitter process broadcasts `count` signals ' +
    '(body "s", 13 chars) with a GetId round trip to the bus every `window` signals; `subscribers` ' +
    'processes, one connection each, each hold one match rule (interface+member) and count what arrives; ' +
    'routed messages = count × subscribers deliveries',
  usesBenchClient: true,
  prepare: (bus, p) => prepareFanOut(bus, { subscribers: p.subscribers!, rules: 1, idlePeers: 0, window: p.window! }),
};

const connectStorm: Scenario = {
  id: 'connect',
  title: 'connect + Hello + call + disconnect',
  unit: 'conn',
  params: { count: 20_000, concurrency: 4 },
  scaled: ['count'],
  describe:
    'libdbus clients (bench/clients/dbus-bench-client.c connect-loop), `concurrency` processes in parallel, ' +
    'each repeating: dbus_connection_open_private (SASL EXTERNAL, unix fd negotiation), dbus_bus_register ' +
    '(Hello), one call to the echo service and its reply, close; cost per connection',
  usesBenchClient: true,
  async prepare(bus, p) {
    const echo = await startEcho(bus);
    return {
      async drive(count) {
        const errors = await connectLoop(bus, count, ECHO_NAME, p.concurrency!);
        return { units: count, errors };
      },
      async cleanup() {
        await echo.stop();
      },
    };
  },
};

export const SCENARIOS: readonly Scenario[] = [
  spamScenario('roundtrip', 'method round trip, 1 in flight', { count: 50_000, queue: 1 }, () => undefined,
    'dbus-test-tool spam --queue=1 → dbus-test-tool echo; default payload (string "hello, world!"); routed messages = 2 × count'),
  spamScenario('pipelined', 'pipelined calls, 128 in flight', { count: 100_000, queue: 128 }, () => undefined,
    'dbus-test-tool spam --queue=128 → dbus-test-tool echo; routed messages = 2 × count'),
  spamScenario('payload64k', '64 KiB payloads', { count: 10_000, queue: 4, bytes: 65536 }, (p) => Buffer.alloc(p.bytes!, 0x78),
    'dbus-test-tool spam --bytes --stdin (a 64 KiB byte array) --queue=4 → echo (empty reply); routed messages = 2 × count'),
  {
    ...spamScenario('roundtrip-policy', 'round trip under the stock system.conf policy', { count: 50_000, queue: 1 }, () => undefined,
      'as roundtrip, on Debian\'s stock system.conf + system.d plus a dozen bench rules (bench/system-policy.ts); ' +
      'a call the policy denies is refused before the drive; dbus-broker reads no busconfig, so it is not run here',
      'org.example.Bench.Admin'),
    config: (listen: string) => systemPolicyConfig(listen, ECHO_NAME),
    buses: ['ferrybus', 'dbus-daemon'],
  },
  fdRoundTrip,
  sdbusRoundTrip,
  fanOut,
  connectStorm,
];
