/**
 * Handoff pause: how long ferrybus stops serving while it hands itself off (snapshot, handoff
 * document, exec, the new image's start-up and adoption), against the number of connections
 * and the bytes queued inside the bus for clients that do not read. Part of `npm run bench`;
 * `npm run bench -- --only=handoff` runs it alone, `--handoff-cells=1000x16M` picks cells,
 * `--handoff-reps=N` sets the handoffs per cell.
 *
 * Per cell (connections N, queued bytes Q), on a fresh bus (startBenchBus, with a busconfig that
 * lets one uid hold N connections and Q queued bytes):
 *   - N connections from this process, each authenticated and registered (Hello): a control
 *     connection (it calls Handoff and Status, and emits the filling signals), a probe, SUBSCRIBERS
 *     subscribers and N − 2 − SUBSCRIBERS idle ones;
 *   - the subscribers add a match rule and stop reading; the control connection emits 64 KiB
 *     signals until the bus's own Status reports QueuedBytes ≥ Q (what the bus holds in user space,
 *     beyond the sockets' kernel buffers);
 *   - R handoffs, one at a time, each through org.ferrybus.Supervisor1.Handoff. Per handoff:
 *     (a) the pause the new image reports (pause_us: from the old image's snapshot to the end of
 *     adoption), (b) the longest gap between consecutive replies of a probe doing back-to-back
 *     GetId round trips around the handoff, and checks that nothing was lost: the generation went
 *     up by one, Status reports the same connection count and no more queued bytes (fewer is
 *     progress: the new image's first write may find room in a socket), and the probe got a reply
 *     after the handoff. After the cell's last handoff the subscribers read again: each must
 *     receive every signal sent, exactly once.
 * In the same run `node -e 0` is started (bench/startup.ts) and the verdict is p99 of the target
 * cell's pause / node -e 0's median start-up (the target: ≤ 2).
 */
import path from 'node:path';
import { MessageType } from '../src/wire/message.js';
import { Variant, type DBusValue } from '../src/wire/values.js';
import { type BenchBus, limitsConfig, startBenchBus } from './buses.js';
import { writePlot } from './plot.js';
import { memory, round } from './proc.js';
import { BUS_NAME, BUS_PATH, RawClient, batchOf, templateMessage } from './raw-client.js';
import { measureStartup, type StartupResult } from './startup.js';
import { median } from './stats.js';

const MiB = 1024 * 1024;
const SUPERVISOR = 'org.ferrybus.Supervisor1';
/** Subscribers that stop reading: the queued bytes are spread over them. */
const SUBSCRIBERS = 4;
const SIGNAL_BYTES = 64 * 1024;
const FILL_INTERFACE = 'org.ferrybus.Bench.Fill';
/** Every handoff call and the probe's calls may wait this long (a 128 MiB handoff takes seconds). */
const CALL_TIMEOUT_MS = 300_000;
/** Probe replies collected before the handoff call and after its reply, so the gap has both ends. */
const PROBE_MARGIN_MS = 50;
/** The bus settles between handoffs (the new image's first GC, the probe's reconnection to steady state). */
const SETTLE_MS = 250;

export const HANDOFF_CONNECTIONS = [10, 100, 1000] as const;
export const HANDOFF_QUEUED = [0, 1 * MiB, 16 * MiB, 128 * MiB] as const;
export const HANDOFF_TARGET = { connections: 1000, queuedBytes: 16 * MiB } as const;
/** The issue's target: p99 of the pause at the target cell ≤ this × node -e 0's start-up. */
export const HANDOFF_LIMIT = 2;

export interface HandoffCell {
  connections: number;
  queuedBytes: number;
  handoffs: number;
}

export interface HandoffOptions {
  quick: boolean;
  /** `NxQ` list, Q in bytes or with a K/M suffix (KiB, MiB): e.g. 1000x16M,10x0. Default: the grid. */
  cells?: string;
  /** Handoffs per cell (the target cell gets at least 20 unless given). */
  reps?: number;
  /** The run's start-up measurement, if it made one; else this section measures `node -e 0` itself. */
  startup?: StartupResult;
  /** Plots are written to `${plotBase}.png` and `${plotBase}-queued.png`. */
  plotBase: string;
  /** Node flags for ferrybus (--ferrybus-node-flags): they carry over to every image a handoff starts. */
  nodeFlags?: string[];
}

