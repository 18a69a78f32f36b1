import { buildMessage, forgetSender, MessageFlag, MessageType, readBody, type Message, type NewMessage } from '../wire/message.js';
import { marshal } from '../wire/marshal.js';
import type { DBusValue } from '../wire/values.js';
import { Driver, type DriverMethod } from './driver.js';
import { BusError, DBusErrorName } from './errors.js';
import { MatchIndex } from './match-index.js';
import { matchRuleMatches, shareStrings, type MatchRule } from './match-rule.js';
import { NameRegistry, type NameOwnerChange } from './name-registry.js';
import { Peer, type Credentials } from './peer.js';
import { ReplyRegistry } from './reply-registry.js';
import { RoutedMessage } from './routed-message.js';
import type { BusPolicy, PolicyMessage } from './policy.js';
import { RateLimit } from '../util/rate-limit.js';
import { UidAccounts, type UidAccount, type UidResource } from './uid-accounts.js';
import type { UnixFds } from './unix-fds.js';
import { Activator } from './activation.js';

export const BUS_NAME = 'org.freedesktop.DBus';
export const BUS_PATH = '/org/freedesktop/DBus';
const LOCAL_PATH = '/org/freedesktop/DBus/Local';
const LOCAL_INTERFACE = 'org.freedesktop.DBus.Local';
/** The sender monitors see on a connection's Hello (it has no name yet), as dbus-daemon shows it. */
const NOT_ACTIVE_YET = ':not.active.yet';

/**
 * Why a message was not queued: the receiver's own quota (max_outgoing_bytes,
 * max_outgoing_unix_fds) or the paying uid's account would be exceeded.
 */
export type QueueRefusal = 'bytes' | 'fds' | 'uid-bytes' | 'uid-fds';

/** Where the core's decisions take effect; implemented by the transport. */
export interface BusSink {
  /**
   * Queues a message for a peer, as pieces to write in order (a large body is a view
   * of the received bytes), charged to `payer`'s queued bytes (and fds) until the kernel takes
   * them; undefined when queued, else which quota it would exceed (and nothing is queued).
   * `fds` go with the message's first byte; the sink takes its own reference while it holds them.
   */
  send(peer: Peer, pieces: readonly Buffer[], payer: UidAccount, fds?: UnixFds): QueueRefusal | undefined;
  /** Closes a peer's connection; the transport then calls Bus#detach. */
  disconnect(peer: Peer, reason: string): void;
}

export type BusLog = (event: string, message: string, fields?: Record<string, unknown>) => void;

export interface BusLimits {
  maxMatchRulesPerConnection: number;
  maxNamesPerConnection: number;
  maxRepliesPerConnection: number;
  maxConnectionsPerUser: number;
  /** max_outgoing_bytes: bytes queued for one connection, and for one uid on the whole bus. */
  maxOutgoingBytes: number;
  /** max_completed_connections: authenticated connections on the whole bus. */
  maxCompletedConnections: number;
  /** reply_timeout in ms: the bus answers NoReply to a call unanswered this long; 0 = never. */
  replyTimeoutMs: number;
  /** service_start_timeout in ms: an activation not done by then fails with TimedOut. */
  serviceStartTimeoutMs: number;
  /** max_pending_service_starts: messages and start requests held for services being started. */
  maxPendingServiceStarts: number;
  /** max_incoming_unix_fds and max_outgoing_unix_fds (per connection): together, one uid's ceiling of fds. */
  maxIncomingUnixFds: number;
  maxOutgoingUnixFds: number;
}

/**
 * dbus-daemon's compiled defaults (bus/config-parser.c), which are its system bus's: a config
 * file's <limit> elements override them (session.conf raises most of them).
 */
export const DEFAULT_LIMITS: BusLimits = {
  maxMatchRulesPerConnection: 512,
  maxNamesPerConnection: 512,
  maxRepliesPerConnection: 128,
  maxConnectionsPerUser: 256,
  maxOutgoingBytes: 127 * 1024 * 1024,
  maxCompletedConnections: 2048,
  replyTimeoutMs: 0,
  serviceStartTimeoutMs: 25_000,
  maxPendingServiceStarts: 512,
  maxIncomingUnixFds: 64,
  maxOutgoingUnixFds: 64,
};

export interface BusOptions {
  /** 32 hex digits, returned by GetId and sent in the SASL OK. */
  guid: string;
  machineId: string;
  kind: 'session' | 'system' | string;
  /** The bus process's own credentials (answers about org.freedesktop.DBus). */
  self: Credentials;
  limits?: Partial<BusLimits>;
  log?: BusLog;
  /** Extra driver methods, e.g. the supervisor's. */
  extraMethods?: readonly DriverMethod[];
  /** The security policy in force; undefined: every authenticated client may do anything. */
  policy?: BusPolicy;
  /** How a denial names a connection, e.g. `uid=1000 pid=42 comm="busctl"` (dbus-daemon's loginfo). */
  describe?: (credentials: Credentials) => string;
}

/** Why the policy refused a message: which side, and how many rules matched. */
interface Denial {
  readonly direction: 'send' | 'receive';
  readonly matched: number;
}

