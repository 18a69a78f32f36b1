// The results section of bench/README.md, written from a run's results document: the README
// always shows the last full run, and the JSON next to it keeps every raw number.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { handoffPauseMarkdown, type HandoffPauseResult } from './handoff-pause.js';
import { memoryMarkdown, type MemoryResult } from './memory.js';
import { scaleMarkdown, type ScaleResult } from './scale.js';
import { STARTERS, type StartupResult } from './startup.js';

export const BEGIN = '<!-- results:begin (written by npm run bench; edits here are overwritten) -->';
export const END = '<!-- results:end -->';

const BUSES = ['ferrybus', 'dbus-daemon', 'dbus-broker'] as const;

interface RunLike {
  bus: string;
  cost: number;
  warmupCost: number;
  errors: string[];
}

interface ScenarioLike {
  id: string;
  title: string;
  unit: string;
  summary: Partial<Record<string, { n: number; cost: number; coldCost: number; halvesRatio?: number; userCost?: number; kernelCost?: number; rssKiB: number; hwmKiB: number }>>;
  ratios: Record<string, { cpu: number } | undefined>;
  runs: RunLike[];
}

export interface ResultsDoc {
  startedAt: string;
  durationSec: number;
  options: { reps: number; scale: number; ferrybus?: { script: string; nodeFlags: string[] } };
  machine?: Record<string, unknown>;
  versions: Record<string, string>;
  load: { before: number[]; after: number[] };
  scenarios: ScenarioLike[];
  startup?: StartupResult;
  scale?: ScaleResult;
  memory?: MemoryResult;
  handoffPause?: HandoffPauseResult;
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3));

/** "median (min–max)" of one bus's successful runs. */
function spread(runs: RunLike[], bus: string): string {
  const costs = runs.filter((r) => r.bus === bus && r.errors.length === 0).map((r) => r.cost).sort((a, b) => a - b);
  if (costs.length === 0) return '—';
  const mid = costs.length % 2 ? costs[(costs.length - 1) / 2]! : (costs[costs.length / 2 - 1]! + costs[costs.length / 2]!) / 2;
  return `${fmt(mid)} (${fmt(costs[0]!)}–${fmt(costs[costs.length - 1]!)})`;
}

function scenarioTable(doc: ResultsDoc): string {
  const rows = [
    '| scenario | ferrybus | dbus-daemon | dbus-broker | **f / dbus-daemon** | **f / dbus-broker** | ≤ 1.0× dbus-broker | ferrybus cold / steady | ferrybus 2nd half / 1st | ferrybus RSS MiB |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of doc.scenarios) {
    const f = s.summary.ferrybus;
    const toBroker = s.ratios['ferrybus/dbus-broker']?.cpu;
    const toDaemon = s.ratios['ferrybus/dbus-daemon']?.cpu;
    const unit = s.unit.includes('per connection') ? ' (ms/conn)' : '';
    rows.push(
      `| ${s.title}${unit} | ${BUSES.map((b) => spread(s.runs, b)).join(' | ')} | ${toDaemon ? `${toDaemon.toFixed(2)}×` : '—'} | ${toBroker ? `${toBroker.toFixed(2)}×` : '—'} | ${toBroker === undefined ? '—' : toBroker <= 1 ? 'yes' : 'no'} | ${f && f.cost > 0 ? `${(f.coldCost / f.cost).toFixed(2)}×` : '—'} | ${f?.halvesRatio !== undefined && Number.isFinite(f.halvesRatio) ? `${f.halvesRatio.toFixed(2)}×` : '—'} | ${f ? (f.rssKiB / 1024).toFixed(1) : '—'} |`,
    );
  }
  return rows.join('\n');
}

/**
 * The same CPU in its two parts, user space (utime) and kernel (stime), medians: where a bus
 * spends what the first table reports. Runs from before the split was recorded have none.
 */
function splitTable(doc: ResultsDoc): string | undefined {
  if (!doc.scenarios.some((s) => s.summary.ferrybus?.userCost !== undefined && Number.isFinite(s.summary.ferrybus.userCost))) return undefined;
  const part = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : fmt(x));
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0 ? '—' : `${(a / b).toFixed(2)}×`;
  const rows = [
    '| scenario | ferrybus user | ferrybus kernel | dbus-daemon user | dbus-daemon kernel | dbus-broker user | dbus-broker kernel | f / broker, user | f / broker, kernel |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const s of doc.scenarios) {
    const [f, d, b] = BUSES.map((bus) => s.summary[bus]);
    rows.push(`| ${s.title} | ${part(f?.userCost)} | ${part(f?.kernelCost)} | ${part(d?.userCost)} | ${part(d?.kernelCost)} | ${part(b?.userCost)} | ${part(b?.kernelCost)} | ${ratio(f?.userCost, b?.userCost)} | ${ratio(f?.kernelCost, b?.kernelCost)} |`);
  }
  return rows.join('\n');
}

