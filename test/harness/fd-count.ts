import { readdirSync } from 'node:fs';

/** How many fds a process has open (/proc/PID/fd). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The process's fd count once it stopped changing (clients of earlier tests may still be leaving). */
export async function steadyFdCount(pid: number): Promise<number> {
  let last = fdCount(pid);
  for (let stable = 0; stable < 5;) {
    await new Promise((r) => setTimeout(r, 60));
    const now = fdCount(pid);
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

/** Waits until the process holds `expected` fds again (closing is done when a client is gone); returns the count. */
export async function settlesAt(pid: number, expected: number, timeoutMs = 5_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let now = fdCount(pid);
  while (now !== expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    now = fdCount(pid);
  }
  return now;
}
