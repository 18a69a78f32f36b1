import { MessageFlag, MessageType, type Message } from '../wire/message.js';
import { isValidErrorName } from '../wire/names.js';
import { BusError, DBusErrorName } from './errors.js';
import type { Peer } from './peer.js';
import type { RoutedMessage } from './routed-message.js';

/**
 * Service activation with dbus-daemon's semantics (bus/activation.c): a message for a name
 * nobody owns, whose `.service` file is known, is held while the service starts, and delivered
 * in order once the name has an owner; StartServiceByName waits the same way. A service starts
 * either through systemd (the ActivationRequest signal to org.freedesktop.systemd1, with
 * --systemd-activation and SystemdService=) or by running its Exec= line.
 *
 * Pure: the service files come from a ServiceCatalog and programs are started by a
 * ServiceLauncher, both edges the supervisor provides; messages leave through the Bus.
 */

/** One `.service` file, as the bus needs it. */
export interface ServiceEntry {
  readonly name: string;
  /** The Exec= line, split into argv only when it is run. */
  readonly exec: string;
  /** User= (the system bus runs the program as this user). */
  readonly user?: string;
  /** SystemdService=: the unit systemd starts instead, with --systemd-activation. */
  readonly systemdService?: string;
  /** Where it was read, for logs. */
  readonly file: string;
}

/** The service files in force: the supervisor scans the configured directories. */
export interface ServiceCatalog {
  /** The entry for a name, looking again on disk when it is not known (as dbus-daemon does). */
  lookup(name: string): ServiceEntry | undefined;
  names(): readonly string[];
}

/** Starts programs for Exec= activation (child processes: an edge, not the core). */
export interface ServiceLauncher {
  /** Starts the program; returns its pid. Throws a BusError (Spawn.*) when it cannot start at all. */
  launch(entry: ServiceEntry, environment: ReadonlyMap<string, string>, kind: string): number;
  /** service_start_timeout passed: ends the program (dbus-daemon kills it too). */
  kill(pid: number): void;
  /**
   * Programs started by this image or an earlier one that still run, activated or not: they are
   * this process's children, so a new image must reap them (or they end as zombies).
   */
  children?(): number[];
}

export const SYSTEMD_NAME = 'org.freedesktop.systemd1';
const SYSTEMD_PATH = '/org/freedesktop/systemd1';
const ACTIVATOR_INTERFACE = 'org.freedesktop.systemd1.Activator';
const START_REPLY_SUCCESS = 1;

export const SpawnError = {
  ExecFailed: 'org.freedesktop.DBus.Error.Spawn.ExecFailed',
  ChildExited: 'org.freedesktop.DBus.Error.Spawn.ChildExited',
  ChildSignaled: 'org.freedesktop.DBus.Error.Spawn.ChildSignaled',
  FileInvalid: 'org.freedesktop.DBus.Error.Spawn.FileInvalid',
  Failed: 'org.freedesktop.DBus.Error.Spawn.Failed',
} as const;
const TIMED_OUT = 'org.freedesktop.DBus.Error.TimedOut';

/** A message waiting for its destination to get an owner, or a StartServiceByName waiting to be answered. */
export interface HeldMessage {
  /** undefined: the bus itself (an ActivationRequest or SetEnvironment waiting for systemd). */
  readonly sender: Peer | undefined;
  readonly routed: RoutedMessage;
  /** StartServiceByName: answered SUCCESS once the name has an owner, never delivered. */
  readonly startRequest: boolean;
  /** Bytes charged to the sender's uid while held (queuedBytes); its fds are charged too. */
  readonly bytes: number;
}

/** How the service is being started. */
export type ActivationVia = 'exec' | 'systemd' | 'await-systemd';

/** One name being started, and everything waiting for it. */
export interface PendingActivation {
  readonly name: string;
  /** The service file it was started from (absent while waiting for systemd itself to connect). */
  readonly entry: ServiceEntry | undefined;
  readonly via: ActivationVia;
  /** When it fails with TimedOut (service_start_timeout), ms since the epoch. */
  readonly deadline: number;
  /** The program started for it (Exec=), until it exits. */
  pid: number | undefined;
  readonly held: HeldMessage[];
}

