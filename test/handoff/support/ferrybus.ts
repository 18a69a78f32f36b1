import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { expect } from 'vitest';
import { MessageClass, type NextClient } from '../../harness/dbus-next-client.js';
import type { LongRunning } from '../../harness/long-running.js';
import { describeResult, runClient } from '../../harness/run-client.js';
import type { RunningBus } from '../../harness/running-bus.js';

export const SUPERVISOR = 'org.ferrybus.Supervisor1';
export const HANDOFF_FAILED = 'org.ferrybus.Error.HandoffFailed';

/** A file beside this one (python clients and launchers of the handoff tests). */
export function supportPath(name: string): string {
  return fileURLToPath(new URL(name, import.meta.url));
}

export interface BusStatus {
  pid: number;
  generation: number;
  connections: number;
  names: number;
  queuedBytes: bigint;
  lastHandoffPauseUs: bigint | undefined;
}

/** Supervisor1.Status() through a dbus-next client, unwrapped. */
export async function busStatus(client: NextClient): Promise<BusStatus> {
  const [dict] = (await client.driver('Status', '', [], SUPERVISOR)) as [Record<string, { value: unknown }>];
  return {
    pid: dict.Pid!.value as number,
    generation: dict.Generation!.value as number,
    connections: dict.Connections!.value as number,
    names: dict.Names!.value as number,
    queuedBytes: dict.QueuedBytes!.value as bigint,
    lastHandoffPauseUs: dict.LastHandoffPauseUs?.value as bigint | undefined,
  };
}

/**
 * Supervisor1.Handoff(root) through a dbus-next client: the reply comes from the new image.
 * With `bus`, a daemon that dies meanwhile fails the call at once, with its log (dbus-next
 * itself would wait forever for the reply of a closed connection).
 */
export async function handoffByMethod(client: NextClient, root = '', bus?: RunningBus): Promise<{ generation: number; pauseMs: number }> {
  const call = client.bus.call(
    new MessageClass({
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      interface: SUPERVISOR,
      member: 'Handoff',
      signature: 's',
      body: [root],
    }),
  );
  const died = bus?.process.exited.then(() => {
    throw new Error(`the bus exited during the handoff\n${bus.process.describe()}`);
  });
  const reply = await (died ? Promise.race([call, died]) : call);
  const [generation, pauseUs] = reply!.body as [number, bigint];
  return { generation, pauseMs: Number(pauseUs) / 1000 };
}

/** `ferrybus handoff --json` (`main` is the CLI's entry point), the way an administrator asks for it. */
export async function handoffByCli(main: string, bus: RunningBus): Promise<{ generation: number; pauseMs: number; root: string }> {
  const r = await runClient(process.execPath, [main, 'handoff', '--address', bus.address, '--json'], { timeoutMs: 30_000 });
  expect(r.exitCode, `${describeResult(r)}\n--- bus stderr\n${bus.process.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as { generation: number; pauseMs: number; root: string };
}

/**
 * SIGUSR2 (no caller to answer): resolves with the pause the new image logged.
 *
 * Only once the running image has answered a call: before Node runs any JavaScript (the first
 * tens of ms of every image) SIGUSR2 still has its default action and would end the process.
 * An answer from the bus is sent after the listener is installed, so `client` asks first.
 */
export async function handoffBySignal(proc: LongRunning, client: NextClient, generation: number): Promise<{ generation: number; pauseMs: number }> {
  await client.ping();
  const from = proc.mark('stderr');
  process.kill(proc.pid, 'SIGUSR2');
  const m = await proc.waitFor(new RegExp(`handoff-complete: .* generation=${generation} pauseMs=([0-9.]+)`), {
    stream: 'stderr',
    from,
    timeoutMs: 30_000,
  });
  return { generation, pauseMs: Number(m[1]) };
}

/** argv of a live process, from /proc (throws if the process is gone). */
export function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter((a) => a.length > 0);
}

/** Records whether a dbus-next client's socket ever closed or failed. */
export function watchDisconnect(client: NextClient): () => string | undefined {
  const stream = (client.bus as unknown as { _connection: { stream: Socket } })._connection.stream;
  let seen: string | undefined;
  stream.on('close', () => (seen ??= 'closed'));
  stream.on('end', () => (seen ??= 'end of stream'));
  stream.on('error', (err: Error) => (seen ??= `error: ${err.message}`));
  return () => seen;
}

/** Log lines of the daemon (stderr) with a given event id. */
export function logLines(proc: LongRunning, event: string, from = 0): string[] {
  return proc
    .text('stderr', from)
    .split('\n')
    .filter((l) => l.includes(`]: ${event}: `));
}

/**
 * Writes dir/bus.conf, a session bus that lets everyone send, receive and own anything, reading
 * service files from `serviceDirs`; `after` goes after that policy (later rules win). Its path.
 */
export function writePermissiveConfig(dir: string, serviceDirs: readonly string[], after = ''): string {
  const config = path.join(dir, 'bus.conf');
  writeFileSync(config, `<busconfig>
  <type>session</type>
${serviceDirs.map((d) => `  <servicedir>${d}</servicedir>\n`).join('')}  <policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>
${after ? `  ${after}\n` : ''}</busconfig>`);
  return config;
}