export interface HandoffSample {
  /** 1-based, within the cell. */
  handoff: number;
  generation: number;
  /** pause_us / 1000 as the new image reports it: snapshot in the old image → adoption done in the new. */
  pauseMs: number;
  /** Longest gap between consecutive probe replies around the handoff. */
  gapMs: number;
  /** Wall clock of the Handoff call (includes the preflight `handoff-check` child, run while serving). */
  callMs: number;
  probeRoundTrips: number;
  connectionsBefore: number;
  connectionsAfter: number;
  queuedBefore: number;
  queuedAfter: number;
  rssKiBAfter: number;
  /** Where the pause went, as the new image reports it (Status.LastHandoffPhases): [phase, ms]. */
  phasesMs: Array<[string, number]>;
  /** Anything that did not survive the handoff; empty when nothing was lost. */
  errors: string[];
}

export interface Stats {
  n: number;
  p50: number;
  p99: number;
  max: number;
  min: number;
  mean: number;
}

export interface HandoffCellResult extends HandoffCell {
  /** What the bus reported queued before the first handoff (≥ queuedBytes, by < one round of signals). */
  queuedActual: number;
  setupSec: number;
  rssKiBBefore: number;
  pause: Stats;
  gap: Stats;
  call: Stats;
  /** Median ms per phase of the pause over the cell's clean handoffs, in the order the phases run. */
  phasesMs: Array<[string, number]>;
  samples: HandoffSample[];
  errors: string[];
}

