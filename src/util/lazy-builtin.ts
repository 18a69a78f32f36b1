import { createRequire } from 'node:module';

/**
 * A node module loaded the first time it is used, not when the program starts.
 *
 * Every module a start or a handoff loads is time before the bus serves; child_process (and
 * net, dgram and cluster, which it loads) is first needed to start a service or check a handoff
 * target, long after. Loaded later it is compiled without node's code cache (the young
 * generation's flag changed V8's flag hash, see young-generation.ts): ~4 ms, once per image,
 * while serving, against ~2 ms of every start and every handoff's pause.
 */
const requireBuiltin = createRequire(import.meta.url);

export function lazyBuiltin<T>(id: `node:${string}`): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= requireBuiltin(id) as T);
}
