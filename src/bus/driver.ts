import { Buffer } from 'node:buffer';
import { WireError } from '../util/errors.js';
import { readBody, type Message } from '../wire/message.js';
import { isValidBusName, isValidUniqueName, isValidWellKnownName } from '../wire/names.js';
import { Variant, type DBusValue } from '../wire/values.js';
import type { Bus } from './bus.js';
import { BusError, DBusErrorName } from './errors.js';
import { DRIVER_INTROSPECTION } from './introspection.js';
import { parseSignature } from '../wire/signature.js';
import { parseMatchRule } from './match-rule.js';
import { DEBUG_STATS, DEBUG_STATS_METHODS, DebugStats } from './debug-stats.js';
import type { Peer } from './peer.js';

const DBUS = 'org.freedesktop.DBus';
const MONITORING = 'org.freedesktop.DBus.Monitoring';
const INTROSPECTABLE = 'org.freedesktop.DBus.Introspectable';
const PEER = 'org.freedesktop.DBus.Peer';
const PROPERTIES = 'org.freedesktop.DBus.Properties';
const DBUS_PATH = '/org/freedesktop/DBus';

/** One call to the driver, as a handler sees it. */
export interface DriverCall {
  bus: Bus;
  caller: Peer;
  message: Message;
  args: DBusValue[];
  /** Work that must follow the reply on the wire (Hello's announcements). */
  afterReply(fn: () => void): void;
  /** The driver's introspection XML, including extra interfaces. */
  introspection: string;
  /** org.freedesktop.DBus.Debug.Stats' counters. */
  stats: DebugStats;
}

/** One row of the driver table: checked before the handler runs. */
export interface DriverMethod {
  interface: string;
  member: string;
  in: string;
  out: string;
  /** Only Hello may be called before Hello. */
  beforeHello?: boolean;
  /**
   * Served only at /org/freedesktop/DBus: the specification lets methods older than its
   * version 0.26 work at any path and asks that newer or sensitive ones do not (as dbus-daemon does).
   */
  canonicalPathOnly?: boolean;
  /** The reply values, or null when the reply is sent later (the supervisor's Handoff). */
  handler(call: DriverCall): DBusValue[] | null;
}

/** Properties of the org.freedesktop.DBus interface; the other driver interfaces have none. */
const PROPERTY_VALUES = new Map<string, (bus: Bus) => Variant>([
  // HeaderFiltering: the bus drops header fields it does not know when forwarding (stitchSender).
  ['Features', (bus) => new Variant('as', bus.activator.systemdActivation ? ['HeaderFiltering', 'SystemdActivation'] : ['HeaderFiltering'])],
  ['Interfaces', () => new Variant('as', [MONITORING, DEBUG_STATS])],
]);
const DRIVER_INTERFACES = new Set([DBUS, MONITORING, DEBUG_STATS, INTROSPECTABLE, PEER, PROPERTIES]);
/**
 * Interfaces that exist only at /org/freedesktop/DBus: elsewhere a call to them is
 * UnknownInterface, or UnknownMethod without an interface field (dbus-daemon's interfaces
 * without INTERFACE_FLAG_ANY_PATH). The others are served at every path, where a newer method
 * of theirs answers AccessDenied instead (DriverMethod.canonicalPathOnly).
 */
const CANONICAL_PATH_INTERFACES: ReadonlySet<string> = new Set([MONITORING, PROPERTIES]);
const NO_INTERFACES: ReadonlySet<string> = new Set();

/** The properties of a driver interface, or UnknownInterface (dbus-daemon's bus_driver_find_interface). */
function propertiesOf(iface: string): ReadonlyMap<string, (bus: Bus) => Variant> {
  if (iface === DBUS) return PROPERTY_VALUES;
  if (DRIVER_INTERFACES.has(iface)) return new Map();
  throw new BusError(DBusErrorName.UnknownInterface, `Interface "${iface}" not found`);
}

function property(iface: string, prop: string): (bus: Bus) => Variant {
  const get = propertiesOf(iface).get(prop);
  if (!get) throw new BusError(DBusErrorName.UnknownProperty, `Property "${iface}.${prop}" not found`);
  return get;
}