/**
 * The broker core: peers, names, match rules and routing. It never touches a
 * socket: bytes leave through the BusSink, and the transport feeds messages in.
 */
export class Bus {
  readonly names = new NameRegistry();
  readonly replies = new ReplyRegistry();
  readonly peers = new Map<number, Peer>();
  readonly limits: BusLimits;
  private readonly byUniqueName = new Map<string, Peer>();
  /** What each uid holds, charged when created and released when destroyed. */
  readonly accounts = new UidAccounts((resource) => this.uidCeiling(resource));
  private readonly monitors = new Set<Peer>();
  /** Peers holding at least one eavesdrop=true rule: they see unicast traffic too. */
  private readonly eavesdroppers = new Set<Peer>();
  /** Peers holding at least one match rule. */
  private readonly subscribers = new Set<Peer>();
  /** Every peer's match rules, indexed by interface and member: a broadcast checks only candidates. */
  private readonly ruleIndex = new MatchIndex<Peer>();
  /** Counts broadcasts, so a peer with several matching rules gets one copy. */
  private broadcasts = 0;
  private readonly driver: Driver;
  /** Service activation: .service files, messages held while their service starts. */
  readonly activator: Activator;
  private nextPeerId = 1;
  /** Never reused, also across handoffs: `:1.N`. */
  nextUniqueId = 0;
  private driverSerial = 1;
  readonly log: BusLog;
  private policyInForce: BusPolicy | undefined;
  /** Set by the supervisor: re-reads the configuration; returns why it failed, if it did. */
  reloadConfig: (() => string | undefined) | undefined;
  /** policy-denied lines: a client probing the policy must not flood the log. */
  private readonly denialLog = new RateLimit(20, 10_000);
  private readonly ownerCheck = (sender: string, name: string) => this.names.owner(name)?.uniqueName === sender;

  constructor(
    readonly sink: BusSink,
    readonly options: BusOptions,
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.log = options.log ?? (() => {});
    this.driver = new Driver(this, options.extraMethods ?? []);
    this.policyInForce = options.policy;
    this.activator = new Activator({
      kind: options.kind,
      limits: this.limits,
      owner: (name) => this.names.owner(name),
      isConnected: (peer) => this.peers.get(peer.id) === peer,
      busMessage: (m) => this.busMessage({ ...m, serial: 0, body: marshal(m.signature, m.args as DBusValue[]) }),
      deliverFromBus: (to, routed) => this.deliverFromBus(to, routed),
      deliverHeld: (sender, to, routed) => this.routeUnicast(sender, to, routed),
      sendReply: (to, serial, signature, values) => this.sendReply(to, serial, signature, values as DBusValue[]),
      sendError: (to, serial, name, text) => this.sendError(to, serial, name, text),
      log: (event, message, fields) => this.log(event, message, fields),
    });
  }

  /**
   * A uid may hold what max_connections_per_user connections may hold each (dbus-broker's rule),
   * except queued bytes and fds: what one connection may hold, for the whole uid. Else one uid
   * could make the bus hold 256 × 127 MiB, or 256 × 128 of the bus's own fds (its RLIMIT_NOFILE
   * is shared by every client: a bus out of fds can accept no connection and pass no fd).
   */
  private uidCeiling(resource: UidResource): number {
    const l = this.limits;
    switch (resource) {
      case 'connections': return l.maxConnectionsPerUser;
      case 'names': return l.maxConnectionsPerUser * l.maxNamesPerConnection;
      case 'matchRules': return l.maxConnectionsPerUser * l.maxMatchRulesPerConnection;
      case 'pendingReplies': return l.maxConnectionsPerUser * l.maxRepliesPerConnection;
      case 'queuedBytes': return l.maxOutgoingBytes;
      case 'fds': return l.maxIncomingUnixFds + l.maxOutgoingUnixFds;
    }
  }

  // ---- security policy ------------------------------------------------------

  get policy(): BusPolicy | undefined {
    return this.policyInForce;
  }

  /** A reload: every connection takes its snapshot of the new rules. */
  setPolicy(policy: BusPolicy | undefined): void {
    this.policyInForce = policy;
    for (const peer of this.peers.values()) peer.policy = policy?.forPeer(peer.credentials);
  }

  /** The connect check at authentication (<allow user=…>/<allow group=…>). */
  allowsConnect(credentials: Credentials): boolean {
    return this.policyInForce?.allowsConnect(credentials) ?? true;
  }

  /** <allow own=…>: may this peer own the name? */
  mayOwn(peer: Peer, name: string): boolean {
    return peer.policy === undefined || peer.policy.canOwn(name);
  }

  /**
   * The send check (the sender's rules; none for the bus itself) and then the receive check
   * (the receiver's rules; none for the bus itself). undefined means allowed.
   */
  private policyDenies(
    from: Peer | undefined,
    to: Peer | undefined,
    m: PolicyMessage,
    requestedReply: boolean,
    eavesdropping: boolean,
  ): Denial | undefined {
    if (from?.policy && !from.policy.checkSend(m, to, requestedReply).allowed) {
      return { direction: 'send', matched: from.policy.countSendMatches(m, to, requestedReply) };
    }
    if (to?.policy && !to.policy.checkReceive(m, from, requestedReply, eavesdropping).allowed) {
      return { direction: 'receive', matched: to.policy.countReceiveMatches(m, from, requestedReply, eavesdropping) };
    }
    return undefined;
  }

