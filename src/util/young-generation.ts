import * as v8 from 'node:v8';

/**
 * Keeps V8's young generation at the size it has now: called as the daemon starts, after its
 * modules are loaded (the bundle's loader, scripts/bundle.mjs, does the same before the program
 * runs, after loading node's modules the bus needs).
 *
 * A small young generation saves 11–15 MiB of RSS under load at no CPU cost (bench/README.md).
 * `--max-semi-space-size=1` on node's command line does that from the first allocation, but
 * any V8 flag on the command line changes V8's flag hash, and V8 then refuses the code cache
 * node embeds for its own modules: every built-in module the bus loads (net, crypto,
 * child_process, streams, …) was compiled from source, ~15–20 ms of every start and handoff.
 * So the bus starts with V8's defaults and stops the young generation from growing once those
 * modules are loaded: V8 reads --semi-space-growth-factor each time it would grow it. A built-in
 * loaded later is loaded with the flag at V8's value for a moment (underNodeFlags in
 * lazy-builtin.ts); a handed-off image starts again without the flag and sets it again.
 *
 * A young generation sized on node's command line is left alone.
 */
export function capYoungGeneration(): void {
  if (process.execArgv.some((a) => /semi-space/.test(a))) return;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  capped = true;
}

let capped = false;

/** capYoungGeneration set the cap (a built-in loaded later lifts it for a moment: lazy-builtin.ts). */
export function youngGenerationCapped(): boolean {
  return capped;
}
