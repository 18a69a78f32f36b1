import { AddressError, defaultAddress, parseAddress } from '../transport/address.js';

/**
 * Where the operator commands look for a bus when no --address is given.
 *
 * First the bus `ferrybus daemon` listens on when told nothing (the quick start), then the
 * system bus: installed as dbus.service, ferrybus IS the system bus, and systemd's units and
 * dracut's hooks call `ferrybus handoff` without knowing which one they run beside. The two
 * are one D-Bus address list, tried in order as libdbus tries one: a socket that does not exist
 * or refuses the connection passes on to the next entry.
 */

/** Where every system-bus client looks (sd-bus, libdbus), unless DBUS_SYSTEM_BUS_ADDRESS says. */
export const SYSTEM_BUS_ADDRESS = 'unix:path=/run/dbus/system_bus_socket';

/** $DBUS_SYSTEM_BUS_ADDRESS when it is a valid address, else the standard socket. */
export function systemBusAddress(env: Readonly<Record<string, string | undefined>>): string {
  const fromEnv = env.DBUS_SYSTEM_BUS_ADDRESS;
  if (fromEnv === undefined || fromEnv === '') return SYSTEM_BUS_ADDRESS;
  try {
    parseAddress(fromEnv);
    return fromEnv;
  } catch (err) {
    if (err instanceof AddressError) return SYSTEM_BUS_ADDRESS;
    throw err;
  }
}

/** The quick-start bus, then the system bus: what `ferrybus status` and friends try. */
export function defaultClientAddress(options: { uid: number; env: Readonly<Record<string, string | undefined>> }): string {
  return `${defaultAddress(options)};${systemBusAddress(options.env)}`;
}
