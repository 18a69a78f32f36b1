import { existsSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { REPO_ROOT } from '../../harness/fixtures.js';
import { startLongRunning, type LongRunning } from '../../harness/long-running.js';
import { runClient, type ClientResult } from '../../harness/run-client.js';
import type { RunningBus } from '../../harness/running-bus.js';
import { startBus } from '../../harness/start-bus.js';
import { Framer } from '../../../src/wire/framer.js';
import { marshal } from '../../../src/wire/marshal.js';
import { encodeMessage, parseMessage, readBody } from '../../../src/wire/message.js';

/** What an operator runs: the package's `bin` (built by `npm run build`). */
export const CLI = (() => {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: { ferrybus: string } };
  const bin = path.join(REPO_ROOT, pkg.bin.ferrybus);
  if (!existsSync(bin)) throw new Error(`ferrybus is not built: ${bin} is missing (run "npm run build")`);
  return bin;
})();

export const BUS_PEER = fileURLToPath(new URL('./bus-peer.mjs', import.meta.url));

/** Runs `ferrybus ARGS…` to completion: exit code, stdout and stderr as the operator sees them. */
export function ferrybus(args: readonly string[], options: { timeoutMs?: number } = {}): Promise<ClientResult> {
  return runClient(process.execPath, [CLI, ...args], { timeoutMs: options.timeoutMs ?? 20_000 });
}

/** Runs a command that must succeed and returns its parsed --json output. */
export async function ferrybusJson<T>(args: readonly string[]): Promise<T> {
  const r = await ferrybus([...args, '--json']);
  if (r.exitCode !== 0) throw new Error(`ferrybus ${args.join(' ')} failed\n${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** A ferrybus daemon (the real one, `main.js daemon --nofork --print-address=1`) for this test file. */
export function useFerrybus(): () => RunningBus {
  let bus: RunningBus | undefined;
  beforeAll(async () => {
    bus = await startBus('ferrybus');
  });
  afterAll(async () => {
    await bus?.stop();
  });
  return () => {
    if (!bus) throw new Error('the test bus is not running (did beforeAll fail?)');
    return bus;
  };
}

export interface Peer {
  proc: LongRunning;
  pid: number;
  uniqueName: string;
}

/** Starts bus-peer.mjs (a dbus-next client in its own process) and waits until it is set up. */
export async function startPeer(bus: RunningBus, args: readonly string[], defer: (fn: () => unknown) => void): Promise<Peer> {
  const proc = startLongRunning(process.execPath, [BUS_PEER, bus.address, ...args]);
  defer(() => proc.stop());
  const m = await proc.waitFor(/^ready (:\S+)/m, { timeoutMs: 15_000 });
  return { proc, pid: proc.pid, uniqueName: m[1]! };
}

/** The table's header cells (columns are separated by two or more spaces). */
export function headerOf(stdout: string): string[] {
  return stdout.split('\n')[0]!.trim().split(/\s{2,}/);
}

/** The first line of `stdout` that contains `needle` as a whole cell (the row of that item). */
export function rowWith(stdout: string, needle: string): string {
  const re = new RegExp(`(^|\\s)${needle.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\s|$)`);
  const line = stdout.split('\n').find((l) => re.test(l));
  if (line === undefined) throw new Error(`no row with ${needle} in:\n${stdout}`);
  return line;
}

/**
 * A client that stops reading: authenticates, says Hello, subscribes to `rule`, then pauses its
 * socket, so what the bus sends it piles up in the bus's outbound queue. Built on src/wire.
 */
export async function startStuckReader(socketPath: string, rule: string): Promise<{ uniqueName: string; close(): void }> {
  const socket = net.connect({ path: socketPath });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const framer = new Framer();
  let sasl = '';
  let saslDone = false;
  const replies = new Map<number, unknown[]>();
  const done = new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      if (!saslDone) {
        sasl += chunk.toString('latin1');
        const end = sasl.indexOf('\r\n');
        if (end < 0) return;
        if (!sasl.startsWith('OK ')) return reject(new Error(`auth refused: ${sasl}`));
        saslDone = true;
        chunk = Buffer.from(sasl.slice(end + 2), 'latin1');
      }
      for (const bytes of framer.push(chunk)) {
        const msg = parseMessage(bytes);
        if (msg.header.replySerial !== undefined) replies.set(msg.header.replySerial, readBody(msg));
      }
      if (replies.has(1) && replies.has(2)) resolve();
    });
  });
  const driver = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
  socket.write(`\0AUTH EXTERNAL ${Buffer.from(String(process.getuid!())).toString('hex')}\r\n`);
  socket.write('BEGIN\r\n');
  socket.write(encodeMessage({ type: 1, serial: 1, ...driver, member: 'Hello', signature: '' }));
  socket.write(encodeMessage({ type: 1, serial: 2, ...driver, member: 'AddMatch', signature: 's', body: marshal('s', [rule]) }));
  await done;
  socket.pause();
  return { uniqueName: replies.get(1)![0] as string, close: () => socket.destroy() };
}
