import type { BusClient } from './bus-client.js';

/** The interface only ferrybus's driver offers (src/supervisor/supervisor-methods.ts). */
const SUPERVISOR_INTERFACE = 'org.ferrybus.Supervisor1';

/**
 * Whether the bus at the other end is ferrybus: its driver's introspection lists
 * org.ferrybus.Supervisor1. Introspect is what every bus answers and what dbus-daemon's stock
 * system.conf lets everyone ask, so this tells dbus-daemon or dbus-broker at the system bus
 * socket from a ferrybus that refused a call. undefined when the bus does not say.
 */
export async function isFerrybus(client: BusClient, timeoutMs: number): Promise<boolean | undefined> {
  try {
    const [xml] = await client.call(
      'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.Introspectable', 'Introspect', '', [], timeoutMs,
    );
    if (typeof xml !== 'string') return undefined;
    return xml.includes(`<interface name="${SUPERVISOR_INTERFACE}">`);
  } catch {
    return undefined;
  }
}
