import { FerryError } from '../util/errors.js';
import { Variant, type DBusValue } from '../wire/values.js';
import { BusCallError, BusClient } from './bus-client.js';
import { isFerrybus } from './bus-identity.js';
import { CliError } from './cli-error.js';

/**
 * Typed access to org.ferrybus.Supervisor1 (src/supervisor/supervisor-methods.ts documents the
 * signatures). Every failure becomes a CliError that says what the daemon answered.
 */

export const SUPERVISOR_DESTINATION = 'org.freedesktop.DBus';
export const SUPERVISOR_PATH = '/org/ferrybus/Supervisor1';
export const SUPERVISOR_INTERFACE = 'org.ferrybus.Supervisor1';
/** Installed by install-files: the system.d policy that lets root call Supervisor1 under system.conf. */
export const POLICY_FILE = '/usr/share/dbus-1/system.d/org.ferrybus.Supervisor1.conf';

/** What every command that talks to the daemon is given. */
export interface BusArgs {
  address: string;
  /** 'default' when nobody named an address, 'flag' for --address. */
  addressSource: 'default' | 'flag';
  timeoutMs: number;
}

export interface DaemonStatus {
  pid: number;
  generation: number;
  startedAt: string;
  uptimeSeconds: number;
  addresses: string[];
  connections: number;
  names: number;
  queuedBytes: number;
  /** Absent from daemons older than this CLI. */
  monitors?: number;
  authenticating?: number;
  pendingCalls?: number;
  /** Service activation: service files known, services being started, messages waiting for them. */
  activatableServices?: number;
  activating?: number;
  heldMessages?: number;
  maxOutgoingBytes?: number;
  guid?: string;
  kind?: string;
  /** phases: where the pause went, [name, µs] in order (empty from a daemon that does not report them). */
  lastHandoff: { at: string; pauseUs: number; root: string; phases: Array<[string, number]> } | null;
}

export interface ConnectionInfo {
  peerId: number;
  /** null before Hello (still authenticating). */
  uniqueName: string | null;
  pid: number;
  uid: number;
  gid: number;
  ownedNames: string[];
  queuedNames: string[];
  matchRules: number;
  outboundBytes: number;
  inboundBytes: number;
  pendingCalls: number;
  monitor: boolean;
}

export interface NameOwnerInfo {
  uniqueName: string;
  pid: number;
  flags: number;
}

export interface NameInfo {
  name: string;
  /** Primary owner first. */
  queue: NameOwnerInfo[];
}

/** What one uid holds on the bus, per resource: now and the ceiling for one uid. */
export interface UserInfo {
  uid: number;
  usage: Record<string, { held: number; ceiling: number }>;
}

export interface PendingCallInfo {
  caller: string;
  serial: number;
  callee: string;
}

/** RequestName flags by name, as the D-Bus specification spells them. */
export function nameFlags(flags: number): string[] {
  const out: string[] = [];
  if (flags & 0x1) out.push('allow-replacement');
  if (flags & 0x2) out.push('replace-existing');
  if (flags & 0x4) out.push('do-not-queue');
  return out;
}

/** Connects, runs `fn`, and always closes the connection. */
export async function withBus<T>(args: BusArgs, fn: (client: BusClient) => Promise<T>): Promise<T> {
  const client = await BusClient.connect(args.address, { timeoutMs: args.timeoutMs, source: args.addressSource });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Errors with which another bus (dbus-daemon, dbus-broker) answers a Supervisor1 call. */
const REFUSALS = new Set([
  'org.freedesktop.DBus.Error.AccessDenied',
  'org.freedesktop.DBus.Error.UnknownMethod',
  'org.freedesktop.DBus.Error.UnknownInterface',
  'org.freedesktop.DBus.Error.UnknownObject',
]);

/** Calls a Supervisor1 method and explains every way it can fail. */
export async function callSupervisor(
  client: BusClient,
  member: string,
  signature = '',
  args: DBusValue[] = [],
  timeoutMs = 30_000,
): Promise<DBusValue[]> {
  try {
    return await client.call(SUPERVISOR_DESTINATION, SUPERVISOR_PATH, SUPERVISOR_INTERFACE, member, signature, args, timeoutMs);
  } catch (err) {
    // A refusal from a bus that is not ferrybus (dbus-daemon at the system bus socket) says
    // so, rather than "run as root" to a caller who is root.
    if (err instanceof BusCallError && REFUSALS.has(err.errorName) && (await isFerrybus(client, 5_000)) === false) {
      throw new CliError(
        `the bus at ${client.where} is not ferrybus: its driver does not offer ${SUPERVISOR_INTERFACE} ` +
          `(${member} was answered ${err.errorName}); it is another D-Bus daemon, such as dbus-daemon or dbus-broker (${client.lookedAt})`,
      );
    }
    throw explainCallError(err, client, `${SUPERVISOR_INTERFACE}.${member}`);
  }
}

/** Turns a failed call into a message for the operator. */
export function explainCallError(err: unknown, client: BusClient, what: string): Error {
  if (err instanceof BusCallError) {
    const name = err.errorName;
    if (name === 'org.freedesktop.DBus.Error.AccessDenied' && err.text.startsWith('Rejected send message')) {
      // The security policy refused it, before ferrybus's own check (uid 0 or the bus's user).
      return new CliError(
        `the bus at ${client.where} refused ${what} by its security policy: ${err.text} ` +
          `(ferrybus's ${POLICY_FILE} lets root call it; is it installed in the bus's root?)`,
      );
    }
    if (name === 'org.freedesktop.DBus.Error.AccessDenied') {
      return new CliError(`the bus at ${client.where} refused ${what}: ${err.text} (run as root or as the bus's user)`);
    }
    if (name === 'org.freedesktop.DBus.Error.UnknownMethod' || name === 'org.freedesktop.DBus.Error.UnknownInterface') {
      return new CliError(
        `the bus at ${client.where} does not offer ${what}: it is not ferrybus, or an older ferrybus (${err.text})`,
      );
    }
    return new CliError(`${what} failed at ${client.where}: ${name}: ${err.text}`);
  }
  if (err instanceof FerryError) return new CliError(err.message);
  return err as Error;
}

function unwrap(v: DBusValue | undefined): DBusValue | undefined {
  return v instanceof Variant ? v.value : v;
}

const num = (v: DBusValue | undefined): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0);
const str = (v: DBusValue | undefined): string => (typeof v === 'string' ? v : '');
const optNum = (m: Map<DBusValue, DBusValue>, k: string): number | undefined => (m.has(k) ? num(unwrap(m.get(k))) : undefined);
const optStr = (m: Map<DBusValue, DBusValue>, k: string): string | undefined => (m.has(k) ? str(unwrap(m.get(k))) : undefined);

