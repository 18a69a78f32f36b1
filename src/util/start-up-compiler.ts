import * as v8 from 'node:v8';

/**
 * V8's optimizing compiler is off while the daemon starts and on once it serves.
 *
 * Starting, V8 optimizes whatever is hot then — reading the configuration, restoring a handoff —
 * code the bus will not run again; it cost ~4 MiB of idle RSS and CPU on every start and every
 * handoff (measured: 56.8 → 52.6 MiB idle). Once the bus serves, the message path gets optimized
 * as traffic arrives, as before. The bundle's loader turns it off before the program runs
 * (scripts/bundle.mjs); for dist/ the daemon does as it starts.
 *
 * A compiler choice made on node's command line is left alone.
 */
function chosenOnCommandLine(): boolean {
  return process.execArgv.some((a) => /^--(no-)?(opt|turbofan|maglev)(=|$)|^--max-opt(=|$)/.test(a));
}

export function holdOptimizingCompiler(): void {
  if (chosenOnCommandLine()) return;
  v8.setFlagsFromString('--no-opt');
  held = true;
}

export function releaseOptimizingCompiler(): void {
  if (chosenOnCommandLine()) return;
  v8.setFlagsFromString('--opt');
  held = false;
}

let held = false;

/** holdOptimizingCompiler is in force (a built-in loaded meanwhile lifts it for a moment: lazy-builtin.ts). */
export function optimizingCompilerHeld(): boolean {
  return held;
}
