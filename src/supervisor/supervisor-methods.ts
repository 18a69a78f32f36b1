import type { DriverCall, DriverMethod } from '../bus/driver.js';
import { BusError, DBusErrorName } from '../bus/errors.js';
import { Variant, type DBusValue } from '../wire/values.js';
import type { Daemon } from './daemon.js';
import type { HandoffController } from './handoff-controller.js';

export const SUPERVISOR_INTERFACE = 'org.ferrybus.Supervisor1';

/** Handoff and status change or expose the whole bus: root, or the user the bus runs as. */
function requirePrivileged(call: DriverCall, what: string): void {
  const uid = call.caller.credentials.uid;
  if (uid !== 0 && uid !== call.bus.options.self.uid) {
    throw new BusError(DBusErrorName.AccessDenied, `${what} is allowed to uid 0 only (caller is uid ${uid})`);
  }
}

function status(daemon: Daemon): Map<DBusValue, DBusValue> {
  let queuedBytes = 0;
  for (const conn of daemon.connections.all) queuedBytes += conn.outbound.size;
  const s = new Map<DBusValue, DBusValue>([
    ['Pid', new Variant('u', process.pid)],
    ['Generation', new Variant('u', daemon.generation)],
    ['StartedAt', new Variant('s', daemon.startedAt)],
    ['UptimeSeconds', new Variant('d', (Date.now() - Date.parse(daemon.startedAt)) / 1000)],
    ['Addresses', new Variant('as', daemon.addresses)],
    ['Connections', new Variant('u', daemon.connections.all.size)],
    ['Names', new Variant('u', [...daemon.bus.names.ownedNames()].length)],
    ['QueuedBytes', new Variant('t', BigInt(queuedBytes))],
  ]);
  if (daemon.lastHandoff) {
    s.set('LastHandoffAt', new Variant('s', daemon.lastHandoff.at));
    s.set('LastHandoffPauseUs', new Variant('t', BigInt(daemon.lastHandoff.pauseUs)));
    s.set('LastHandoffRoot', new Variant('s', daemon.lastHandoff.root));
  }
  return s;
}

/**
 * The supervisor's methods, served by the bus driver on org.freedesktop.DBus:
 * Handoff(s root) → (u generation, t pause µs), answered by the new image; Status() → a{sv}.
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
  ];
}