  private loginfo(peer: Peer | undefined): string {
    if (!peer) return '(bus)';
    return this.options.describe?.(peer.credentials) ?? `uid=${peer.credentials.uid} pid=${peer.credentials.pid}`;
  }

  /** dbus-daemon's AccessDenied text, so that scripts matching on it keep working. */
  private denialText(denial: Denial, from: Peer, to: Peer | undefined, m: PolicyMessage, requestedReply: boolean): string {
    const type = ['invalid', 'method_call', 'method_return', 'error', 'signal'][m.type] ?? 'invalid';
    return `Rejected ${denial.direction} message, ${denial.matched} matched rules; type="${type}", ` +
      `sender="${from.uniqueName ?? '(unset)'}" (${this.loginfo(from)}) interface="${m.interface ?? '(unset)'}" ` +
      `member="${m.member ?? '(unset)'}" error name="${m.errorName ?? '(unset)'}" requested_reply="${requestedReply ? 1 : 0}" ` +
      `destination="${m.destination ?? BUS_NAME}" (${this.loginfo(to)})`;
  }

  /**
   * A unicast message the policy refused: one log line (rate-limited) and AccessDenied to the
   * sender whatever the message's type (a signal or a reply too), as dbus-daemon answers.
   */
  private refuse(from: Peer, to: Peer | undefined, msg: Message, m: PolicyMessage, denial: Denial, requestedReply: boolean): void {
    const text = this.logDenial(denial, from, to, m, requestedReply);
    this.sendError(from, msg.header.serial, DBusErrorName.AccessDenied, text);
  }

  /**
   * A broadcast the policy kept from one receiver: the sender is not told (the others got it),
   * but monitors see the AccessDenied the bus would have sent, as on dbus-daemon.
   */
  private refuseBroadcast(from: Peer | undefined, to: Peer, routed: RoutedMessage, denial: Denial): void {
    const text = from ? this.logDenial(denial, from, to, routed, false) : '';
    if (this.monitors.size === 0) return;
    this.captureError(routed, from?.uniqueName, DBusErrorName.AccessDenied, text);
  }

  /** An error from the bus to the sender of `inReplyTo` that only monitors see (nobody is sent it). */
  private captureError(inReplyTo: RoutedMessage, destination: string | undefined, name: string, text: string): void {
    const msg = buildMessage({
      type: MessageType.Error, serial: this.takeDriverSerial(), replySerial: inReplyTo.header.serial, sender: BUS_NAME,
      destination, errorName: name, signature: 's', body: marshal('s', [text]),
    });
    this.toMonitors(new RoutedMessage(msg, BUS_NAME, [msg.bytes], this.ownerCheck));
  }

  /** dbus-daemon's denial text, logged once as `policy-denied` (rate-limited); returns the text. */
  private logDenial(denial: Denial, from: Peer, to: Peer | undefined, m: PolicyMessage, requestedReply: boolean): string {
    const text = this.denialText(denial, from, to, m, requestedReply);
    const suppressed = this.denialLog.take();
    if (suppressed !== undefined) {
      this.log('policy-denied', text, {
        sender: from.uniqueName,
        destination: m.destination ?? BUS_NAME,
        interface: m.interface,
        member: m.member,
        ...(suppressed > 0 ? { suppressedBefore: suppressed } : {}),
      });
    }
    return text;
  }

  // ---- connection lifecycle -------------------------------------------------

  /**
   * A connection finished authentication. Throws BusError when the user has too many, unless
   * the connection is `inherited` from an earlier image (a handoff): limits govern new
   * connections, and one lowered in the configuration must not disconnect clients already there.
   */
  attach(credentials: Credentials, id = this.nextPeerId++, inherited = false): Peer {
    const account = this.accounts.account(credentials.uid);
    if (!inherited && !account.allows('connections')) {
      throw new BusError(DBusErrorName.LimitsExceeded, `The maximum number of active connections for UID ${credentials.uid} has been reached`);
    }
    if (!inherited && this.peers.size >= this.limits.maxCompletedConnections) {
      throw new BusError(DBusErrorName.LimitsExceeded, `The maximum number of active connections has been reached (max_completed_connections ${this.limits.maxCompletedConnections})`);
    }
    account.force('connections');
    if (id >= this.nextPeerId) this.nextPeerId = id + 1;
    const peer = new Peer(id, credentials, account);
    peer.policy = this.policyInForce?.forPeer(credentials);
    this.peers.set(id, peer);
    return peer;
  }

