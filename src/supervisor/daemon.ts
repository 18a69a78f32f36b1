import * as fs from 'node:fs';
import * as net from 'node:net';
import { Bus, type BusLimits } from '../bus/bus.js';
import type { DriverMethod } from '../bus/driver.js';
import type { PolicySource } from '../bus/policy.js';
import { compilePolicy, describeCredentials } from './policy-loader.js';
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
  limits: Partial<BusLimits> & TransportLimits;
  /** The config's <policy> blocks as read (plain data, so a handoff carries the policy in force); undefined: no policy. */
  policies?: PolicySource[];
  /** Files and <includedir> directories the config was read from: a change there reloads it. */
  watch?: string[];
  /** Where the settings came from (flags, config file): a new image re-reads it. */
  source?: { address?: string; configFile?: string; session?: boolean; system?: boolean };
}

/** The limits the transport enforces (the rest are the bus core's). */
export interface TransportLimits {
  maxOutgoingBytes?: number;
  authTimeoutMs?: number;
  maxIncompleteConnections?: number;
  maxMessageSize?: number;
}

/** Identity that stays the same across handoffs. */
export interface BusIdentity {
  guid: string;
  machineId: string;
  startedAt: string;
}

/**
 * The running bus: core, connections and listening sockets, plus what the
 * supervisor reports about it. Created fresh by `start` or from inherited fds
 * by the handoff adopter.
 */
export class Daemon {
  generation = 1;
  lastHandoff: { at: string; pauseUs: number; root: string } | undefined;
  private stopped = false;

  constructor(
    readonly bus: Bus,
    readonly connections: ConnectionSet,
    readonly servers: net.Server[],
    readonly targets: ListenTarget[],
    readonly addresses: string[],
    /** Replaced by a reload; a handoff carries what is in force. */
    public settings: DaemonSettings,
    readonly identity: BusIdentity,
    private readonly log: Logger,
  ) {}

  /** Builds the bus core and connection set (no sockets yet). */
  static createCore(
    settings: DaemonSettings,
    identity: BusIdentity,
    log: Logger,
    extraMethods: readonly DriverMethod[],
  ): { bus: Bus; connections: ConnectionSet } {
    const connections = new ConnectionSet(
      (event, message, fields) =>
        (event === 'internal-error' ? log.error
          : event === 'client-dropped' || event === 'policy-denied' || event === 'client-refused' ? log.warning
            : log.debug)(event, message, fields),
      settings.limits.maxOutgoingBytes,
      settings.limits.authTimeoutMs,
      settings.limits.maxIncompleteConnections,
      settings.limits.maxMessageSize,
    );
    const bus = new Bus(connections, {
      guid: identity.guid,
      machineId: identity.machineId,
      kind: settings.kind,
      self: { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid, groups: process.getgroups!() },
      limits: settings.limits,
      policy: compilePolicy(settings.policies, log),
      describe: describeCredentials,
      log: (event, message, fields) => (event === 'quota-drop' || event === 'policy-denied' ? log.warning : log.debug)(event, message, fields),
      extraMethods,
    });
    connections.bus = bus;
    return { bus, connections };
  }

  /** Starts listening and serving. Resolves once every address accepts connections. */
  static async start(settings: DaemonSettings, log: Logger, extraMethods: readonly DriverMethod[]): Promise<Daemon> {
    const machine = readMachineId();
    if (machine.source === 'random') {
      log.warning('machine-id-missing', 'no /etc/machine-id; Peer.GetMachineId answers a random id for this boot');
    }
    const identity = { guid: newBusGuid(), machineId: machine.id, startedAt: new Date().toISOString() };
    const { bus, connections } = Daemon.createCore(settings, identity, log, extraMethods);
    const targets = settings.listen.map((address) => firstListenTarget(address));
    const servers: net.Server[] = [];
    try {
      for (const target of targets) servers.push(await listen(target, (socket) => connections.accept(socket)));
    } catch (err) {
      for (const server of servers) server.close();
      throw err;
    }
    const addresses = targets.map((t) =>
      formatAddressEntry({ transport: 'unix', params: { ...t.address.params, guid: identity.guid } }),
    );
    for (const address of addresses) log.notice('listening', 'bus is listening', { address, kind: settings.kind });
    return new Daemon(bus, connections, servers, targets, addresses, settings, identity, log);
  }

  get startedAt(): string {
    return this.identity.startedAt;
  }

  async stop(reason: string): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.log.notice('stopping', 'bus is stopping', { reason });
    // A server's close callback waits for every connection it accepted: close those first, or
    // a bus with clients never finishes stopping.
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.connections.closeAll('bus is stopping');
    await closed;
    for (const target of this.targets) {
      if (target.abstract) continue;
      try {
        fs.unlinkSync(target.path);
      } catch {
        // already gone
      }
    }
  }
}

/** Writes the address (or pid) line to an fd, as dbus-daemon's --print-address=FD does. */
export function printToFd(fd: number, text: string): void {
  try {
    fs.writeSync(fd, text + '\n');
  } catch (err) {
    throw new FerryError('PrintFailed', `cannot write to fd ${fd}: ${(err as Error).message}`);
  }
}
