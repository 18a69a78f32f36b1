import path from 'node:path';
import { type BusKind, busKindFromEnv } from './bus-kind.js';
import { launchDbusBroker } from './buses/dbus-broker.js';
import { launchDbusDaemon } from './buses/dbus-daemon.js';
import { launchFerrybus } from './buses/ferrybus.js';
import type { LaunchedBus, RunningBus } from './running-bus.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

const LAUNCHERS: Record<BusKind, (dir: string, socketPath: string) => Promise<LaunchedBus>> = {
  ferrybus: launchFerrybus,
  'dbus-daemon': launchDbusDaemon,
  'dbus-broker': launchDbusBroker,
};

/**
 * Starts a private bus of the kind named by FERRYBUS_TEST_BUS on a socket in a fresh temp dir.
 * Resolves once the bus has printed its address, i.e. accepts connections.
 */
export async function startBus(kind: BusKind = busKindFromEnv()): Promise<RunningBus> {
  const dir = await makeTempDir(`ferrybus-test-${kind}`);
  const socketPath = path.join(dir, 'bus');
  let launched: LaunchedBus;
  try {
    launched = await LAUNCHERS[kind](dir, socketPath);
  } catch (err) {
    await removeTempDir(dir);
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    kind,
    socketPath,
    ...launched,
    stop() {
      stopped ??= (async () => {
        await launched.process.stop();
        await removeTempDir(dir);
      })();
      return stopped;
    },
  };
}
