/**
 * Neutral clients: bench/clients/dbus-bench-client.c, a small libdbus program (the library every
 * C D-Bus client links), compiled on first use into bench/.build/. The signal and connection
 * scenarios drive every bus with it, so no bus is measured against clients written on its own
 * wire code. See the C file's header for its modes. bench/clients/sdbus-caller.c makes calls
 * with sd-bus, systemd's library, for the round trip as systemd's services make it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { startLongRunning, type LongRunning } from '../test/harness/long-running.js';
import { REPO_ROOT } from './buses.js';
import type { BenchBus } from './buses.js';

const BUILD_DIR = path.join(REPO_ROOT, 'bench', '.build');

const built = new Map<string, string>();

function tool(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return undefined;
  }
}

/**
 * Path of a client compiled from bench/clients/NAME.c against the pkg-config package `pkg`;
 * compiles it when missing or older than its source. `devPackage`: the Debian package with the
 * headers, named in the error when they are missing.
 */
function compiledClient(name: string, pkg: string, devPackage: string): string {
  const known = built.get(name);
  if (known) return known;
  const source = path.join(REPO_ROOT, 'bench', 'clients', `${name}.c`);
  const binary = path.join(BUILD_DIR, name);
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs) {
    built.set(name, binary);
    return binary;
  }
  if (tool('gcc', ['--version']) === undefined) {
    throw new Error(`the bench compiles its client bench/clients/${name}.c with gcc, which is missing: apt-get install gcc`);
  }
  const flags = tool('pkg-config', ['--cflags', '--libs', pkg]);
  if (flags === undefined) {
    throw new Error(
      `the bench compiles its client bench/clients/${name}.c against ${pkg}, whose headers are missing ` +
        `(pkg-config ${pkg} failed): apt-get install ${devPackage} pkg-config`,
    );
  }
  mkdirSync(BUILD_DIR, { recursive: true });
  const tmp = `${binary}.${process.pid}.tmp`;
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-o', tmp, source, ...flags.split(/\s+/).filter(Boolean)], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer };
    throw new Error(`compiling ${path.relative(REPO_ROOT, source)} failed:\n${e.stderr?.toString() ?? String(err)}`);
  }
  renameSync(tmp, binary);
  console.log(`compiled ${path.relative(process.cwd(), source)} → ${path.relative(process.cwd(), binary)}`);
  built.set(name, binary);
  return binary;
}

/** Path of the libdbus client (bench/clients/dbus-bench-client.c), compiled when needed. */
export function benchClientPath(): string {
  return compiledClient('dbus-bench-client', 'dbus-1', 'libdbus-1-dev');
}

/** Path of the sd-bus caller (bench/clients/sdbus-caller.c), compiled when needed. */
export function sdbusCallerPath(): string {
  return compiledClient('sdbus-caller', 'libsystemd', 'libsystemd-dev');
}

export interface PeersOptions {
  connections: number;
  /** Match rules per connection. */
  rules?: number;
  /** On the first `matching` connections the first rule matches the bench signal. */
  matching?: number;
  /** Connection i owns `${names}.N${i}`. */
  names?: string;
  readyTimeoutMs?: number;
}

/**
 * One process holding `connections` registered connections (rules added, names owned, every
 * reply checked), counting the bench signals they receive.
 */
export class Peers {
  /** Signals this process should have received in total, over every drive so far. */
  private expected = 0;

  private constructor(readonly proc: LongRunning, readonly options: PeersOptions) {}

  static async start(bus: BenchBus, options: PeersOptions): Promise<Peers> {
    const args = ['peers', `--address=${bus.address}`, `--connections=${options.connections}`, `--rules=${options.rules ?? 0}`, `--matching=${options.matching ?? 0}`];
    if (options.names) args.push(`--names=${options.names}`);
    const proc = startLongRunning(benchClientPath(), args, { stdinPipe: true });
    try {
      await proc.waitFor(/^ready$/m, { timeoutMs: options.readyTimeoutMs ?? 60_000 });
    } catch (err) {
      await proc.stop();
      throw new Error(`${options.connections} libdbus peers did not come up on ${bus.name}: ${(err as Error).message.split('\n').slice(0, 8).join('\n')}`);
    }
    return new Peers(proc, options);
  }

  /** Resolves once `more` further signals have arrived (in total over this process's connections). */
  async expect(more: number, timeoutMs: number): Promise<void> {
    this.expected += more;
    const from = this.proc.mark();
    this.proc.stdin!.write(`expect ${this.expected}\n`);
    await this.proc.waitFor(new RegExp(`^reached ${this.expected}$`, 'm'), { from, timeoutMs });
  }

  /** Signals received so far, in total. */
  async count(timeoutMs = 10_000): Promise<number> {
    const from = this.proc.mark();
    this.proc.stdin!.write('report\n');
    const m = await this.proc.waitFor(/^count (\d+)$/m, { from, timeoutMs });
    return Number(m[1]);
  }

  /** Signals it should have received so far (the sum of every expect()). */
  get expectedTotal(): number {
    return this.expected;
  }

  async stop(): Promise<void> {
    await this.proc.stop();
  }
}

/** Runs the client to its end; resolves with its stdout, rejects with its stderr. */
async function runClient(args: string[], timeoutMs: number): Promise<string> {
  const proc = startLongRunning(benchClientPath(), args);
  const timer = setTimeout(() => void proc.stop(), timeoutMs);
  const exit = await proc.exited;
  clearTimeout(timer);
  if (exit.exitCode !== 0) {
    throw new Error(`dbus-bench-client ${args[0]} exited (code ${exit.exitCode}, signal ${exit.signal}): ${proc.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
  }
  return proc.stdout;
}

/** Emits `count` bench signals, with a GetId round trip to the bus every `window` signals. */
export async function emitSignals(bus: BenchBus, count: number, window: number, timeoutMs = 180_000): Promise<void> {
  const out = await runClient(['emit', `--address=${bus.address}`, `--count=${count}`, `--window=${window}`], timeoutMs);
  if (!out.includes(`emitted ${count}`)) throw new Error(`the emitter did not finish: ${out.trim()}`);
}

/** `count` × (connect, Hello, one call to `dest`, its reply, close) in `processes` parallel clients. */
export async function connectLoop(bus: BenchBus, count: number, dest: string, processes: number, timeoutMs = 300_000): Promise<string[]> {
  const shares = Array.from({ length: processes }, (_, i) => Math.floor(count / processes) + (i < count % processes ? 1 : 0)).filter((n) => n > 0);
  const results = await Promise.allSettled(
    shares.map((n) => runClient(['connect-loop', `--address=${bus.address}`, `--count=${n}`, `--dest=${dest}`], timeoutMs)),
  );
  return results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
}
