import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

/** Clock ticks per second for utime/stime in /proc/PID/stat (USER_HZ). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU seconds (utime + stime) the whole process has used so far, all threads included:
 * /proc/PID/stat of a thread-group leader sums its threads (node's GC and libuv threads too).
 */
export function cpuSeconds(pid: number): number {
  const { user, kernel } = cpuSplit(pid);
  return user + kernel;
}

/** cpuSeconds in its two parts: user space (utime) and the kernel on the process's behalf (stime). */
export function cpuSplit(pid: number): { user: number; kernel: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // Fields after "(comm)"; comm may contain spaces, so split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return { user: Number(rest[11]) / CLK_TCK, kernel: Number(rest[12]) / CLK_TCK };
}

/**
 * The same in nanoseconds from the scheduler (sum over the live threads' schedstat): a
 * higher-resolution cross-check of cpuSeconds, which has 10 ms granularity.
 */
export function schedSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]);
    } catch {
      // thread exited meanwhile
    }
  }
  return ns / 1e9;
}

export interface Memory {
  /** VmRSS, KiB */
  rssKiB: number;
  /** VmHWM (peak RSS), KiB */
  hwmKiB: number;
}

export function memory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/** Whole-machine CPU counters from /proc/stat: busy and total jiffies. */
export function systemCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'latin1').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

export function loadAverage(): [number, number, number] {
  const [a, b, c] = os.loadavg();
  return [round(a!, 2), round(b!, 2), round(c!, 2)];
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
