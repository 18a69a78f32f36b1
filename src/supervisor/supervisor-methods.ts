import type { DriverCall, DriverMethod } from '../bus/driver.js';
import { BusError, DBusErrorName } from '../bus/errors.js';
import { Variant, type DBusValue } from '../wire/values.js';
import { connectionFdRows, connectionRows, nameRows, pendingCallRows, totals, userRows } from './bus-report.js';
import type { Daemon } from './daemon.js';
import type { HandoffController } from './handoff-controller.js';

export const SUPERVISOR_INTERFACE = 'org.ferrybus.Supervisor1';

/** Handoff and status change or expose the whole bus: root, or the user the bus runs as. */
function requirePrivileged(call: DriverCall, what: string): void {
  const uid = call.caller.credentials.uid;
  if (uid !== 0 && uid !== call.bus.options.self.uid) {
    const self = call.bus.options.self.uid;
    const allowed = self === 0 ? 'uid 0' : `uid 0 and uid ${self} (the bus's own user)`;
    throw new BusError(DBusErrorName.AccessDenied, `${what} is allowed to ${allowed} only (caller is uid ${uid})`);
  }
}

function status(daemon: Daemon): Map<DBusValue, DBusValue> {
  const { queuedBytes, monitors, pendingCalls, authenticating } = totals(daemon);
  const s = new Map<DBusValue, DBusValue>([
    ['Pid', new Variant('u', process.pid)],
    ['Generation', new Variant('u', daemon.generation)],
    ['StartedAt', new Variant('s', daemon.startedAt)],
    ['UptimeSeconds', new Variant('d', (Date.now() - Date.parse(daemon.startedAt)) / 1000)],
    ['Addresses', new Variant('as', daemon.addresses)],
    ['Connections', new Variant('u', daemon.connections.all.size)],
    ['Names', new Variant('u', [...daemon.bus.names.ownedNames()].length)],
    ['QueuedBytes', new Variant('t', BigInt(queuedBytes))],
    ['Monitors', new Variant('u', monitors)],
    ['Authenticating', new Variant('u', authenticating)],
    ['PendingCalls', new Variant('u', pendingCalls)],
    ['MaxOutgoingBytes', new Variant('t', BigInt(daemon.connections.maxOutgoingBytes))],
    ['Guid', new Variant('s', daemon.identity.guid)],
    ['Kind', new Variant('s', daemon.settings.kind)],
    ['ActivatableServices', new Variant('u', daemon.bus.activator.activatableNames().length)],
    ['Activating', new Variant('u', daemon.bus.activator.pending.size)],
    ['HeldMessages', new Variant('u', daemon.bus.activator.heldMessages)],
  ]);
  if (daemon.lastHandoff) {
    s.set('LastHandoffAt', new Variant('s', daemon.lastHandoff.at));
    s.set('LastHandoffPauseUs', new Variant('t', BigInt(daemon.lastHandoff.pauseUs)));
    s.set('LastHandoffRoot', new Variant('s', daemon.lastHandoff.root));
    s.set('LastHandoffPhases', new Variant('a(st)', daemon.lastHandoff.phases.map(([name, us]) => [name, BigInt(us)])));
  }
  return s;
}

/**
 * The supervisor's methods, served by the bus driver on org.freedesktop.DBus (any object path),
 * interface org.ferrybus.Supervisor1. Every one is privileged: uid 0 or the bus's own uid.
 *
 *   Handoff(s root) → (u generation, t pause_us)   answered by the new image
 *   Status() → a{sv}       Pid u, Generation u, StartedAt s, UptimeSeconds d, Addresses as,
 *                          Connections u, Names u, QueuedBytes t, Monitors u, Authenticating u,
 *                          PendingCalls u, MaxOutgoingBytes t, Guid s, Kind s,
 *                          ActivatableServices u, Activating u (services being started),
 *                          HeldMessages u (messages and start requests waiting for them); after a handoff
 *                          also LastHandoffAt s, LastHandoffPauseUs t, LastHandoffRoot s,
 *                          LastHandoffPhases a(st) (where the pause went: phase name, µs; see handoff-phases.ts)
 *   ListConnections() → a(usuuuasasuttub)   see connectionRows in bus-report.ts
 *   ListNameOwners() → a(sa(suu))           see nameRows
 *   ListPendingCalls() → a(sus)             see pendingCallRows
 *   ListUsers() → a(ua(stt))                see userRows
 *   ListConnectionFds() → a(uuu)            see connectionFdRows
 *
 * Keys may be added to Status; the struct signatures change only with a new interface version.
 */
export function supervisorMethods(daemon: () => Daemon, handoff: HandoffController): DriverMethod[] {
  return [
    {
      interface: SUPERVISOR_INTERFACE, member: 'Handoff', in: 's', out: 'ut',
      handler(call) {
        requirePrivileged(call, 'Handoff');
        handoff.request(call.args[0] as string, { peerId: call.caller.id, serial: call.message.header.serial });
        return null;
      },
    },
    {
      interface: SUPERVISOR_INTERFACE, member: 'Status', in: '', out: 'a{sv}',
      handler(call) {
        requirePrivileged(call, 'Status');
        return [status(daemon())];
      },
    },
    {
      interface: SUPERVISOR_INTERFACE, member: 'ListConnections', in: '', out: 'a(usuuuasasuttub)',
      handler(call) {
        requirePrivileged(call, 'ListConnections');
        return [connectionRows(daemon())];
      },
    },
    {
      interface: SUPERVISOR_INTERFACE, member: 'ListNameOwners', in: '', out: 'a(sa(suu))',
      handler(call) {
        requirePrivileged(call, 'ListNameOwners');
        return [nameRows(daemon())];
      },
    },
    {
      interface: SUPERVISOR_INTERFACE, member: 'ListPendingCalls', in: '', out: 'a(sus)',
      handler(call) {
        requirePrivileged(call, 'ListPendingCalls');
        return [pendingCallRows(daemon())];
      },
    },
    {
      interface: SUPERVISOR_INTERFACE, member: 'ListUsers', in: '', out: 'a(ua(stt))',
      handler(call) {
        requirePrivileged(call, 'ListUsers');
        return [userRows(daemon())];
      },
    },
    {
      interface: SUPERVISOR_INTERFACE, member: 'ListConnectionFds', in: '', out: 'a(uuu)',
      handler(call) {
        requirePrivileged(call, 'ListConnectionFds');
        return [connectionFdRows(daemon())];
      },
    },
  ];
}
