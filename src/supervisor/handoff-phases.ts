/**
 * Where a handoff's pause went, phase by phase: what `ferrybus status` shows after a handoff
 * and what the bench reports per cell. Pure: the marks are CLOCK_MONOTONIC nanoseconds
 * (process.hrtime.bigint()), which an exec does not reset, so the old image's marks and the
 * new image's share one clock.
 */

/** One phase: its name and how long it took, in µs. */
export type HandoffPhase = readonly [name: string, us: number];

/** The marks in the order they are taken; the optional ones may be missing (see handoffPhases). */
export interface HandoffMarks {
  /** Old image: serving stopped (the snapshot starts). */
  stoppedNs: bigint;
  /** Old image: the document is written, execve is next (from the new image's command line). */
  execNs?: bigint;
  /** New image: the bundle's loader runs its first line (node has started). */
  loaderNs?: bigint;
  /** New image: the program's first module is evaluated (compiled, node's modules loaded). */
  programNs?: bigint;
  /** New image: adoption starts (the program's modules evaluated, the logger made). */
  adoptNs: bigint;
  /** The handoff document is read and checked. */
  documentNs: bigint;
  /** Configuration read again, the bus core built, listeners adopted. */
  coreNs: bigint;
  /** Connections, names, calls and services restored: the pause ends here. */
  doneNs: bigint;
}

const PHASES: ReadonlyArray<[keyof HandoffMarks, string]> = [
  ['execNs', 'old image'],
  ['loaderNs', 'node start-up'],
  ['programNs', 'program loaded'],
  ['adoptNs', 'program started'],
  ['documentNs', 'document read'],
  ['coreNs', 'core built'],
  ['doneNs', 'connections restored'],
];

/**
 * The phases between consecutive marks. A mark that is missing (a build without the loader, an
 * old image that passed no exec time) or out of order (not after the one before it: from
 * another clock) is skipped, and its phase is counted in the next one, named "a + b".
 */
export function handoffPhases(marks: HandoffMarks): HandoffPhase[] {
  const phases: HandoffPhase[] = [];
  let from = marks.stoppedNs;
  let pending: string[] = [];
  for (const [key, name] of PHASES) {
    pending.push(name);
    const at = marks[key];
    const required = key === 'adoptNs' || key === 'documentNs' || key === 'coreNs' || key === 'doneNs';
    if (at === undefined || (!required && (at < from || at > marks.adoptNs))) continue;
    phases.push([pending.join(' + '), Number((at - from) / 1000n)]);
    pending = [];
    from = at;
  }
  return phases;
}

/** "old image 12.1, node start-up 30.0, …" (ms, one decimal): for a log line or a table cell. */
export function formatHandoffPhases(phases: readonly HandoffPhase[]): string {
  return phases.map(([name, us]) => `${name} ${(us / 1000).toFixed(1)}`).join(', ');
}