  /** A connection is gone: release everything it held and tell whoever cares. */
  detach(peer: Peer): void {
    if (!this.peers.delete(peer.id)) return;
    peer.account.release('connections');
    peer.account.release('matchRules', peer.matches.length);
    for (const rule of peer.matches) this.ruleIndex.remove(peer, rule);
    this.driver.stats.forget(peer);
    this.monitors.delete(peer);
    this.subscribers.delete(peer);
    this.eavesdroppers.delete(peer);
    this.replies.dropCaller(peer);
    this.activator.forget(peer);
    for (const { caller, serial } of this.replies.dropCallee(peer)) {
      this.sendError(caller, serial, DBusErrorName.NoReply, 'Message recipient disconnected from message bus without replying');
    }
    const unique = peer.uniqueName;
    if (unique === undefined) return;
    forgetSender(unique);
    this.applyNameChanges(this.names.releaseAll(peer), peer);
    if (!peer.isMonitor) {
      this.byUniqueName.delete(unique);
      this.emitNameOwnerChanged(unique, unique, '');
    }
  }

  /** Hello: give the peer its unique name. The announcement follows the reply. */
  register(peer: Peer): string {
    const name = `:1.${this.nextUniqueId++}`;
    peer.uniqueName = name;
    this.byUniqueName.set(name, peer);
    return name;
  }

  announceUniqueName(peer: Peer): void {
    const name = peer.uniqueName!;
    this.emitNameOwnerChanged(name, '', name);
    this.sendSignal(peer, 'NameAcquired', 's', [name]);
  }

  /** Restore-time registration (handoff): the name was given out by an earlier generation. */
  adoptUniqueName(peer: Peer, name: string): void {
    peer.uniqueName = name;
    this.byUniqueName.set(name, peer);
  }

  /** A message as the router carries it (the driver's start requests; messages held across a handoff). */
  routedMessage(msg: Message, sender: string, pieces: readonly Buffer[] | undefined, fds?: UnixFds): RoutedMessage {
    return new RoutedMessage(msg, sender, pieces, this.ownerCheck, fds);
  }

  peerByUniqueName(name: string): Peer | undefined {
    return this.byUniqueName.get(name);
  }

  /** The connection that currently answers to a unique or well-known name. */
  resolve(name: string): Peer | undefined {
    return name.startsWith(':') ? this.byUniqueName.get(name) : this.names.owner(name);
  }

  // ---- match rules and monitors --------------------------------------------

  /** `inherited`: restored from an earlier image, so no limit refuses it. */
  addMatch(peer: Peer, rule: MatchRule, inherited = false): void {
    if (inherited) {
      peer.account.force('matchRules');
    } else if (peer.matches.length >= this.limits.maxMatchRulesPerConnection) {
      throw new BusError(DBusErrorName.LimitsExceeded, `connection ${peer.label} has too many match rules (max_match_rules_per_connection ${this.limits.maxMatchRulesPerConnection})`);
    } else if (!peer.account.charge('matchRules')) {
      throw new BusError(DBusErrorName.LimitsExceeded, `uid ${peer.credentials.uid} has too many match rules on the bus (${this.accounts.ceilings().matchRules})`);
    }
    // Rules added one after another tend to name the same sender, interface or member.
    const previous = peer.matches[peer.matches.length - 1];
    if (previous !== undefined) shareStrings(rule, previous);
    peer.matches.push(rule);
    this.ruleIndex.add(peer, rule);
    this.subscribers.add(peer);
    if (rule.eavesdrop) this.eavesdroppers.add(peer);
  }

  removeMatch(peer: Peer, rule: MatchRule): void {
    const at = peer.matches.findIndex((r) => r.canonical === rule.canonical);
    if (at < 0) throw new BusError(DBusErrorName.MatchRuleNotFound, 'The given match rule wasn\'t found and can\'t be removed');
    this.ruleIndex.remove(peer, peer.matches[at]!);
    peer.matches.splice(at, 1);
    peer.account.release('matchRules');
    if (peer.matches.length === 0) this.subscribers.delete(peer);
    if (!peer.matches.some((r) => r.eavesdrop)) this.eavesdroppers.delete(peer);
  }

  /**
   * BecomeMonitor: the peer gives up its names and from now on only listens. As in
   * dbus-daemon, each name (the unique one last) is released like a ReleaseName: the
   * peer gets NameLost for it while it can still be addressed.
   */
  becomeMonitor(peer: Peer, rules: MatchRule[]): void {
    const unique = peer.uniqueName!;
    this.applyNameChanges(this.names.releaseAll(peer));
    this.sendSignal(peer, 'NameLost', 's', [unique]);
    this.emitNameOwnerChanged(unique, unique, '');
    this.byUniqueName.delete(unique);
    peer.account.release('matchRules', peer.matches.length);
    for (const rule of peer.matches) this.ruleIndex.remove(peer, rule);
    peer.matches.length = 0;
    this.subscribers.delete(peer);
    this.eavesdroppers.delete(peer);
    peer.monitorRules = rules;
    this.monitors.add(peer);
  }

