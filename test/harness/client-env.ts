import type { RunningBus } from './running-bus.js';

/**
 * Environment for client processes: both well-known bus variables point at the test bus, so a
 * client that ignores its --address flag still cannot reach a real session or system bus, and
 * tools that only know --session (dbus-test-tool) reach the test bus. No pager, no colours.
 */
export function clientEnv(bus: RunningBus): NodeJS.ProcessEnv {
  return {
    DBUS_SESSION_BUS_ADDRESS: bus.address,
    DBUS_SYSTEM_BUS_ADDRESS: bus.address,
    SYSTEMD_PAGER: 'cat',
    SYSTEMD_COLORS: '0',
    NO_COLOR: '1',
  };
}
