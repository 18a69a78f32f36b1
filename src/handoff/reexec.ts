import { execve, getCloexec, setCloexec } from '../sys/libc.js';
import type { ExecTarget } from './exec-target.js';

/**
 * The exec step: clear close-on-exec on exactly the fds to keep, execve, and if
 * execve fails, put every flag back so the old image serves on unchanged.
 * Only returns by throwing.
 */
export function reexec(target: ExecTarget, args: readonly string[], keepFds: readonly number[]): never {
  const previous = keepFds.map((fd) => [fd, getCloexec(fd)] as const);
  try {
    for (const fd of keepFds) setCloexec(fd, false);
    const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
    // argv[0] starting with '@' spares the process from systemd's killing sprees. Node's own
    // flags (e.g. --max-semi-space-size from the unit) carry over to every generation.
    execve(target.execPath, ['@ferrybus', ...process.execArgv, target.script, ...args], env);
  } catch (err) {
    for (const [fd, cloexec] of previous) {
      try {
        setCloexec(fd, cloexec);
      } catch {
        // a closed fd has nothing to restore
      }
    }
    throw err;
  }
}
