import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { launchDbusBroker } from '../test/harness/buses/dbus-broker.js';
import { launchDbusDaemon } from '../test/harness/buses/dbus-daemon.js';
import { launchFerrybus } from '../test/harness/buses/ferrybus.js';
import { startBusWithConfig } from '../test/harness/config-bus.js';
import { REPO_ROOT } from '../test/harness/fixtures.js';
import type { LaunchedBus } from '../test/harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../test/harness/temp-dir.js';

export const BUSES = ['ferrybus', 'dbus-daemon', 'dbus-broker'] as const;
export type BusName = (typeof BUSES)[number];

export { REPO_ROOT };

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
  /** A busconfig to run under instead of the permissive one (ferrybus and dbus-daemon only). */
  config?: (listen: string) => string;
}

export async function startBenchBus(name: BusName, options: StartOptions = {}): Promise<BenchBus> {
  if (options.config) {
    if (name === 'dbus-broker') throw new Error('dbus-broker reads no busconfig (its launcher compiles one)');
    if (options.nodeFlags?.length) throw new Error('node flags with a busconfig are not supported');
    const bus = await startBusWithConfig(name, options.config);
    return { name, address: bus.address, socketPath: bus.socketPath, pid: bus.pid, stop: () => bus.stop() };
  }
  const dir = await makeTempDir(`ferrybus-bench-${name}`);
  const socketPath = path.join(dir, 'bus');
  let launched: LaunchedBus;
  try {
    if (name === 'ferrybus') launched = await launchFerrybus(dir, socketPath, options.nodeFlags ?? []);
    else if (name === 'dbus-daemon') launched = await launchDbusDaemon(dir, socketPath);
    else launched = await launchDbusBroker(dir, socketPath);
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
