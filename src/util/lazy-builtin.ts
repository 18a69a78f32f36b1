import { createRequire } from 'node:module';
import * as v8 from 'node:v8';
import { holdOptimizingCompiler, optimizingCompilerHeld } from './start-up-compiler.js';
import { capYoungGeneration, youngGenerationCapped } from './young-generation.js';

/**
 * A node module loaded the first time it is used, not when the program starts.
 *
 * Every module a start or a handoff loads is time before the bus serves; child_process (and
 * net, dgram and cluster, which it loads) is first needed to start a service or check a handoff
 * target, long after. It is loaded under node's own flags (underNodeFlags), so V8 takes node's
 * code cache for it.
 */
const requireBuiltin = createRequire(import.meta.url);

export function lazyBuiltin<T>(id: `node:${string}`): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= underNodeFlags(() => requireBuiltin(id) as T));
}

/** V8's own --semi-space-growth-factor, which capYoungGeneration changes. */
const V8_GROWTH_FACTOR = 2;

/**
 * Runs `load` with V8's flags as node was built with them. V8 takes node's code cache for its
 * own modules only under those flags (its flag hash); the young generation's cap and the held
 * optimizing compiler change two, and a module loaded under them was compiled from source
 * (child_process: 7.9–8.0 ms against 2.0–2.4 here). Setting both back restores the hash; they
 * are set again as soon as the module is loaded.
 */
export function underNodeFlags<T>(load: () => T): T {
  const capped = youngGenerationCapped();
  const held = optimizingCompilerHeld();
  if (!capped && !held) return load();
  if (capped) v8.setFlagsFromString(`--semi-space-growth-factor=${V8_GROWTH_FACTOR}`);
  if (held) v8.setFlagsFromString('--opt');
  try {
    return load();
  } finally {
    if (capped) capYoungGeneration();
    if (held) holdOptimizingCompiler();
  }
}