export interface HandoffPauseResult {
  method: string;
  target: HandoffCell & { limit: number };
  nodeStartMs: number;
  nodeStartRuns: number;
  verdict?: {
    p99PauseMs: number;
    p99GapMs: number;
    samples: number;
    ratioPause: number;
    ratioGap: number;
    pass: boolean;
    note: string;
  };
  cells: HandoffCellResult[];
  plots: string[];
  plotErrors: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Nearest-rank percentile (with 20 samples p99 is the maximum). */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function stats(xs: number[]): Stats {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return {
    n: s.length,
    p50: round(percentile(s, 50), 1),
    p99: round(percentile(s, 99), 1),
    max: round(s.length ? s[s.length - 1]! : NaN, 1),
    min: round(s.length ? s[0]! : NaN, 1),
    mean: round(s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN, 1),
  };
}

export function formatBytes(n: number): string {
  if (n === 0) return '0';
  if (n % MiB === 0) return `${n / MiB} MiB`;
  if (n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

/** Cells to run: `--handoff-cells`, else the full grid (quick: no 128 MiB, fewer handoffs). */
export function handoffCells(o: Pick<HandoffOptions, 'quick' | 'cells' | 'reps'>): HandoffCell[] {
  const reps = (c: number, q: number) => {
    const target = c === HANDOFF_TARGET.connections && q === HANDOFF_TARGET.queuedBytes;
    if (o.reps !== undefined) return o.reps;
    if (o.quick) return target ? 5 : 2;
    return target ? 20 : 5;
  };
  if (o.cells) {
    return o.cells.split(',').map((spec) => {
      const m = /^(\d+)x(\d+)([KM]?)$/i.exec(spec.trim());
      if (!m) throw new Error(`--handoff-cells: "${spec}" is not CONNECTIONSxBYTES (e.g. 1000x16M)`);
      const connections = Number(m[1]);
      const queuedBytes = Number(m[2]) * (m[3]?.toUpperCase() === 'M' ? MiB : m[3]?.toUpperCase() === 'K' ? 1024 : 1);
      if (connections < SUBSCRIBERS + 2) throw new Error(`--handoff-cells: at least ${SUBSCRIBERS + 2} connections`);
      return { connections, queuedBytes, handoffs: reps(connections, queuedBytes) };
    });
  }
  const queued = o.quick ? HANDOFF_QUEUED.filter((q) => q < 128 * MiB) : HANDOFF_QUEUED;
  return HANDOFF_CONNECTIONS.flatMap((c) => queued.map((q) => ({ connections: c, queuedBytes: q, handoffs: reps(c, q) })));
}

/** One uid holds every connection and every queued byte here: the limits must allow both. */
const config = limitsConfig({
  max_connections_per_user: 100000,
  max_completed_connections: 100000,
  max_incomplete_connections: 10000,
  max_outgoing_bytes: 1073741824,
  max_message_size: 134217728,
  auth_timeout: 240000,
});

interface BusStatus {
  generation: number;
  connections: number;
  queuedBytes: number;
  /** LastHandoffPhases in ms (empty before the first handoff). */
  phasesMs: Array<[string, number]>;
}

async function busStatus(control: RawClient): Promise<BusStatus> {
  const [m] = await control.call(BUS_NAME, BUS_PATH, SUPERVISOR, 'Status', '', [], CALL_TIMEOUT_MS);
  const get = (key: string): number => {
    const v = (m as Map<DBusValue, DBusValue>).get(key);
    if (!(v instanceof Variant)) throw new Error(`Status has no ${key}`);
    return Number(v.value as number | bigint);
  };
  const phases = (m as Map<DBusValue, DBusValue>).get('LastHandoffPhases');
  const phasesMs = phases instanceof Variant && Array.isArray(phases.value)
    ? (phases.value as DBusValue[][]).map(([name, us]) => [String(name), round(Number(us as bigint) / 1000, 2)] as [string, number])
    : [];
  return { generation: get('Generation'), connections: get('Connections'), queuedBytes: get('QueuedBytes'), phasesMs };
}

/** Back-to-back GetId round trips on one connection; the time of every reply. */
class Probe {
  readonly replies: number[] = [];
  private running: Promise<void> | undefined;
  private stopped = false;
  error: string | undefined;

  constructor(private readonly client: RawClient) {}

  start(): void {
    this.stopped = false;
    this.replies.length = 0;
    this.running = (async () => {
      while (!this.stopped) {
        try {
          await this.client.call(BUS_NAME, BUS_PATH, BUS_NAME, 'GetId', '', [], CALL_TIMEOUT_MS);
        } catch (err) {
          this.error = (err as Error).message;
          return;
        }
        this.replies.push(performance.now());
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  async repliesAfter(t: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.replies.length > 0 && this.replies[this.replies.length - 1]! > t) return true;
      if (this.error) return false;
      await sleep(5);
    }
    return false;
  }

  /** The longest gap between consecutive replies that spans any part of [t0, t1]. */
  longestGap(t0: number, t1: number): number {
    let gap = 0;
    for (let i = 1; i < this.replies.length; i++) {
      const a = this.replies[i - 1]!;
      const b = this.replies[i]!;
      if (b >= t0 && a <= t1) gap = Math.max(gap, b - a);
    }
    return gap;
  }
}

async function connectMany(socketPath: string, n: number): Promise<RawClient[]> {
  const out: RawClient[] = [];
  for (let i = 0; i < n; i += 50) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => RawClient.connect(socketPath)))));
  }
  return out;
}

/**
 * Emits 64 KiB signals until the bus reports at least `target` bytes queued for the subscribers.
 * Returns what the bus reports and how many signals were sent (each subscriber must get them all).
 */
async function fill(control: RawClient, target: number): Promise<{ queued: number; signals: number }> {
  const body = Buffer.alloc(4 + SIGNAL_BYTES, 0x5a);
  body.writeUInt32LE(SIGNAL_BYTES, 0);
  const template = templateMessage({
    type: MessageType.Signal,
    path: '/org/ferrybus/Bench',
    interface: FILL_INTERFACE,
    member: 'Fill',
    signature: 'ay',
    body,
  });
  let queued = (await busStatus(control)).queuedBytes;
  let signals = 0;
  for (let round = 0; queued < target; round++) {
    if (round > 200) throw new Error(`the bus holds ${queued} bytes after 200 rounds of signals, short of ${target}`);
    // Each signal reaches every subscriber; the sockets' kernel buffers take the first few.
    const count = Math.max(1, Math.ceil((target - queued) / (SIGNAL_BYTES * SUBSCRIBERS)));
    for (let done = 0; done < count; done += 64) {
      const k = Math.min(64, count - done);
      const first = control.nextSerial();
      for (let i = 1; i < k; i++) control.nextSerial();
      if (!control.write(batchOf(template, k, first))) await new Promise((r) => control.socket.once('drain', r));
      signals += k;
    }
    // Status is answered after the signals sent before it on this connection were routed.
    queued = (await busStatus(control)).queuedBytes;
  }
  return { queued, signals };
}