/** dbus-daemon's second line of defence for dangerous methods: the bus's own user or root. */
function requirePrivileged(call: DriverCall): void {
  const uid = call.caller.credentials.uid;
  if (uid !== 0 && uid !== call.bus.options.self.uid) {
    throw new BusError(DBusErrorName.AccessDenied, `Connection ${call.caller.label} (uid ${uid}) may not call ${call.message.header.member}`);
  }
}

function nameArg(call: DriverCall): string {
  return call.args[0] as string;
}

function lookup(call: DriverCall, what: string): Peer | 'bus' {
  const name = nameArg(call);
  if (name === DBUS) return 'bus';
  const peer = isValidBusName(name) ? call.bus.resolve(name) : undefined;
  if (!peer) throw new BusError(DBusErrorName.NameHasNoOwner, `Could not get ${what} of name '${name}': no such name`);
  return peer;
}

function credentialsOf(call: DriverCall, what: string) {
  const target = lookup(call, what);
  return target === 'bus' ? call.bus.options.self : target.credentials;
}

function checkOwnableName(name: string, verb: string): void {
  if (!isValidBusName(name)) throw new BusError(DBusErrorName.InvalidArgs, `Requested bus name "${name}" is not valid`);
  if (isValidUniqueName(name)) {
    throw new BusError(DBusErrorName.InvalidArgs, `Cannot ${verb} a service starting with ':' such as "${name}"`);
  }
  if (name === DBUS) {
    throw new BusError(DBusErrorName.InvalidArgs, `Connection is not allowed to ${verb} the service "${DBUS}" because it is reserved for D-Bus' use only`);
  }
}

