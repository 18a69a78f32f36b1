import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { unixPathAddress } from '../test/harness/address.js';
import { launchDbusBroker } from '../test/harness/buses/dbus-broker.js';
import { launchDbusDaemon, permissiveConfig } from '../test/harness/buses/dbus-daemon.js';
import { REPO_ROOT } from '../test/harness/fixtures.js';
import { startLongRunning } from '../test/harness/long-running.js';
import { type LaunchedBus, waitForAddressLine } from '../test/harness/running-bus.js';
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
  /** Extra node flags for ferrybus (e.g. --cpu-prof), after the unit's when run as deployed. */
  nodeFlags?: string[];
  /** A busconfig to run under instead of the permissive one (ferrybus and dbus-daemon only). */
  config?: (listen: string) => string;
  /** <limit> values added to the permissive config (ferrybus and dbus-daemon; dbus-broker: ignored). */
  limits?: Readonly<Record<string, number>>;
}

/**
 * How the bench starts ferrybus. 'bundle' (the default of `npm run bench`): as deployed, the
 * bundle dist/bundle/ferrybus.cjs with the node flags of systemd/ferrybus.service's ExecStart;
 * 'dist': dist/src/cli/main.js without node flags, as the test harness runs it.
 */
export type FerrybusFrom = 'bundle' | 'dist';
let ferrybusFrom: FerrybusFrom = 'dist';

export function setFerrybusFrom(from: FerrybusFrom): void {
  ferrybusFrom = from;
}

export function getFerrybusFrom(): FerrybusFrom {
  return ferrybusFrom;
}

const UNIT_FILE = path.join(REPO_ROOT, 'systemd', 'ferrybus.service');
const BUNDLE = path.join(REPO_ROOT, 'dist', 'bundle', 'ferrybus.cjs');

/** The node flags of the unit's ExecStart (the words between node and the bundle that start with -). */
export function unitNodeFlags(): string[] {
  const line = existsSync(UNIT_FILE) ? /^ExecStart=(.*)$/m.exec(readFileSync(UNIT_FILE, 'utf8'))?.[1] : undefined;
  if (!line) throw new Error(`no ExecStart= in ${UNIT_FILE}: cannot start ferrybus as deployed (use --ferrybus-from=dist)`);
  const words = line.trim().split(/\s+/);
  // "@/usr/bin/node @ferrybus …": '@' before the path means the next word is argv[0].
  const rest = words[0]!.startsWith('@') ? words.slice(2) : words.slice(1);
  const flags: string[] = [];
  for (const w of rest) {
    if (/\.[cm]?js$/.test(w)) return flags;
    if (w.startsWith('-')) flags.push(w);
  }
  throw new Error(`ExecStart= of ${UNIT_FILE} names no .cjs/.mjs/.js script: cannot read its node flags`);
}

let bundleChecked = false;

/** The newest mtime of any file under dir. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** dist/bundle/ferrybus.cjs, (re)built with scripts/bundle.mjs when missing or older than src/. */
export function ensureBundle(): string {
  if (bundleChecked) return BUNDLE;
  if (!existsSync(BUNDLE) || statSync(BUNDLE).mtimeMs < Math.max(newest(path.join(REPO_ROOT, 'src')), statSync(path.join(REPO_ROOT, 'package.json')).mtimeMs)) {
    console.log(`${existsSync(BUNDLE) ? 'rebuilding the stale' : 'building the'} bundle ${path.relative(process.cwd(), BUNDLE)} (npm run bundle)`);
    execFileSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'bundle.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  bundleChecked = true;
  return BUNDLE;
}

/** node flags and script that start ferrybus (for the results file and the launcher). */
export function ferrybusCommand(nodeFlags: readonly string[] = []): { script: string; nodeFlags: string[] } {
  if (ferrybusFrom === 'bundle') return { script: ensureBundle(), nodeFlags: [...unitNodeFlags(), ...nodeFlags] };
  const main = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error(`ferrybus is not built: ${main} is missing (npm run build)`);
  return { script: main, nodeFlags: [...nodeFlags] };
}

async function launchBenchFerrybus(socketPath: string, nodeFlags: readonly string[], configFile: string | undefined): Promise<LaunchedBus> {
  const cmd = ferrybusCommand(nodeFlags);
  const proc = startLongRunning(process.execPath, [
    ...cmd.nodeFlags,
    cmd.script,
    'daemon',
    '--nofork',
    '--print-address=1',
    `--address=${unixPathAddress(socketPath)}`,
    ...(configFile ? [`--config-file=${configFile}`] : []),
  ]);
  try {
    return { address: await waitForAddressLine(proc), pid: proc.pid, process: proc };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

async function launchConfiguredDbusDaemon(socketPath: string, configFile: string): Promise<LaunchedBus> {
  const proc = startLongRunning('dbus-daemon', ['--nofork', '--print-address=1', `--config-file=${configFile}`, `--address=${unixPathAddress(socketPath)}`]);
  try {
    return { address: await waitForAddressLine(proc), pid: proc.pid, process: proc };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** The permissive config with more <limit> elements. */
export function limitsConfig(limits: Readonly<Record<string, number>>): (listen: string) => string {
  const xml = Object.entries(limits).map(([k, v]) => `  <limit name="${k}">${v}</limit>\n`).join('');
  return (listen) => permissiveConfig(listen).replace('</busconfig>', `${xml}</busconfig>`);
}

export async function startBenchBus(name: BusName, options: StartOptions = {}): Promise<BenchBus> {
  if (options.config && name === 'dbus-broker') throw new Error('dbus-broker reads no busconfig (its launcher compiles one)');
  const config = options.config ?? (options.limits && name !== 'dbus-broker' ? limitsConfig(options.limits) : undefined);
  const dir = await makeTempDir(`ferrybus-bench-${name}`);
  const socketPath = path.join(dir, 'bus');
  let launched: LaunchedBus;
  try {
    let configFile: string | undefined;
    if (config) {
      configFile = path.join(dir, 'bus.conf');
      await chmod(dir, 0o755); // a config may make dbus-daemon drop to another user (<user>)
      await writeFile(configFile, config(unixPathAddress(socketPath)));
    }
    if (name === 'ferrybus') launched = await launchBenchFerrybus(socketPath, options.nodeFlags ?? [], configFile);
    else if (name === 'dbus-daemon') launched = configFile ? await launchConfiguredDbusDaemon(socketPath, configFile) : await launchDbusDaemon(dir, socketPath);
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
