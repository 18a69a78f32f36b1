import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as net from 'node:net';
import { startLongRunning, type LongRunning } from '../test/harness/long-running.js';
import { Framer } from '../src/wire/framer.js';
import { MessageType, parseMessage } from '../src/wire/message.js';
import type { BenchBus, BusName } from './buses.js';
import { systemPolicyConfig } from './system-policy.js';
import {
  BUS_NAME,
  BUS_PATH,
  batchOf,
  connectAuthenticated,
  helloMessage,
  RawClient,
  templateMessage,
  waitForName,
} from './raw-client.js';

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
async function startEcho(bus: BenchBus): Promise<LongRunning> {
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
function spamScenario(
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

/** python3-dbus calls carrying one fd each → dbus-test-tool echo (which negotiated fds too). */
function fdRoundTrip(): Scenario {
  return {
    id: 'roundtrip-fd',
    title: 'method round trip with one unix fd per call',
    unit: 'msg',
    params: { count: 5_000 },
    scaled: ['count'],
    describe: 'bench/fd-caller.py (python3-dbus) → dbus-test-tool echo, one call in flight, each call carrying a pipe fd; routed messages = 2 × count',
    async prepare(bus) {
      const echo = await startEcho(bus);
      const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'fd-caller.py');
      return {
        async drive(count) {
          const r = await runToEnd('/usr/bin/python3', [script, bus.address, ECHO_NAME, String(count)], {}, undefined, 300_000);
          const errors: string[] = [];
          if (r.code !== 0 || !r.stdout.includes(`done ${count}`)) errors.push(`fd-caller exited with ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
          return { units: 2 * count, errors };
        },
        async cleanup() {
          await echo.stop();
        },
      };
    },
  };
}

const SIGNAL_INTERFACE = 'com.example.Bench';

const fanOut: Scenario = {
  id: 'fanout',
  title: 'signal fan-out to 10 subscribers',
  unit: 'msg',
  params: { count: 60_000, subscribers: 10, window: 128, batch: 32 },
  scaled: ['count'],
  describe:
    'one raw-client emitter broadcasts `count` signals (body "s", 13 chars) with at most `window` ' +
    'not yet received by the slowest subscriber; `subscribers` raw clients each hold one match rule ' +
    '(interface+member); routed messages = count × subscribers deliveries',
  async prepare(bus, p) {
    const subscribers: RawClient[] = [];
    const received: number[] = [];
    const emitter = await RawClient.connect(bus.socketPath);
    const rule = `type='signal',interface='${SIGNAL_INTERFACE}',member='Tick'`;
    for (let i = 0; i < p.subscribers!; i++) {
      const sub = await RawClient.connect(bus.socketPath);
      await sub.call(BUS_NAME, BUS_PATH, BUS_NAME, 'AddMatch', 's', [rule]);
      received.push(0);
      subscribers.push(sub);
    }
    const template = templateMessage({
      type: MessageType.Signal,
      path: '/com/example/Bench',
      interface: SIGNAL_INTERFACE,
      member: 'Tick',
      signature: 's',
      body: Buffer.from('0d00000068656c6c6f2c20776f726c642100', 'hex'), // "hello, world!"
    });
    const closeAll = () => {
      emitter.close();
      for (const s of subscribers) s.close();
    };
    return {
      drive(count) {
        received.fill(0);
        const window = p.window!;
        const batch = p.batch!;
        let sent = 0;
        let serial = 1000;
        return new Promise<DriveResult>((resolve) => {
          const minReceived = () => {
            let m = Infinity;
            for (const r of received) if (r < m) m = r;
            return m;
          };
          const pump = () => {
            const floor = minReceived();
            if (floor >= count) {
              const extra = received.filter((r) => r !== count);
              const errors = extra.length ? [`subscribers received ${received.join(',')} signals, expected ${count} each`] : [];
              resolve({ units: count * subscribers.length, errors });
              return;
            }
            while (sent < count && sent - floor < window) {
              const n = Math.min(batch, count - sent, window - (sent - floor));
              emitter.write(batchOf(template, n, serial));
              serial += n;
              sent += n;
            }
          };
          subscribers.forEach((sub, i) => {
            sub.onFrame = (frame) => {
              if (frame[1] !== MessageType.Signal) return;
              received[i]!++;
              if (received[i] === count || (received[i]! & 15) === 0) pump();
            };
          });
          pump();
        });
      },
      async cleanup() {
        closeAll();
      },
    };
  },
};

/** connect, authenticate, BEGIN + Hello + one call to the echo service (pipelined), wait, close. */
function oneConnection(socketPath: string, call: Buffer, hello: Buffer): Promise<string | undefined> {
  return connectAuthenticated(socketPath).then(
    (socket: net.Socket) =>
      new Promise<string | undefined>((resolve) => {
        const framer = new Framer();
        socket.on('error', () => {});
        const done = (err: string | undefined) => {
          socket.destroy();
          resolve(err);
        };
        socket.on('data', (chunk: Buffer) => {
          for (const frame of framer.push(chunk)) {
            const type = frame[1];
            if (type !== MessageType.MethodReturn && type !== MessageType.Error) continue;
            const h = parseMessage(frame).header;
            if (h.type === MessageType.Error) return done(`${h.errorName} (reply to serial ${h.replySerial})`);
            if (h.replySerial === 2) return done(undefined);
          }
        });
        socket.on('close', () => resolve('connection closed before the reply'));
        socket.write(Buffer.concat([Buffer.from('BEGIN\r\n', 'latin1'), hello, call]));
      }),
    (err: Error) => err.message,
  );
}

const connectStorm: Scenario = {
  id: 'connect',
  title: 'connect + Hello + call + disconnect',
  unit: 'conn',
  params: { count: 5000, concurrency: 4 },
  scaled: ['count'],
  describe:
    'raw clients, `concurrency` at a time: connect, SASL EXTERNAL, BEGIN + Hello + one call to the ' +
    'echo service in one write, wait for the reply, close; cost per connection',
  async prepare(bus, p) {
    const echo = await startEcho(bus);
    const hello = helloMessage(1);
    const call = templateMessage({
      type: MessageType.MethodCall,
      destination: ECHO_NAME,
      path: '/',
      interface: 'com.example.Spam',
      member: 'Spam',
    });
    call.writeUInt32LE(2, 8);
    return {
      async drive(count) {
        let next = 0;
        const errors: string[] = [];
        const worker = async () => {
          while (next < count) {
            next++;
            const err = await oneConnection(bus.socketPath, call, hello);
            if (err) errors.push(err);
          }
        };
        await Promise.all(Array.from({ length: p.concurrency! }, worker));
        return { units: count, errors: errors.length ? [`${errors.length} failed connections, first: ${errors[0]}`] : [] };
      },
      async cleanup() {
        await echo.stop();
      },
    };
  },
};

export const SCENARIOS: readonly Scenario[] = [
  spamScenario('roundtrip', 'method round trip, 1 in flight', { count: 20_000, queue: 1 }, () => undefined,
    'dbus-test-tool spam --queue=1 → dbus-test-tool echo; default payload (string "hello, world!"); routed messages = 2 × count'),
  spamScenario('pipelined', 'pipelined calls, 128 in flight', { count: 100_000, queue: 128 }, () => undefined,
    'dbus-test-tool spam --queue=128 → dbus-test-tool echo; routed messages = 2 × count'),
  spamScenario('payload64k', '64 KiB payloads', { count: 4_000, queue: 4, bytes: 65536 }, (p) => Buffer.alloc(p.bytes!, 0x78),
    'dbus-test-tool spam --bytes --stdin (a 64 KiB byte array) --queue=4 → echo (empty reply); routed messages = 2 × count'),
  {
    ...spamScenario('roundtrip-policy', 'round trip under the stock system.conf policy', { count: 20_000, queue: 1 }, () => undefined,
      'as roundtrip, on Debian\'s stock system.conf + system.d plus a dozen bench rules (bench/system-policy.ts); ' +
      'a call the policy denies is refused before the drive; dbus-broker reads no busconfig, so it is not run here',
      'org.example.Bench.Admin'),
    config: (listen: string) => systemPolicyConfig(listen, ECHO_NAME),
    buses: ['ferrybus', 'dbus-daemon'],
  },
  fdRoundTrip(),
  fanOut,
  connectStorm,
];