  /**
   * Restore-time: a connection of the previous generation could not be taken over.
   * Everyone hears what its disconnect would have told them.
   */
  announceDeparted(uniqueName: string, primaryOf: ReadonlyArray<{ name: string; newOwner: Peer | undefined }>): void {
    for (const { name, newOwner } of primaryOf) {
      this.emitNameOwnerChanged(name, uniqueName, newOwner?.uniqueName ?? '');
      if (newOwner) this.sendSignal(newOwner, 'NameAcquired', 's', [name]);
    }
    this.emitNameOwnerChanged(uniqueName, uniqueName, '');
  }

  /** Restore-time: a peer that was a monitor in the previous generation. */
  restoreMonitor(peer: Peer, rules: MatchRule[]): void {
    peer.monitorRules = rules;
    this.monitors.add(peer);
  }

  // ---- names ---------------------------------------------------------------

  /** Turns registry change records into NameOwnerChanged, NameLost and NameAcquired. */
  applyNameChanges(changes: readonly NameOwnerChange[], departing?: Peer): void {
    for (const c of changes) {
      if (c.oldOwner && c.oldOwner !== departing) this.sendSignal(c.oldOwner, 'NameLost', 's', [c.name]);
      this.emitNameOwnerChanged(c.name, c.oldOwner?.uniqueName ?? '', c.newOwner?.uniqueName ?? '');
      if (c.newOwner) this.sendSignal(c.newOwner, 'NameAcquired', 's', [c.name]);
    }
    // Messages held while a service started go to its new owner, after its NameAcquired.
    if (this.activator.pending.size === 0) return;
    for (const c of changes) if (c.newOwner && !c.oldOwner) this.activator.nameAcquired(c.name, c.newOwner);
  }

  private emitNameOwnerChanged(name: string, oldOwner: string, newOwner: string): void {
    // Nobody could receive it: skip building it (every connect and disconnect emits one).
    if (this.subscribers.size === 0 && this.monitors.size === 0) return;
    this.driverEmit({
      type: MessageType.Signal,
      serial: 0,
      path: BUS_PATH,
      interface: BUS_NAME,
      member: 'NameOwnerChanged',
      signature: 'sss',
      body: marshal('sss', [name, oldOwner, newOwner]),
    });
  }

  private sendSignal(to: Peer, member: string, signature: string, body: DBusValue[]): void {
    if (!to.uniqueName) return;
    this.driverEmit({
      type: MessageType.Signal,
      serial: 0,
      path: BUS_PATH,
      interface: BUS_NAME,
      member,
      destination: to.uniqueName,
      signature,
      body: marshal(signature, body),
    });
  }

  // ---- the driver's own messages -------------------------------------------

  private takeDriverSerial(): number {
    const serial = this.driverSerial++;
    if (this.driverSerial > 0xffffffff) this.driverSerial = 1;
    return serial;
  }

  /** Sends a message from org.freedesktop.DBus (serial assigned here). */
  driverEmit(m: NewMessage): void {
    if (m.destination === undefined) {
      m.serial = this.takeDriverSerial();
      m.sender = BUS_NAME;
      const msg = buildMessage(m);
      this.broadcast(new RoutedMessage(msg, BUS_NAME, [msg.bytes], this.ownerCheck), undefined);
      return;
    }
    const routed = this.busMessage(m);
    if (routed.recipient) this.deliverFromBus(routed.recipient, routed);
  }

  /** A unicast message of the bus's own (serial assigned here), shown to monitors now; not yet delivered. */
  private busMessage(m: NewMessage): RoutedMessage {
    m.serial = this.takeDriverSerial();
    m.sender = BUS_NAME;
    const msg = buildMessage(m);
    const routed = new RoutedMessage(msg, BUS_NAME, [msg.bytes], this.ownerCheck);
    routed.recipient = m.destination === undefined ? undefined : this.resolve(m.destination);
    this.toMonitors(routed);
    return routed;
  }

  /** Delivers a message of the bus's own; the receiver's policy may refuse it. */
  private deliverFromBus(to: Peer, routed: RoutedMessage): void {
    routed.recipient = to;
    this.toEavesdroppers(routed, to, undefined);
    // The bus wants no answer: a message of its own that a receiver refuses is dropped,
    // and only monitors see the AccessDenied (as on dbus-daemon).
    const denial = to.policy ? this.policyDenies(undefined, to, routed, true, false) : undefined;
    if (denial) {
      if (this.monitors.size > 0) this.captureError(routed, BUS_NAME, DBusErrorName.AccessDenied,
        `Rejected receive message from the bus, ${denial.matched} matched rules; type="${routed.type}" member="${routed.member ?? '(unset)'}"`);
      return;
    }
    this.deliver(to, routed);
  }

  replyTo(caller: Peer, call: Message, signature: string, values: DBusValue[]): void {
    if ((call.header.flags & MessageFlag.NoReplyExpected) !== 0) return;
    this.driverEmit({
      type: MessageType.MethodReturn,
      serial: 0,
      replySerial: call.header.serial,
      destination: caller.uniqueName,
      signature,
      body: signature === '' ? undefined : marshal(signature, values),
    });
  }