/** What the activation machinery needs of the bus: routing, answering, limits. */
export interface ActivationHost {
  readonly kind: string;
  readonly limits: { readonly serviceStartTimeoutMs: number; readonly maxPendingServiceStarts: number };
  /** The primary owner of a name, if any. */
  owner(name: string): Peer | undefined;
  isConnected(peer: Peer): boolean;
  /** A message from org.freedesktop.DBus: its serial assigned, shown to monitors, not yet delivered. */
  busMessage(m: { type: MessageType; flags?: number; path: string; interface: string; member: string; destination: string; signature: string; args: unknown[] }): RoutedMessage;
  /** Delivers a message of the bus's own to a connection (its receive policy applies). */
  deliverFromBus(to: Peer, routed: RoutedMessage): void;
  /** Delivers a held message to the name's new owner as if it had just arrived (policy, quotas, replies). */
  deliverHeld(sender: Peer, to: Peer, routed: RoutedMessage): void;
  sendReply(to: Peer, replySerial: number, signature: string, values: unknown[]): void;
  /** An error in answer to any message (dbus-daemon answers held signals too). */
  sendError(to: Peer, replySerial: number, name: string, text: string): void;
  log(event: string, message: string, fields?: Record<string, unknown>): void;
}

const NO_SERVICES: ServiceCatalog = { lookup: () => undefined, names: () => [] };

/** A held message costs its sender's uid its bytes and fds, as if queued (src/bus/uid-accounts.ts). */
function charge(sender: Peer, bytes: number, fds: number): void {
  if (bytes > 0) sender.account.force('queuedBytes', bytes);
  if (fds > 0) sender.account.force('fds', fds);
}

function uncharge(sender: Peer, h: HeldMessage): void {
  if (h.bytes > 0) sender.account.release('queuedBytes', h.bytes);
  const fds = h.routed.fds?.count ?? 0;
  if (fds > 0) sender.account.release('fds', fds);
}

function byteLength(pieces: readonly Buffer[]): number {
  let n = 0;
  for (const p of pieces) n += p.length;
  return n;
}

export class Activator {
  readonly pending = new Map<string, PendingActivation>();
  /** Held messages and start requests on the whole bus: max_pending_service_starts counts these. */
  private heldCount = 0;
  /** UpdateActivationEnvironment's variables, on top of the bus's own environment. */
  readonly environment = new Map<string, string>();
  catalog: ServiceCatalog = NO_SERVICES;
  launcher: ServiceLauncher | undefined;
  /** --systemd-activation: SystemdService= goes to systemd, and systemd itself is waited for. */
  systemdActivation = false;

  constructor(private readonly host: ActivationHost) {}

  get heldMessages(): number {
    return this.heldCount;
  }

  /** The names ListActivatableNames reports (besides org.freedesktop.DBus). */
  activatableNames(): readonly string[] {
    return this.catalog.names();
  }

  /**
   * The service file that can start `name`; undefined for systemd itself under
   * --systemd-activation (it needs none: it connects on its own). Throws ServiceUnknown.
   */
  entryFor(name: string): ServiceEntry | undefined {
    if (this.systemdActivation && name === SYSTEMD_NAME) return undefined;
    const entry = this.catalog.lookup(name);
    if (!entry) throw new BusError(DBusErrorName.ServiceUnknown, `The name ${name} was not provided by any .service files`);
    return entry;
  }

  /**
   * Holds `routed` (from `sender`, or the bus) until `name` has an owner, starting the service
   * if nobody is starting it yet. Throws BusError when the message cannot be held (limits,
   * a program that cannot start): nothing is held then.
   */
  hold(name: string, entry: ServiceEntry | undefined, sender: Peer | undefined, routed: RoutedMessage, startRequest: boolean): void {
    const limit = this.host.limits.maxPendingServiceStarts;
    if (this.heldCount >= limit) {
      throw new BusError(DBusErrorName.LimitsExceeded,
        `The maximum number of pending activations has been reached, activation of ${name} failed (max_pending_service_starts=${limit})`);
    }
    const bytes = startRequest ? 0 : byteLength(routed.pieces);
    const fds = routed.fds?.count ?? 0;
    if (sender && bytes > 0 && !sender.account.allows('queuedBytes', bytes)) {
      throw new BusError(DBusErrorName.LimitsExceeded,
        `uid ${sender.credentials.uid} has too many bytes queued to hold a message for ${name} while it starts`);
    }
    if (sender && fds > 0 && !sender.account.allows('fds', fds)) {
      throw new BusError(DBusErrorName.LimitsExceeded,
        `uid ${sender.credentials.uid} has too many unix fds held by the bus to hold a message for ${name} while it starts`);
    }
    if (sender) charge(sender, bytes, fds);
    const held: HeldMessage = { sender, routed, startRequest, bytes };
    routed.fds?.retain();
    this.heldCount++;
    const existing = this.pending.get(name);
    if (existing) {
      existing.held.push(held);
      return;
    }
    const via: ActivationVia = entry === undefined ? 'await-systemd'
      : this.systemdActivation && entry.systemdService !== undefined ? 'systemd' : 'exec';
    const pending: PendingActivation = {
      name, entry, via, deadline: Date.now() + this.host.limits.serviceStartTimeoutMs, pid: undefined, held: [held],
    };
    this.pending.set(name, pending);
    try {
      this.start(pending, sender);
    } catch (err) {
      this.pending.delete(name);
      this.dropHeld(held);
      throw err;
    }
  }

