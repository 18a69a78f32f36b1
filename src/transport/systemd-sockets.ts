// Socket activation (sd_listen_fds(3)): the listening sockets systemd opened and passed on
// exec, from fd 3 on, announced by LISTEN_FDS (how many) and LISTEN_PID (for which process).
// This is what `systemd:` listen addresses serve, as dbus-daemon does under dbus.socket.
//
// Ownership: the sockets and their files belong to systemd. The bus serves them, carries them
// across a handoff like any listener (by fd), and never unlinks their files.

import * as fs from 'node:fs';
import * as net from 'node:net';
import { isListeningSocket, setCloexec, unixStreamSocketName } from '../sys/libc.js';
import { FerryError } from '../util/errors.js';

/** sd_listen_fds(3): the first passed socket is fd 3. */
export const SD_LISTEN_FDS_START = 3;

/** The passed sockets, or none and why (for the error that names the `systemd:` address). */
export interface PassedSockets {
  readonly fds: readonly number[];
  readonly missing?: string;
}

const VARIABLES = ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'] as const;

/**
 * sd_listen_fds(unset_environment = 1): the sockets systemd passed to this process. Only if
 * LISTEN_PID is this process: the variables may have been inherited from a parent they were
 * meant for. They are removed either way, so no child, and no later generation (a handoff
 * passes the environment on), takes the sockets a second time. Call once.
 */
export function takeSystemdSockets(env: NodeJS.ProcessEnv = process.env, pid = process.pid): PassedSockets {
  const count = env.LISTEN_FDS;
  const forPid = env.LISTEN_PID;
  for (const name of VARIABLES) delete env[name];
  if (count === undefined) return { fds: [], missing: 'LISTEN_FDS unset' };
  if (forPid === undefined) return { fds: [], missing: 'LISTEN_PID unset' };
  if (!/^[0-9]+$/.test(forPid) || Number(forPid) !== pid) {
    return { fds: [], missing: `LISTEN_PID=${forPid} is not this process, ${pid}` };
  }
  if (!/^[0-9]+$/.test(count)) return { fds: [], missing: `LISTEN_FDS=${count} is not a number` };
  const n = Number(count);
  if (n === 0) return { fds: [], missing: 'LISTEN_FDS=0' };
  const fds = Array.from({ length: n }, (_, i) => SD_LISTEN_FDS_START + i);
  // As sd_listen_fds does: nothing this process starts should inherit them.
  for (const fd of fds) {
    try {
      setCloexec(fd, true);
    } catch {
      // not open: serveSystemdSocket says so
    }
  }
  return { fds };
}

/**
 * Serves one passed socket. Resolves with the server and where the socket is bound ('' when
 * unnamed; '\0'-prefixed for an abstract name). Throws for anything but a listening unix
 * stream socket: the bus authenticates with EXTERNAL, which needs unix credentials.
 */
export async function serveSystemdSocket(
  fd: number,
  onConnection: (socket: net.Socket) => void,
): Promise<{ server: net.Server; path: string }> {
  const bad = (why: string) => new FerryError('SystemdSocketUnusable', `socket fd ${fd} passed by systemd ${why}`);
  try {
    if (!fs.fstatSync(fd).isSocket()) throw bad('is not a socket');
  } catch (err) {
    if (err instanceof FerryError) throw err;
    throw bad('is not open');
  }
  if (!isListeningSocket(fd)) throw bad('is not listening');
  let socketPath: string;
  try {
    socketPath = unixStreamSocketName(fd);
  } catch (err) {
    throw bad(`cannot be served: ${(err as Error).message}`);
  }
  const server = net.createServer({ pauseOnConnect: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, path: socketPath };
}
