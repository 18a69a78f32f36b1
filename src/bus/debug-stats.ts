import { isValidBusName } from '../wire/names.js';
import { Variant, type DBusValue } from '../wire/values.js';
import type { Bus } from './bus.js';
import type { DriverCall, DriverMethod } from './driver.js';
import { BusError, DBusErrorName } from './errors.js';
import { formatMatchRule, type MatchRule } from './match-rule.js';
import type { Peer } from './peer.js';

export const DEBUG_STATS = 'org.freedesktop.DBus.Debug.Stats';
const DBUS = 'org.freedesktop.DBus';
const DBUS_PATH = '/org/freedesktop/DBus';

/**
 * What the transport holds for one connection right now (dbus-daemon's
 * _dbus_connection_get_stats): gauges and their high-water marks, not running totals.
 */
export interface PeerTraffic {
  /** Bytes read from the socket that are not yet a complete message. */
  incomingBytes: number;
  peakIncomingBytes: number;
  /** Messages accepted for the client and not yet taken by the kernel. */
  outgoingMessages: number;
  outgoingBytes: number;
  peakOutgoingBytes: number;
  /** Fds held for messages from the client not yet complete, and queued for it. */
  incomingFds: number;
  peakIncomingFds: number;
  outgoingFds: number;
  peakOutgoingFds: number;
}

/** The transport side of the statistics; a BusSink may offer it. */
export interface TrafficSource {
  traffic(peer: Peer): PeerTraffic | undefined;
  /** Connections still in SASL: they have no peer in the bus yet. */
  authenticatingConnections(): number;
}

/** What a connection held when last looked at, and the most it ever held. */
interface Holdings {
  rules: number;
  names: number;
  peakRules: number;
  peakNames: number;
}

const u32 = (n: number) => new Variant('u', Math.min(n, 0xffffffff) >>> 0);

/** A monitor's rules count as match rules in dbus-daemon; an empty list is its one match-all rule. */
function rulesOf(peer: Peer): number {
  return peer.monitorRules ? Math.max(1, peer.monitorRules.length) : peer.matches.length;
}

/** dbus-daemon counts the unique name as an owned name, and every queued request too. */
function namesOf(peer: Peer): number {
  return (peer.uniqueName !== undefined && !peer.isMonitor ? 1 : 0) + peer.names.size;
}

/**
 * org.freedesktop.DBus.Debug.Stats: the counters dbus-daemon keeps for it (bus/stats.c).
 *
 * Current values are read from the peers; peaks need watching every increase. Counts grow only
 * by a connection's own driver calls (Hello, RequestName, AddMatch), so the driver calls
 * `observe` after each call and `forget` when a peer leaves; the running totals are then exact
 * without a scan. Peers that arrive another way (a handoff) are picked up by GetStats' scan.
 */
export class DebugStats {
  private readonly held = new Map<Peer, Holdings>();
  private totalRules = 0;
  private totalNames = 0;
  private peakRules = 0;
  private peakRulesPerConnection = 0;
  private peakNames = 0;
  private peakNamesPerConnection = 0;
  /** dbus-daemon keeps one counter per method, from 0: a poller can tell replies apart. */
  private statsSerial = 0;
  private connectionStatsSerial = 0;

  constructor(private readonly bus: Bus) {}

  /** Brings the peer's counts up to date and raises the peaks. Cheap: call after every driver call. */
  observe(peer: Peer): void {
    if (this.bus.peers.get(peer.id) !== peer) return this.forget(peer);
    const rules = rulesOf(peer);
    const names = namesOf(peer);
    let h = this.held.get(peer);
    if (!h) {
      if (rules === 0 && names === 0) return;
      h = { rules: 0, names: 0, peakRules: 0, peakNames: 0 };
      this.held.set(peer, h);
    }
    this.totalRules += rules - h.rules;
    this.totalNames += names - h.names;
    h.rules = rules;
    h.names = names;
    if (rules > h.peakRules) h.peakRules = rules;
    if (names > h.peakNames) h.peakNames = names;
    if (rules > this.peakRulesPerConnection) this.peakRulesPerConnection = rules;
    if (names > this.peakNamesPerConnection) this.peakNamesPerConnection = names;
    if (this.totalRules > this.peakRules) this.peakRules = this.totalRules;
    if (this.totalNames > this.peakNames) this.peakNames = this.totalNames;
  }

  /** The peer left the bus: what it held no longer counts. Call once per detach. */
  forget(peer: Peer): void {
    const h = this.held.get(peer);
    if (!h) return;
    this.totalRules -= h.rules;
    this.totalNames -= h.names;
    this.held.delete(peer);
  }

  private get traffic(): TrafficSource | undefined {
    const sink = this.bus.sink as Partial<TrafficSource>;
    return typeof sink.traffic === 'function' ? (sink as TrafficSource) : undefined;
  }

  /** GetStats, in dbus-daemon's key order, without the keys that describe libdbus' allocator. */
  stats(): Map<DBusValue, DBusValue> {
    let active = 0;
    for (const peer of this.bus.peers.values()) {
      this.observe(peer);
      if (peer.uniqueName !== undefined) active++;
    }
    const incomplete = this.bus.peers.size - active + (this.traffic?.authenticatingConnections() ?? 0);
    const serial = this.statsSerial;
    this.statsSerial = (this.statsSerial + 1) >>> 0;
    return new Map<DBusValue, DBusValue>([
      ['Serial', u32(serial)],
      ['ActiveConnections', u32(active)],
      ['IncompleteConnections', u32(incomplete)],
      ['MatchRules', u32(this.totalRules)],
      ['PeakMatchRules', u32(this.peakRules)],
      ['PeakMatchRulesPerConnection', u32(this.peakRulesPerConnection)],
      ['BusNames', u32(this.totalNames)],
      ['PeakBusNames', u32(this.peakNames)],
      ['PeakBusNamesPerConnection', u32(this.peakNamesPerConnection)],
    ]);
  }

