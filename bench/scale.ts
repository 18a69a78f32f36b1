/**
 * Scale: does a bus's cost per message grow with what its peers hold?
 *
 *   fanout-scale-N  N connected peers, 10 match rules each; only 10 of them (one rule each)
 *                   match the emitted signal, every other rule differs in member, interface,
 *                   path or arg0. Cost: bus CPU per delivered signal (count × 10).
 *   names-scale-N   N idle peers owning one well-known name each, plus the echo service;
 *                   dbus-test-tool spam --queue=1 → echo. Cost: bus CPU per routed message.
 *
 * Part of the default run (as scenarios, so --only, --reps and --scale apply); the scale table
 * and one PNG per family (bench/plot.ts) are made from their results.
 */
import path from 'node:path';
import { type BusName, REPO_ROOT } from './buses.js';
import { Peers } from './clients.js';
import { writePlot } from './plot.js';
import { round } from './proc.js';
import { prepareFanOut, spamScenario, type Scenario } from './scenarios.js';

export const SCALE_PEERS = [10, 100, 1000] as const;

/**
 * ferrybus and dbus-daemon allow 256 connections per user by default (dbus-daemon's compiled-in
 * system limits, which a config without <limit> gets); the bench connects 1000+ as one user.
 * dbus-broker runs with the harness controller's quotas (50 000 matches, 10^6 objects per user).
 */
export const SCALE_LIMITS: Readonly<Record<string, number>> = {
  max_connections_per_user: 4096,
  max_completed_connections: 4096,
};

/** Subscribers whose rule matches, in every fanout-scale scenario. */
const MATCHING = 10;
const RULES = 10;

function fanoutScale(n: number): Scenario {
  return {
    id: `fanout-scale-${n}`,
    title: `signal to ${MATCHING} of ${n} peers, ${RULES} match rules each`,
    unit: 'msg',
    params: { count: 20_000, peers: n, matching: MATCHING, rules: RULES, window: 128 },
    scaled: ['count'],
    describe:
      `libdbus clients (bench/clients/dbus-bench-client.c): \`peers\` connections, each with \`rules\` match rules; ` +
      `\`matching\` of them are subscriber processes whose first rule matches the emitted signal, the other ` +
      `\`peers\`−\`matching\` connections are held by one process; every other rule differs from the signal in ` +
      `member, interface, path or arg0 (in turn). One emitter, a GetId round trip every \`window\` signals. ` +
      `Routed messages = count × matching deliveries; the drive checks that no other connection received one.`,
    limits: SCALE_LIMITS,
    usesBenchClient: true,
    prepare: (bus, p) =>
      prepareFanOut(bus, { subscribers: p.matching!, rules: p.rules!, idlePeers: p.peers! - p.matching!, window: p.window! }),
  };
}

function namesScale(n: number): Scenario {
  const base = spamScenario(
    `names-scale-${n}`,
    `round trip with ${n} idle name owners`,
    { count: 30_000, queue: 1, names: n },
    () => undefined,
    `\`names\` idle libdbus connections (one process, bench/clients/dbus-bench-client.c) owning one well-known ` +
      `name each, plus the echo service; dbus-test-tool spam --queue=1 → dbus-test-tool echo; routed messages = 2 × count`,
  );
  return {
    ...base,
    limits: SCALE_LIMITS,
    usesBenchClient: true,
    async prepare(bus, p) {
      const idle = await Peers.start(bus, { connections: p.names!, names: 'com.example.Idle', readyTimeoutMs: 120_000 });
      try {
        const inner = await base.prepare(bus, p);
        return {
          async drive(count) {
            const r = await inner.drive(count);
            if (idle.proc.exit) r.errors.push(`the idle name owners exited: ${idle.proc.stderr.trim().split('\n')[0]}`);
            return r;
          },
          async cleanup() {
            await inner.cleanup();
            await idle.stop();
          },
        };
      } catch (err) {
        await idle.stop();
        throw err;
      }
    },
  };
}

export const SCALE_SCENARIOS: readonly Scenario[] = [...SCALE_PEERS.map(fanoutScale), ...SCALE_PEERS.map(namesScale)];

/** What run.ts keeps per scenario; only these fields are read here. */
export interface ScenarioRuns {
  id: string;
  runs: ReadonlyArray<{ bus: BusName; cost: number; errors: readonly string[] }>;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  /** Every successful run's value, in run order. */
  runs: number[];
}

export interface ScalePoint {
  n: number;
  scenario: string;
  perBus: Partial<Record<BusName, Spread>>;
}

export interface ScaleFamily {
  title: string;
  xLabel: string;
  unit: string;
  points: ScalePoint[];
  plot?: string;
  plotError?: string;
}

export interface ScaleResult {
  method: string;
  fanout?: ScaleFamily;
  names?: ScaleFamily;
}

export function spread(xs: readonly number[], digits = 4): Spread {
  const ok = xs.filter((x) => Number.isFinite(x));
  const s = [...ok].sort((a, b) => a - b);
  const m = s.length >> 1;
  const median = s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return { median: round(median, digits), min: round(s[0] ?? NaN, digits), max: round(s[s.length - 1] ?? NaN, digits), runs: ok.map((x) => round(x, digits)) };
}

const FAMILIES = {
  fanout: {
    prefix: 'fanout-scale-',
    title: 'signal to 10 matching subscribers among N peers (10 match rules each)',
    xLabel: 'connected peers, 10 match rules each',
    unit: 'bus CPU s per 100k delivered signals',
  },
  names: {
    prefix: 'names-scale-',
    title: 'round trip (1 in flight) with N idle peers owning a name each',
    xLabel: 'idle peers owning a well-known name',
    unit: 'bus CPU s per 100k routed messages',
  },
} as const;