const METHODS: DriverMethod[] = [
  {
    interface: DBUS, member: 'Hello', in: '', out: 's', beforeHello: true,
    handler(call) {
      if (call.caller.registered) throw new BusError(DBusErrorName.Failed, 'Already handled an Hello message');
      const name = call.bus.register(call.caller);
      call.afterReply(() => call.bus.announceUniqueName(call.caller));
      return [name];
    },
  },
  {
    interface: DBUS, member: 'RequestName', in: 'su', out: 'u',
    handler(call) {
      const [name, flags] = call.args as [string, number];
      checkOwnableName(name, 'acquire');
      const peer = call.caller;
      if (!call.bus.mayOwn(peer, name)) {
        throw new BusError(DBusErrorName.AccessDenied, `Connection "${peer.label}" is not allowed to own the service "${name}" due to security policies in the configuration file`);
      }
      // The unique name counts as one of the names, as in dbus-daemon (it is a service there).
      if (!peer.names.has(name) && peer.names.size + 1 >= call.bus.limits.maxNamesPerConnection) {
        throw new BusError(DBusErrorName.LimitsExceeded, `Connection "${peer.label}" is not allowed to own more services (increase limits in configuration file if required)`);
      }
      if (!peer.names.has(name) && !peer.account.allows('names')) {
        throw new BusError(DBusErrorName.LimitsExceeded, `uid ${peer.credentials.uid} is not allowed to own more services on the bus (${call.bus.accounts.ceilings().names}; increase limits in configuration file if required)`);
      }
      const { reply, changes } = call.bus.names.request(peer, name, flags);
      call.bus.applyNameChanges(changes);
      // A replaced owner that would not queue lost the name by this call, not by one of its own.
      for (const c of changes) if (c.oldOwner && c.oldOwner !== peer) call.stats.observe(c.oldOwner);
      return [reply];
    },
  },
  {
    interface: DBUS, member: 'ReleaseName', in: 's', out: 'u',
    handler(call) {
      const name = nameArg(call);
      checkOwnableName(name, 'release');
      const { reply, changes } = call.bus.names.release(call.caller, name);
      call.bus.applyNameChanges(changes);
      return [reply];
    },
  },
  {
    // Answered once the service owns its name (SUCCESS), or with the error its start ended in.
    interface: DBUS, member: 'StartServiceByName', in: 'su', out: 'u',
    handler(call) {
      const name = nameArg(call);
      if (name === DBUS || call.bus.resolve(name)) return [2]; // DBUS_START_REPLY_ALREADY_RUNNING
      if (!isValidBusName(name)) throw new BusError(DBusErrorName.ServiceUnknown, `The name ${name} was not provided by any .service files`);
      call.bus.activator.startByName(call.caller, call.bus.routedMessage(call.message, call.caller.uniqueName!, []), name);
      return null;
    },
  },
  {
    interface: DBUS, member: 'UpdateActivationEnvironment', in: 'a{ss}', out: '', canonicalPathOnly: true,
    handler(call) {
      requirePrivileged(call);
      if (call.bus.options.kind === 'system') {
        throw new BusError(DBusErrorName.AccessDenied, 'Cannot change activation environment on a system bus.');
      }
      const variables = new Map<string, string>();
      for (const [key, value] of call.args[0] as Map<string, string>) {
        // A name with '=' or nothing in it cannot be an environment variable; dbus-daemon passes it on anyway.
        if (key === '' || key.includes('=')) throw new BusError(DBusErrorName.InvalidArgs, `"${key}" is not a valid environment variable name`);
        variables.set(key, value);
      }
      call.bus.activator.updateEnvironment(variables);
      return [];
    },
  },
  {
    interface: DBUS, member: 'NameHasOwner', in: 's', out: 'b',
    handler(call) {
      const name = nameArg(call);
      return [name === DBUS || (isValidBusName(name) && call.bus.resolve(name) !== undefined)];
    },
  },
  { interface: DBUS, member: 'ListNames', in: '', out: 'as', handler: (call) => [call.bus.listNames()] },
  { interface: DBUS, member: 'ListActivatableNames', in: '', out: 'as', handler: (call) => [[DBUS, ...call.bus.activator.activatableNames()]] },
  {
    interface: DBUS, member: 'AddMatch', in: 's', out: '',
    handler(call) {
      const rule = parseMatchRule(nameArg(call));
      // Under a policy, what an eavesdropper may overhear is decided per message by its
      // eavesdrop="true" receive rules (dbus-daemon); without one, only the privileged may.
      if (rule.eavesdrop && !call.bus.policy) requirePrivileged(call);
      call.bus.addMatch(call.caller, rule);
      return [];
    },
  },
  {
    interface: DBUS, member: 'RemoveMatch', in: 's', out: '',
    handler(call) {
      call.bus.removeMatch(call.caller, parseMatchRule(nameArg(call)));
      return [];
    },
  },
  {
    interface: DBUS, member: 'GetNameOwner', in: 's', out: 's',
    handler(call) {
      const name = nameArg(call);
      if (name === DBUS) return [DBUS];
      const owner = isValidBusName(name) ? call.bus.resolve(name) : undefined;
      if (!owner) throw new BusError(DBusErrorName.NameHasNoOwner, `Could not get owner of name '${name}': no such name`);
      return [owner.uniqueName!];
    },
  },
  {
    interface: DBUS, member: 'ListQueuedOwners', in: 's', out: 'as',
    handler(call) {
      const name = nameArg(call);
      if (name === DBUS) return [[DBUS]];
      if (isValidUniqueName(name)) {
        const peer = call.bus.peerByUniqueName(name);
        if (peer) return [[name]];
      } else if (isValidWellKnownName(name)) {
        const queue = call.bus.names.queue(name);
        if (queue.length > 0) return [queue.map((o) => o.peer.uniqueName!)];
      }
      throw new BusError(DBusErrorName.NameHasNoOwner, `Could not get owners of name '${name}': no such name`);
    },
  },
  {
    interface: DBUS, member: 'GetConnectionUnixUser', in: 's', out: 'u',
    handler: (call) => [credentialsOf(call, 'UID').uid],
  },
  {
    interface: DBUS, member: 'GetConnectionUnixProcessID', in: 's', out: 'u',
    handler: (call) => [credentialsOf(call, 'PID').pid],
  },
  {
    interface: DBUS, member: 'GetConnectionCredentials', in: 's', out: 'a{sv}',
    handler(call) {
      const c = credentialsOf(call, 'credentials');
      const out = new Map<DBusValue, DBusValue>([
        ['UnixUserID', new Variant('u', c.uid)],
        ['UnixGroupIDs', new Variant('au', c.groups)],
        ['ProcessID', new Variant('u', c.pid)],
      ]);
      if (c.securityLabel !== undefined) {
        out.set('LinuxSecurityLabel', new Variant('ay', Buffer.from(c.securityLabel + '\0')));
      }
      return [out];
    },
  },
  {
    interface: DBUS, member: 'GetAdtAuditSessionData', in: 's', out: 'ay',
    handler(call) {
      lookup(call, 'audit session data');
      throw new BusError(DBusErrorName.AdtAuditDataUnknown, `Could not determine audit session data for '${nameArg(call)}'`);
    },
  },
  {
    interface: DBUS, member: 'GetConnectionSELinuxSecurityContext', in: 's', out: 'ay',
    handler(call) {
      lookup(call, 'security context');
      throw new BusError(DBusErrorName.SELinuxSecurityContextUnknown, `Could not determine security context for '${nameArg(call)}'`);
    },
  },
  {
    // Whoever may send it (the policy decides, as in dbus-daemon) makes the bus re-read its config.
    interface: DBUS, member: 'ReloadConfig', in: '', out: '',
    handler(call) {
      const failure = call.bus.reloadConfig?.();
      if (failure !== undefined) throw new BusError(DBusErrorName.Failed, `Unable to reload configuration: ${failure}`);
      return [];
    },
  },
  { interface: DBUS, member: 'GetId', in: '', out: 's', handler: (call) => [call.bus.options.guid] },
  {
    interface: MONITORING, member: 'BecomeMonitor', in: 'asu', out: '',
    handler(call) {
      const [ruleTexts, flags] = call.args as [string[], number];
      const { bus, caller } = call;
      requirePrivileged(call);
      if (flags !== 0) throw new BusError(DBusErrorName.InvalidArgs, 'BecomeMonitor flags must be 0');
      const rules = ruleTexts.map(parseMatchRule);
      call.afterReply(() => bus.becomeMonitor(caller, rules));
      return [];
    },
  },
  ...DEBUG_STATS_METHODS,
  { interface: INTROSPECTABLE, member: 'Introspect', in: '', out: 's', handler: (call) => [call.introspection] },
  { interface: PEER, member: 'Ping', in: '', out: '', handler: () => [] },
  { interface: PEER, member: 'GetMachineId', in: '', out: 's', handler: (call) => [call.bus.options.machineId] },
  {
    interface: PROPERTIES, member: 'Get', in: 'ss', out: 'v',
    handler(call) {
      const [iface, prop] = call.args as [string, string];
      return [property(iface, prop)(call.bus)];
    },
  },
  {
    interface: PROPERTIES, member: 'GetAll', in: 's', out: 'a{sv}',
    handler(call) {
      const iface = nameArg(call);
      const out = new Map<DBusValue, DBusValue>();
      for (const [k, get] of propertiesOf(iface === '' ? DBUS : iface)) out.set(k, get(call.bus));
      return [out];
    },
  },
  {
    interface: PROPERTIES, member: 'Set', in: 'ssv', out: '',
    handler(call) {
      const [iface, prop] = call.args as [string, string];
      property(iface, prop);
      throw new BusError(DBusErrorName.PropertyReadOnly, `Property '${iface}.${prop}' cannot be set`);
    },
  },
];

