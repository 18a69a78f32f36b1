import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/** event-loop.ts as a module a plain node child can import (koffi by its resolved path). */
function childModule(dir: string): string {
  const source = readFileSync(fileURLToPath(new URL('./event-loop.ts', import.meta.url)), 'utf8');
  const output = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
  const koffiUrl = pathToFileURL(createRequire(import.meta.url).resolve('koffi')).href;
  const target = path.join(dir, 'event-loop.mjs');
  writeFileSync(target, output.replace(/from 'koffi'/, `from '${koffiUrl}'`));
  return pathToFileURL(target).href;
}

/**
 * In a child process (the flag belongs to the whole process's loop): how much idle time libuv
 * has counted across a 200 ms wait, before and after stopIdleTimeMetrics.
 */
function idleAcrossWaits(): { stopped: boolean; idleBefore: number; idleAfter: number } {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferrybus-loop-'));
  try {
    const script = path.join(dir, 'child.mjs');
    const module = childModule(dir);
    writeFileSync(script, `
      import { performance } from 'node:perf_hooks';
      import { stopIdleTimeMetrics } from ${JSON.stringify(module)};
      const wait = () => new Promise((r) => setTimeout(r, 200));
      const idle = () => performance.eventLoopUtilization().idle;
      let t = idle(); await wait(); const idleBefore = idle() - t;
      const stopped = stopIdleTimeMetrics();
      await wait();
      t = idle(); await wait(); const idleAfter = idle() - t;
      console.log(JSON.stringify({ stopped, idleBefore, idleAfter }));
    `);
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('stopIdleTimeMetrics', () => {
  it("stops libuv's idle-time measurement of node's loop: a wait no longer counts as idle", () => {
    const r = idleAcrossWaits();
    expect(r.stopped).toBe(true);
    // Measured: ~200 ms of a 200 ms wait. Stopped: nothing more is counted.
    expect(r.idleBefore).toBeGreaterThan(100);
    expect(r.idleAfter).toBe(0);
  });
});
