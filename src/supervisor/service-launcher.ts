// Starts the programs of Exec= activation and reports how they end. The bus core decides what
// an exit means (src/bus/activation.ts); this edge only spawns, kills and watches.

import type * as ChildProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ServiceEntry, ServiceLauncher } from '../bus/activation.js';
import { SpawnError } from '../bus/activation.js';
import { BusError } from '../bus/errors.js';
import { reapChild, type ChildStatus } from '../sys/libc.js';
import type { Logger } from './logger.js';
import { lazyBuiltin } from '../util/lazy-builtin.js';

const childProcess = lazyBuiltin<typeof ChildProcess>('node:child_process');
import { ServiceFileError, splitExec } from './service-file.js';
import { lookupUser } from './user-database.js';

const SETUP_FAILED = 'org.freedesktop.DBus.Error.Spawn.SetupFailed';
/** What a system service gets as PATH (dbus-daemon's launch helper starts from an empty environment). */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The bus's own, not the service's (dbus-daemon drops the same ones). */
const NOT_INHERITED = ['JOURNAL_STREAM', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET', 'INVOCATION_ID'];

export type ChildExit = (pid: number, status: { code?: number | null; signal?: number | null }) => void;

export class ProcessLauncher implements ServiceLauncher {
  /** Children an earlier image started: reaped by polling (libuv only reaps what it spawned). */
  private readonly inherited = new Set<number>();
  /** Children this image started and libuv still watches. */
  private readonly spawned = new Set<number>();
  private poller: NodeJS.Timeout | undefined;

  constructor(
    /** DBUS_STARTER_ADDRESS: how the service reaches this bus. */
    private readonly address: () => string,
    private readonly onExit: ChildExit,
    private readonly log: Logger,
  ) {}

  launch(entry: ServiceEntry, environment: ReadonlyMap<string, string>, kind: string): number {
    let argv: string[];
    try {
      argv = splitExec(entry.exec);
    } catch (err) {
      throw new BusError(SpawnError.FileInvalid, `${entry.file}: ${(err as ServiceFileError).message}`);
    }
    const env = this.environmentFor(environment, kind);
    const program = resolveProgram(argv[0]!, env.PATH);
    if (!program) throw new BusError(SpawnError.ExecFailed, `Failed to execute program ${entry.name}: No such file or directory`);
    let ids: { uid: number; gid: number } | undefined;
    if (kind === 'system' && entry.user !== undefined) {
      const user = lookupUser(entry.user);
      if (!user) throw new BusError(SETUP_FAILED, `Failed to setup environment correctly: user "${entry.user}" of ${entry.name} does not exist`);
      env.HOME = user.home;
      env.USER = env.LOGNAME = user.name;
      if (user.uid !== process.getuid!() || user.gid !== process.getgid!()) ids = { uid: user.uid, gid: user.gid };
    }
    // stdout/stderr are the bus's (the journal under systemd), as with dbus-daemon.
    const child = childProcess().spawn(program, argv.slice(1), { argv0: argv[0], env, cwd: '/', stdio: ['ignore', 'inherit', 'inherit'], ...ids });
    if (child.pid === undefined) {
      child.on('error', () => {}); // reported below, synchronously
      throw new BusError(SpawnError.ExecFailed, `Failed to execute program ${entry.name}: cannot start ${program}`);
    }
    const pid = child.pid;
    child.on('error', (err) => this.log.warning('activation-spawn-error', 'error from an activated program', { name: entry.name, pid, error: err.message }));
    this.spawned.add(pid);
    child.on('exit', (code, signal) => {
      this.spawned.delete(pid);
      this.onExit(pid, { code, signal: signal === null ? null : os.constants.signals[signal] });
    });
    return pid;
  }

  kill(pid: number): void {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }

  children(): number[] {
    return [...this.spawned, ...this.inherited];
  }

  /** Programs an earlier image started and that still run: watched until they end. */
  adopt(pids: readonly number[]): void {
    for (const pid of pids) this.inherited.add(pid);
    if (this.inherited.size > 0 && !this.poller) {
      this.poller = setInterval(() => this.reapInherited(), 250);
      this.poller.unref();
    }
  }

  private reapInherited(): void {
    for (const pid of this.inherited) {
      const status: ChildStatus | 'gone' | undefined = reapChild(pid);
      if (status === undefined) continue;
      this.inherited.delete(pid);
      this.onExit(pid, status === 'gone' ? { code: null, signal: null } : status);
    }
    if (this.inherited.size === 0 && this.poller) {
      clearInterval(this.poller);
      this.poller = undefined;
    }
  }

  private environmentFor(extra: ReadonlyMap<string, string>, kind: string): Record<string, string> {
    const env: Record<string, string> = {};
    if (kind === 'system') {
      env.PATH = SYSTEM_PATH;
    } else {
      for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !NOT_INHERITED.includes(k)) env[k] = v;
    }
    for (const [k, v] of extra) env[k] = v;
    const address = this.address();
    env.DBUS_STARTER_ADDRESS = address;
    env.DBUS_STARTER_BUS_TYPE = kind;
    if (kind === 'session') env.DBUS_SESSION_BUS_ADDRESS = address;
    if (kind === 'system') env.DBUS_SYSTEM_BUS_ADDRESS = address;
    return env;
  }
}

/** The program's path: as given when it has a slash, else the first executable match in PATH. */
function resolveProgram(name: string, searchPath: string | undefined): string | undefined {
  const executable = (file: string) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (name.includes('/')) return executable(name) ? name : undefined;
  for (const dir of (searchPath ?? SYSTEM_PATH).split(':')) {
    if (dir === '') continue;
    const file = path.join(dir, name);
    if (executable(file)) return file;
  }
  return undefined;
}