/**
 * The org.freedesktop.DBus driver: a table of methods. Signatures and the Hello
 * rule are checked here, before any handler runs; handlers only decide.
 */
export class Driver {
  /** Methods by interface, then member: no "interface.member" string made per call. */
  private readonly byInterface = new Map<string, Map<string, DriverMethod>>();
  private readonly byMember = new Map<string, DriverMethod>();
  private readonly introspection: string;
  readonly stats: DebugStats;

  constructor(
    private readonly bus: Bus,
    extra: readonly DriverMethod[],
  ) {
    for (const m of [...METHODS, ...extra]) {
      let members = this.byInterface.get(m.interface);
      if (!members) this.byInterface.set(m.interface, (members = new Map()));
      members.set(m.member, m);
      if (!this.byMember.has(m.member)) this.byMember.set(m.member, m);
    }
    this.introspection = driverIntrospection(extra);
    this.stats = new DebugStats(bus);
  }

  dispatch(caller: Peer, message: Message): void {
    const h = message.header;
    const member = h.member!;
    const hidden = h.path === DBUS_PATH ? NO_INTERFACES : CANONICAL_PATH_INTERFACES;
    const method = h.interface === undefined ? this.byMember.get(member) : this.byInterface.get(h.interface)?.get(member);
    if (method && !hidden.has(method.interface)) return this.run(caller, message, method);
    if (h.interface !== undefined && (!this.byInterface.has(h.interface) || hidden.has(h.interface))) {
      return this.run(caller, message, new BusError(DBusErrorName.UnknownInterface, `org.freedesktop.DBus does not understand message ${member}`));
    }
    this.run(caller, message, new BusError(DBusErrorName.UnknownMethod, `org.freedesktop.DBus does not understand message ${member}`));
  }