  /** A reply sent after the fact (a deferred driver method, possibly by a later generation). */
  sendReply(caller: Peer, replySerial: number, signature: string, values: DBusValue[]): void {
    if (!caller.uniqueName || !this.peers.has(caller.id)) return;
    this.driverEmit({
      type: MessageType.MethodReturn,
      serial: 0,
      replySerial,
      destination: caller.uniqueName,
      signature,
      body: signature === '' ? undefined : marshal(signature, values),
    });
  }

  sendError(caller: Peer, replySerial: number, name: string, text: string): void {
    if (!caller.uniqueName || !this.peers.has(caller.id)) return;
    this.driverEmit({
      type: MessageType.Error,
      serial: 0,
      replySerial,
      errorName: name,
      destination: caller.uniqueName,
      signature: 's',
      body: marshal('s', [text]),
    });
  }

  private errorForCall(caller: Peer, call: Message, name: string, text: string): void {
    if (call.header.type !== MessageType.MethodCall) return;
    if ((call.header.flags & MessageFlag.NoReplyExpected) !== 0) return;
    this.sendError(caller, call.header.serial, name, text);
  }

  // ---- routing --------------------------------------------------------------

  /**
   * Routes one complete message received from `peer`, with the fds that came with it (the caller
   * keeps its reference and releases it afterwards; receivers take their own).
   */
  receive(peer: Peer, msg: Message, fds?: UnixFds): void {
    const h = msg.header;
    if (peer.isMonitor) return this.sink.disconnect(peer, 'monitors may not send messages');
    if ((h.unixFds ?? 0) !== (fds?.count ?? 0) || (fds && !peer.acceptsFds)) {
      return this.sink.disconnect(peer, 'sent unix fds without negotiating them, or not the number its header says');
    }
    if (h.path === LOCAL_PATH || h.interface === LOCAL_INTERFACE) {
      return this.sink.disconnect(peer, 'sent a message with the reserved local path or interface');
    }
    if (h.type < MessageType.MethodCall || h.type > MessageType.Signal) return; // unknown types are ignored
    if (!peer.registered) {
      if (h.type === MessageType.MethodCall && h.destination === BUS_NAME && h.member === 'Hello' &&
          (h.interface === undefined || h.interface === BUS_NAME)) {
        // Monitors see a connection arrive, with the sender dbus-daemon gives it before Hello.
        if (this.monitors.size > 0) this.toMonitors(new RoutedMessage(msg, NOT_ACTIVE_YET, undefined, this.ownerCheck));
        return this.driver.dispatch(peer, msg);
      }
      return this.sink.disconnect(peer, 'sent a message other than Hello without being registered');
    }
    const sender = peer.uniqueName!;
    const routed = new RoutedMessage(msg, sender, undefined, this.ownerCheck, fds);

    const destination = h.destination;
    if (destination === undefined) {
      if (h.type === MessageType.Signal) return this.broadcast(routed, peer);
      this.toMonitors(routed);
      // Only signals are broadcast. A call without destination is for the bus connection
      // as a peer (dbus-daemon, dbus-broker); a reply without destination goes nowhere.
      if (h.type === MessageType.MethodCall) this.driver.dispatchPeer(peer, msg);
      return;
    }
    if (destination === BUS_NAME) {
      if (h.type === MessageType.Signal && Activator.isActivationFailure(msg)) return this.receiveActivationFailure(peer, msg, routed);
      this.toMonitors(routed);
      this.toEavesdroppers(routed, undefined, peer);
      if (peer.policy) {
        const denial = this.policyDenies(peer, undefined, routed, false, false);
        if (denial) return this.refuse(peer, undefined, msg, routed, denial, false);
      }
      if (h.type === MessageType.MethodCall) this.driver.dispatch(peer, msg);
      return;
    }
    const to = this.resolve(destination);
    routed.recipient = to;
    if (h.type === MessageType.MethodReturn || h.type === MessageType.Error) {
      // Replies travel only when they answer a call the bus saw.
      if (!to || !this.replies.consume(peer, to, h.replySerial!)) {
        this.log('reply-dropped', 'dropped a reply nobody asked for', { from: sender, to: destination });
        return;
      }
      this.toMonitors(routed);
      this.toEavesdroppers(routed, to, peer);
      // Only requested replies get here (unrequested ones were dropped above).
      if (this.policyInForce) {
        const denial = this.policyDenies(peer, to, routed, true, false);
        if (denial) return this.refuse(peer, to, msg, routed, denial, true);
      }
      if (routed.fds && !to.acceptsFds) {
        this.refuseFds(peer, msg);
        // dbus-daemon stops at telling the replier, and the caller waits for a reply that can
        // no longer come (for ever, if its library sets no timeout): tell it too.
        this.sendError(to, h.replySerial!, DBusErrorName.NotSupported,
          `The reply from ${sender} carried Unix file descriptors, which this connection did not negotiate; the bus dropped it`);
        return;
      }
      this.deliver(to, routed);
      return;
    }
    if (!to) return this.receiveForNobody(peer, routed);
    this.toMonitors(routed);
    this.routeUnicast(peer, to, routed);
  }

