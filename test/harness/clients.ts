import { clientEnv } from './client-env.js';
import { type LongRunning, startLongRunning } from './long-running.js';
import { type ClientOptions, type ClientResult, runClient } from './run-client.js';
import type { RunningBus } from './running-bus.js';

/**
 * Convenience wrappers binding a client command to a bus: the environment points at the bus,
 * and long-running clients are handed to `defer` so they are stopped after the test.
 */
export function runOn(bus: RunningBus, file: string, args: readonly string[], options: ClientOptions = {}): Promise<ClientResult> {
  return runClient(file, args, { ...options, env: { ...clientEnv(bus), ...options.env } });
}

export function startOn(
  bus: RunningBus,
  defer: (fn: () => unknown) => void,
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): LongRunning {
  const proc = startLongRunning(file, args, { env: { ...clientEnv(bus), ...env } });
  defer(() => proc.stop());
  return proc;
}
