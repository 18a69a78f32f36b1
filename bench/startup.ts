/**
 * Cold start: from exec to a bus that accepts connections (its address printed, which every bus
 * here does only once it listens), next to a bare `node -e 0` and dbus-daemon, in one run with
 * the order rotated every round. ferrybus is measured as the units run it (the bundle, with
 * no node flags, see systemd/ferrybus.service) and as the tests run it (dist/). Part of `npm run bench`;
 * `npm run bench -- --only=startup` runs it alone.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './buses.js';
import { median } from './stats.js';

export type Starter = 'node -e 0' | 'ferrybus (bundle)' | 'ferrybus (dist)' | 'dbus-daemon';
export const STARTERS: readonly Starter[] = ['node -e 0', 'ferrybus (bundle)', 'ferrybus (dist)', 'dbus-daemon'];

export interface StartupSummary {
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
}

export interface StartupResult {
  rounds: number;
  method: string;
  summary: Record<Starter, StartupSummary>;
  ratios: { 'ferrybus (bundle)/node -e 0': number; 'ferrybus (bundle)/dbus-daemon': number; 'ferrybus (dist)/node -e 0': number };
  runsMs: Record<Starter, number[]>;
}

/** Spawns a command and resolves with the ms until its first stdout line (or its exit, for `node -e 0`). */
function timeOne(file: string, args: string[], untilExit: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let done = false;
    const finish = (ms: number) => {
      if (done) return;
      done = true;
      if (!untilExit) child.kill('SIGTERM');
      child.once('exit', () => resolve(ms));
      if (child.exitCode !== null || child.signalCode !== null) resolve(ms);
    };
    child.on('error', reject);
    if (untilExit) {
      child.once('exit', () => {
        done = true;
        resolve(performance.now() - t0);
      });
      return;
    }
    child.stdout.on('data', (d: Buffer) => {
      if (d.includes(10)) finish(performance.now() - t0);
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`${file} ${args.join(' ')} exited (${code}) before printing its address`));
    });
  });
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export async function measureStartup(rounds: number): Promise<StartupResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ferrybus-startup-'));
  try {
    const bundleDir = path.join(dir, 'bundle');
    await timeOne(process.execPath, [path.join(REPO_ROOT, 'scripts', 'bundle.mjs'), '--outdir', bundleDir], true);
    const bundle = path.join(bundleDir, 'ferrybus.cjs');
    const dist = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
    let n = 0;
    const address = () => `--address=unix:path=${path.join(dir, `bus-${n++}`)}`;
    const commands: Record<Starter, () => [string, string[], boolean]> = {
      'node -e 0': () => [process.execPath, ['-e', '0'], true],
      'ferrybus (bundle)': () => [process.execPath, [bundle, 'daemon', '--nofork', '--print-address=1', address()], false],
      'ferrybus (dist)': () => [process.execPath, [dist, 'daemon', '--nofork', '--print-address=1', address()], false],
      'dbus-daemon': () => ['dbus-daemon', ['--session', '--nofork', '--print-address=1', address()], false],
    };
    const runsMs = Object.fromEntries(STARTERS.map((s) => [s, [] as number[]])) as Record<Starter, number[]>;
    // One untimed round: the page cache and the dynamic linker's caches are warm for everyone.
    for (const s of STARTERS) await timeOne(...commands[s]());
    for (let r = 0; r < rounds; r++) {
      const order = STARTERS.map((_, i) => STARTERS[(i + r) % STARTERS.length]!);
      for (const s of order) runsMs[s].push(await timeOne(...commands[s]()));
    }
    const summary = Object.fromEntries(STARTERS.map((s) => {
      const xs = runsMs[s];
      return [s, { runs: xs.length, medianMs: round1(median(xs)), minMs: round1(Math.min(...xs)), maxMs: round1(Math.max(...xs)) }];
    })) as Record<Starter, StartupSummary>;
    const ratio = (a: Starter, b: Starter) => Math.round((summary[a].medianMs / summary[b].medianMs) * 100) / 100;
    return {
      rounds,
      method: 'wall-clock ms from spawn() to the first line on stdout (the address, printed once the bus listens), ' +
        'or to the exit of `node -e 0`; one untimed round first, then the order rotated every round; medians',
      summary,
      ratios: {
        'ferrybus (bundle)/node -e 0': ratio('ferrybus (bundle)', 'node -e 0'),
        'ferrybus (bundle)/dbus-daemon': ratio('ferrybus (bundle)', 'dbus-daemon'),
        'ferrybus (dist)/node -e 0': ratio('ferrybus (dist)', 'node -e 0'),
      },
      runsMs: Object.fromEntries(STARTERS.map((s) => [s, runsMs[s].map(round1)])) as Record<Starter, number[]>,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printStartup(r: StartupResult): void {
  console.log(`\n(startup) from exec to listening — wall clock, median of ${r.rounds} rounds`);
  console.log(`  ${'start'.padEnd(20)} ${'median ms'.padStart(10)} ${'min'.padStart(8)} ${'max'.padStart(8)}`);
  for (const s of STARTERS) {
    const x = r.summary[s];
    console.log(`  ${s.padEnd(20)} ${x.medianMs.toFixed(1).padStart(10)} ${x.minMs.toFixed(1).padStart(8)} ${x.maxMs.toFixed(1).padStart(8)}`);
  }
  for (const [k, v] of Object.entries(r.ratios)) console.log(`  ${k.padEnd(32)} ${v.toFixed(2)}×`);
}
