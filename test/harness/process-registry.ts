/**
 * Every process the harness starts is recorded here by PID, and only those are ever killed:
 * never by name, never a process group we did not create. A test file's afterAll stops what it
 * started; the 'exit' hook is the last resort when a worker dies with children still running.
 */
const live = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of live) signalPid(pid, 'SIGKILL');
  });
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export function trackPid(pid: number): void {
  installExitHook();
  live.add(pid);
}

export function untrackPid(pid: number): void {
  live.delete(pid);
}

/**
 * SIGTERM, then SIGKILL if `exited` has not settled within graceMs. Resolves once the process
 * is gone (as reported by `exited`, which must settle when the child is reaped).
 */
export async function terminatePid(pid: number, exited: Promise<unknown>, graceMs = 2000): Promise<void> {
  if (!live.has(pid)) {
    await exited;
    return;
  }
  signalPid(pid, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs);
  });
  const outcome = await Promise.race([exited.then(() => 'exited' as const), graceOver]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    signalPid(pid, 'SIGKILL');
    await exited;
  }
  live.delete(pid);
}
