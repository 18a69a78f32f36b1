import type { BusKind } from './bus-kind.js';
import type { LongRunning } from './long-running.js';

/** A bus started by the harness for one test file. */
export interface RunningBus {
  kind: BusKind;
  /** The address to hand to clients (as the bus printed it). */
  address: string;
  socketPath: string;
  /** PID of the process that routes messages (dbus-broker itself, not its controller). */
  pid: number;
  /** The process the harness spawned and will kill (for dbus-broker: our controller). */
  process: LongRunning;
  stop(): Promise<void>;
}

/** What a launcher hands back; startBus adds the common parts. */
export interface LaunchedBus {
  address: string;
  pid: number;
  process: LongRunning;
}

/** Waits for the `unix:...` address line a bus prints on stdout when it is ready. */
export async function waitForAddressLine(proc: LongRunning, timeoutMs = 10_000): Promise<string> {
  const m = await proc.waitFor(/^(unix:[^\n]*)\n/m, { timeoutMs });
  return m[1]!.trim();
}