/** Lets the subscribers read again: each must receive every signal exactly once, nothing more. */
async function drain(subscribers: RawClient[], received: number[], signals: number, timeoutMs: number): Promise<string[]> {
  for (const s of subscribers) s.socket.resume();
  const deadline = performance.now() + timeoutMs;
  while (received.some((n) => n < signals) && performance.now() < deadline) await sleep(10);
  await sleep(50); // a duplicate would arrive right behind
  return received.flatMap((n, i) => (n === signals ? [] : [`subscriber ${i + 1} received ${n} of ${signals} signals after the handoffs`]));
}

async function runCell(cell: HandoffCell, nodeFlags: string[], log: (s: string) => void): Promise<HandoffCellResult> {
  const t0 = performance.now();
  const bus: BenchBus = await startBenchBus('ferrybus', { config, nodeFlags });
  const clients: RawClient[] = [];
  const errors: string[] = [];
  const samples: HandoffSample[] = [];
  let queuedActual = NaN;
  let rssKiBBefore = NaN;
  let setupSec = NaN;
  try {
    clients.push(...(await connectMany(bus.socketPath, cell.connections)));
    const [control, probeClient, ...rest] = clients as [RawClient, RawClient, ...RawClient[]];
    const subscribers = rest.slice(0, SUBSCRIBERS);
    const received = subscribers.map(() => 0);
    subscribers.forEach((s, i) => {
      s.onFrame = (frame) => {
        if (frame.length >= SIGNAL_BYTES) received[i]!++;
      };
    });
    for (const s of subscribers) {
      await s.call(BUS_NAME, BUS_PATH, BUS_NAME, 'AddMatch', 's', [`type='signal',interface='${FILL_INTERFACE}'`]);
      s.socket.pause(); // from now on the bus's bytes for it pile up
    }
    const filled = await fill(control, cell.queuedBytes);
    queuedActual = filled.queued;
    let status = await busStatus(control);
    if (status.connections !== cell.connections) errors.push(`the bus reports ${status.connections} connections, expected ${cell.connections}`);
    rssKiBBefore = memory(bus.pid).rssKiB;
    setupSec = (performance.now() - t0) / 1000;
    log(`  ${cell.connections} connections, ${formatBytes(cell.queuedBytes)} queued (bus reports ${queuedActual} B, RSS ${round(rssKiBBefore / 1024, 1)} MiB), set up in ${setupSec.toFixed(1)} s`);
    const probe = new Probe(probeClient);
    for (let h = 1; h <= cell.handoffs; h++) {
      const before = status;
      probe.start();
      await sleep(PROBE_MARGIN_MS);
      const c0 = performance.now();
      const [generation, pauseUs] = await control.call(BUS_NAME, BUS_PATH, SUPERVISOR, 'Handoff', 's', [''], CALL_TIMEOUT_MS);
      const c1 = performance.now();
      const sampleErrors: string[] = [];
      if (!(await probe.repliesAfter(c1, 10_000))) sampleErrors.push(`the probe got no reply after the handoff${probe.error ? `: ${probe.error}` : ''}`);
      await sleep(PROBE_MARGIN_MS);
      await probe.stop();
      status = await busStatus(control);
      if (Number(generation) !== before.generation + 1) sampleErrors.push(`generation ${before.generation} → ${String(generation)}`);
      if (status.generation !== Number(generation)) sampleErrors.push(`Status says generation ${status.generation}, Handoff said ${String(generation)}`);
      if (status.connections !== before.connections) sampleErrors.push(`connections ${before.connections} → ${status.connections}`);
      // Fewer is allowed (the new image's first write may find room in a socket); more is not.
      if (status.queuedBytes > before.queuedBytes) sampleErrors.push(`queued bytes ${before.queuedBytes} → ${status.queuedBytes}`);
      const sample: HandoffSample = {
        handoff: h,
        generation: Number(generation),
        pauseMs: round(Number(pauseUs as bigint) / 1000, 2),
        gapMs: round(probe.longestGap(c0, c1), 2),
        callMs: round(c1 - c0, 1),
        probeRoundTrips: probe.replies.length,
        connectionsBefore: before.connections,
        connectionsAfter: status.connections,
        queuedBefore: before.queuedBytes,
        queuedAfter: status.queuedBytes,
        rssKiBAfter: memory(bus.pid).rssKiB,
        phasesMs: status.phasesMs,
        errors: sampleErrors,
      };
      samples.push(sample);
      log(`    handoff ${h}/${cell.handoffs}: pause ${sample.pauseMs.toFixed(1)} ms, probe gap ${sample.gapMs.toFixed(1)} ms, call ${sample.callMs.toFixed(0)} ms` +
        `${sampleErrors.length ? `  LOST: ${sampleErrors.join('; ')}` : ''}`);
      await sleep(SETTLE_MS);
    }
    const drained = await drain(subscribers, received, filled.signals, 120_000);
    errors.push(...drained);
    if (drained.length) log(`    LOST: ${drained.join('; ')}`);
  } catch (err) {
    errors.push((err as Error).message.split('\n').slice(0, 4).join('\n'));
    log(`    ERROR: ${errors[errors.length - 1]}`);
  } finally {
    for (const c of clients) c.close();
    await bus.stop();
  }
  const ok = samples.filter((s) => s.errors.length === 0);
  return {
    ...cell,
    queuedActual,
    setupSec: round(setupSec, 2),
    rssKiBBefore,
    pause: stats(ok.map((s) => s.pauseMs)),
    gap: stats(ok.map((s) => s.gapMs)),
    call: stats(ok.map((s) => s.callMs)),
    phasesMs: medianPhases(ok),
    samples,
    errors,
  };
}