  /**
   * A call or unicast signal for a name nobody owns: held while its service starts (auto-start),
   * else answered ServiceUnknown or, with NO_AUTO_START, NameHasNoOwner.
   */
  private receiveForNobody(peer: Peer, routed: RoutedMessage): void {
    const msg = routed.message;
    const destination = routed.destination!;
    if ((msg.header.flags & MessageFlag.NoAutoStart) !== 0) {
      this.toMonitors(routed);
      this.errorForCall(peer, msg, DBusErrorName.NameHasNoOwner, `Name "${destination}" does not exist`);
      return;
    }
    try {
      const entry = this.activator.entryFor(destination);
      // As much of the send check as can be made before the receiver exists (dbus-daemon's rule).
      if (entry && this.policyInForce) {
        const denial = this.policyDenies(peer, undefined, routed, false, false);
        if (denial) {
          this.toMonitors(routed);
          return this.refuse(peer, undefined, msg, routed, denial, false);
        }
      }
      this.activator.hold(destination, entry, peer, routed, false);
    } catch (err) {
      if (!(err instanceof BusError)) throw err;
      this.toMonitors(routed);
      // dbus-daemon answers a call; a signal's sender is not waiting for an answer.
      this.errorForCall(peer, msg, err.dbusName, err.message);
      return;
    }
    // After the ActivationRequest it caused, as monitors see it on dbus-daemon.
    this.toMonitors(routed);
  }

  /**
   * org.freedesktop.systemd1.Activator.ActivationFailure, sent by systemd to the bus: monitors see
   * it after the errors it causes, as on dbus-daemon.
   */
  private receiveActivationFailure(peer: Peer, msg: Message, routed: RoutedMessage): void {
    this.toEavesdroppers(routed, undefined, peer);
    const denial = peer.policy ? this.policyDenies(peer, undefined, routed, false, false) : undefined;
    if (denial) {
      this.toMonitors(routed);
      return this.refuse(peer, undefined, msg, routed, denial, false);
    }
    const uid = peer.credentials.uid;
    if (uid === 0 || uid === this.options.self.uid) {
      let args: DBusValue[] = [];
      try {
        args = readBody(msg);
      } catch {
        // a malformed body names no unit: nothing fails
      }
      this.activator.systemdFailure(peer, msg, args);
    } else {
      this.log('activation-failure-forged', 'ignored an ActivationFailure from an unprivileged connection', { sender: peer.uniqueName, uid });
    }
    this.toMonitors(routed);
  }

  /**
   * A call or unicast signal to the connection `to`: the reply limits, the policy, fd support and
   * the receiver's quota decide; a refused call is answered with an error. Also the way a
   * message held for a starting service reaches it (monitors saw it when it arrived).
   */
  private routeUnicast(peer: Peer, to: Peer, routed: RoutedMessage): void {
    const msg = routed.message;
    const h = msg.header;
    const sender = peer.uniqueName!;
    const destination = h.destination!;
    routed.recipient = to;
    const expectsReply = h.type === MessageType.MethodCall && (h.flags & MessageFlag.NoReplyExpected) === 0;
    if (expectsReply && peer.pendingCalls >= this.limits.maxRepliesPerConnection) {
      this.errorForCall(peer, msg, DBusErrorName.LimitsExceeded,
        `The maximum number of pending replies for "${sender}" (${this.limits.maxRepliesPerConnection}) has been reached`);
      return;
    }
    if (expectsReply && !peer.account.allows('pendingReplies')) {
      this.errorForCall(peer, msg, DBusErrorName.LimitsExceeded,
        `The maximum number of pending replies for uid ${peer.credentials.uid} (${this.accounts.ceilings().pendingReplies}) has been reached`);
      return;
    }
    this.toEavesdroppers(routed, to, peer);
    if (this.policyInForce) {
      const denial = this.policyDenies(peer, to, routed, false, false);
      if (denial) return this.refuse(peer, to, msg, routed, denial, false);
    }
    if (routed.fds && !to.acceptsFds) return this.refuseFds(peer, msg);
    // A call or unicast signal is the sender's doing: its bytes are charged to the sender's uid.
    const refused = this.deliver(to, routed, peer.account);
    if (refused) {
      this.errorForCall(peer, msg, DBusErrorName.LimitsExceeded, `${this.quotaText(refused, destination, peer, routed)}; the message was not delivered`);
      return;
    }
    if (expectsReply) {
      const timeout = this.limits.replyTimeoutMs;
      this.replies.expect(peer, h.serial, to, timeout > 0 ? Date.now() + timeout : Infinity);
    }
  }

  /**
   * A message with fds for a receiver that did not negotiate them is not delivered; its sender
   * gets NotSupported whatever the message's type, as from dbus-daemon (bus/dispatch.c, its
   * text with the missing space), which answers every refused unicast message.
   */
  private refuseFds(from: Peer, msg: Message): void {
    this.sendError(from, msg.header.serial, DBusErrorName.NotSupported,
      "Tried to send message with Unix file descriptorsto a client that doesn't support that.");
  }