function startupTable(r: StartupResult): string {
  const node = r.summary['node -e 0'].medianMs;
  const rows = ['| start | median ms (min–max) | / node -e 0 |', '|---|---|---|'];
  for (const s of STARTERS) {
    const x = r.summary[s];
    rows.push(`| ${s} | ${x.medianMs.toFixed(1)} (${x.minMs.toFixed(1)}–${x.maxMs.toFixed(1)}) | ${(x.medianMs / node).toFixed(2)}× |`);
  }
  const ratio = r.ratios['ferrybus (bundle)/node -e 0'];
  rows.push('', `Target: ferrybus (bundle, as deployed) ≤ 1.5× node -e 0 — **${ratio.toFixed(2)}×, ${ratio <= 1.5 ? 'met' : 'not met'}** (median of ${r.rounds} rounds).`);
  return rows.join('\n');
}

/** The whole generated section, between the markers. */
export function resultsMarkdown(doc: ResultsDoc, readmeDir: string): string {
  const v = doc.versions;
  const m = doc.machine as { cpus?: number; cpuModel?: string; memGiB?: number; kernel?: string; os?: string } | undefined;
  const machine = m ? `${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Linux ${m.kernel}, ${m.os}` : '';
  const parts = [
    BEGIN,
    '## Latest full run (bench/results/latest.json)',
    '',
    `${doc.startedAt.slice(0, 16).replace('T', ' ')} UTC, ${doc.durationSec} s, ${doc.options.reps} repetitions (medians, min–max in brackets), scale ${doc.options.scale}; ` +
      `load average ${doc.load.before.join(' ')} before, ${doc.load.after.join(' ')} after. ferrybus ${v.ferrybus} ` +
      `(${doc.options.ferrybus ? `${path.relative(path.join(readmeDir, '..'), doc.options.ferrybus.script)} ${doc.options.ferrybus.nodeFlags.join(' ')}`.trim() : ''}), ` +
      `node ${v.node}, ${v['dbus-daemon']}, ${v['dbus-broker']}, dbus-test-tool ${v['dbus-test-tool']}.${machine ? ` Machine: ${machine}.` : ''}`,
    '',
    'CPU of the routing process per 100k routed messages (connect: ms per connection); ratios are ferrybus divided by the reference. ' +
      '"2nd half / 1st": ferrybus\'s cost in the second half of the measured drive over the first (median): well below 1.00×, the JIT was still settling.',
    '',
    scenarioTable(doc),
  ];
  const split = splitTable(doc);
  if (split) {
    parts.push('', 'The same CPU split into user space (utime) and kernel (stime) of the routing process, medians ' +
      '(10 ms clock ticks: coarse for the short scenarios).', '', split);
  }
  if (doc.startup) parts.push('', '### Start-up: exec to listening', '', startupTable(doc.startup));
  if (doc.scale) parts.push('', '### Scale', '', scaleMarkdown(doc.scale, readmeDir));
  if (doc.memory) parts.push('', '### Memory', '', memoryMarkdown(doc.memory));
  if (doc.handoffPause) {
    parts.push('', '### Handoff pause', '', handoffPauseMarkdown(doc.handoffPause));
    for (const plot of doc.handoffPause.plots) parts.push(`![handoff pause](${path.relative(readmeDir, plot)})`, '');
  }
  parts.push(END);
  return parts.join('\n');
}

/** Replaces the generated section of the README (inserted before the first "## " after the intro when missing). */
export function writeReadme(doc: ResultsDoc, readme: string): void {
  const text = readFileSync(readme, 'utf8');
  const section = resultsMarkdown(doc, path.dirname(readme));
  const begin = text.indexOf(BEGIN.slice(0, 22));
  const end = text.indexOf(END);
  let next: string;
  if (begin >= 0 && end > begin) {
    next = text.slice(0, begin) + section + text.slice(end + END.length);
  } else {
    const at = text.indexOf('\n## ');
    next = at < 0 ? `${text}\n${section}\n` : `${text.slice(0, at + 1)}${section}\n\n${text.slice(at + 1)}`;
  }
  writeFileSync(readme, next);
}
