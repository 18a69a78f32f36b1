import { existsSync } from 'node:fs';
import path from 'node:path';
import { unixPathAddress } from '../address.js';
import { REPO_ROOT } from '../fixtures.js';
import { startLongRunning } from '../long-running.js';
import { type LaunchedBus, waitForAddressLine } from '../running-bus.js';

/** Our daemon, from the build that `npm test` makes before vitest runs. */
export async function launchFerrybus(_dir: string, socketPath: string, nodeFlags: readonly string[] = []): Promise<LaunchedBus> {
  const main = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) {
    throw new Error(`ferrybus is not built: ${main} is missing (npm test builds it; or run "npm run build")`);
  }
  const proc = startLongRunning(process.execPath, [
    ...nodeFlags,
    main,
    'daemon',
    '--nofork',
    '--print-address=1',
    `--address=${unixPathAddress(socketPath)}`,
  ]);
  try {
    const address = await waitForAddressLine(proc);
    return { address, pid: proc.pid, process: proc };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}
