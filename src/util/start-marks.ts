/**
 * When this image started, for the handoff's phase report (supervisor/handoff-phases.ts).
 * The bundle's loader puts its own first timestamp under a global symbol (node has no hook
 * earlier than that); this module, imported by the entry before the rest of the program, takes
 * the program's. Run from dist/ there is no loader: its mark is undefined.
 */
const LOADER_MARK = Symbol.for('ferrybus.loaderStartedNs');

const programNs = process.hrtime.bigint();

export function startMarks(): { loaderNs?: bigint; programNs: bigint } {
  const loader = (globalThis as Record<symbol, unknown>)[LOADER_MARK];
  return { loaderNs: typeof loader === 'bigint' ? loader : undefined, programNs };
}