/** The scale families from the scenario results of one run (undefined when none was run). */
export function scaleResult(scenarios: readonly ScenarioRuns[], buses: readonly BusName[]): ScaleResult | undefined {
  const out: ScaleResult = {
    method:
      'median (min–max) over repetitions of the scale scenarios\' CPU cost (runs with client errors excluded); ' +
      `ferrybus and dbus-daemon run the permissive config with ${Object.entries(SCALE_LIMITS).map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
      'dbus-broker runs with the harness controller\'s per-user quotas',
  };
  for (const [key, f] of Object.entries(FAMILIES) as [keyof typeof FAMILIES, (typeof FAMILIES)[keyof typeof FAMILIES]][]) {
    const points: ScalePoint[] = [];
    for (const s of scenarios) {
      if (!s.id.startsWith(f.prefix)) continue;
      const perBus: Partial<Record<BusName, Spread>> = {};
      for (const bus of buses) {
        const runs = s.runs.filter((r) => r.bus === bus);
        if (runs.length > 0) perBus[bus] = spread(runs.filter((r) => r.errors.length === 0).map((r) => r.cost));
      }
      points.push({ n: Number(s.id.slice(f.prefix.length)), scenario: s.id, perBus });
    }
    if (points.length > 0) out[key] = { title: f.title, xLabel: f.xLabel, unit: f.unit, points: points.sort((a, b) => a.n - b.n) };
  }
  return out.fanout || out.names ? out : undefined;
}

/**
 * Writes one PNG per family into `dir`: `<prefix>scale-fanout.png`, `<prefix>scale-names.png`
 * (x: peers, log scale; y: CPU per message; one line per bus). Records the file or why not.
 */
export function writeScalePlots(r: ScaleResult, dir: string, prefix = ''): void {
  for (const key of ['fanout', 'names'] as const) {
    const f = r[key];
    if (!f) continue;
    const file = path.join(dir, `${prefix}scale-${key}.png`);
    const buses = [...new Set(f.points.flatMap((p) => Object.keys(p.perBus)))] as BusName[];
    const error = writePlot({
      file,
      title: f.title,
      xLabel: f.xLabel,
      yLabel: f.unit,
      logX: true,
      series: buses.map((bus) => ({
        name: bus,
        points: f.points.flatMap((p) => (Number.isFinite(p.perBus[bus]?.median) ? [[p.n, p.perBus[bus]!.median] as const] : [])),
      })),
    });
    if (error) f.plotError = error;
    else f.plot = file;
  }
}

const fmt = (x: number | undefined, d = 3) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '—');
const cell = (s: Spread | undefined) => (s && Number.isFinite(s.median) ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : '—');
const ratio = (a: Spread | undefined, b: Spread | undefined) => (a && b && b.median > 0 ? `${(a.median / b.median).toFixed(2)}×` : '—');

function familyRows(f: ScaleFamily, buses: readonly BusName[]): string[][] {
  const rows = f.points.map((p) => [
    String(p.n),
    ...buses.map((b) => cell(p.perBus[b])),
    ...(buses.includes('ferrybus') ? buses.filter((b) => b !== 'ferrybus').map((b) => ratio(p.perBus.ferrybus, p.perBus[b])) : []),
  ]);
  if (f.points.length >= 2) {
    const first = f.points[0]!;
    const last = f.points[f.points.length - 1]!;
    rows.push([
      `growth ${last.n}/${first.n}`,
      ...buses.map((b) => ratio(last.perBus[b], first.perBus[b])),
      ...(buses.includes('ferrybus') ? buses.filter((b) => b !== 'ferrybus').map(() => '') : []),
    ]);
  }
  return rows;
}

function busesOf(r: ScaleResult): BusName[] {
  const order: BusName[] = ['ferrybus', 'dbus-daemon', 'dbus-broker'];
  const seen = new Set<string>();
  for (const f of [r.fanout, r.names]) for (const p of f?.points ?? []) for (const b of Object.keys(p.perBus)) seen.add(b);
  return order.filter((b) => seen.has(b));
}

function header(buses: readonly BusName[], first: string): string[] {
  return [first, ...buses, ...(buses.includes('ferrybus') ? buses.filter((b) => b !== 'ferrybus').map((b) => `ferrybus/${b}`) : [])];
}

/**
 * Markdown tables of the scale section (one per family) with their plots, for bench/README.md;
 * image links are relative to `linkFrom` (default: bench/, where the README is).
 */
export function scaleMarkdown(r: ScaleResult, linkFrom = path.join(REPO_ROOT, 'bench')): string {
  const buses = busesOf(r);
  const out: string[] = [];
  for (const f of [r.fanout, r.names]) {
    if (!f) continue;
    const head = header(buses, 'N');
    out.push(`**${f.title}** — ${f.unit}, median (min–max)`, '');
    out.push(`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
    for (const row of familyRows(f, buses)) out.push(`| ${row.join(' | ')} |`);
    if (f.plot) out.push('', `![${f.title}](${path.relative(linkFrom, f.plot)})`);
    out.push('');
  }
  return out.join('\n');
}

export function printScale(r: ScaleResult): void {
  const buses = busesOf(r);
  for (const f of [r.fanout, r.names]) {
    if (!f) continue;
    console.log(`\n(scale) ${f.title} — ${f.unit}, median (min–max)`);
    const head = header(buses, 'N');
    const rows = [head, ...familyRows(f, buses)];
    const widths = head.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
    for (const row of rows) console.log('  ' + row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
    console.log(f.plot ? `  plot: ${path.relative(process.cwd(), f.plot)}` : `  no plot: ${f.plotError ?? 'not written'}`);
  }
}
