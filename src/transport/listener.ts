import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { FerryError } from '../util/errors.js';
import type { ListenTarget } from './address.js';

/**
 * Opens a listening unix socket. A socket file left by a dead bus is replaced;
 * one that still answers belongs to a live bus and is never stolen.
 */
export async function listen(target: ListenTarget, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  if (!target.abstract) await prepareSocketPath(target.path);
  // Node must never read a client socket: fds arrive with messages, and ferrybus reads with recvmsg.
  const server = net.createServer({ pauseOnConnect: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path: target.path, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Who may talk is decided by bus policy, not file mode (as dbus-daemon does).
  if (!target.abstract) fs.chmodSync(target.path, 0o777);
  return server;
}

async function prepareSocketPath(socketPath: string): Promise<void> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch {
    return; // nothing there
  }
  if (!stat.isSocket()) {
    throw new FerryError('ListenPathTaken', `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  if (await answers(socketPath)) {
    throw new FerryError('AddressInUse', `another bus is already listening on ${socketPath}`);
  }
  fs.unlinkSync(socketPath);
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