/** Per phase, the median over the samples that report it, in the order of the first sample. */
function medianPhases(samples: readonly HandoffSample[]): Array<[string, number]> {
  const names = samples[0]?.phasesMs.map(([name]) => name) ?? [];
  return names.map((name) => {
    const values = samples.flatMap((s) => s.phasesMs.filter(([n]) => n === name).map(([, ms]) => ms));
    return [name, round(median(values), 2)];
  });
}

export async function measureHandoffPause(o: HandoffOptions, log: (s: string) => void = console.log): Promise<HandoffPauseResult> {
  const cells = handoffCells(o);
  log(`\nhandoff pause: ${cells.length} cells, ${cells.reduce((a, c) => a + c.handoffs, 0)} handoffs`);
  const results: HandoffCellResult[] = [];
  for (const cell of cells) results.push(await runCell(cell, o.nodeFlags ?? [], log));
  const startup = o.startup ?? (await measureStartup(o.quick ? 3 : 10));
  const node = startup.summary['node -e 0'];
  const target = results.find((c) => c.connections === HANDOFF_TARGET.connections && c.queuedBytes === HANDOFF_TARGET.queuedBytes);
  const result: HandoffPauseResult = {
    method:
      'fresh ferrybus per cell (startBenchBus with a busconfig raising max_connections_per_user, max_completed_connections, ' +
      `max_outgoing_bytes to 1 GiB); N raw connections from one process (control, probe, ${SUBSCRIBERS} subscribers that add a match rule ` +
      `and stop reading, idle ones), ${SIGNAL_BYTES / 1024} KiB signals until Status.QueuedBytes ≥ Q; then handoffs one at a time via ` +
      'org.ferrybus.Supervisor1.Handoff: pauseMs = the pause_us the new image reports (old image\'s snapshot → adoption done), ' +
      'gapMs = longest gap between replies of a probe doing back-to-back GetId round trips around the handoff; a handoff counts only ' +
      'if generation+1, the same connection count and no more queued bytes in Status (fewer: the new image found room in a socket), and a probe ' +
      'reply after it; after the last handoff the subscribers read again and each must receive every signal exactly once. Percentiles are nearest-rank ' +
      '(with 20 samples p99 is the maximum). nodeStartMs: median start of `node -e 0` (bench/startup.ts) in the same run.',
    target: { ...HANDOFF_TARGET, handoffs: target?.handoffs ?? 0, limit: HANDOFF_LIMIT },
    nodeStartMs: node.medianMs,
    nodeStartRuns: node.runs,
    cells: results,
    plots: [],
    plotErrors: [],
  };
  if (target && target.pause.n > 0) {
    const ratioPause = round(target.pause.p99 / node.medianMs, 2);
    result.verdict = {
      p99PauseMs: target.pause.p99,
      p99GapMs: target.gap.p99,
      samples: target.pause.n,
      ratioPause,
      ratioGap: round(target.gap.p99 / node.medianMs, 2),
      pass: ratioPause <= HANDOFF_LIMIT,
      note: target.pause.n <= 100 ? `with ${target.pause.n} samples p99 is the ${target.pause.n <= 50 ? 'maximum' : 'second largest'}` : '',
    };
  }
  result.plots = plots(result, o.plotBase);
  return result;
}