  private start(p: PendingActivation, requester: Peer | undefined): void {
    const who = requester?.uniqueName ?? 'org.freedesktop.DBus';
    if (p.via === 'await-systemd') return; // systemd connects by itself; until then requests wait
    const entry = p.entry!;
    if (p.via === 'systemd') {
      // A directed signal, as dbus-daemon sends it: no reply is wanted, and systemd may not even
      // be connected yet (then the request itself waits for systemd).
      const request = this.host.busMessage({
        type: MessageType.Signal, path: '/org/freedesktop/DBus', interface: ACTIVATOR_INTERFACE, member: 'ActivationRequest',
        destination: SYSTEMD_NAME, signature: 's', args: [entry.systemdService!],
      });
      this.host.log('activating', 'activating through systemd', { name: p.name, unit: entry.systemdService, requestedBy: who });
      this.sendOrHoldForSystemd(request);
      return;
    }
    if (this.host.kind === 'system' && entry.user === undefined) {
      throw new BusError(SpawnError.FileInvalid, `Cannot do system-bus activation with no user (${entry.file} has no User=)`);
    }
    if (!this.launcher) throw new BusError(SpawnError.Failed, `This bus cannot start programs; ${p.name} cannot be activated`);
    p.pid = this.launcher.launch(entry, this.environment, this.host.kind);
    this.host.log('activating', 'activating service', { name: p.name, pid: p.pid, requestedBy: who, file: entry.file });
  }

  /** A message of the bus's own for systemd: delivered now, or held until systemd takes its name. */
  private sendOrHoldForSystemd(routed: RoutedMessage): void {
    const systemd = this.host.owner(SYSTEMD_NAME);
    if (systemd) {
      this.host.deliverFromBus(systemd, routed);
      return;
    }
    try {
      // Only with --systemd-activation: systemd needs no service file, it connects by itself.
      this.hold(SYSTEMD_NAME, undefined, undefined, routed, false);
    } catch (err) {
      this.host.log('activation-failed', 'a request for systemd could not be held', { member: routed.member, error: (err as Error).message });
    }
  }

  /** StartServiceByName for a name nobody owns: answered once it has an owner (or has failed). */
  startByName(caller: Peer, call: RoutedMessage, name: string): void {
    this.hold(name, this.entryFor(name), caller, call, true);
  }

  /**
   * UpdateActivationEnvironment: the variables apply to every program started from now on and,
   * with systemd activation, are passed on to systemd (SetEnvironment) for the units it starts.
   */
  updateEnvironment(variables: ReadonlyMap<string, string>): void {
    for (const [key, value] of variables) this.environment.set(key, value);
    if (!this.systemdActivation) return;
    const owner = this.host.owner(SYSTEMD_NAME);
    const call = this.host.busMessage({
      type: MessageType.MethodCall, flags: MessageFlag.NoReplyExpected, path: SYSTEMD_PATH,
      interface: 'org.freedesktop.systemd1.Manager', member: 'SetEnvironment',
      // Addressed to the owner's unique name when systemd is there, else to the name it will take.
      destination: owner?.uniqueName ?? SYSTEMD_NAME, signature: 'as',
      args: [[...variables].map(([k, v]) => `${k}=${v}`)],
    });
    this.sendOrHoldForSystemd(call);
  }

  /** `name` has a new primary owner: answer start requests, then deliver what waited, in order. */
  nameAcquired(name: string, owner: Peer): void {
    const p = this.pending.get(name);
    if (!p) return;
    this.pending.delete(name);
    this.host.log('activated', 'service activated', { name, owner: owner.uniqueName, held: p.held.length });
    const waiting = this.release(p);
    for (const h of waiting) {
      if (h.startRequest && h.sender && this.host.isConnected(h.sender)) {
        if ((h.routed.header.flags & MessageFlag.NoReplyExpected) === 0) {
          this.host.sendReply(h.sender, h.routed.header.serial, 'u', [START_REPLY_SUCCESS]);
        }
      }
    }
    for (const h of waiting) {
      if (h.startRequest) continue;
      if (!h.sender) this.host.deliverFromBus(owner, h.routed);
      // A requester that left gets nothing delivered on its behalf (dbus-daemon neither).
      else if (this.host.isConnected(h.sender)) this.host.deliverHeld(h.sender, owner, h.routed);
    }
    for (const h of waiting) h.routed.fds?.release();
  }

  /** Takes every held message out of `p`, releasing what they were charged. */
  private release(p: PendingActivation): HeldMessage[] {
    for (const h of p.held) {
      this.heldCount--;
      if (h.sender) uncharge(h.sender, h);
    }
    return p.held.splice(0);
  }

