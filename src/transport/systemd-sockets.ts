// Socket activation (sd_listen_fds(3)): the listening sockets systemd opened and passed on
// exec, from fd 3 on, announced by LISTEN_FDS (how many), LISTEN_PID (for which process) and
// LISTEN_FDNAMES (their names, ':'-separated). This is what `systemd:` listen addresses serve,
// as dbus-daemon and dbus-broker do under dbus.socket.
//
// Ownership: the sockets and their files belong to systemd. The bus serves them, carries them
// across a handoff like any listener (by fd), and never unlinks their files.

import {
  AF_UNIX_DOMAIN,
  SOCK_STREAM_TYPE,
  SOCKET_DOMAIN_NAMES,
  SOCKET_TYPE_NAMES,
  setCloexec,
  socketKind,
  unixStreamSocketName,
  type SocketKind,
} from '../sys/libc.js';
import { FerryError } from '../util/errors.js';
import { Listener, type AcceptedClient, type ListenerLog } from './listener.js';

/** sd_listen_fds(3): the first passed socket is fd 3. */
export const SD_LISTEN_FDS_START = 3;

/**
 * The one name systemd gives the system bus's listener (the socket unit's name, or its
 * FileDescriptorName=): dbus-broker adopts exactly the sockets so named, and so do we.
 */
export const DBUS_SOCKET_NAME = 'dbus.socket';

/** One socket systemd passed: its fd and its name in LISTEN_FDNAMES ('' when unnamed). */
export interface PassedSocket {
  readonly fd: number;
  readonly name: string;
}

/** The passed sockets to serve, those passed but not served, or none and why. */
export interface PassedSockets {
  readonly sockets: readonly PassedSocket[];
  /** Passed but not for the bus (another name next to `dbus.socket`): logged, never served. */
  readonly ignored: readonly PassedSocket[];
  readonly missing?: string;
}

const VARIABLES = ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'] as const;

/**
 * Which passed sockets the bus serves. With names (LISTEN_FDNAMES, which systemd always sets)
 * and at least one named `dbus.socket`, only those: a unit may also be given other sockets
 * (Sockets=, a second ListenStream= in another unit) that are not the bus's to answer. Without
 * that name (systemd-socket-activate, a socket unit with another name), every passed socket,
 * as dbus-daemon's `--address=systemd:` does.
 */
export function chooseSystemdSockets(passed: readonly PassedSocket[]): { sockets: PassedSocket[]; ignored: PassedSocket[] } {
  if (!passed.some((s) => s.name === DBUS_SOCKET_NAME)) return { sockets: [...passed], ignored: [] };
  return {
    sockets: passed.filter((s) => s.name === DBUS_SOCKET_NAME),
    ignored: passed.filter((s) => s.name !== DBUS_SOCKET_NAME),
  };
}

/**
 * sd_listen_fds_with_names(unset_environment = 1), without touching any fd: which sockets the
 * environment says systemd passed to process `pid`. Only if LISTEN_PID is that process: the
 * variables may have been inherited from a parent they were meant for. They are removed either
 * way, so no child, and no later generation (a handoff passes the environment on), takes the
 * sockets a second time.
 */
export function readListenEnvironment(env: NodeJS.ProcessEnv, pid: number): PassedSockets {
  const count = env.LISTEN_FDS;
  const forPid = env.LISTEN_PID;
  const names = env.LISTEN_FDNAMES;
  for (const name of VARIABLES) delete env[name];
  const none = (missing: string): PassedSockets => ({ sockets: [], ignored: [], missing });
  if (count === undefined) return none('LISTEN_FDS unset');
  if (forPid === undefined) return none('LISTEN_PID unset');
  if (!/^[0-9]+$/.test(forPid) || Number(forPid) !== pid) return none(`LISTEN_PID=${forPid} is not this process, ${pid}`);
  if (!/^[0-9]+$/.test(count)) return none(`LISTEN_FDS=${count} is not a number`);
  const n = Number(count);
  if (n === 0) return none('LISTEN_FDS=0');
  // sd_listen_fds_with_names refuses a name list of another length (EINVAL): so do we.
  const nameList = names === undefined ? [] : names.split(':');
  if (names !== undefined && nameList.length !== n) {
    return none(`LISTEN_FDNAMES names ${nameList.length} socket${nameList.length === 1 ? '' : 's'} ("${names}") but LISTEN_FDS=${n}`);
  }
  return chooseSystemdSockets(Array.from({ length: n }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: nameList[i] ?? '' })));
}

/**
 * The sockets systemd passed to this process (readListenEnvironment on process.env), each made
 * close-on-exec as sd_listen_fds does: nothing this process starts should inherit them. An
 * ignored socket is left open but close-on-exec, so the next handoff sheds it. Call once.
 */
export function takeSystemdSockets(): PassedSockets {
  const passed = readListenEnvironment(process.env, process.pid);
  for (const { fd } of [...passed.sockets, ...passed.ignored]) {
    try {
      setCloexec(fd, true);
    } catch {
      // not open: serveSystemdSocket says so
    }
  }
  return passed;
}

/** How a passed socket is named in messages: `fd 3 ("dbus.socket")`. */
export function describePassedSocket(socket: PassedSocket): string {
  return socket.name === '' ? `fd ${socket.fd}` : `fd ${socket.fd} ("${socket.name}")`;
}

/**
 * Why a passed fd cannot be the bus's listener, or undefined when it is a listening AF_UNIX
 * SOCK_STREAM socket: the bus authenticates with EXTERNAL, which needs unix credentials, and
 * serves a stream of connections.
 */
export function unusableReason(fd: number): string | undefined {
  let kind: SocketKind;
  try {
    kind = socketKind(fd);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'EBADF') return 'is not open';
    if (code === 'ENOTSOCK') return 'is not a socket';
    return `cannot be inspected: ${(err as Error).message}`;
  }
  if (kind.domain !== AF_UNIX_DOMAIN) {
    return `is an ${SOCKET_DOMAIN_NAMES[kind.domain] ?? `address family ${kind.domain}`} socket, not AF_UNIX (the bus authenticates unix credentials)`;
  }
  if (kind.type !== SOCK_STREAM_TYPE) {
    return `is a ${SOCKET_TYPE_NAMES[kind.type] ?? `type ${kind.type}`} socket, not SOCK_STREAM (use ListenStream=)`;
  }
  if (!kind.listening) return 'is not listening (Accept=yes passes connections, not the listening socket)';
  return undefined;
}

/**
 * Serves one passed socket. Returns the listener and where the socket is bound ('' when
 * unnamed; '\0'-prefixed for an abstract name). Throws for anything but a listening AF_UNIX
 * SOCK_STREAM socket (checked with getsockopt SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN).
 */
export function serveSystemdSocket(socket: PassedSocket, onClient: AcceptedClient, log: ListenerLog): { listener: Listener; path: string } {
  const bad = (why: string) => new FerryError('SystemdSocketUnusable', `socket ${describePassedSocket(socket)} passed by systemd ${why}`);
  const why = unusableReason(socket.fd);
  if (why !== undefined) throw bad(why);
  let socketPath: string;
  try {
    socketPath = unixStreamSocketName(socket.fd);
  } catch (err) {
    throw bad(`cannot be served: ${(err as Error).message}`);
  }
  return { listener: new Listener(socket.fd, onClient, log), path: socketPath };
}
