/**
 * ferrybus vs dbus-daemon vs dbus-broker, side by side in one run.
 *
 *   npm run bench                      # full run (5 repetitions, ~4 minutes on 2 cores)
 *   npm run bench -- --quick           # counts × 0.2, 1 repetition: a smoke test, not numbers to quote
 *   npm run bench -- --only=fanout,connect --reps=5 --scale=2
 *   npm run bench -- --profile[=SCENARIO]   # ferrybus alone under node --cpu-prof; without a
 *                                           # scenario: the worst one vs dbus-broker in latest.json
 *   npm run bench -- --profile --profiler=perf [--perf-js-names]   # Linux perf: on-CPU, user + kernel,
 *                                           # by category (GC, kernel, memcpy, JIT code, …)
 *   npm run bench -- --syscalls             # syscalls and context switches per message (perf stat)
 *   npm run bench -- --curve=roundtrip-fd [--curve-steps=10,10,80] [--count=N]   # cost per chunk
 *                                           # as a fresh bus warms up (bench/curve.ts)
 *   npm run bench -- --ferrybus-node-flags="--max-semi-space-size=32"   # node flags for ferrybus (appended)
 *   npm run bench -- --ferrybus-from=dist   # dist/src/cli/main.js instead of the bundle as deployed
 *   npm run bench -- --only=fanout-scale-1000,names-scale-1000,memory   # scale scenarios, memory section
 *   npm run bench -- --only=handoff [--handoff-cells=1000x16M,10x0] [--handoff-reps=20]
 *                                           # handoff pause alone (bench/handoff-pause.ts)
 *
 * What is measured, per bus and scenario: CPU seconds (utime+stime from /proc/PID/stat, whole
 * process) of the routing process only, per 100k routed messages (per connection for the
 * connect scenario); wall-clock throughput; VmRSS and VmHWM. Each (repetition, scenario) runs
 * the three buses back to back, in an order rotated every repetition; every run gets a fresh
 * bus. Medians over repetitions are reported, with ratios ferrybus/dbus-daemon and
 * ferrybus/dbus-broker. Results go to bench/results/latest.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSES, type BusName, ferrybusCommand, type FerrybusFrom, getFerrybusFrom, REPO_ROOT, setFerrybusFrom, startBenchBus, versions } from './buses.js';
import { benchClientPath } from './clients.js';
import { attachScenarioMemory, measureMemory, printMemory } from './memory.js';
import { printScale, SCALE_SCENARIOS, scaleResult, writeScalePlots } from './scale.js';
import { cpuSeconds, cpuSplit, loadAverage, memory, round, schedSeconds, systemCpu } from './proc.js';
import { startLongRunning } from '../test/harness/long-running.js';
import { summarizeProfile } from './profile.js';
import { SCENARIOS as BASE_SCENARIOS, type DriveResult, type Scenario } from './scenarios.js';
import { measureStartup, printStartup } from './startup.js';
import { writeReadme } from './report.js';
import { measureHandoffPause, printHandoffPause } from './handoff-pause.js';
import { DEFAULT_CURVE_STEPS, measureCurve } from './curve.js';
import { median } from './stats.js';
import { useDeployedEnvironment } from './deployed-env.js';

const SCENARIOS: readonly Scenario[] = [...BASE_SCENARIOS, ...SCALE_SCENARIOS];

interface Options {
  /** How ferrybus is started (bench/buses.ts); default: the bundle as deployed (dist for --profile). */
  ferrybusFrom: FerrybusFrom | undefined;
  scale: number;
  reps: number;
  only: string[] | undefined;
  buses: BusName[];
  out: string;
  profile: string | undefined;
  profiler: 'cpu-prof' | 'perf';
  perfJsNames: boolean;
  /** Count syscalls and context switches per unit with perf stat instead of timing. */
  syscalls: boolean;
  /** Extra node flags for the ferrybus daemon (experiments, e.g. GC settings). */
  nodeFlags: string[];
  quick: boolean;
  /** The handoff-pause section's cells (`1000x16M,…`) and handoffs per cell; default: its grid. */
  handoffCells: string | undefined;
  handoffReps: number | undefined;
  /** --curve: the scenario to drive in chunks on fresh buses (bench/curve.ts). */
  curve: string | undefined;
  curveSteps: number[];
  /** --count: the scenario count for --curve. */
  count: number | undefined;
}

interface RunRecord {
  bus: BusName;
  rep: number;
  /** 0-based position of this bus within its (repetition, scenario) group. */
  position: number;
  units: number;
  cpuSec: number;
  schedSec: number;
  wallSec: number;
  /** CPU s per 100k routed messages, or CPU ms per connection. */
  cost: number;
  /** The same from schedstat (ns resolution). */
  costSched: number;
  /** `cost` in its parts: user space (utime) and kernel (stime), same unit. */
  userCost?: number;
  kernelCost?: number;
  /** The same (from schedstat) during the warm-up: a fresh bus, for ferrybus including JIT compilation. */
  warmupCost: number;
  /** Cost in the second half of the drive / in the first (schedstat): below 1, the cost was still falling. */
  halvesRatio?: number;
  /** routed messages/s, or connections/s */
  throughput: number;
  rssKiB: number;
  hwmKiB: number;
  /** Fraction of all CPUs busy (anyone) during the drive. */
  machineBusy: number;
  load1: number;
  errors: string[];
}

