import * as fs from 'node:fs';
import { connectUnixDatagram, setCloexec } from '../sys/libc.js';
import type { Logger } from './logger.js';

/**
 * Handles opened once, at the first start, and inherited by every later image:
 * - the systemd notify socket, connected, so it works from any root (after
 *   switch-root the daemon's own root no longer has /run/systemd/notify);
 * - the node binary's path: process.execPath needs /proc/self/exe.
 *
 * /proc is deliberately not held: an fd on it would pin the /proc mount of an
 * earlier root, which must be able to unmount. A handoff into /proc/<pid>/root
 * from a root without procfs needs one mounted there (the units do it).
 */
export interface Anchors {
  notifyFd: number | undefined;
  execPath: string;
}

export interface InheritedAnchors {
  notifyFd?: number;
  execPath?: string;
}

let current: Anchors = { notifyFd: undefined, execPath: process.execPath };

function adoptSocket(fd: number | undefined): number | undefined {
  if (fd === undefined || !Number.isInteger(fd)) return undefined;
  try {
    if (!fs.fstatSync(fd).isSocket()) return undefined;
    setCloexec(fd, true);
    return fd;
  } catch {
    return undefined;
  }
}

/** Opens (first start) or takes over (handoff) the anchors. Call once, early. */
export function initAnchors(inherited: InheritedAnchors | undefined, log: Logger): Anchors {
  let notifyFd = adoptSocket(inherited?.notifyFd);
  const notifySocket = process.env.NOTIFY_SOCKET;
  if (notifyFd === undefined && notifySocket) {
    try {
      notifyFd = connectUnixDatagram(notifySocket);
    } catch (err) {
      log.warning('notify-failed', 'cannot reach the systemd notify socket', { socket: notifySocket, error: (err as Error).message });
    }
  }
  current = { notifyFd, execPath: inherited?.execPath || process.execPath };
  return current;
}

export function anchors(): Anchors {
  return current;
}

/**
 * Closes the notify socket for good: its receiver is gone (see notify.ts). A connected datagram
 * socket can never reach another receiver, so nothing is lost; later images inherit neither the
 * socket nor NOTIFY_SOCKET.
 */
export function dropNotifySocket(): void {
  const fd = current.notifyFd;
  if (fd === undefined) return;
  current = { ...current, notifyFd: undefined };
  // The next images inherit the environment: they must not connect to the dead path again.
  delete process.env.NOTIFY_SOCKET;
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

/** The fds a handoff keeps for the anchors. */
export function anchorFds(): number[] {
  return current.notifyFd === undefined ? [] : [current.notifyFd];
}