export function plots(r: HandoffPauseResult, base: string): string[] {
  const written: string[] = [];
  const limit = HANDOFF_LIMIT * r.nodeStartMs;
  const byConn = [...new Set(r.cells.map((c) => c.connections))].sort((a, b) => a - b);
  const byQueued = [...new Set(r.cells.map((c) => c.queuedBytes))].sort((a, b) => a - b);
  const p50 = (c: HandoffCellResult) => c.pause.p50;
  const ok = (c: HandoffCellResult) => Number.isFinite(p50(c));
  const threshold = (xs: number[]) => ({ name: `target: ${HANDOFF_LIMIT} × node -e 0 (${limit.toFixed(0)} ms)`, points: xs.length > 1 ? [[xs[0]!, limit], [xs[xs.length - 1]!, limit]] as const : [] });
  const specs = [
    {
      file: `${base}.png`,
      title: `ferrybus handoff pause (p50 of the pause the bus reports) against connections; node -e 0 starts in ${r.nodeStartMs.toFixed(0)} ms`,
      xLabel: 'connections',
      logX: true,
      series: [
        ...byQueued.map((q) => ({
          name: `${formatBytes(q)} queued`,
          points: r.cells.filter((c) => c.queuedBytes === q && ok(c)).sort((a, b) => a.connections - b.connections).map((c) => [c.connections, p50(c)] as const),
        })),
        threshold(byConn),
      ],
    },
    {
      file: `${base}-queued.png`,
      title: `ferrybus handoff pause (p50 of the pause the bus reports) against queued bytes; node -e 0 starts in ${r.nodeStartMs.toFixed(0)} ms`,
      xLabel: 'bytes queued for clients that do not read (MiB)',
      logX: false,
      series: [
        ...byConn.map((n) => ({
          name: `${n} connections`,
          points: r.cells.filter((c) => c.connections === n && ok(c)).sort((a, b) => a.queuedBytes - b.queuedBytes).map((c) => [c.queuedBytes / MiB, p50(c)] as const),
        })),
        threshold(byQueued.map((q) => q / MiB)),
      ],
    },
  ];
  for (const s of specs) {
    // A line needs two points: with one, the plot against that axis says nothing.
    if (!s.series.some((x) => !x.name.startsWith('target') && x.points.length > 1)) continue;
    const why = writePlot({ ...s, yLabel: 'pause ms', logY: false });
    if (why) r.plotErrors.push(`${path.basename(s.file)}: ${why}`);
    else written.push(s.file);
  }
  return written;
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '—');

function rows(r: HandoffPauseResult): string[][] {
  return r.cells.map((c) => {
    const lost = c.samples.filter((s) => s.errors.length > 0).length;
    return [
      String(c.connections),
      formatBytes(c.queuedBytes),
      f1(c.pause.p50), f1(c.pause.p99), f1(c.pause.max),
      f1(c.gap.p50), f1(c.gap.p99), f1(c.gap.max),
      `${c.pause.n}${lost ? ` (+${lost} lost)` : ''}${c.errors.length ? ' ERROR' : ''}`,
    ];
  });
}

