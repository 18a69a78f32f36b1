import type * as Chokidar from 'chokidar';
import { createRequire } from 'node:module';
import { underNodeFlags } from '../util/lazy-builtin.js';

/**
 * chokidar, imported when the bus sets up its watches (once it serves), not as the program
 * starts: it and node's fs/promises, which it loads, were ~3 ms of every handoff's pause.
 * Until then watchFiles answers undefined, and whoever asked watches again once it is loaded
 * (the daemon sets up every watch after loadFileWatch).
 */
let chokidar: typeof Chokidar | undefined;

export async function loadFileWatch(): Promise<void> {
  if (chokidar) return;
  // Loaded first, under node's flags, so V8 takes node's code cache for it (lazy-builtin.ts).
  underNodeFlags(() => createRequire(import.meta.url)('node:fs/promises'));
  chokidar = await import('chokidar');
}

export function watchFiles(paths: string | string[], options: Chokidar.ChokidarOptions): Chokidar.FSWatcher | undefined {
  return chokidar?.watch(paths, options);
}
