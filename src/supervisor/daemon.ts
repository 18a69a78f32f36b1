import * as fs from 'node:fs';
import { Bus, type BusLimits } from '../bus/bus.js';
import type { DriverMethod } from '../bus/driver.js';
import type { PolicySource } from '../bus/policy.js';
import { compilePolicy, describeCredentials } from './policy-loader.js';
import { FerryError } from '../util/errors.js';
import { AddressError, firstListenTarget, formatAddressEntry, parseAddress, type ListenTarget } from '../transport/address.js';
import { ConnectionSet } from '../transport/connection-set.js';
import type { ConnectionLimits } from '../transport/connection.js';
import { listen, type Listener, type ListenerLog } from '../transport/listener.js';
import { closePoller } from '../transport/poller.js';
import { DBUS_SOCKET_NAME, describePassedSocket, serveSystemdSocket, takeSystemdSockets } from '../transport/systemd-sockets.js';
import { newBusGuid, readMachineId } from './identity.js';
import type { Logger } from './logger.js';
import type { ServiceDirConfig } from './config-types.js';
import type { SettingsSource } from './settings.js';
import { Services } from './services.js';
import type { HandoffPhase } from './handoff-phases.js';

export interface DaemonSettings {
  /** Addresses to listen on, in order; each may be a `;`-separated list (first usable entry wins). */
  listen: string[];
  kind: 'session' | 'system' | string;
  limits: Partial<BusLimits> & TransportLimits;
  /** The config's <policy> blocks as read (plain data, so a handoff carries the policy in force); undefined: no policy. */
  policies?: PolicySource[];
  /** Files and <includedir> directories the config was read from: a change there reloads it. */
  watch?: string[];
  /** Where service files are looked for (<servicedir> and the standard sets), in order. */
  serviceDirs?: ServiceDirConfig[];
  /** Where the settings came from (flags, config file): a new image re-reads it. */
  source?: SettingsSource;
  /** What this bus set up when it started; carried as it is across handoffs, never re-read. */
  runtime?: RuntimeState;
}

export interface RuntimeState {
  /** The pid file written at start (--pidfile); removed on a clean exit, kept across handoffs. */
  pidFile?: string;
  /** Socket files of the sockets systemd passed: systemd's, so never unlinked by the bus. */
  systemdSocketPaths?: string[];
}

/** The limits the transport enforces (the rest are the bus core's). */
export interface TransportLimits {
  maxOutgoingBytes?: number;
  authTimeoutMs?: number;
  maxIncompleteConnections?: number;
  maxMessageSize?: number;
  maxMessageUnixFds?: number;
  maxIncomingUnixFds?: number;
  maxOutgoingUnixFds?: number;
  pendingFdTimeoutMs?: number;
}

