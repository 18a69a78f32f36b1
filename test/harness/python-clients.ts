import { startOn } from './clients.js';
import { fixturePath, SYSTEM_PYTHON } from './fixtures.js';
import type { LongRunning } from './long-running.js';
import type { RunningBus } from './running-bus.js';

export const ECHO_INTERFACE = 'org.ferrybus.Test.Echo';
export const ECHO_PATH = '/org/ferrybus/Test/Echo';

export interface StartedPeer {
  proc: LongRunning;
  uniqueName: string;
}

/** test/fixtures/echo-service.py owning `name`; resolves once the name is owned. */
export async function startEchoService(bus: RunningBus, defer: (fn: () => unknown) => void, name: string): Promise<StartedPeer> {
  const proc = startOn(bus, defer, SYSTEM_PYTHON, [fixturePath('echo-service.py'), '--address', bus.address, '--name', name]);
  const m = await proc.waitFor(/^ready (\S+) (\S+)$/m);
  return { proc, uniqueName: m[1]! };
}

/** test/fixtures/signal-subscriber.py with one match rule; resolves once AddMatch returned. */
export async function startSignalSubscriber(bus: RunningBus, defer: (fn: () => unknown) => void, rule: string): Promise<StartedPeer> {
  const proc = startOn(bus, defer, SYSTEM_PYTHON, [fixturePath('signal-subscriber.py'), '--address', bus.address, '--match', rule]);
  const m = await proc.waitFor(/^ready (\S+)$/m);
  return { proc, uniqueName: m[1]! };
}