interface BusSummary {
  n: number;
  cost: number;
  costSched: number;
  /** Median warm-up cost (a fresh bus's first 10%). */
  coldCost: number;
  /** Median of the runs' halvesRatio. */
  halvesRatio?: number;
  /** Median user-space and kernel parts of `cost`. */
  userCost?: number;
  kernelCost?: number;
  throughput: number;
  rssKiB: number;
  hwmKiB: number;
}

const WARMUP_FRACTION = 0.1;
const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
const README = path.join(REPO_ROOT, 'bench', 'README.md');
const DRIVE_TIMEOUT_MS = 120_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv: string[]): Options {
  const o: Options = {
    scale: 1,
    reps: 5,
    only: undefined,
    buses: [...BUSES],
    out: path.join(RESULTS_DIR, 'latest.json'),
    profile: undefined,
    profiler: 'cpu-prof',
    perfJsNames: false,
    syscalls: false,
    nodeFlags: [],
    quick: false,
    ferrybusFrom: undefined,
    handoffCells: undefined,
    handoffReps: undefined,
    curve: undefined,
    curveSteps: DEFAULT_CURVE_STEPS,
    count: undefined,
  };
  let outGiven = false;
  for (const arg of argv) {
    const [key, value] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    switch (key) {
      case '--quick':
        o.quick = true;
        break;
      case '--scale':
        o.scale = Number(value);
        break;
      case '--reps':
        o.reps = Number(value);
        break;
      case '--only':
        o.only = value!.split(',');
        break;
      case '--buses':
        o.buses = value!.split(',') as BusName[];
        break;
      case '--out':
        o.out = path.resolve(value!);
        outGiven = true;
        break;
      case '--profile':
        o.profile = value ?? 'auto';
        break;
      case '--profiler':
        if (value !== 'cpu-prof' && value !== 'perf') throw new Error('--profiler is cpu-prof or perf');
        o.profiler = value;
        break;
      case '--perf-js-names':
        o.perfJsNames = true;
        break;
      case '--syscalls':
        o.syscalls = true;
        break;
      case '--ferrybus-node-flags':
        o.nodeFlags = value!.split(/\s+/).filter(Boolean);
        break;
      case '--ferrybus-from':
        if (value !== 'bundle' && value !== 'dist') throw new Error('--ferrybus-from is bundle or dist');
        o.ferrybusFrom = value;
        break;
      case '--handoff-cells':
        o.handoffCells = value;
        break;
      case '--handoff-reps':
        o.handoffReps = Number(value);
        break;
      case '--curve':
        o.curve = value;
        break;
      case '--curve-steps':
        o.curveSteps = value!.split(',').map(Number);
        if (o.curveSteps.some((x) => !(x > 0))) throw new Error('--curve-steps takes positive percentages, e.g. 10,10,80');
        break;
      case '--count':
        o.count = Number(value);
        if (!(o.count >= 1)) throw new Error('--count takes a positive number');
        break;
      case '--help':
      case '-h':
        console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${arg} (try --help)`);
    }
  }
  if (o.quick) {
    if (!argv.some((a) => a.startsWith('--scale'))) o.scale = 0.2;
    if (!argv.some((a) => a.startsWith('--reps'))) o.reps = 1;
    if (!outGiven) o.out = path.join(RESULTS_DIR, 'quick.json');
  }
  for (const b of o.buses) if (!(BUSES as readonly string[]).includes(b)) throw new Error(`unknown bus ${b}`);
  if (o.only) for (const id of o.only) if (!['startup', 'memory', 'handoff'].includes(id) && !SCENARIOS.some((s) => s.id === id)) throw new Error(`unknown scenario ${id}`);
  if (!(o.scale > 0) || !(o.reps >= 1)) throw new Error('--scale must be > 0 and --reps >= 1');
  return o;
}

function scaledParams(s: Scenario, scale: number): Record<string, number> {
  const p = { ...s.params };
  for (const k of s.scaled) p[k] = Math.max(1, Math.round(p[k]! * scale));
  return p;
}

/** One measured run of one scenario on a fresh bus. */
async function measure(s: Scenario, bus: BusName, params: Record<string, number>, rep: number, position: number, nodeFlags: string[]): Promise<RunRecord> {
  const b = await startBenchBus(bus, { nodeFlags, config: s.config, limits: s.limits });
  try {
    const prepared = await s.prepare(b, params);
    try {
      // Warm-up (10% of the count): a bus is a long-running process, so steady state is what
      // counts; the cold cost (node's JIT) is kept in the record as warmupCost.
      const warmCount = Math.max(1, Math.round(params.count! * WARMUP_FRACTION));
      const w0 = schedSeconds(b.pid);
      const warm = await withTimeout(prepared.drive(warmCount), DRIVE_TIMEOUT_MS, `warm-up of ${s.id} on ${bus}`);
      if (warm.errors.length > 0) throw new Error(`warm-up failed: ${warm.errors.join('; ')}`);
      await sleep(100);
      const warmCpu = schedSeconds(b.pid) - w0;
      const split0 = cpuSplit(b.pid);
      const cpu0 = split0.user + split0.kernel;
      const sched0 = schedSeconds(b.pid);
      const sys0 = systemCpu();
      // Driven in two halves: a cost that still falls from the first half to the second is not
      // yet steady (node's JIT still compiling), and the record says so (halvesRatio).
      const firstCount = Math.max(1, Math.floor(params.count! / 2));
      let t0 = performance.now();
      const first = await withTimeout(prepared.drive(firstCount), DRIVE_TIMEOUT_MS, `${s.id} on ${bus}`);
      let wallMs = performance.now() - t0;
      // Let the bus finish what the clients' last bytes started (e.g. the last disconnects).
      await sleep(100);
      const schedHalf = schedSeconds(b.pid);
      t0 = performance.now();
      const second = await withTimeout(prepared.drive(params.count! - firstCount), DRIVE_TIMEOUT_MS, `${s.id} on ${bus}`);
      wallMs += performance.now() - t0;
      const wallSec = wallMs / 1000;
      const sys1 = systemCpu();
      await sleep(100);
      const result: DriveResult = { units: first.units + second.units, errors: [...first.errors, ...second.errors] };
      const split1 = cpuSplit(b.pid);
      const cpuSec = split1.user + split1.kernel - cpu0;
      const schedEnd = schedSeconds(b.pid);
      const schedSec = schedEnd - sched0;
      const mem = memory(b.pid);
      const per = (x: number) => (s.unit === 'msg' ? (x / result.units) * 100_000 : (x / result.units) * 1000);
      const halvesRatio = ((schedEnd - schedHalf) / second.units) / ((schedHalf - sched0) / first.units);
      return {
        bus,
        rep,
        position,
        units: result.units,
        cpuSec: round(cpuSec, 3),
        schedSec: round(schedSec, 4),
        wallSec: round(wallSec, 3),
        cost: round(per(cpuSec), 4),
        warmupCost: round(per(warmCpu) * (result.units / warm.units), 4),
        halvesRatio: round(halvesRatio, 3),
        costSched: round(per(schedSec), 4),
        userCost: round(per(split1.user - split0.user), 4),
        kernelCost: round(per(split1.kernel - split0.kernel), 4),
        throughput: Math.round(result.units / wallSec),
        rssKiB: mem.rssKiB,
        hwmKiB: mem.hwmKiB,
        machineBusy: round((sys1.busy - sys0.busy) / Math.max(1, sys1.total - sys0.total), 3),
        load1: loadAverage()[0],
        errors: result.errors,
      };
    } finally {
      await prepared.cleanup();
    }
  } finally {
    await b.stop();
  }
}

function summarize(runs: RunRecord[]): BusSummary {
  const ok = runs.filter((r) => r.errors.length === 0);
  return {
    n: ok.length,
    cost: round(median(ok.map((r) => r.cost)), 4),
    costSched: round(median(ok.map((r) => r.costSched)), 4),
    coldCost: round(median(ok.map((r) => r.warmupCost)), 4),
    halvesRatio: round(median(ok.map((r) => r.halvesRatio ?? NaN)), 3),
    userCost: round(median(ok.map((r) => r.userCost ?? NaN)), 4),
    kernelCost: round(median(ok.map((r) => r.kernelCost ?? NaN)), 4),
    throughput: Math.round(median(ok.map((r) => r.throughput))),
    rssKiB: Math.round(median(ok.map((r) => r.rssKiB))),
    hwmKiB: Math.round(median(ok.map((r) => r.hwmKiB))),
  };
}

function ratios(f: BusSummary | undefined, other: BusSummary | undefined) {
  if (!f || !other) return undefined;
  return {
    cpu: round(f.cost / other.cost, 2),
    cpuCold: round(f.coldCost / other.coldCost, 2),
    throughput: round(f.throughput / other.throughput, 2),
    rss: round(f.rssKiB / other.rssKiB, 2),
    hwm: round(f.hwmKiB / other.hwmKiB, 2),
  };
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const lpad = (s: string, n: number) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);
const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '—');
const mib = (kib: number) => fmt(kib / 1024, 1);

function printTable(index: number, s: Scenario, summary: Partial<Record<BusName, BusSummary>>, reps: number): void {
  const costHead = s.unit === 'msg' ? 'CPU s/100k msg' : 'CPU ms/conn';
  const tputHead = s.unit === 'msg' ? 'msg/s' : 'conn/s';
  console.log(`\n(${index + 1}) ${s.title} — routing process, median of ${reps}; (cold) = during the warm-up on a fresh bus`);
  console.log(`  ${pad('', 22)}${lpad(costHead, 15)}${lpad('(cold)', 8)}${lpad(tputHead, 10)}${lpad('RSS MiB', 9)}${lpad('HWM MiB', 9)}`);
  for (const bus of BUSES) {
    const m = summary[bus];
    if (!m) continue;
    console.log(`  ${pad(bus + (m.n < reps ? ` (n=${m.n})` : ''), 22)}${lpad(fmt(m.cost, s.unit === 'msg' ? 2 : 3), 15)}${lpad(fmt(m.coldCost, s.unit === 'msg' ? 2 : 3), 8)}${lpad(String(m.throughput), 10)}${lpad(mib(m.rssKiB), 9)}${lpad(mib(m.hwmKiB), 9)}`);
  }
  for (const other of ['dbus-daemon', 'dbus-broker'] as const) {
    const r = ratios(summary.ferrybus, summary[other]);
    if (!r) continue;
    console.log(`  ${pad(`ferrybus/${other}`, 22)}${lpad(fmt(r.cpu) + '×', 15)}${lpad(fmt(r.cpuCold) + '×', 8)}${lpad(fmt(r.throughput) + '×', 10)}${lpad(fmt(r.rss) + '×', 9)}${lpad(fmt(r.hwm) + '×', 9)}`);
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    os: (() => {
      try {
        return /PRETTY_NAME="([^"]*)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown';
      } catch {
        return 'unknown';
      }
    })(),
  };
}

async function benchmark(o: Options): Promise<void> {
  const scenarios = SCENARIOS.filter((s) => !o.only || o.only.includes(s.id));
  const started = new Date();
  const loadBefore = loadAverage();
  console.log(`ferrybus bench: ${scenarios.length} scenarios × ${o.buses.length} buses × ${o.reps} repetitions, scale ${o.scale}; load ${loadBefore.join(' ')}`);
  const runs = new Map<string, RunRecord[]>(scenarios.map((s) => [s.id, []]));
  // A missing compiler or libdbus-1-dev stops the run here, not in every run of every scenario.
  if (scenarios.some((s) => s.usesBenchClient) || !o.only || o.only.includes('memory')) benchClientPath();
  for (let rep = 0; rep < o.reps; rep++) {
    // Rotate the order every repetition so no bus always runs first (or right after another).
    const order = o.buses.map((_, i) => o.buses[(i + rep) % o.buses.length]!);
    for (const s of scenarios) {
      const params = scaledParams(s, o.scale);
      for (const [position, bus] of order.entries()) {
        if (s.buses && !s.buses.includes(bus)) continue;
        let rec: RunRecord;
        try {
          rec = await measure(s, bus, params, rep, position, o.nodeFlags);
        } catch (err) {
          rec = {
            bus, rep, position, units: 0, cpuSec: NaN, schedSec: NaN, wallSec: NaN, cost: NaN, costSched: NaN, warmupCost: NaN,
            throughput: NaN, rssKiB: NaN, hwmKiB: NaN, machineBusy: NaN, load1: loadAverage()[0],
            errors: [(err as Error).message.split('\n').slice(0, 6).join('\n')],
          };
        }
        runs.get(s.id)!.push(rec);
        const unit = s.unit === 'msg' ? 's/100k' : 'ms/conn';
        console.log(
          `  rep ${rep + 1} ${pad(s.id, 11)} ${pad(bus, 12)} cpu ${fmt(rec.cost, 3)} ${unit}  ${rec.throughput} /s  wall ${fmt(rec.wallSec)} s  2nd/1st half ${fmt(rec.halvesRatio ?? NaN)}  ` +
            `machine busy ${fmt(rec.machineBusy * 100, 0)}%${rec.errors.length ? `  ERROR: ${rec.errors.join('; ')}` : ''}`,
        );
      }
    }
  }
  // Cold start (bench/startup.ts): 5 rounds per repetition of the scenarios.
  const startup = !o.only || o.only.includes('startup') ? await measureStartup(5 * o.reps) : undefined;
  // Memory (bench/memory.ts): idle, per connection, and below each scenario's RSS over idle.
  const memory = !o.only || o.only.includes('memory') ? await measureMemory({ reps: o.reps, buses: o.buses, nodeFlags: o.nodeFlags }) : undefined;
  // Handoff pause (bench/handoff-pause.ts), ferrybus only; against this run's node -e 0 start-up.
  const handoffPause = !o.only || o.only.includes('handoff')
    ? await measureHandoffPause({ quick: o.quick, cells: o.handoffCells, reps: o.handoffReps, startup, nodeFlags: o.nodeFlags, plotBase: path.join(path.dirname(o.out), o.quick ? 'handoff-pause-quick' : 'handoff-pause') })
    : undefined;
  const results = scenarios.map((s, i) => {
    const rs = runs.get(s.id)!;
    const summary: Partial<Record<BusName, BusSummary>> = {};
    for (const bus of o.buses) if (!s.buses || s.buses.includes(bus)) summary[bus] = summarize(rs.filter((r) => r.bus === bus));
    printTable(i, s, summary, o.reps);
    return {
      id: s.id,
      title: s.title,
      unit: s.unit === 'msg' ? 'bus CPU seconds per 100k routed messages' : 'bus CPU milliseconds per connection',
      throughputUnit: s.unit === 'msg' ? 'routed messages per second (wall clock)' : 'connections per second (wall clock)',
      describe: s.describe,
      params: scaledParams(s, o.scale),
      summary,
      ratios: {
        'ferrybus/dbus-daemon': ratios(summary.ferrybus, summary['dbus-daemon']),
        'ferrybus/dbus-broker': ratios(summary.ferrybus, summary['dbus-broker']),
      },
      runs: rs,
    };
  });
  // Scale table and plots (bench/scale.ts), next to the results file: scale-*.png for latest.json.
  const scale = scaleResult(results, o.buses);
  const stem = path.basename(o.out, '.json');
  if (scale) writeScalePlots(scale, path.dirname(o.out), stem === 'latest' ? '' : `${stem}-`);
  if (memory) attachScenarioMemory(memory, results);
  const doc = {
    tool: 'bench/run.ts',
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    durationSec: Math.round((Date.now() - started.getTime()) / 1000),
    options: { scale: o.scale, reps: o.reps, quick: o.quick, buses: o.buses, ferrybusNodeFlags: o.nodeFlags, ferrybusFrom: getFerrybusFrom(), ferrybus: o.buses.includes('ferrybus') ? ferrybusCommand(o.nodeFlags) : undefined },
    machine: machine(),
    versions: versions(),
    load: { before: loadBefore, after: loadAverage() },
    environmentRemoved: removedEnvironment,
    method:
      'Fresh bus per run on a private unix socket; CPU = utime+stime of the routing process from /proc/PID/stat ' +
      '(costSched: the same from schedstat, ns resolution) between the start and end of the drive (+100 ms settle), ' +
      'after a warm-up drive of 10% of the count on the same bus (warmupCost: the cost during the warm-up); ' +
      'the count is driven in two halves (halvesRatio: schedstat cost of the second half / the first; below 1, still settling); ' +
      'medians over repetitions, the order of the buses rotated each repetition; runs with client errors are excluded. ' +
      'ratios: ferrybus divided by the reference (cpu > 1 means ferrybus uses more CPU; throughput < 1 means slower).',
    scenarios: results,
    ...(startup ? { startup } : {}),
    ...(scale ? { scale } : {}),
    ...(memory ? { memory } : {}),
    ...(handoffPause ? { handoffPause } : {}),
  };
  if (startup) printStartup(startup);
  if (scale) printScale(scale);
  if (memory) printMemory(memory);
  if (handoffPause && !printHandoffPause(handoffPause)) process.exitCode = 1;
  mkdirSync(path.dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(doc, null, 2) + '\n');
  console.log(`\nload average before ${loadBefore.join(' ')}, after ${doc.load.after.join(' ')}; ${doc.durationSec} s; results in ${path.relative(process.cwd(), o.out)}`);
  // The README shows the last full run only: a partial or quick one would replace it with less.
  if (!o.only && !o.quick && o.out === path.join(RESULTS_DIR, 'latest.json')) {
    writeReadme(doc, README);
    console.log(`results section of ${path.relative(process.cwd(), README)} rewritten`);
  } else {
    console.log(`${path.relative(process.cwd(), README)} not rewritten (only a full run to bench/results/latest.json rewrites it)`);
  }
  const failed = results.flatMap((r) => r.runs.filter((x) => x.errors.length > 0));
  if (memory?.errors.length) process.exitCode = 1;
  if (failed.length > 0) {
    console.log(`${failed.length} runs failed (excluded from medians)`);
    process.exitCode = 1;
  }
}

/** Picks the scenario where ferrybus's CPU cost is highest relative to dbus-broker. */
function worstScenario(): string {
  const file = path.join(RESULTS_DIR, 'latest.json');
  const doc = JSON.parse(readFileSync(file, 'utf8')) as {
    scenarios: { id: string; ratios: Record<string, { cpu: number } | undefined> }[];
  };
  let worst = doc.scenarios[0]!;
  for (const s of doc.scenarios) {
    if ((s.ratios['ferrybus/dbus-broker']?.cpu ?? 0) > (worst.ratios['ferrybus/dbus-broker']?.cpu ?? 0)) worst = s;
  }
  console.log(`worst scenario vs dbus-broker in ${path.relative(process.cwd(), file)}: ${worst.id} (${worst.ratios['ferrybus/dbus-broker']?.cpu}×)`);
  return worst.id;
}

async function profile(o: Options): Promise<void> {
  const id = o.profile === 'auto' ? worstScenario() : o.profile!;
  const s = SCENARIOS.find((x) => x.id === id);
  if (!s) throw new Error(`unknown scenario ${id}`);
  if (o.profiler === 'perf') return perfProfile(o, s);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ferrybus-cpuprof-'));
  const params = scaledParams(s, o.scale);
  const b = await startBenchBus('ferrybus', { nodeFlags: [...o.nodeFlags, '--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250'] });
  // V8 stamps samples with CLOCK_MONOTONIC microseconds, as process.hrtime does here.
  const nowUs = () => Number(process.hrtime.bigint() / 1000n);
  let window: [number, number];
  let costLine = '';
  try {
    const prepared = await s.prepare(b, params);
    try {
      await prepared.drive(Math.max(1, Math.round(params.count! * WARMUP_FRACTION)));
      const cpu0 = cpuSeconds(b.pid);
      const t0 = nowUs();
      const r = await prepared.drive(params.count!);
      await sleep(100);
      window = [t0, nowUs()];
      const cpu = cpuSeconds(b.pid) - cpu0;
      costLine = profiledCost(s, r.units, cpu);
      console.log(`profiled ${s.id} on ferrybus: ${costLine}${r.errors.length ? `; errors: ${r.errors.join('; ')}` : ''}`);
    } finally {
      await prepared.cleanup();
    }
  } finally {
    await b.stop(); // SIGTERM: the daemon exits cleanly and node writes the profile
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`node wrote no profile into ${dir}`);
  const summary = summarizeProfile(JSON.parse(readFileSync(path.join(dir, file), 'utf8')), REPO_ROOT, window);
  const outProfile = path.join(RESULTS_DIR, `profile-${s.id}.cpuprofile`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(outProfile, readFileSync(path.join(dir, file)));
  rmSync(dir, { recursive: true, force: true });
  const outSummary = path.join(RESULTS_DIR, `profile-${s.id}.json`);
  writeFileSync(outSummary, JSON.stringify({ scenario: s.id, params, whileProfiled: costLine, versions: versions(), load: loadAverage(), ...summary }, null, 2) + '\n');
  console.log(`\nMeasured phase only (after warm-up): ${fmt(summary.sampledMs / 1000, 2)} s sampled, ${fmt(summary.busyMs / 1000, 2)} s not idle.`);
  console.log('V8 samples wall-clock time: on a loaded machine, time the thread sat preempted counts for the function it was in;');
  console.log('and the profiler makes GC dearer (compare the cost above with the benchmark median). --profiler=perf gives on-CPU shares.');
  console.log(`  ${lpad('self%', 6)} ${lpad('total%', 7)}  function — file:line (% of non-idle)`);
  for (const f of summary.functions.slice(0, 25)) {
    console.log(`  ${lpad(fmt(f.selfPct, 1), 6)} ${lpad(fmt(f.totalPct, 1), 7)}  ${f.name} — ${f.location}`);
  }
  console.log('\nSelf time by file (% of non-idle):');
  for (const f of summary.files.slice(0, 15)) console.log(`  ${lpad(fmt(f.selfPct, 1), 6)}  ${f.file}`);
  console.log('\nInclusive time of the project\'s functions (% of non-idle):');
  const ours = summary.functions.filter((f) => /^(src|bench|test)\//.test(f.location)).sort((a, b) => b.totalPct - a.totalPct);
  for (const f of ours.slice(0, 20)) console.log(`  ${lpad(fmt(f.totalPct, 1), 6)}  ${f.name} — ${f.location}`);
  console.log(`\nprofile: ${path.relative(process.cwd(), outProfile)} (open in Chrome DevTools), summary: ${path.relative(process.cwd(), outSummary)}`);
}

/** Symbol → cost category, for perf's flat report. */
const PERF_CATEGORIES: [string, RegExp][] = [
  ['kernel (syscalls, scheduling, copies to/from sockets)', /\[k\]/],
  ['V8 garbage collection', /v8::internal::.*(Mark|Sweep|Scaveng|Evacuat|Compactor|RememberedSet|SlotSet|MemoryChunk|BodyDescriptor|SizeFromMap|ShouldVisit|FlushedBytecode|Heap::|ArrayBufferSweeper|GCTracer)/],
  ['memcpy/memmove in user space', /memmove|memcpy/],
  ['malloc/free', /malloc|_int_free|\bfree\b|unlink_chunk|cfree/],
  ['JIT-compiled JavaScript', /\[JIT\]|perf-\d+\.map|\[unknown\]|JS:/],
  // In a guest, the return from each system call lands on the wrapper's next instruction.
  ['C library system-call wrappers', /libc\.so\.6\s+\[\.\]\s+(__libc_|__GI___)?(epoll_\w+|sendmsg|recvmsg|accept4|close|getsockopt|sendfile|pthread_\w*asynccancel)\b/],
  ['node and libuv (event loop, calls into JavaScript, N-API)', /node::|uv_|uv__|v8impl|napi_/],
  ['V8 builtins, ICs and runtime', /Builtins_|v8::|Runtime_/],
  ['koffi (FFI)', /koffi/],
];

/**
 * On-CPU profile with Linux perf (user + kernel, CPU time only, not wall-clock), recorded only
 * during the measured drive, summarised by category and by symbol. JavaScript stays unnamed
 * ("JIT-compiled JavaScript") unless --perf-js-names: node's --perf-basic-prof names it, but
 * logging every code event makes GC-heavy runs (64 KiB payloads) far more expensive than
 * they are; use the cpu-prof profiler to see which JavaScript functions.
 */
async function perfProfile(o: Options, s: Scenario): Promise<void> {
  const params = scaledParams(s, o.scale);
  const data = path.join(mkdtempSync(path.join(os.tmpdir(), 'ferrybus-perf-')), 'perf.data');
  const jsNames = o.perfJsNames ? ['--perf-basic-prof', '--interpreted-frames-native-stack'] : [];
  const b = await startBenchBus('ferrybus', { nodeFlags: [...o.nodeFlags, ...jsNames] });
  const mapFile = `/tmp/perf-${b.pid}.map`;
  let costLine = '';
  try {
    const prepared = await s.prepare(b, params);
    try {
      await prepared.drive(Math.max(1, Math.round(params.count! * WARMUP_FRACTION)));
      const rec = startLongRunning('perf', ['record', '-e', 'cpu-clock', '-F', '1999', '-p', String(b.pid), '-o', data]);
      await sleep(300); // perf attaches
      const cpu0 = cpuSeconds(b.pid);
      const r = await prepared.drive(params.count!);
      await sleep(100);
      const cpu = cpuSeconds(b.pid) - cpu0;
      process.kill(rec.pid, 'SIGINT');
      await rec.exited;
      costLine = profiledCost(s, r.units, cpu);
      console.log(`perf-profiled ${s.id} on ferrybus: ${costLine}${r.errors.length ? `; errors: ${r.errors.join('; ')}` : ''}`);
    } finally {
      await prepared.cleanup();
    }
    const lines = execFileSync('perf', ['report', '-i', data, '--stdio', '--no-children', '--sort', 'dso,sym', '--percent-limit', '0'], {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter((l) => /^\s*[\d.]+%/.test(l));
    const categories = new Map<string, number>();
    for (const l of lines) {
      const pct = Number(/^\s*([\d.]+)%/.exec(l)![1]);
      const cat = PERF_CATEGORIES.find(([, re]) => re.test(l))?.[0] ?? 'other';
      categories.set(cat, (categories.get(cat) ?? 0) + pct);
    }
    const byCategory = [...categories.entries()].sort((x, y) => y[1] - x[1]).map(([c, p]) => `${lpad(p.toFixed(1), 6)}%  ${c}`);
    const bySym = lines.slice(0, 40).map((l) => l.trim());
    const out = path.join(RESULTS_DIR, `perf-${s.id}.txt`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(
      out,
      [
        `perf on-CPU profile of ferrybus (cpu-clock, 1999 Hz, measured drive only), scenario ${s.id}, params ${JSON.stringify(params)}`,
        `while profiled: ${costLine}`,
        `versions ${JSON.stringify(versions())}`,
        `load ${loadAverage().join(' ')}`,
        '',
        '== by category',
        ...byCategory,
        '',
        '== by symbol (self)',
        ...bySym,
        '',
      ].join('\n'),
    );
    console.log('\nOn-CPU time by category:');
    for (const l of byCategory) console.log(`  ${l}`);
    console.log('\nOn-CPU self time by symbol:');
    for (const l of bySym.slice(0, 25)) console.log(`  ${l}`);
    console.log(`\nfull report: ${path.relative(process.cwd(), out)}; raw data: ${data} (perf report -i …)`);
  } finally {
    await b.stop();
    rmSync(mapFile, { force: true });
    // --perf-basic-prof also makes V8 write isolate-0x…-PID-v8.log into the working directory.
    for (const f of readdirSync(process.cwd())) {
      if (new RegExp(`^isolate-0x[0-9a-f]+-${b.pid}-v8\\.log$`).test(f)) rmSync(path.join(process.cwd(), f), { force: true });
    }
  }
}

/** The cost while profiling, next to the benchmark's median: profilers can distort it. */
function profiledCost(s: Scenario, units: number, cpu: number): string {
  const cost = s.unit === 'msg' ? (cpu / units) * 100_000 : (cpu / units) * 1000;
  const unit = s.unit === 'msg' ? 'CPU s/100k msg' : 'CPU ms/conn';
  let ref = '';
  try {
    const doc = JSON.parse(readFileSync(path.join(RESULTS_DIR, 'latest.json'), 'utf8')) as {
      scenarios: { id: string; summary: Record<string, { cost: number } | undefined> }[];
    };
    const median = doc.scenarios.find((x) => x.id === s.id)?.summary.ferrybus?.cost;
    if (median) ref = ` (benchmark median ${fmt(median, 3)}: ×${fmt(cost / median, 2)} while profiled)`;
  } catch {
    // no benchmark results yet
  }
  return `${units} units, ${fmt(cpu, 2)} CPU s = ${fmt(cost, 3)} ${unit}${ref}`;
}

/**
 * Why a bus costs what it costs: system calls and context switches of the routing process per
 * routed message (or connection), counted by perf stat around one measured drive per bus.
 * Counting perturbs timing, so this is a separate mode and its CPU numbers are not reported.
 */
async function syscalls(o: Options): Promise<void> {
  const scenarios = SCENARIOS.filter((s) => !o.only || o.only.includes(s.id));
  const rows: Record<string, Record<string, { syscalls: number; contextSwitches: number; pageFaults: number }>> = {};
  for (const s of scenarios) {
    const params = scaledParams(s, o.scale);
    rows[s.id] = {};
    console.log(`\n${s.title} — per ${s.unit === 'msg' ? 'routed message' : 'connection'}`);
    console.log(`  ${pad('', 14)}${lpad('syscalls', 10)}${lpad('ctx switches', 14)}${lpad('page faults', 13)}`);
    for (const bus of o.buses) {
      if (s.buses && !s.buses.includes(bus)) continue;
      const b = await startBenchBus(bus, { nodeFlags: o.nodeFlags, config: s.config, limits: s.limits });
      try {
        const prepared = await s.prepare(b, params);
        try {
          await prepared.drive(Math.max(1, Math.round(params.count! * WARMUP_FRACTION)));
          const stat = startLongRunning('perf', ['stat', '-x,', '-e', 'raw_syscalls:sys_enter,context-switches,page-faults', '-p', String(b.pid)]);
          await sleep(300); // perf attaches
          const r = await prepared.drive(params.count!);
          await sleep(100);
          process.kill(stat.pid, 'SIGINT');
          await stat.exited;
          const count = (event: string) => Number(stat.stderr.split('\n').find((l) => l.split(',')[2] === event)?.split(',')[0]);
          const row = {
            syscalls: round(count('raw_syscalls:sys_enter') / r.units, 3),
            contextSwitches: round(count('context-switches') / r.units, 3),
            pageFaults: round(count('page-faults') / r.units, 3),
          };
          rows[s.id]![bus] = row;
          console.log(`  ${pad(bus, 14)}${lpad(fmt(row.syscalls, 3), 10)}${lpad(fmt(row.contextSwitches, 3), 14)}${lpad(fmt(row.pageFaults, 3), 13)}`);
        } finally {
          await prepared.cleanup();
        }
      } finally {
        await b.stop();
      }
    }
  }
  const out = path.join(RESULTS_DIR, 'syscalls.json');
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(out, JSON.stringify({ tool: 'bench/run.ts --syscalls', at: new Date().toISOString(), versions: versions(), load: loadAverage(), scale: o.scale, perUnit: rows }, null, 2) + '\n');
  console.log(`\nresults in ${path.relative(process.cwd(), out)}`);
}

function argvHasReps(argv: readonly string[]): boolean {
  return argv.some((a) => a.startsWith('--reps'));
}

/** Node's variables this run removed from every process it starts (see deployed-env.ts). */
let removedEnvironment: string[] = [];

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  removedEnvironment = useDeployedEnvironment();
  if (removedEnvironment.length > 0) console.log(`environment as deployed: ${removedEnvironment.join(', ')} removed for every process this run starts`);
  // Ctrl-C: exit normally so the harness's exit hook kills every process it started, by PID.
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  // As deployed (the bundle, the unit's node flags) unless asked; the profiles name src/ files from dist/.
  setFerrybusFrom(o.ferrybusFrom ?? (o.profile ? 'dist' : 'bundle'));
  if (o.profile) await profile(o);
  else if (o.curve) {
    const scenario = SCENARIOS.find((x) => x.id === o.curve);
    if (!scenario) throw new Error(`no scenario ${o.curve}; one of ${SCENARIOS.map((x) => x.id).join(', ')}`);
    await measureCurve({ scenario, buses: o.buses, reps: argvHasReps(process.argv) ? o.reps : 1, steps: o.curveSteps, count: o.count, nodeFlags: o.nodeFlags });
  } else if (o.syscalls) await syscalls(o);
  else await benchmark(o);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
