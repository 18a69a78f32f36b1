import { cp, copyFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { unixPathAddress } from '../../harness/address.js';
import { REPO_ROOT } from '../../harness/fixtures.js';
import { startLongRunning } from '../../harness/long-running.js';
import { runClient } from '../../harness/run-client.js';
import { type RunningBus, waitForAddressLine } from '../../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../../harness/temp-dir.js';

/**
 * A private copy of the build (dist/src) for one test file.
 *
 * A handoff execs the daemon's entry point again, from disk, long after the test started it.
 * The repository's dist/ is rewritten by every `npm test` (tsc writes file by file), so on a
 * machine where other test runs build concurrently a new image could load half of one build
 * and half of the next and crash on start (seen here: "does not provide an export named …").
 * A handoff test must fail only for the daemon's own reasons: it runs the daemon and the CLI
 * from this copy, which nobody rewrites.
 */
export interface BuildSnapshot {
  main: string;
  remove(): Promise<void>;
}

export async function snapshotBuild(): Promise<BuildSnapshot> {
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = await makeTempDir('ferrybus-build');
    await cp(path.join(REPO_ROOT, 'dist', 'src'), path.join(dir, 'dist', 'src'), { recursive: true });
    await copyFile(path.join(REPO_ROOT, 'package.json'), path.join(dir, 'package.json'));
    await symlink(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const main = path.join(dir, 'dist', 'src', 'cli', 'main.js');
    // Loading the whole module graph proves the copy is one consistent build.
    const check = await runClient(process.execPath, [main, 'handoff-check', '--format', '1']);
    if (check.exitCode === 0) return { main, remove: () => removeTempDir(dir) };
    lastError = check.stderr;
    await removeTempDir(dir);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(`no consistent build in ${REPO_ROOT}dist (is a build running, or did it fail?)\n${lastError}`);
}

/**
 * startBus('ferrybus') of the harness, from a build snapshot; `extraArgs` go to `ferrybus daemon`,
 * `nodeFlags` to node (a handoff passes them on to every image).
 */
export async function startSnapshotBus(build: BuildSnapshot, extraArgs: readonly string[] = [], nodeFlags: readonly string[] = []): Promise<RunningBus> {
  const dir = await makeTempDir('ferrybus-handoff-test');
  const socketPath = path.join(dir, 'bus');
  const proc = startLongRunning(process.execPath, [
    ...nodeFlags,
    build.main, 'daemon', '--nofork', '--print-address=1', `--address=${unixPathAddress(socketPath)}`, ...extraArgs,
  ]);
  let address: string;
  try {
    address = await waitForAddressLine(proc);
  } catch (err) {
    await proc.stop();
    await removeTempDir(dir);
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    kind: 'ferrybus',
    address,
    socketPath,
    pid: proc.pid,
    process: proc,
    stop() {
      stopped ??= (async () => {
        await proc.stop();
        await removeTempDir(dir);
      })();
      return stopped;
    },
  };
}