  private dropHeld(h: HeldMessage): void {
    this.heldCount--;
    if (h.sender) uncharge(h.sender, h);
    h.routed.fds?.release();
  }

  /** The activation failed: everyone waiting gets `errorName` (for a held signal too, as from dbus-daemon). */
  private fail(p: PendingActivation, errorName: string, text: string): void {
    if (this.pending.get(p.name) === p) this.pending.delete(p.name);
    this.host.log('activation-failed', 'service activation failed', { name: p.name, error: errorName, reason: text, waiting: p.held.length });
    for (const h of this.release(p)) {
      if (h.sender && this.host.isConnected(h.sender)) this.host.sendError(h.sender, h.routed.header.serial, errorName, text);
      h.routed.fds?.release();
    }
  }

  /**
   * The program started for an activation ended. Exit status 0 is not a failure (a program may
   * daemonize); anything else fails every activation running the same Exec= line, as in dbus-daemon.
   */
  childExited(pid: number, status: { code?: number | null; signal?: number | null }): void {
    const p = [...this.pending.values()].find((x) => x.pid === pid);
    if (!p) return;
    p.pid = undefined;
    if (status.code === 0) return;
    const [name, text] = status.code !== undefined && status.code !== null
      ? [SpawnError.ChildExited, `Process ${p.name} exited with status ${status.code}`]
      : status.signal !== undefined && status.signal !== null
        ? [SpawnError.ChildSignaled, `Process ${p.name} received signal ${status.signal}`]
        : [DBusErrorName.Failed, `Process ${p.name} exited abnormally`];
    const exec = p.entry?.exec;
    for (const other of [...this.pending.values()]) {
      if (other !== p && exec !== undefined && other.entry?.exec === exec) this.fail(other, name, text);
    }
    this.fail(p, name, text);
  }

  /**
   * org.freedesktop.systemd1.Activator.ActivationFailure(unit, error, message), accepted only
   * from the owner of org.freedesktop.systemd1: every activation of that unit fails with it.
   */
  systemdFailure(from: Peer, message: Message, args: readonly unknown[]): void {
    if (this.host.owner(SYSTEMD_NAME) !== from) {
      this.host.log('activation-failure-forged', 'ignored an ActivationFailure not sent by systemd', { sender: from.uniqueName });
      return;
    }
    if (!this.systemdActivation) {
      this.host.log('activation-failure-unexpected', 'ignored an ActivationFailure: this bus does not use systemd activation');
      return;
    }
    const [unit, errorName, text] = args as [string, string, string];
    if (message.header.signature !== 'sss') return;
    const name = isValidErrorName(errorName) ? errorName : DBusErrorName.Failed;
    for (const p of [...this.pending.values()]) {
      if (p.entry?.systemdService === unit) this.fail(p, name, text);
    }
  }

  /** service_start_timeout: activations not done by now fail with TimedOut (and their program is killed). */
  expire(now = Date.now()): void {
    for (const p of [...this.pending.values()]) {
      if (p.deadline > now) continue;
      if (p.pid !== undefined) this.launcher?.kill(p.pid);
      this.fail(p, TIMED_OUT, `Failed to activate service '${p.name}': timed out (service_start_timeout=${this.host.limits.serviceStartTimeoutMs}ms)`);
    }
  }

  /** A connection left: what it was waiting for is dropped (the service still starts). */
  forget(peer: Peer): void {
    for (const p of this.pending.values()) {
      for (let i = p.held.length - 1; i >= 0; i--) {
        const h = p.held[i]!;
        if (h.sender !== peer) continue;
        p.held.splice(i, 1);
        this.dropHeld(h);
      }
    }
  }

  /** Restore-time: an activation the previous image had running, with what it held. */
  restorePending(p: PendingActivation): void {
    for (const h of p.held) {
      this.heldCount++;
      // Carried over, never refused: charged without a check.
      if (h.sender) charge(h.sender, h.bytes, h.routed.fds?.count ?? 0);
    }
    this.pending.set(p.name, p);
  }

  /** Every fd held in a waiting message (a handoff keeps them open). */
  heldFds(): number[] {
    const fds: number[] = [];
    for (const p of this.pending.values()) for (const h of p.held) if (h.routed.fds) fds.push(...h.routed.fds.fds);
    return fds;
  }

  /** Pids of programs started and not yet ended (a new image keeps watching them). */
  runningPids(): number[] {
    return [...this.pending.values()].flatMap((p) => (p.pid === undefined ? [] : [p.pid]));
  }

  static isActivationFailure(m: Message): boolean {
    return m.header.type === MessageType.Signal && m.header.interface === ACTIVATOR_INTERFACE && m.header.member === 'ActivationFailure';
  }
}
