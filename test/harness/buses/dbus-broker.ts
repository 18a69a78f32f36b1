import { fixturePath, SYSTEM_PYTHON } from '../fixtures.js';
import { startLongRunning } from '../long-running.js';
import { type LaunchedBus, waitForAddressLine } from '../running-bus.js';

/**
 * dbus-broker has no listening-socket or policy options of its own: its launcher
 * (dbus-broker-launch) hands it both over a controller connection, and the launcher needs
 * systemd's journal socket. Like dbus-broker's own test harness we act as the controller
 * ourselves: test/fixtures/dbus-broker-controller.py creates the listening socket, spawns
 * `dbus-broker --controller FD`, and calls org.bus1.DBus.Broker.AddListener with the socket
 * (passed as a unix fd) and an allow-everything policy. Any failure there is reported as an
 * error: the suite never silently skips dbus-broker.
 */
export async function launchDbusBroker(_dir: string, socketPath: string): Promise<LaunchedBus> {
  const proc = startLongRunning(SYSTEM_PYTHON, [fixturePath('dbus-broker-controller.py'), '--socket', socketPath]);
  let address: string;
  let brokerPid: number;
  try {
    const pidLine = await proc.waitFor(/^broker-pid=(\d+)\n/m);
    brokerPid = Number(pidLine[1]);
    address = await waitForAddressLine(proc);
  } catch (err) {
    await proc.stop();
    throw new Error(`dbus-broker could not be started: ${(err as Error).message}`);
  }
  return { address, pid: brokerPid, process: proc };
}
