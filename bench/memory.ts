/**
 * Memory, as an operator sees it (VmRSS from /proc/PID/status; no GC is forced anywhere):
 *
 *   idle            a fresh bus, 1 s after it listens, no client; next to a bare node process
 *                   (`node -e "setInterval(()=>{},1000)"`, read after 1 s) from the same run.
 *                   Target: ferrybus idle ≤ bare node + 16 MiB.
 *   per connection  RSS with 1000 registered idle connections holding 10 match rules each
 *                   (libdbus, one process), 1.5 s after the last AddMatch reply, minus the RSS
 *                   of the same bus before the first client, / 1000. Also the marginal cost
 *                   between 100 and 1000 connections, which leaves out one-time growth.
 *   scenarios       each scenario's RSS and HWM at the end of its drive (median), divided by
 *                   the bus's idle RSS. Target for ferrybus: ≤ 2×.
 *
 * Part of the default run; `--only=memory` runs it alone.
 */
import type { BusName } from './buses.js';
import { startBenchBus } from './buses.js';
import { Peers } from './clients.js';
import { memory } from './proc.js';
import { SCALE_LIMITS, spread, type Spread } from './scale.js';
import { startLongRunning } from '../test/harness/long-running.js';

const MiB = 1024;
/** Target: ferrybus idle RSS at most this much above a bare node process. */
export const IDLE_BUDGET_KIB = 16 * MiB;
/** Target: a scenario's RSS and HWM at most this many times the idle RSS. */
export const SCENARIO_RSS_FACTOR = 2;

const SETTLE_IDLE_MS = 1000;
const SETTLE_CONNECTIONS_MS = 1500;

export interface PerConnectionRun {
  rep: number;
  /** RSS before the first client, with `first` connections, with all `connections`. */
  r0KiB: number;
  rFirstKiB: number;
  rAllKiB: number;
  hwmKiB: number;
  /** (rAll − r0) / connections */
  perConnKiB: number;
  /** (rAll − rFirst) / (connections − first) */
  marginalKiB: number;
  error?: string;
}

export interface ScenarioMemory {
  scenario: string;
  bus: BusName;
  rssKiB: number;
  hwmKiB: number;
  rssOverIdle: number;
  hwmOverIdle: number;
  /** ferrybus only: both ratios within SCENARIO_RSS_FACTOR. */
  ok?: boolean;
}

export interface MemoryResult {
  method: string;
  reps: number;
  connections: number;
  firstConnections: number;
  rulesPerConnection: number;
  bareNode: Spread;
  idle: Partial<Record<BusName, Spread>>;
  perConnection: Partial<Record<BusName, { perConnKiB: Spread; marginalKiB: Spread; runs: PerConnectionRun[] }>>;
  idleVerdict?: { ferrybusIdleKiB: number; bareNodeKiB: number; budgetKiB: number; overBareNodeKiB: number; ok: boolean };
  /** Filled in by attachScenarioMemory from the run's scenario results. */
  scenarios?: ScenarioMemory[];
  errors: string[];
}

