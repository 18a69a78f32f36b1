// `ferrybus daemon --fork`, as dbus-daemon --fork behaves for whoever ran it: the command
// returns (status 0) once the bus listens, with --print-address/--print-pid already written,
// naming the process that serves. Node cannot fork(2), so the launcher spawns the bus as a new
// process in its own session (setsid) and waits for it to say it is ready:
//
//   launcher ── spawn, detached ──▶ ferrybus daemon --nofork --ready-fd=3 [--stderr-fd=4] …
//      ◀── fd 3: {"pid":…,"address":…}\n once listening and the pid file is written
//      ◀── fd 2: everything the bus logs while starting, copied to the launcher's stderr
//
// A bus that fails to start exits with its error on that stderr; the launcher exits with the
// bus's status. Once ready, the bus moves its stderr off the launcher's pipe (which closes when
// the launcher exits) to where its log goes from then on, chosen here: the launcher's own stderr
// when that outlives the launcher without anyone waiting on it — a terminal, a file, or the
// journal (JOURNAL_STREAM) — and /dev/null otherwise, as dbus-daemon does. A pipe or socket to
// another process is not kept: its reader (a `$(…)`, a test harness) would wait for the end of
// the stream, i.e. for the bus to exit, and ferrybus has no syslog to fall back to.
//
// The bus runs in / (it must not pin the directory it was started in), so relative file names
// are made absolute first.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as tty from 'node:tty';
import { printToFd } from '../supervisor/daemon.js';
import { setCloexec } from '../sys/libc.js';
import { FerryError } from '../util/errors.js';
import type { DaemonArgs } from './daemon-command.js';

const READY_FD = 3;
const STDERR_FD = 4;
/** After "ready", how long the copy of the bus's stderr may take to end (it ends at once normally). */
const STDERR_DRAIN_MS = 1000;

interface Ready {
  pid: number;
  address: string;
}

type Outcome = { ready: Ready } | { exit: { code: number | null; signal: NodeJS.Signals | null } } | { error: Error };

/** Whether the launcher's stderr can become the bus's log without keeping anyone waiting. */
function stderrOutlivesLauncher(): boolean {
  let stat: fs.Stats;
  try {
    stat = fs.fstatSync(2);
  } catch {
    return false;
  }
  if (stat.isFile() || tty.isatty(2)) return true;
  // systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected stderr to.
  const [dev, ino] = (process.env.JOURNAL_STREAM ?? '').split(':');
  return dev !== undefined && ino !== undefined && String(stat.dev) === dev && String(stat.ino) === ino;
}

/** The daemon flags the bus gets: everything the user gave but --fork and the --print-* fds. */
function childFlags(args: DaemonArgs, keepStderr: boolean): string[] {
  const absolute = (file: string) => path.resolve(file);
  return [
    ...(args.address !== undefined ? [`--address=${args.address}`] : []),
    ...(args.configFile !== undefined ? [`--config-file=${absolute(args.configFile)}`] : []),
    ...(args.session ? ['--session'] : []),
    ...(args.system ? ['--system'] : []),
    ...(args.pidFile !== undefined ? [`--pidfile=${absolute(args.pidFile)}`] : []),
    ...(args.noPidFile ? ['--nopidfile'] : []),
    ...(args.systemdActivation ? ['--systemd-activation'] : []),
    ...(args.syslog ? ['--syslog'] : []),
    ...(args.syslogOnly ? ['--syslog-only'] : []),
    ...(args.nosyslog ? ['--nosyslog'] : []),
    '--nofork',
    `--ready-fd=${READY_FD}`,
    ...(keepStderr ? [`--stderr-fd=${STDERR_FD}`] : []),
  ];
}

/** The bus gets only the fds it is given: a --print-address pipe must close when the launcher exits. */
function closeOnExecAll(): void {
  let names: string[];
  try {
    names = fs.readdirSync('/proc/self/fd');
  } catch {
    return;
  }
  for (const name of names) {
    const fd = Number(name);
    if (fd <= 2) continue;
    try {
      setCloexec(fd, true);
    } catch {
      // the readdir fd itself, closed by now
    }
  }
}