/** The limits each new connection gets (the rest of the transport's defaults fill the gaps). */
export function connectionLimits(limits: TransportLimits): Partial<ConnectionLimits> {
  return {
    maxOutgoingBytes: limits.maxOutgoingBytes,
    authTimeoutMs: limits.authTimeoutMs,
    maxMessageSize: limits.maxMessageSize,
    maxMessageUnixFds: limits.maxMessageUnixFds,
    maxIncomingUnixFds: limits.maxIncomingUnixFds,
    maxOutgoingUnixFds: limits.maxOutgoingUnixFds,
    pendingFdTimeoutMs: limits.pendingFdTimeoutMs,
  };
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
  lastHandoff: { at: string; pauseUs: number; root: string; phases: HandoffPhase[] } | undefined;
  private stopped = false;

  constructor(
    readonly bus: Bus,
    readonly connections: ConnectionSet,
    readonly listeners: Listener[],
    readonly targets: ListenTarget[],
    readonly addresses: string[],
    /** Replaced by a reload; a handoff carries what is in force. */
    public settings: DaemonSettings,
    readonly identity: BusIdentity,
    private readonly log: Logger,
    /** Service files, activated programs, and the watch on their directories. */
    readonly services: Services,
  ) {
    services.address = addresses[0] ?? '';
  }

  /** Builds the bus core and connection set (no sockets yet). */
  static createCore(
    settings: DaemonSettings,
    identity: BusIdentity,
    log: Logger,
    extraMethods: readonly DriverMethod[],
  ): { bus: Bus; connections: ConnectionSet; services: Services } {
    const connections = new ConnectionSet(
      (event, message, fields) =>
        (event === 'internal-error' ? log.error
          : event === 'client-dropped' || event === 'policy-denied' || event === 'client-refused' ? log.warning
            : log.debug)(event, message, fields),
      connectionLimits(settings.limits),
      settings.limits.maxIncompleteConnections,
    );
    const bus = new Bus(connections, {
      guid: identity.guid,
      machineId: identity.machineId,
      kind: settings.kind,
      self: { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid, groups: process.getgroups!() },
      limits: settings.limits,
      policy: compilePolicy(settings.policies, log),
      describe: describeCredentials,
      log: (event, message, fields) => busLogLevel(log, event)(event, message, fields),
      extraMethods,
    });
    connections.bus = bus;
    const services = new Services(bus, settings.serviceDirs ?? [], settings.source?.systemdActivation === true, log);
    return { bus, connections, services };
  }

  /** Starts listening and serving. Resolves once every address accepts connections. */
  static async start(settings: DaemonSettings, log: Logger, extraMethods: readonly DriverMethod[]): Promise<Daemon> {
    const machine = readMachineId();
    if (machine.source === 'random') {
      log.warning('machine-id-missing', 'no /etc/machine-id; Peer.GetMachineId answers a random id for this boot');
    }
    const identity = { guid: newBusGuid(), machineId: machine.id, startedAt: new Date().toISOString() };
    const { bus, connections, services } = Daemon.createCore(settings, identity, log, extraMethods);
    // Only a bus told to listen on `systemd:` takes systemd's sockets (and clears LISTEN_*).
    const passed = settings.listen.some(namesSystemd) ? takeSystemdSockets() : undefined;
    const systemd = passed && { passed: passed.sockets.length, missing: passed.missing };
    for (const ignored of passed?.ignored ?? []) {
      log.notice('systemd-socket-ignored', `not serving socket ${describePassedSocket(ignored)}: only the sockets named "${DBUS_SOCKET_NAME}" are the bus's`, { fd: ignored.fd, name: ignored.name });
    }
    const chosen = settings.listen.map((address) => {
      try {
        return firstListenTarget(address, { systemd });
      } catch (err) {
        throw explainListenError(err, address, settings);
      }
    });
    const listeners: Listener[] = [];
    const targets: ListenTarget[] = [];
    const systemdSocketPaths: string[] = [];
    const onClient = (fd: number) => connections.accept(fd);
    const listenerLog = listenerLogOf(log);
    let unserved = passed?.sockets ?? [];
    try {
      for (const target of chosen) {
        if (!target.systemd) {
          listeners.push(await listen(target, onClient, listenerLog));
          targets.push(target);
          continue;
        }
        // Every socket systemd passed, once (a second `systemd:` entry adds nothing).
        const sockets = unserved;
        unserved = [];
        for (const socket of sockets) {
          const { listener, path } = serveSystemdSocket(socket, onClient, listenerLog);
          listeners.push(listener);
          targets.push(passedTarget(path));
          if (path !== '' && !path.startsWith('\0')) systemdSocketPaths.push(path);
        }
      }
    } catch (err) {
      for (const listener of listeners) listener.close();
      throw err;
    }
    const addresses = targets.map((t) =>
      t.systemd ? 'systemd:' : formatAddressEntry({ transport: 'unix', params: { ...t.address.params, guid: identity.guid } }),
    );
    for (const address of addresses) log.notice('listening', 'bus is listening', { address, kind: settings.kind });
    const running: DaemonSettings = systemdSocketPaths.length > 0
      ? { ...settings, runtime: { ...settings.runtime, systemdSocketPaths } }
      : settings;
    return new Daemon(bus, connections, listeners, targets, addresses, running, identity, log, services);
  }

  get startedAt(): string {
    return this.identity.startedAt;
  }

  async stop(reason: string): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.log.notice('stopping', 'bus is stopping', { reason });
    for (const listener of this.listeners) listener.close();
    this.connections.closeAll('bus is stopping');
    // Nothing is watched any more: the event loop may end.
    closePoller();
    const systemds = new Set(this.settings.runtime?.systemdSocketPaths ?? []);
    for (const target of this.targets) {
      if (target.abstract || target.path === '' || systemds.has(target.path)) continue;
      try {
        fs.unlinkSync(target.path);
      } catch {
        // already gone
      }
    }
  }
}

/** A listener's trouble: an unusable listening socket is an error, a pause for want of fds a warning, its end news. */
export function listenerLogOf(log: Logger): ListenerLog {
  return (event, message, fields) =>
    (event === 'accept-failed' ? log.error : event === 'accept-resumed' ? log.notice : log.warning)(event, message, fields);
}

/** How loud each of the bus core's events is: refusals and failures are warnings, activations news. */
function busLogLevel(log: Logger, event: string): Logger['debug'] {
  switch (event) {
    case 'quota-drop':
    case 'policy-denied':
    case 'activation-failed':
    case 'activation-failure-forged':
    case 'activation-failure-unexpected':
      return log.warning;
    case 'activating':
    case 'activated':
      return log.info;
    default:
      return log.debug;
  }
}

function namesSystemd(address: string): boolean {
  try {
    return parseAddress(address).some((entry) => entry.transport === 'systemd');
  } catch {
    return false; // firstListenTarget reports the bad address
  }
}

function namesOnlySystemd(address: string): boolean {
  const entries = parseAddress(address);
  return entries.length === 1 && entries[0]!.transport === 'systemd';
}

/** A passed socket as a target: the address clients use is where it is bound, if it is named. */
function passedTarget(socketPath: string): ListenTarget {
  if (socketPath === '') return { path: '', abstract: false, address: { transport: 'systemd', params: {} }, systemd: true };
  const abstract = socketPath.startsWith('\0');
  const params: Record<string, string> = abstract ? { abstract: socketPath.slice(1) } : { path: socketPath };
  return { path: socketPath, abstract, address: { transport: 'unix', params } };
}

/** `--address=systemd: but no sockets were passed (…)` names the flag the address came from. */
function explainListenError(err: unknown, address: string, settings: DaemonSettings): unknown {
  if (!(err instanceof AddressError) || err.code !== 'ADDRESS_NO_SYSTEMD_SOCKETS') return err;
  if (!namesOnlySystemd(address)) return err; // a list: its message names every entry's reason
  const where = settings.source?.address === address ? '--address=' : 'listen address ';
  return new FerryError('NoSystemdSockets', `${where}${err.message}`, { cause: err });
}

/** Writes the address (or pid) line to an fd, as dbus-daemon's --print-address=FD does. */
export function printToFd(fd: number, text: string): void {
  try {
    fs.writeSync(fd, text + '\n');
  } catch (err) {
    throw new FerryError('PrintFailed', `cannot write to fd ${fd}: ${(err as Error).message}`);
  }
}