export interface MemoryOptions {
  reps: number;
  buses: readonly BusName[];
  nodeFlags: string[];
  connections?: number;
  rules?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function bareNodeKiB(): Promise<number> {
  const p = startLongRunning(process.execPath, ['-e', 'setInterval(()=>{},1000)']);
  try {
    await sleep(SETTLE_IDLE_MS);
    return memory(p.pid).rssKiB;
  } finally {
    await p.stop();
  }
}

async function idleKiB(bus: BusName, nodeFlags: string[]): Promise<number> {
  const b = await startBenchBus(bus, { nodeFlags });
  try {
    await sleep(SETTLE_IDLE_MS);
    return memory(b.pid).rssKiB;
  } finally {
    await b.stop();
  }
}

async function perConnection(bus: BusName, nodeFlags: string[], rep: number, connections: number, first: number, rules: number): Promise<PerConnectionRun> {
  const b = await startBenchBus(bus, { nodeFlags, limits: SCALE_LIMITS });
  const peers: Peers[] = [];
  try {
    await sleep(SETTLE_IDLE_MS);
    const r0 = memory(b.pid).rssKiB;
    peers.push(await Peers.start(b, { connections: first, rules, readyTimeoutMs: 120_000 }));
    await sleep(SETTLE_CONNECTIONS_MS);
    const rFirst = memory(b.pid).rssKiB;
    peers.push(await Peers.start(b, { connections: connections - first, rules, readyTimeoutMs: 120_000 }));
    await sleep(SETTLE_CONNECTIONS_MS);
    const all = memory(b.pid);
    const lost = peers.find((p) => p.proc.exit);
    return {
      rep,
      r0KiB: r0,
      rFirstKiB: rFirst,
      rAllKiB: all.rssKiB,
      hwmKiB: all.hwmKiB,
      perConnKiB: (all.rssKiB - r0) / connections,
      marginalKiB: (all.rssKiB - rFirst) / (connections - first),
      ...(lost ? { error: `peers exited: ${lost.proc.stderr.trim().split('\n')[0]}` } : {}),
    };
  } finally {
    await Promise.all(peers.map((p) => p.stop()));
    await b.stop();
  }
}

export async function measureMemory(o: MemoryOptions): Promise<MemoryResult> {
  const connections = o.connections ?? 1000;
  const first = Math.max(1, Math.round(connections / 10));
  const rules = o.rules ?? 10;
  const bare: number[] = [];
  const idle = new Map<BusName, number[]>(o.buses.map((b) => [b, []]));
  const perConn = new Map<BusName, PerConnectionRun[]>(o.buses.map((b) => [b, []]));
  const errors: string[] = [];
  console.log(`\nmemory: idle RSS (1 s after listening), then ${connections} connections × ${rules} match rules; ${o.reps} repetitions`);
  for (let rep = 0; rep < o.reps; rep++) {
    const order = o.buses.map((_, i) => o.buses[(i + rep) % o.buses.length]!);
    bare.push(await bareNodeKiB());
    for (const bus of order) {
      try {
        idle.get(bus)!.push(await idleKiB(bus, o.nodeFlags));
      } catch (err) {
        errors.push(`idle ${bus} rep ${rep + 1}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    for (const bus of order) {
      let run: PerConnectionRun;
      try {
        run = await perConnection(bus, o.nodeFlags, rep, connections, first, rules);
      } catch (err) {
        run = { rep, r0KiB: NaN, rFirstKiB: NaN, rAllKiB: NaN, hwmKiB: NaN, perConnKiB: NaN, marginalKiB: NaN, error: (err as Error).message.split('\n').slice(0, 4).join(' | ') };
      }
      if (run.error) errors.push(`${connections} connections on ${bus} rep ${rep + 1}: ${run.error}`);
      perConn.get(bus)!.push(run);
      console.log(
        `  rep ${rep + 1} memory ${bus.padEnd(12)} idle ${((idle.get(bus)!.at(-1) ?? NaN) / MiB).toFixed(1)} MiB  ` +
          `0 → ${first} → ${connections} conns: ${(run.r0KiB / MiB).toFixed(1)} → ${(run.rFirstKiB / MiB).toFixed(1)} → ${(run.rAllKiB / MiB).toFixed(1)} MiB ` +
          `(${run.perConnKiB.toFixed(2)} KiB/conn)${run.error ? `  ERROR: ${run.error}` : ''}`,
      );
    }
  }
  const result: MemoryResult = {
    method:
      'VmRSS of the routing process; idle: fresh bus, 1 s after it printed its address, no client; bare node: ' +
      '`node -e "setInterval(()=>{},1000)"` after 1 s; per connection: (RSS with N registered connections holding R match ' +
      'rules each, 1.5 s after the last AddMatch reply) − (RSS of the same bus before its first client), / N; marginal: ' +
      `the same between N/10 and N connections; no GC forced; ferrybus and dbus-daemon on the permissive config with ${Object.entries(SCALE_LIMITS).map(([k, v]) => `${k} ${v}`).join(', ')} for the connections; median (min–max) over repetitions`,
    reps: o.reps,
    connections,
    firstConnections: first,
    rulesPerConnection: rules,
    bareNode: spread(bare, 0),
    idle: Object.fromEntries([...idle].map(([b, xs]) => [b, spread(xs, 0)])),
    perConnection: Object.fromEntries(
      [...perConn].map(([b, runs]) => {
        const ok = runs.filter((r) => !r.error);
        return [b, { perConnKiB: spread(ok.map((r) => r.perConnKiB), 2), marginalKiB: spread(ok.map((r) => r.marginalKiB), 2), runs }];
      }),
    ),
    errors,
  };
  const f = result.idle.ferrybus?.median;
  if (f !== undefined && Number.isFinite(f)) {
    const budget = result.bareNode.median + IDLE_BUDGET_KIB;
    result.idleVerdict = { ferrybusIdleKiB: f, bareNodeKiB: result.bareNode.median, budgetKiB: budget, overBareNodeKiB: f - result.bareNode.median, ok: f <= budget };
  }
  return result;
}

/** Minimal view of run.ts's scenario results. */
export interface ScenarioMemoryInput {
  id: string;
  summary: Partial<Record<BusName, { n: number; rssKiB: number; hwmKiB: number }>>;
}

/** Adds every measured scenario's RSS and HWM over the bus's idle RSS. */
export function attachScenarioMemory(r: MemoryResult, scenarios: readonly ScenarioMemoryInput[]): void {
  const rows: ScenarioMemory[] = [];
  for (const s of scenarios) {
    for (const [bus, m] of Object.entries(s.summary) as [BusName, { n: number; rssKiB: number; hwmKiB: number }][]) {
      const idle = r.idle[bus]?.median;
      if (!m || m.n === 0 || idle === undefined || !Number.isFinite(idle) || !Number.isFinite(m.rssKiB)) continue;
      const row: ScenarioMemory = {
        scenario: s.id,
        bus,
        rssKiB: m.rssKiB,
        hwmKiB: m.hwmKiB,
        rssOverIdle: Math.round((m.rssKiB / idle) * 100) / 100,
        hwmOverIdle: Math.round((m.hwmKiB / idle) * 100) / 100,
      };
      if (bus === 'ferrybus') row.ok = row.rssOverIdle <= SCENARIO_RSS_FACTOR && row.hwmOverIdle <= SCENARIO_RSS_FACTOR;
      rows.push(row);
    }
  }
  r.scenarios = rows;
}

const mib = (kib: number | undefined, d = 1) => (kib !== undefined && Number.isFinite(kib) ? (kib / MiB).toFixed(d) : '—');
const spreadMiB = (s: Spread | undefined) => (s && Number.isFinite(s.median) ? `${mib(s.median)} (${mib(s.min)}–${mib(s.max)})` : '—');
const spreadKiB = (s: Spread | undefined) => (s && Number.isFinite(s.median) ? `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : '—');
const BUS_ORDER: BusName[] = ['ferrybus', 'dbus-daemon', 'dbus-broker'];

function idleRows(r: MemoryResult): string[][] {
  const rows = [['bare node (`node -e "setInterval(()=>{},1000)"`)', spreadMiB(r.bareNode), '—']];
  for (const b of BUS_ORDER) {
    const s = r.idle[b];
    if (!s) continue;
    rows.push([b, spreadMiB(s), Number.isFinite(s.median) ? `${mib(s.median - r.bareNode.median)}` : '—']);
  }
  return rows;
}

function verdictLine(r: MemoryResult): string {
  const v = r.idleVerdict;
  if (!v) return 'ferrybus idle: not measured';
  return `ferrybus idle ${mib(v.ferrybusIdleKiB)} MiB = bare node ${mib(v.bareNodeKiB)} MiB + ${mib(v.overBareNodeKiB)} MiB; ` +
    `target ≤ bare node + ${IDLE_BUDGET_KIB / MiB} MiB (${mib(v.budgetKiB)} MiB): ${v.ok ? 'MET' : 'NOT MET'}`;
}

function perConnRows(r: MemoryResult): string[][] {
  const rows: string[][] = [];
  for (const b of BUS_ORDER) {
    const p = r.perConnection[b];
    if (!p) continue;
    const ok = p.runs.filter((x) => !x.error);
    const med = (f: (x: PerConnectionRun) => number) => spread(ok.map(f), 0).median;
    rows.push([b, spreadKiB(p.perConnKiB), spreadKiB(p.marginalKiB), `${mib(med((x) => x.r0KiB))} → ${mib(med((x) => x.rFirstKiB))} → ${mib(med((x) => x.rAllKiB))}`]);
  }
  return rows;
}

/** The issue's target: ferrybus's per-connection increment at most dbus-daemon's, side by side. */
function perConnVerdictLine(r: MemoryResult): string {
  const f = r.perConnection.ferrybus?.perConnKiB.median;
  const d = r.perConnection['dbus-daemon']?.perConnKiB.median;
  if (f === undefined || d === undefined || !Number.isFinite(f) || !Number.isFinite(d)) return 'ferrybus per connection: not measured beside dbus-daemon';
  return `ferrybus ${f.toFixed(2)} KiB per connection / dbus-daemon ${d.toFixed(2)} KiB = ${(f / d).toFixed(2)}×; target ≤ dbus-daemon's: ${f <= d ? 'MET' : 'NOT MET'}`;
}

function scenarioRows(r: MemoryResult): string[][] {
  return (r.scenarios ?? [])
    .filter((s) => s.bus === 'ferrybus')
    .map((s) => [s.scenario, mib(s.rssKiB), mib(s.hwmKiB), `${s.rssOverIdle.toFixed(2)}×`, `${s.hwmOverIdle.toFixed(2)}×`, s.ok ? 'yes' : '**no**']);
}

function mdTable(head: string[], rows: string[][]): string[] {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)];
}

/** Markdown tables of the memory section, for bench/README.md. */
export function memoryMarkdown(r: MemoryResult): string {
  const out: string[] = [];
  out.push(`**Idle RSS** (fresh bus, 1 s after listening, no client; MiB, median (min–max) of ${r.reps})`, '');
  out.push(...mdTable(['process', 'RSS MiB', 'over bare node MiB'], idleRows(r)), '', verdictLine(r), '');
  out.push(`**Per connection** (${r.connections} registered idle connections × ${r.rulesPerConnection} match rules; KiB per connection)`, '');
  out.push(...mdTable(['bus', `(RSS@${r.connections} − RSS@0) / ${r.connections}`, `marginal ${r.firstConnections}→${r.connections}`, `RSS MiB @0 → @${r.firstConnections} → @${r.connections}`], perConnRows(r)), '', perConnVerdictLine(r), '');
  const sc = scenarioRows(r);
  if (sc.length > 0) {
    out.push(`**ferrybus RSS at the end of each scenario over its idle RSS** (target ≤ ${SCENARIO_RSS_FACTOR}×)`, '');
    out.push(...mdTable(['scenario', 'RSS MiB', 'HWM MiB', 'RSS / idle', 'HWM / idle', `≤ ${SCENARIO_RSS_FACTOR}×`], sc), '');
  }
  if (r.errors.length > 0) out.push(`Errors: ${r.errors.join('; ')}`, '');
  return out.join('\n');
}

function printRows(head: string[], rows: string[][]): void {
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  for (const row of all) console.log('  ' + row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

export function printMemory(r: MemoryResult): void {
  console.log(`\n(memory) idle RSS — MiB, median (min–max) of ${r.reps}`);
  printRows(['process', 'RSS MiB', 'over bare node'], idleRows(r).map((row) => [row[0]!.replace(/`/g, ''), row[1]!, row[2]!]));
  console.log(`  ${verdictLine(r)}`);
  console.log(`\n(memory) per connection — ${r.connections} registered idle connections × ${r.rulesPerConnection} match rules, KiB/connection`);
  printRows(['bus', `(RSS@${r.connections}−RSS@0)/${r.connections}`, `marginal ${r.firstConnections}→${r.connections}`, 'RSS MiB @0 → @first → @all'], perConnRows(r));
  const sc = scenarioRows(r);
  if (sc.length > 0) {
    console.log(`\n(memory) ferrybus RSS/HWM at the end of each scenario over its idle RSS — target ≤ ${SCENARIO_RSS_FACTOR}×`);
    printRows(['scenario', 'RSS MiB', 'HWM MiB', 'RSS/idle', 'HWM/idle', 'ok'], sc.map((row) => row.map((c) => c.replace(/\*/g, ''))));
  }
  if (r.errors.length > 0) console.log(`  memory errors: ${r.errors.join('; ')}`);
}