  /** Which quota refused a message for `destination` (the LimitsExceeded text). */
  private quotaText(refused: QueueRefusal, destination: string, sender: Peer, routed: RoutedMessage): string {
    const uid = sender.credentials.uid;
    const l = this.limits;
    switch (refused) {
      case 'bytes': return `The destination ${destination} has too many bytes queued (max_outgoing_bytes ${l.maxOutgoingBytes})`;
      case 'fds': return `The destination ${destination} has too many unix fds queued (max_outgoing_unix_fds ${l.maxOutgoingUnixFds}); this message carries ${routed.fds?.count ?? 0}`;
      case 'uid-bytes': return `uid ${uid} has max_outgoing_bytes (${l.maxOutgoingBytes}) queued for receivers that have not read them`;
      case 'uid-fds': return `uid ${uid} has ${sender.account.fds} unix fds held by the bus, queued or in half-received messages, and may hold at most ${this.accounts.ceilings().fds} (max_incoming_unix_fds + max_outgoing_unix_fds); this message carries ${routed.fds?.count ?? 0}`;
    }
  }

  /**
   * Queues a message for `to`. Its bytes and fds are charged to whoever asked for them: the
   * receiver for a broadcast it subscribed to, a reply it asked for or anything the bus sends
   * it; the sender for a call or a unicast signal. So neither a flooder nor a reader that never
   * reads can fill another uid's account. Returns why it was not queued, if it was not.
   */
  private deliver(to: Peer, routed: RoutedMessage, payer: UidAccount = to.account): QueueRefusal | undefined {
    // A receiver that did not negotiate fd passing could not even parse it: it is skipped.
    if (routed.fds && !to.acceptsFds) return undefined;
    const refused = this.sink.send(to, routed.pieces, payer, routed.fds);
    if (!refused) {
      to.overQuota = false;
      return undefined;
    }
    // Logged once per episode: a stuck reader would otherwise flood the log.
    if (!to.overQuota) {
      this.log('quota-drop', 'messages are not queued for a receiver over its outbound quota', {
        receiver: to.label,
        sender: routed.sender,
        type: routed.type,
        chargedToUid: payer.uid,
        quota: refused,
      });
    }
    to.overQuota = true;
    return refused;
  }

  /** A signal to every subscriber that wants it; a receiver the policy refuses is skipped silently. */
  private broadcast(routed: RoutedMessage, from: Peer | undefined): void {
    this.toMonitors(routed);
    if (this.ruleIndex.count === 0) return;
    const stamp = ++this.broadcasts;
    this.ruleIndex.candidates(routed, (peer, rule) => {
      if (peer.lastBroadcast === stamp || !matchRuleMatches(rule, routed)) return;
      peer.lastBroadcast = stamp;
      const denial = this.policyInForce ? this.policyDenies(from, peer, routed, false, false) : undefined;
      if (denial) this.refuseBroadcast(from, peer, routed, denial);
      else this.deliver(peer, routed);
    });
  }

  /** Overhearing needs an eavesdrop match rule and, under a policy, an eavesdrop="true" receive rule. */
  private toEavesdroppers(routed: RoutedMessage, destination: Peer | undefined, from: Peer | undefined): void {
    if (this.eavesdroppers.size === 0) return;
    for (const peer of this.eavesdroppers) {
      if (peer === destination) continue;
      for (const rule of peer.matches) {
        if (rule.eavesdrop && matchRuleMatches(rule, routed)) {
          if (!this.policyInForce || !this.policyDenies(from, peer, routed, false, true)) this.deliver(peer, routed);
          break;
        }
      }
    }
  }

  private toMonitors(routed: RoutedMessage): void {
    if (this.monitors.size === 0) return;
    for (const monitor of this.monitors) {
      const rules = monitor.monitorRules!;
      if (rules.length === 0 || rules.some((r) => matchRuleMatches(r, routed))) this.deliver(monitor, routed);
    }
  }

  /**
   * reply_timeout: answers NoReply for every call unanswered past its time (a late reply is then
   * dropped as unrequested). Called by the supervisor's timer; cheap when nothing expired.
   */
  expireCalls(now = Date.now()): number {
    const expired = this.replies.expire(now);
    for (const { caller, serial } of expired) {
      // dbus-daemon's text (bus/connection.c); libdbus's test-dbus-daemon /no-reply/timeout checks it.
      this.sendError(caller, serial, DBusErrorName.NoReply, 'Message did not receive a reply (timeout by message bus)');
    }
    return expired.length;
  }

  /** Names visible in ListNames: the bus itself, unique names, owned well-known names. */
  listNames(): string[] {
    return [BUS_NAME, ...this.byUniqueName.keys(), ...this.names.ownedNames()];
  }

  /** Peer ids at or below this were handed out (ids are never reused). */
  peerIdHighWater(): number {
    return this.nextPeerId - 1;
  }

  /** Restore-time: continue numbering where the previous generation stopped. */
  restoreCounters(nextUniqueId: number, nextPeerId: number, driverSerial: number): void {
    this.nextUniqueId = nextUniqueId;
    this.nextPeerId = nextPeerId;
    this.driverSerial = driverSerial;
  }

  nextDriverSerial(): number {
    return this.driverSerial;
  }

  setDriverSerial(serial: number): void {
    this.driverSerial = serial;
  }
}