  /**
   * A method call without destination is for the bus connection itself as a peer: as in
   * dbus-daemon (libdbus's built-in handler) and dbus-broker, only org.freedesktop.DBus.Peer answers.
   */
  dispatchPeer(caller: Peer, message: Message): void {
    const h = message.header;
    const method = h.interface === undefined || h.interface === PEER ? this.byInterface.get(PEER)?.get(h.member!) : undefined;
    this.run(caller, message, method ?? new BusError(DBusErrorName.UnknownMethod,
      `Method "${h.member}" with signature "${h.signature}" on interface "${h.interface ?? '(null)'}" doesn't exist`));
  }

  /** Checks the method's signature, runs it and replies; BusErrors (`found` one too) become error replies. */
  private run(caller: Peer, message: Message, found: DriverMethod | BusError): void {
    const h = message.header;
    const member = h.member!;
    let after: Array<() => void> | undefined;
    try {
      if (found instanceof BusError) throw found;
      const method = found;
      if (method.canonicalPathOnly && h.path !== DBUS_PATH) {
        throw new BusError(DBusErrorName.AccessDenied, `Method '${member}' is only available at the canonical object path '${DBUS_PATH}'`);
      }
      if (h.signature !== method.in) {
        throw new BusError(DBusErrorName.InvalidArgs, `Call to ${member} has wrong args (${h.signature}, expected ${method.in})`);
      }
      const args = method.in === '' ? [] : readBody(message);
      const out = method.handler({
        bus: this.bus, caller, message, args, afterReply: (fn) => (after ??= []).push(fn), introspection: this.introspection, stats: this.stats,
      });
      if (out !== null) this.bus.replyTo(caller, message, method.out, out);
    } catch (err) {
      if (err instanceof BusError) {
        this.replyError(caller, message, err.dbusName, err.message);
      } else if (err instanceof WireError) {
        this.replyError(caller, message, DBusErrorName.InvalidArgs, `Call to ${member} has a malformed body: ${err.message}`);
      } else {
        this.bus.log('driver-failure', 'a driver method failed unexpectedly', { member, error: String(err) });
        this.replyError(caller, message, DBusErrorName.Failed, `Internal error in ${member}`);
      }
    }
    if (after) for (const fn of after) fn();
    this.stats.observe(caller);
  }

  private replyError(caller: Peer, message: Message, name: string, text: string): void {
    if ((message.header.flags & 0x1) !== 0) return;
    this.bus.sendError(caller, message.header.serial, name, text);
  }
}

/**
 * The driver's introspection XML with the extra methods (the supervisor's) added, so busctl
 * introspect shows them; also what `ferrybus daemon --introspect` prints.
 */
export function driverIntrospection(extra: readonly DriverMethod[]): string {
  const xml = DRIVER_INTROSPECTION;
  if (extra.length === 0) return xml;
  const byInterface = new Map<string, DriverMethod[]>();
  for (const m of extra) byInterface.set(m.interface, [...(byInterface.get(m.interface) ?? []), m]);
  const args = (sig: string, direction: 'in' | 'out') =>
    parseSignature(sig).map((t) => `<arg direction="${direction}" type="${t.sig}"/>`).join('');
  let added = '';
  for (const [name, methods] of byInterface) {
    added += `  <interface name="${name}">\n`;
    for (const m of methods) added += `    <method name="${m.member}">${args(m.in, 'in')}${args(m.out, 'out')}</method>\n`;
    added += '  </interface>\n';
  }
  return xml.replace('</node>', `${added}</node>`);
}
