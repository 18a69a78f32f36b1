// The VM test client's plumbing: the console the markers go to, the bus connection (dbus-next)
// and the few calls every probe makes. See vm-client.ts for what the probes check.

import dbus from 'dbus-next';
import * as fs from 'node:fs';

// --- console ---------------------------------------------------------------------------------
let consoleFd: number | undefined;

/** Markers go to /dev/kmsg: they reach the serial console in every root, even after journald is gone. */
export function openConsole(): void {
  try {
    // O_NOCTTY is not needed for kmsg, but nothing here may ever become a controlling tty.
    consoleFd = fs.openSync('/dev/kmsg', fs.constants.O_WRONLY | fs.constants.O_NOCTTY);
  } catch {
    consoleFd = undefined;
  }
}

export function say(line: string): void {
  const text = `FERRYBUS-VM ${line}`;
  if (consoleFd !== undefined) {
    try {
      // <5> = notice: printed on the console at the default console log level.
      fs.writeSync(consoleFd, `<5>${text.length > 960 ? `${text.slice(0, 957)}...` : text}\n`);
      return;
    } catch {
      // no kernel log: stdout instead
    }
  }
  process.stdout.write(text + '\n');
}

let failures = 0;
/** One "FERRYBUS-VM PASS|FAIL <check> <details>" line; boot.test.ts asserts them by name. */
export function check(name: string, ok: boolean, details: string): void {
  if (!ok) failures++;
  say(`${ok ? 'PASS' : 'FAIL'} ${name} ${details}`);
}

export function failureCount(): number {
  return failures;
}

// --- bus -------------------------------------------------------------------------------------
/** dbus-next's bus; its typings omit `name`, the unique name it got from Hello. */
export type Bus = dbus.MessageBus & { name?: string };
export const { Message } = dbus;

export interface Target {
  destination: string;
  path: string;
  interface: string;
}

export const DRIVER: Target = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
export const SUPERVISOR: Target = { destination: 'org.freedesktop.DBus', path: '/org/ferrybus/Supervisor1', interface: 'org.ferrybus.Supervisor1' };

/**
 * The system bus socket, where ferrybus listens as dbus.socket's. The shutdown root sees the old
 * /run twice (/run and /oldsys/run).
 */
export function busAddress(): string {
  const candidates = [process.env.FERRYBUS_VM_SOCKET, '/run/dbus/system_bus_socket', '/oldsys/run/dbus/system_bus_socket'].filter(Boolean) as string[];
  const found = candidates.find((p) => {
    try {
      return fs.statSync(p).isSocket();
    } catch {
      return false;
    }
  });
  return `unix:path=${found ?? candidates[0]}`;
}

export async function connect(address: string, timeoutMs = 20_000): Promise<Bus> {
  const bus: Bus = dbus.sessionBus({ busAddress: address });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connection to ${address} in ${timeoutMs} ms`)), timeoutMs);
    bus.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    bus.once('error', (err: unknown) => {
      clearTimeout(timer);
      reject(err instanceof Error ? err : new Error(String(err)));
    });
  });
  return bus;
}

export async function call(bus: Bus, to: Target, member: string, signature = '', body: unknown[] = []): Promise<any[]> {
  const reply = await bus.call(new Message({ ...to, member, signature, body }));
  return reply?.body ?? [];
}

/** ferrybus's own report (Supervisor1.Status), values unwrapped. */
export async function status(bus: Bus): Promise<Record<string, any>> {
  const [dict] = await call(bus, SUPERVISOR, 'Status');
  const out: Record<string, any> = {};
  for (const [k, v] of Object.entries(dict as Record<string, { value: unknown }>)) out[k] = v.value;
  return out;
}

/** The unique name owning `name`, or '' when nobody does. */
export async function nameOwner(bus: Bus, name: string): Promise<string> {
  try {
    return String((await call(bus, DRIVER, 'GetNameOwner', 's', [name]))[0]);
  } catch {
    return '';
  }
}

/** The pid of a connection, as the bus knows it; 0 when unknown. */
export async function connectionPid(bus: Bus, uniqueName: string): Promise<number> {
  try {
    return Number((await call(bus, DRIVER, 'GetConnectionUnixProcessID', 's', [uniqueName]))[0]);
  } catch {
    return 0;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` until it returns something truthy or `timeoutMs` passes; the last value either way. */
export async function waitFor<T>(probe: () => Promise<T>, timeoutMs: number, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value || Date.now() > end) return value;
    await sleep(everyMs);
  }
}