/** LastHandoffPhases a(st): anything else (an older daemon, another shape) is no phases. */
function phasesOf(v: DBusValue | undefined): Array<[string, number]> {
  if (!Array.isArray(v)) return [];
  return v.flatMap((row) => (Array.isArray(row) && typeof row[0] === 'string' ? [[row[0], num(row[1])] as [string, number]] : []));
}

export async function fetchStatus(client: BusClient): Promise<DaemonStatus> {
  const [raw] = await callSupervisor(client, 'Status');
  const m = raw as Map<DBusValue, DBusValue>;
  const get = (k: string) => unwrap(m.get(k));
  const at = optStr(m, 'LastHandoffAt');
  return {
    pid: num(get('Pid')),
    generation: num(get('Generation')),
    startedAt: str(get('StartedAt')),
    uptimeSeconds: num(get('UptimeSeconds')),
    addresses: (get('Addresses') as string[] | undefined) ?? [],
    connections: num(get('Connections')),
    names: num(get('Names')),
    queuedBytes: num(get('QueuedBytes')),
    monitors: optNum(m, 'Monitors'),
    authenticating: optNum(m, 'Authenticating'),
    pendingCalls: optNum(m, 'PendingCalls'),
    activatableServices: optNum(m, 'ActivatableServices'),
    activating: optNum(m, 'Activating'),
    heldMessages: optNum(m, 'HeldMessages'),
    maxOutgoingBytes: optNum(m, 'MaxOutgoingBytes'),
    guid: optStr(m, 'Guid'),
    kind: optStr(m, 'Kind'),
    lastHandoff: at === undefined ? null : {
      at,
      pauseUs: optNum(m, 'LastHandoffPauseUs') ?? 0,
      root: optStr(m, 'LastHandoffRoot') ?? '',
      phases: phasesOf(get('LastHandoffPhases')),
    },
  };
}

/** ListConnections() → a(usuuuasasuttub). */
export async function fetchConnections(client: BusClient): Promise<ConnectionInfo[]> {
  const [rows] = await callSupervisor(client, 'ListConnections');
  return (rows as DBusValue[][]).map((r) => ({
    peerId: num(r[0]),
    uniqueName: str(r[1]) || null,
    pid: num(r[2]),
    uid: num(r[3]),
    gid: num(r[4]),
    ownedNames: r[5] as string[],
    queuedNames: r[6] as string[],
    matchRules: num(r[7]),
    outboundBytes: num(r[8]),
    inboundBytes: num(r[9]),
    pendingCalls: num(r[10]),
    monitor: r[11] === true,
  }));
}

/** ListConnectionFds() → a(uuu): by peer id, the unix fds queued for it and those it sent that wait for their message's rest. */
export async function fetchConnectionFds(client: BusClient): Promise<Map<number, { outbound: number; inbound: number }>> {
  const [rows] = await callSupervisor(client, 'ListConnectionFds');
  return new Map((rows as DBusValue[][]).map((r) => [num(r[0]), { outbound: num(r[1]), inbound: num(r[2]) }]));
}

/** ListNameOwners() → a(sa(suu)). */
export async function fetchNames(client: BusClient): Promise<NameInfo[]> {
  const [rows] = await callSupervisor(client, 'ListNameOwners');
  return (rows as DBusValue[][]).map((r) => ({
    name: str(r[0]),
    queue: (r[1] as DBusValue[][]).map((o) => ({ uniqueName: str(o[0]), pid: num(o[1]), flags: num(o[2]) })),
  }));
}

/** ListPendingCalls() → a(sus). */
export async function fetchPendingCalls(client: BusClient): Promise<PendingCallInfo[]> {
  const [rows] = await callSupervisor(client, 'ListPendingCalls');
  return (rows as DBusValue[][]).map((r) => ({ caller: str(r[0]), serial: num(r[1]), callee: str(r[2]) }));
}

/** ListUsers() → a(ua(stt)). */
export async function fetchUsers(client: BusClient): Promise<UserInfo[]> {
  const [rows] = await callSupervisor(client, 'ListUsers');
  return (rows as DBusValue[][]).map((r) => ({
    uid: num(r[0]),
    usage: Object.fromEntries((r[1] as DBusValue[][]).map((u) => [str(u[0]), { held: num(u[1]), ceiling: num(u[2]) }])),
  }));
}
