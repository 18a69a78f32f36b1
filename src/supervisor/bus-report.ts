import type { DBusValue } from '../wire/values.js';
import { UID_RESOURCES } from '../bus/uid-accounts.js';
import type { Daemon } from './daemon.js';

/**
 * What the supervisor reports about the running bus, for `ferrybus status|names|connections|queue`
 * and any other privileged client (busctl can read these too). Read-only: it walks the public
 * state of the connection set, the name registry and the reply registry and changes nothing.
 *
 * The rows are D-Bus structures so that the signatures documented on each function are what a
 * client sees; the CLI decodes them in src/cli/supervisor-client.ts.
 */

/** Well-known names a peer holds, split into owned (primary owner) and queued, in request order. */
function namesOf(daemon: Daemon, peerNames: Iterable<string>, peerId: number): { owned: string[]; queued: string[] } {
  const owned: string[] = [];
  const queued: string[] = [];
  for (const name of peerNames) (daemon.bus.names.owner(name)?.id === peerId ? owned : queued).push(name);
  return { owned, queued };
}

/**
 * ListConnections() → a(usuuuasasuttub), one struct per connection, in accept order:
 *   u peer id (0 while still authenticating), s unique name ('' before Hello),
 *   u pid, u uid, u gid (from SO_PEERCRED, as the daemon's namespace sees them),
 *   as well-known names owned, as well-known names queued for,
 *   u match rules (a monitor: its monitor rules), t outbound bytes queued (accepted, not yet
 *   taken by the kernel), t inbound bytes buffered (an incomplete message),
 *   u method calls it made that await a reply, b monitor.
 */
export function connectionRows(daemon: Daemon): DBusValue[] {
  const rows: DBusValue[] = [];
  for (const conn of daemon.connections.all) {
    const peer = conn.peer;
    const { owned, queued } = peer ? namesOf(daemon, peer.names, peer.id) : { owned: [], queued: [] };
    const matchCount = peer ? (peer.monitorRules?.length ?? peer.matches.length) : 0;
    rows.push([
      peer?.id ?? 0,
      peer?.uniqueName ?? '',
      conn.credentials.pid,
      conn.credentials.uid,
      conn.credentials.gid,
      owned,
      queued,
      matchCount,
      BigInt(conn.outbound.size),
      BigInt(conn.framer.pendingLength),
      peer?.pendingCalls ?? 0,
      peer?.isMonitor ?? false,
    ]);
  }
  return rows;
}

/**
 * ListConnectionFds() → a(uuu), one struct per authenticated connection, in accept order:
 *   u peer id (as in ListConnections), u unix fds queued for it (in messages whose first byte
 *   the kernel has not taken), u unix fds it sent that wait for the rest of their message.
 * (A method of its own: ListConnections' struct is fixed for this interface version.)
 */
export function connectionFdRows(daemon: Daemon): DBusValue[] {
  const rows: DBusValue[] = [];
  for (const conn of daemon.connections.all) {
    if (conn.peer) rows.push([conn.peer.id, conn.outbound.fdCount, conn.inboundFdCount]);
  }
  return rows;
}

/**
 * ListNameOwners() → a(sa(suu)), one struct per well-known name with an owner, sorted by name:
 *   s name, a(suu) its queue, primary owner first: unique name, pid, RequestName flags
 *   (0x1 allow-replacement, 0x2 replace-existing, 0x4 do-not-queue).
 */
export function nameRows(daemon: Daemon): DBusValue[] {
  const rows: DBusValue[] = [];
  const entries = [...daemon.bus.names.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, queue] of entries) {
    rows.push([name, queue.map((o) => [o.peer.uniqueName ?? '', o.peer.credentials.pid, o.flags])]);
  }
  return rows;
}

/**
 * ListPendingCalls() → a(sus), one struct per method call the bus routed and whose reply it
 * still expects: s caller unique name, u the call's serial (in the caller's numbering),
 * s callee unique name.
 */
export function pendingCallRows(daemon: Daemon): DBusValue[] {
  const rows: DBusValue[] = [];
  for (const call of daemon.bus.replies.all()) {
    rows.push([call.caller.uniqueName ?? '', call.serial, call.callee.uniqueName ?? '']);
  }
  return rows;
}

/**
 * ListUsers() → a(ua(stt)), one struct per uid holding anything, by uid: u uid, a(stt) per
 * resource (connections, names, matchRules, pendingReplies, queuedBytes, fds): s resource, t held
 * now, t the ceiling in force for one uid (see src/bus/uid-accounts.ts).
 */
export function userRows(daemon: Daemon): DBusValue[] {
  const ceilings = daemon.bus.accounts.ceilings();
  return daemon.bus.accounts.active().map((a) => [
    a.uid,
    UID_RESOURCES.map((r) => [r, BigInt(a[r]), BigInt(Math.min(ceilings[r], Number.MAX_SAFE_INTEGER))]),
  ]);
}

/** Totals for Status(): bytes queued, monitors, pending calls. */
export function totals(daemon: Daemon): { queuedBytes: number; monitors: number; pendingCalls: number; authenticating: number } {
  let queuedBytes = 0;
  let monitors = 0;
  let authenticating = 0;
  for (const conn of daemon.connections.all) {
    queuedBytes += conn.outbound.size;
    if (conn.peer?.isMonitor) monitors++;
    if (!conn.peer?.registered) authenticating++;
  }
  let pendingCalls = 0;
  for (const _ of daemon.bus.replies.all()) pendingCalls++;
  return { queuedBytes, monitors, pendingCalls, authenticating };
}