  /**
   * GetConnectionStats for one peer. `handling` is the call being answered when the peer asks
   * about itself: dbus-daemon counts it among the bytes it holds from that connection.
   */
  connectionStats(peer: Peer, handling: number): Map<DBusValue, DBusValue> {
    this.observe(peer);
    const h = this.held.get(peer);
    const t = this.traffic?.traffic(peer);
    const incoming = (t?.incomingBytes ?? 0) + handling;
    const serial = this.connectionStatsSerial;
    this.connectionStatsSerial = (this.connectionStatsSerial + 1) >>> 0;
    return new Map<DBusValue, DBusValue>([
      ['Serial', u32(serial)],
      ['MatchRules', u32(rulesOf(peer))],
      ['PeakMatchRules', u32(h?.peakRules ?? 0)],
      ['BusNames', u32(namesOf(peer))],
      ['PeakBusNames', u32(h?.peakNames ?? 0)],
      ['UniqueName', new Variant('s', peer.uniqueName!)],
      // Messages are routed as soon as they are complete: none waits to be dispatched.
      ['IncomingMessages', u32(0)],
      ['IncomingBytes', u32(incoming)],
      ['IncomingFDs', u32(t?.incomingFds ?? 0)],
      ['PeakIncomingBytes', u32(Math.max(t?.peakIncomingBytes ?? 0, incoming))],
      ['PeakIncomingFDs', u32(t?.peakIncomingFds ?? 0)],
      ['OutgoingMessages', u32(t?.outgoingMessages ?? 0)],
      ['OutgoingBytes', u32(t?.outgoingBytes ?? 0)],
      ['OutgoingFDs', u32(t?.outgoingFds ?? 0)],
      ['PeakOutgoingBytes', u32(t?.peakOutgoingBytes ?? 0)],
      ['PeakOutgoingFDs', u32(t?.peakOutgoingFds ?? 0)],
    ]);
  }

  /** GetAllMatchRules: every unique name (monitors have none) and its rules as dbus-daemon prints them. */
  allMatchRules(): Map<DBusValue, DBusValue> {
    const out = new Map<DBusValue, DBusValue>();
    for (const peer of this.bus.peers.values()) {
      if (peer.uniqueName === undefined || peer.isMonitor) continue;
      out.set(peer.uniqueName, dumpOrder(peer.matches).map(formatMatchRule));
    }
    return out;
  }
}

/**
 * dbus-daemon's order (bus_match_rule_dump walks its matchmaker): by message type, rules
 * without a type first; within a type, rules naming an interface before those that do not.
 * Within those groups dbus-daemon follows its hash table; here they keep the order of AddMatch.
 */
function dumpOrder(rules: readonly MatchRule[]): MatchRule[] {
  const rank = (r: MatchRule) => (r.type ?? 0) * 2 + (r.interface === undefined ? 1 : 0);
  return rules.map((r, i) => ({ r, i })).sort((a, b) => rank(a.r) - rank(b.r) || a.i - b.i).map(({ r }) => r);
}

/**
 * dbus-daemon serves this interface at /org/freedesktop/DBus only and answers elsewhere as if it
 * did not exist (UnknownInterface), unlike the AccessDenied of its privileged methods.
 */
function atCanonicalPath(call: DriverCall): void {
  const h = call.message.header;
  if (h.path === DBUS_PATH) return;
  throw new BusError(h.interface === undefined ? DBusErrorName.UnknownMethod : DBusErrorName.UnknownInterface,
    `${DBUS} does not understand message ${h.member}`);
}

/**
 * The interface's rows in the driver table. Who may call them is the policy's business, as in
 * dbus-daemon: Debian's system.conf lets only root send to this interface.
 */
export const DEBUG_STATS_METHODS: readonly DriverMethod[] = [
  {
    interface: DEBUG_STATS, member: 'GetStats', in: '', out: 'a{sv}',
    handler(call) {
      atCanonicalPath(call);
      return [call.stats.stats()];
    },
  },
  {
    interface: DEBUG_STATS, member: 'GetConnectionStats', in: 's', out: 'a{sv}',
    handler(call) {
      atCanonicalPath(call);
      const name = call.args[0] as string;
      if (name === DBUS) {
        throw new BusError(DBusErrorName.InvalidArgs, `GetConnectionStats is not meaningful for the message bus "${DBUS}" itself`);
      }
      const peer = isValidBusName(name) ? call.bus.resolve(name) : undefined;
      if (!peer) throw new BusError(DBusErrorName.NameHasNoOwner, `Could not get statistics of name '${name}': no such name`);
      return [call.stats.connectionStats(peer, peer === call.caller ? call.message.bytes.length : 0)];
    },
  },
  {
    interface: DEBUG_STATS, member: 'GetAllMatchRules', in: '', out: 'a{sas}',
    handler(call) {
      atCanonicalPath(call);
      return [call.stats.allMatchRules()];
    },
  },
];
