import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { unixPathAddress } from '../test/harness/address.js';
import { launchDbusBroker } from '../test/harness/buses/dbus-broker.js';
import { launchDbusDaemon } from '../test/harness/buses/dbus-daemon.js';
import { startLongRunning } from '../test/harness/long-running.js';
import { waitForAddressLine, type LaunchedBus } from '../test/harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../test/harness/temp-dir.js';

export const BUSES = ['ferrybus', 'dbus-daemon', 'dbus-broker'] as const;
export type BusName = (typeof BUSES)[number];

/** Repository root: this file runs as <root>/dist/bench/buses.js. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FERRYBUS_MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface BenchBus {
  name: BusName;
  address: string;
  socketPath: string;
  /** The routing process (for dbus-broker: the broker, not our controller). */
  pid: number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra node flags for ferrybus (e.g. --cpu-prof). */
  nodeFlags?: string[];
}

/**
 * The harness resolves its fixtures next to its own module. Compiled into dist/test/harness,
 * that is dist/test/fixtures, which tsc does not populate: point it at the real folder.
 */
function ensureFixturesVisible(): void {
  const compiled = path.join(REPO_ROOT, 'dist', 'test', 'fixtures');
  if (existsSync(compiled)) return;
  mkdirSync(path.dirname(compiled), { recursive: true });
  symlinkSync(path.join(REPO_ROOT, 'test', 'fixtures'), compiled, 'dir');
}

/**
 * ferrybus is started here rather than by the harness launcher: the harness finds dist/
 * relative to its own source file, which is wrong once it is itself compiled into dist/, and
 * the profile mode needs node flags. The command line is the harness's.
 */
async function launchFerrybus(socketPath: string, nodeFlags: string[]): Promise<LaunchedBus> {
  if (!existsSync(FERRYBUS_MAIN)) throw new Error(`ferrybus is not built: ${FERRYBUS_MAIN} is missing`);
  const proc = startLongRunning(process.execPath, [
    ...nodeFlags,
    FERRYBUS_MAIN,
    'daemon',
    '--nofork',
    '--print-address=1',
    `--address=${unixPathAddress(socketPath)}`,
  ]);
  try {
    const address = await waitForAddressLine(proc);
    return { address, pid: proc.pid, process: proc };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

export async function startBenchBus(name: BusName, options: StartOptions = {}): Promise<BenchBus> {
  const dir = await makeTempDir(`ferrybus-bench-${name}`);
  const socketPath = path.join(dir, 'bus');
  let launched: LaunchedBus;
  try {
    if (name === 'ferrybus') launched = await launchFerrybus(socketPath, options.nodeFlags ?? []);
    else if (name === 'dbus-daemon') launched = await launchDbusDaemon(dir, socketPath);
    else {
      ensureFixturesVisible();
      launched = await launchDbusBroker(dir, socketPath);
    }
  } catch (err) {
    await removeTempDir(dir);
    throw err;
  }
  return {
    name,
    address: launched.address,
    socketPath,
    pid: launched.pid,
    async stop() {
      await launched.process.stop();
      await removeTempDir(dir);
    },
  };
}

/** Versions of what is measured, for the results file. */
export function versions(): Record<string, string> {
  const first = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
    } catch (err) {
      return `unknown (${(err as Error).message.split('\n')[0]})`;
    }
  };
  const git = (args: string[]) => first('git', ['-C', REPO_ROOT, ...args]);
  const dirty = first('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no', 'src']);
  return {
    ferrybus: `${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ' + uncommitted changes in src/' : ''}`,
    node: process.version,
    'dbus-daemon': first('dbus-daemon', ['--version']),
    'dbus-broker': first('dbus-broker', ['--version']),
    'dbus-test-tool': first('dpkg-query', ['-W', '-f=${Version}', 'dbus-tests']),
  };
}
