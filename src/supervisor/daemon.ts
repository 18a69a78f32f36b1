import * as fs from 'node:fs';
import type * as net from 'node:net';
import { Bus, type BusLimits } from '../bus/bus.js';
import { FerryError } from '../util/errors.js';
import { firstListenTarget, formatAddressEntry, type ListenTarget } from '../transport/address.js';
import { ConnectionSet } from '../transport/connection-set.js';
import { listen } from '../transport/listener.js';
import { newBusGuid, readMachineId } from './identity.js';
import type { Logger } from './logger.js';

export interface DaemonSettings {
  /** Addresses to listen on, in order; each may be a `;`-separated list (first usable entry wins). */
  listen: string[];
  kind: 'session' | 'system' | string;
  limits: Partial<BusLimits> & { maxOutgoingBytes?: number };
}

export interface RunningDaemon {
  bus: Bus;
  connections: ConnectionSet;
  servers: net.Server[];
  targets: ListenTarget[];
  /** The addresses clients connect to, with the bus guid appended. */
  addresses: string[];
  stop(reason: string): Promise<void>;
}

/** Starts listening and serving. Resolves once every address accepts connections. */
export async function startDaemon(settings: DaemonSettings, log: Logger): Promise<RunningDaemon> {
  const guid = newBusGuid();
  const machine = readMachineId();
  if (machine.source === 'random') {
    log.warning('machine-id-missing', 'no /etc/machine-id; Peer.GetMachineId answers a random id for this boot');
  }
  const connections = new ConnectionSet(
    (event, message, fields) => (event === 'client-dropped' ? log.warning : log.debug)(event, message, fields),
    settings.limits.maxOutgoingBytes,
  );
  const bus = new Bus(connections, {
    guid,
    machineId: machine.id,
    kind: settings.kind,
    self: { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid, groups: process.getgroups!() },
    limits: settings.limits,
    log: (event, message, fields) => log.debug(event, message, fields),
  });
  connections.bus = bus;

  const targets = settings.listen.map((address) => firstListenTarget(address));
  const servers: net.Server[] = [];
  try {
    for (const target of targets) servers.push(await listen(target, (socket) => connections.accept(socket)));
  } catch (err) {
    for (const server of servers) server.close();
    throw err;
  }
  const addresses = targets.map((t) =>
    formatAddressEntry({ transport: 'unix', params: { ...t.address.params, guid } }),
  );
  for (const address of addresses) log.notice('listening', 'bus is listening', { address, kind: settings.kind });

  let stopped = false;
  const stop = async (reason: string) => {
    if (stopped) return;
    stopped = true;
    log.notice('stopping', 'bus is stopping', { reason });
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const target of targets) {
      if (target.abstract) continue;
      try {
        fs.unlinkSync(target.path);
      } catch {
        // already gone
      }
    }
    connections.closeAll('bus is stopping');
  };
  return { bus, connections, servers, targets, addresses, stop };
}

/** Writes the address (or pid) line to an fd, as dbus-daemon's --print-address=FD does. */
export function printToFd(fd: number, text: string): void {
  try {
    fs.writeSync(fd, text + '\n');
  } catch (err) {
    throw new FerryError('PrintFailed', `cannot write to fd ${fd}: ${(err as Error).message}`);
  }
}
