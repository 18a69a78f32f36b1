import { driverIntrospection } from '../bus/driver.js';
import type { HandoffController } from '../supervisor/handoff-controller.js';
import { supervisorMethods } from '../supervisor/supervisor-methods.js';
import { VERSION } from './version.js';

/** `ferrybus daemon --version`: what dbus-daemon --version says, for ferrybus. */
export function versionText(): string {
  return `ferrybus ${VERSION}\nD-Bus message bus daemon: speaks the D-Bus protocol and takes dbus-daemon's command line\n`;
}

/**
 * `ferrybus daemon --introspect`: the XML the bus driver answers to Introspect, supervisor
 * interface included, as dbus-daemon --introspect prints its own. Only the method table is
 * read: no handler runs, so there is neither a daemon nor a handoff controller behind it.
 */
export function introspectionText(): string {
  const noDaemon = () => {
    throw new Error('--introspect runs no bus');
  };
  const xml = driverIntrospection(supervisorMethods(noDaemon, undefined as unknown as HandoffController));
  return xml.endsWith('\n') ? xml : `${xml}\n`;
}
