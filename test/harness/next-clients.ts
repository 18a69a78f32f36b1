import { NextClient } from './dbus-next-client.js';
import type { RunningBus } from './running-bus.js';

/** A dbus-next connection to the test bus that is disconnected after the test. */
export async function connectNext(bus: RunningBus, defer: (fn: () => unknown) => void): Promise<NextClient> {
  const client = await NextClient.connect(bus.address);
  defer(() => client.disconnect());
  return client;
}

/** A dbus-next connection subscribed to NameOwnerChanged for `name` (arg0 match). */
export async function watchName(bus: RunningBus, defer: (fn: () => unknown) => void, name: string): Promise<NextClient> {
  const watcher = await connectNext(bus, defer);
  await watcher.addMatch(
    `type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${name}'`,
  );
  return watcher;
}