function checkOpen(fd: number | undefined, flag: string): void {
  if (fd === undefined) return;
  try {
    fs.fstatSync(fd);
  } catch {
    throw new FerryError('BadFlag', `--${flag}=${fd}: fd ${fd} is not open`);
  }
}

function copyToStderr(chunk: Buffer): void {
  try {
    fs.writeSync(2, chunk);
  } catch {
    // nobody reads the launcher's stderr: the bus's start-up log has nowhere to go
  }
}

function parseReady(line: string): Ready | undefined {
  try {
    const r = JSON.parse(line) as Partial<Ready>;
    if (Number.isInteger(r.pid) && typeof r.address === 'string') return r as Ready;
  } catch {
    // malformed
  }
  return undefined;
}

export async function runForkLauncher(
  args: DaemonArgs,
  fds: { printAddressFd: number | undefined; printPidFd: number | undefined },
): Promise<void> {
  const env = process.env;
  if (env.LISTEN_PID === String(process.pid) && env.LISTEN_FDS !== undefined && env.LISTEN_FDS !== '0') {
    throw new FerryError(
      'BadFlag',
      '--fork cannot hand the sockets systemd passed (LISTEN_FDS) to a forked bus: run it with --nofork, as systemd units do',
    );
  }
  checkOpen(fds.printAddressFd, 'print-address');
  checkOpen(fds.printPidFd, 'print-pid');
  closeOnExecAll();
  const keepStderr = stderrOutlivesLauncher();
  const script = path.resolve(process.argv[1]!);
  const child = spawn(process.execPath, [...process.execArgv, script, 'daemon', ...childFlags(args, keepStderr)], {
    detached: true, // setsid: no controlling terminal, not in the launcher's process group
    cwd: '/',
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', keepStderr ? 2 : 'ignore'],
  });
  const stderr = child.stderr!;
  let sawStderr = false;
  stderr.on('data', (chunk: Buffer) => {
    sawStderr = true;
    copyToStderr(chunk);
  });
  const stderrEnded = new Promise<void>((resolve) => stderr.once('close', resolve));
  // Interrupted while the bus starts: it was started for this command, so it goes too.
  const abandon = () => {
    child.kill('SIGTERM');
    process.exit(1);
  };
  process.once('SIGINT', abandon);
  process.once('SIGTERM', abandon);

  const outcome = await new Promise<Outcome>((resolve) => {
    let line = '';
    const ready = child.stdio[READY_FD] as Readable;
    ready.setEncoding('utf8');
    ready.on('data', (chunk: string) => {
      line += chunk;
      const end = line.indexOf('\n');
      if (end < 0) return;
      const r = parseReady(line.slice(0, end));
      resolve(r ? { ready: r } : { error: new Error(`the bus reported "${line.slice(0, end)}" instead of its address and pid`) });
    });
    child.once('close', (code, signal) => resolve({ exit: { code, signal } }));
    child.once('error', (error) => resolve({ error }));
  });

  if ('ready' in outcome) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([stderrEnded, new Promise((resolve) => (timer = setTimeout(resolve, STDERR_DRAIN_MS)))]);
    clearTimeout(timer);
    if (fds.printAddressFd !== undefined) printToFd(fds.printAddressFd, outcome.ready.address);
    if (fds.printPidFd !== undefined) printToFd(fds.printPidFd, String(outcome.ready.pid));
    process.exit(0);
  }
  if ('error' in outcome) {
    child.kill('SIGTERM');
    throw new FerryError('ForkFailed', `could not start the bus: ${outcome.error.message}`);
  }
  await stderrEnded;
  const { code, signal } = outcome.exit;
  // The bus said why on its stderr (copied above); say something if it could not.
  if (signal !== null) throw new FerryError('ForkFailed', `the bus was killed by ${signal} before it was ready`);
  if (!sawStderr || code === 0) {
    throw new FerryError('ForkFailed', `the bus exited with status ${code} before it was ready`);
  }
  process.exit(code ?? 1);
}
