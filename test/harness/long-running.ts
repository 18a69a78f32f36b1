import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { terminatePid, trackPid, untrackPid } from './process-registry.js';

export type OutputStream = 'stdout' | 'stderr' | 'any';

export interface WaitOptions {
  stream?: OutputStream;
  timeoutMs?: number;
  /** Only look at output after this offset (see `mark()`); default: all output so far. */
  from?: number;
}

export interface Exit {
  exitCode: number | undefined;
  signal: string | undefined;
}

interface Waiter {
  check(): boolean;
  fail(err: Error): void;
}

/**
 * A client that keeps running (monitor, service, subscriber): its output is collected as it
 * arrives and tests wait for a pattern on it instead of sleeping.
 */
export class LongRunning {
  stdout = '';
  /** The process's stdin, when started with `stdinPipe`. */
  stdin: NodeJS.WritableStream | undefined;
  stderr = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  private readonly waiters = new Set<Waiter>();

  constructor(
    readonly command: string,
    readonly pid: number,
    exited: Promise<Exit>,
    stdout: NodeJS.ReadableStream,
    stderr: NodeJS.ReadableStream,
  ) {
    stdout.setEncoding('utf8');
    stderr.setEncoding('utf8');
    stdout.on('data', (chunk: string) => {
      this.stdout += chunk;
      this.poke();
    });
    stderr.on('data', (chunk: string) => {
      this.stderr += chunk;
      this.poke();
    });
    this.exited = exited.then((exit) => {
      this.exit = exit;
      const err = new Error(`${this.command} exited (code ${exit.exitCode}, signal ${exit.signal})\n${this.describe()}`);
      for (const w of [...this.waiters]) if (!w.check()) w.fail(err);
      return exit;
    });
  }

  /** Offset into stdout (and stderr) to wait for output produced after this point. */
  mark(stream: Exclude<OutputStream, 'any'> = 'stdout'): number {
    return stream === 'stdout' ? this.stdout.length : this.stderr.length;
  }

  text(stream: OutputStream = 'stdout', from = 0): string {
    if (stream === 'stdout') return this.stdout.slice(from);
    if (stream === 'stderr') return this.stderr.slice(from);
    return `${this.stdout.slice(from)}\n${this.stderr.slice(from)}`;
  }

  lines(stream: Exclude<OutputStream, 'any'> = 'stdout'): string[] {
    return this.text(stream).split('\n').filter((l) => l.length > 0);
  }

  /** Resolves with the first match of `pattern` in the output; rejects on timeout or exit. */
  waitFor(pattern: RegExp | string, options: WaitOptions = {}): Promise<RegExpExecArray> {
    const { stream = 'stdout', timeoutMs = 10_000, from = 0 } = options;
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    return new Promise<RegExpExecArray>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        check: () => {
          const m = re.exec(this.text(stream, from));
          if (!m) return false;
          this.waiters.delete(waiter);
          clearTimeout(timer);
          resolve(m);
          return true;
        },
        fail: (err) => {
          this.waiters.delete(waiter);
          clearTimeout(timer);
          reject(err);
        },
      };
      if (waiter.check()) return;
      if (this.exit) {
        reject(new Error(`${this.command} already exited; ${re} not seen\n${this.describe()}`));
        return;
      }
      timer = setTimeout(
        () => waiter.fail(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${this.command}\n${this.describe()}`)),
        timeoutMs,
      );
      this.waiters.add(waiter);
    });
  }

  describe(): string {
    return `--- stdout of ${this.command}\n${this.stdout}--- stderr\n${this.stderr}`;
  }

  /** Terminates the process by PID (SIGTERM, then SIGKILL) and waits until it is reaped. */
  async stop(): Promise<Exit> {
    if (!this.exit) await terminatePid(this.pid, this.exited);
    return this.exited;
  }

  private poke(): void {
    for (const w of [...this.waiters]) w.check();
  }
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Give the process a stdin pipe (LongRunning#stdin) instead of none. */
  stdinPipe?: boolean;
}

/**
 * setpriv (util-linux) sets PR_SET_PDEATHSIG and execs the command in the same process (same
 * PID): if the test worker dies without running its hooks, the kernel still kills what it
 * started instead of leaving a bus or service behind for PID 1 to collect.
 */
const SETPRIV = '/usr/bin/setpriv';
const DIE_WITH_PARENT = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'SIGKILL', '--'] : [];

export function startLongRunning(file: string, args: readonly string[], options: StartOptions = {}): LongRunning {
  const command = [file, ...args].join(' ');
  const [launcher, ...launcherArgs] = [...DIE_WITH_PARENT, file, ...args];
  const sub = execa(launcher!, launcherArgs, {
    reject: false,
    buffer: false,
    stdin: options.stdinPipe ? 'pipe' : 'ignore',
    env: options.env,
    // execa also kills it (by this PID) when the worker exits normally.
    cleanup: true,
  });
  if (sub.pid === undefined || sub.stdout === null || sub.stderr === null) {
    // Spawn failed (e.g. ENOENT); surface execa's error text.
    throw new Error(`could not start ${command}`);
  }
  const pid = sub.pid;
  trackPid(pid);
  const exited = sub.then((r) => {
    untrackPid(pid);
    return { exitCode: r.exitCode, signal: r.signal };
  });
  const proc = new LongRunning(command, pid, exited, sub.stdout, sub.stderr);
  if (options.stdinPipe && sub.stdin) {
    sub.stdin.on('error', () => {}); // the process is gone; what it would have read does not matter
    proc.stdin = sub.stdin;
  }
  return proc;
}