const HEAD = ['connections', 'queued', 'pause p50', 'p99', 'max', 'probe gap p50', 'p99', 'max', 'handoffs'];

function verdictLine(r: HandoffPauseResult): string {
  const v = r.verdict;
  if (!v) return `target cell (${HANDOFF_TARGET.connections} connections, ${formatBytes(HANDOFF_TARGET.queuedBytes)}) not measured; node -e 0 starts in ${r.nodeStartMs.toFixed(1)} ms`;
  return `target (${HANDOFF_TARGET.connections} connections, ${formatBytes(HANDOFF_TARGET.queuedBytes)}): p99 pause ${v.p99PauseMs.toFixed(1)} ms / node -e 0 ${r.nodeStartMs.toFixed(1)} ms = ` +
    `${v.ratioPause.toFixed(2)}× (target ≤ ${HANDOFF_LIMIT}×: ${v.pass ? 'met' : 'NOT met'}); probe gap p99 ${v.p99GapMs.toFixed(1)} ms = ${v.ratioGap.toFixed(2)}×` +
    `${v.note ? `; ${v.note}` : ''}`;
}

/** Where the pause went: one row per phase, one column per cell that reports phases (median ms). */
function phaseTable(r: HandoffPauseResult): string[][] | undefined {
  const cells = r.cells.filter((c) => c.phasesMs.length > 0);
  if (cells.length === 0) return undefined;
  const names = cells[0]!.phasesMs.map(([name]) => name);
  const head = ['phase', ...cells.map((c) => `${c.connections} × ${formatBytes(c.queuedBytes)}`)];
  const body = names.map((name) => [name, ...cells.map((c) => f1(c.phasesMs.find(([n]) => n === name)?.[1] ?? NaN))]);
  const total = ['sum of medians', ...cells.map((c) => f1(c.phasesMs.reduce((a, [, ms]) => a + ms, 0)))];
  return [head, ...body, total];
}

/** Prints the table and the verdict; false when a cell failed or a handoff lost something. */
export function printHandoffPause(r: HandoffPauseResult): boolean {
  const table = [HEAD, ...rows(r)];
  const widths = HEAD.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  console.log('\n(handoff) pause against connections and queued bytes — ms; pause = pause_us the new image reports, probe gap = longest gap between back-to-back GetId replies');
  for (const row of table) console.log('  ' + row.map((x, i) => (i < 2 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  '));
  console.log(`  ${verdictLine(r)}`);
  const phases = phaseTable(r);
  if (phases) {
    console.log('  where the pause went (median ms per phase, Status.LastHandoffPhases):');
    const w = phases[0]!.map((_, i) => Math.max(...phases.map((row) => row[i]!.length)));
    for (const row of phases) console.log('    ' + row.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  '));
  }
  for (const p of r.plots) console.log(`  plot: ${path.relative(process.cwd(), p)}`);
  for (const e of r.plotErrors) console.log(`  no plot: ${e}`);
  const failed = r.cells.filter((c) => c.errors.length > 0).length;
  const lost = r.cells.reduce((a, c) => a + c.samples.filter((s) => s.errors.length > 0).length, 0);
  if (failed || lost) console.log(`  ${failed} cells failed, ${lost} handoffs lost something (excluded from the statistics)`);
  return failed === 0 && lost === 0;
}

/** The section as a Markdown table, with the verdict under it. */
export function handoffPauseMarkdown(r: HandoffPauseResult): string {
  const head = ['connections', 'queued', 'pause p50', 'pause p99', 'pause max', 'probe gap p50', 'probe gap p99', 'probe gap max', 'handoffs'];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`,
    ...rows(r).map((row) => `| ${row.join(' | ')} |`),
    '',
    `ms. ${verdictLine(r)}.`,
  ];
  const phases = phaseTable(r);
  if (phases) {
    lines.push(
      '',
      'Where the pause went, per cell (median ms per phase, as the new image reports it in `Status.LastHandoffPhases`):',
      '',
      `| ${phases[0]!.join(' | ')} |`,
      `|${phases[0]!.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
      ...phases.slice(1).map((row) => `| ${row.join(' | ')} |`),
    );
  }
  return lines.join('\n') + '\n';
}
