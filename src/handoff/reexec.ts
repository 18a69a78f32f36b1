import { execve, getCloexec, setCloexec } from '../sys/libc.js';
import type { ExecTarget } from './exec-target.js';
import { execEnvironment } from './exec-environment.js';

/**
 * The exec step: clear close-on-exec on exactly the fds to keep, execve, and if
 * execve fails, put every flag back so the old image serves on unchanged.
 * `keepFds`: their flags are read first and restored as they were; `ownFds`: fds the bus
 * opened close-on-exec itself (client sockets, fds in messages, spool files: a thousand in a
 * busy handoff), set close-on-exec again without asking. `args` as a function is called right
 * before execve (a handoff's command line carries the time of its exec). Only returns by throwing.
 */
export function reexec(
  target: ExecTarget,
  args: readonly string[] | (() => readonly string[]),
  keepFds: readonly number[],
  ownFds: readonly number[] = [],
): never {
  const previous = keepFds.map((fd) => [fd, getCloexec(fd)] as const);
  try {
    for (const fd of keepFds) setCloexec(fd, false);
    for (const fd of ownFds) setCloexec(fd, false);
    const env = execEnvironment(process.env);
    // argv[0] starting with '@' spares the process from systemd's killing sprees. Node's own
    // flags (e.g. --max-semi-space-size from the unit) carry over to every generation.
    execve(target.execPath, ['@ferrybus', ...process.execArgv, target.script, ...(typeof args === 'function' ? args() : args)], env);
  } catch (err) {
    for (const [fd, cloexec] of [...previous, ...ownFds.map((fd) => [fd, true] as const)]) {
      try {
        setCloexec(fd, cloexec);
      } catch {
        // a closed fd has nothing to restore
      }
    }
    throw err;
  }
}
