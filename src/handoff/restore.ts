import * as fs from 'node:fs';
import type { Bus } from '../bus/bus.js';
import { DBusErrorName } from '../bus/errors.js';
import { parseMatchRule } from '../bus/match-rule.js';
import type { NameOwnership } from '../bus/name-registry.js';
import type { Peer } from '../bus/peer.js';
import { peerCredentials, setCloexec, type SysError } from '../sys/libc.js';
import { closeFd } from '../sys/socket-io.js';
import { Connection } from '../transport/connection.js';
import { SocketCredentials } from '../transport/socket-credentials.js';
import type { ConnectionSet } from '../transport/connection-set.js';
import type { HandoffDocument } from './document.js';
import { restoreActivation } from './activation-state.js';

export interface RestoreReport {
  connections: number;
  names: number;
  matches: number;
  pendingCalls: number;
  /**
   * The fds the restored connections were handed: their sockets and the fds in their messages
   * (a socket travelling in a message is a client's, not a stray). Known from the document, so
   * nobody walks the queues (whose bytes are not needed) to find them again.
   */
  keptFds: number[];
  /** What could not be restored, one line each (logged loudly by the caller). */
  dropped: string[];
}

/**
 * Why an inherited fd cannot be the connection the document describes, or
 * undefined when it checks out. A wrong fd is never touched.
 */
function checkInheritedConnection(fd: number, pid: number, uid: number): string | undefined {
  // One getsockopt answers all three questions (1000 connections: one system call each, not two).
  let cred: { pid: number; uid: number };
  try {
    cred = peerCredentials(fd);
  } catch (err) {
    const code = (err as SysError).code;
    if (code === 'EBADF') return `fd ${fd} was not inherited`;
    if (code === 'ENOTSOCK') return `fd ${fd} is not a socket`;
    return `fd ${fd}: ${(err as Error).message}`;
  }
  if (cred.pid !== pid || cred.uid !== uid) return `fd ${fd} belongs to pid ${cred.pid} uid ${cred.uid}, not pid ${pid} uid ${uid}`;
  return undefined;
}

/** The fds the document puts in this connection's messages (most connections: none). */
function messageFds(c: HandoffDocument['connections'][number]): readonly number[] {
  if (!c.inboundFds && !c.outboundFds) return NO_FDS;
  return [...(c.inboundFds ?? []), ...(c.outboundFds ?? []).flatMap((m) => m.fds)];
}
const NO_FDS: readonly number[] = [];

/** Every fd the document puts in this connection's messages must have been inherited. */
function checkMessageFds(c: HandoffDocument['connections'][number]): string | undefined {
  for (const fd of messageFds(c)) {
    try {
      fs.fstatSync(fd);
    } catch {
      return `fd ${fd}, named as travelling in one of its messages, was not inherited`;
    }
  }
  return undefined;
}

/** The fds a dropped connection's messages carried: nobody will receive them. */
function closeMessageFds(c: HandoffDocument['connections'][number]): void {
  for (const fd of messageFds(c)) {
    try {
      fs.closeSync(fd);
    } catch {
      // not inherited: nothing to close
    }
  }
}

/**
 * Rebuilds bus state and client connections from a checked document. `cloexecDone`: every
 * inherited fd is close-on-exec again already (setCloexecFrom), so none is set here one by one.
 */
export function restore(doc: HandoffDocument, bus: Bus, connections: ConnectionSet, cloexecDone = false): RestoreReport {
  const report: RestoreReport = { connections: 0, names: 0, matches: 0, pendingCalls: 0, keptFds: [], dropped: [] };
  bus.restoreCounters(doc.bus.nextUniqueId, doc.bus.nextPeerId, doc.bus.driverSerial);
  const peers = new Map<number, Peer>();
  const replays: Array<[Connection, Buffer, number[]]> = [];
  /** Connections that could not be taken over, by peer id: everyone else is told they left. */
  const departed = new Map<number, string>();

  for (const c of doc.connections) {
    const who = c.uniqueName ?? `pid ${c.credentials.pid}`;
    const bad = checkInheritedConnection(c.fd, c.credentials.pid, c.credentials.uid) ?? checkMessageFds(c);
    if (bad) {
      report.dropped.push(`connection ${who}: ${bad}`);
      closeMessageFds(c);
      if (c.uniqueName) departed.set(c.peerId, c.uniqueName);
      continue;
    }
    // What the document does not say (groups, label not read yet) is read from the socket when needed.
    const credentials = new SocketCredentials(c.fd, c.credentials);
    let peer: Peer | undefined;
    if (!c.sasl) {
      peer = bus.attach(credentials, c.peerId, true);
      if (c.uniqueName) bus.adoptUniqueName(peer, c.uniqueName);
      for (const text of c.matches) {
        try {
          bus.addMatch(peer, parseMatchRule(text), true);
          report.matches++;
        } catch (err) {
          report.dropped.push(`connection ${who}: match rule "${text}": ${(err as Error).message}`);
        }
      }
      if (c.monitorRules) {
        const rules = c.monitorRules.flatMap((text) => {
          try {
            return [parseMatchRule(text)];
          } catch {
            report.dropped.push(`connection ${who}: monitor rule "${text}" dropped`);
            return [];
          }
        });
        bus.restoreMonitor(peer, rules);
      }
      peers.set(c.peerId, peer);
    }
    // Accepted with close-on-exec; execve kept them because the old image cleared it.
    const keptBefore = report.keptFds.length;
    if (!cloexecDone) setCloexec(c.fd, true);
    report.keptFds.push(c.fd);
    for (const fd of messageFds(c)) {
      if (!cloexecDone) setCloexec(fd, true);
      report.keptFds.push(fd);
    }
    if (peer) peer.acceptsFds = c.unixFds === true;
    let conn: Connection;
    try {
      conn = new Connection(c.fd, credentials, bus, connections.hooks, connections.limits, {
        sasl: c.sasl ?? null,
        peer,
        outbound: c.outbound,
        outboundFds: c.outboundFds,
      });
    } catch (err) {
      // The poller refused the socket (epoll out of memory or watches): the client sees the end.
      report.dropped.push(`connection ${who}: cannot be watched: ${(err as Error).message}`);
      if (peer) bus.detach(peer);
      peers.delete(c.peerId);
      if (c.uniqueName) departed.set(c.peerId, c.uniqueName);
      closeMessageFds(c);
      closeFd(c.fd);
      report.keptFds.length = keptBefore;
      continue;
    }
    connections.adopt(conn);
    // Most connections were between messages: nothing to replay.
    if (c.inbound.length > 0 || c.inboundFds?.length) replays.push([conn, c.inbound, c.inboundFds ?? []]);
    report.connections++;
  }

  const lostOwnership = new Map<string, Array<{ name: string; newOwner: Peer | undefined }>>();
  for (const n of doc.names) {
    const queue: NameOwnership[] = [];
    for (const o of n.queue) {
      const peer = peers.get(o.peerId);
      if (peer) queue.push({ peer, flags: o.flags });
    }
    const formerPrimary = departed.get(n.queue[0]?.peerId ?? -1);
    if (formerPrimary) {
      const list = lostOwnership.get(formerPrimary) ?? [];
      list.push({ name: n.name, newOwner: queue[0]?.peer });
      lostOwnership.set(formerPrimary, list);
    }
    if (queue.length === 0) {
      report.dropped.push(`name ${n.name}: no owner survived`);
      continue;
    }
    bus.names.restore(n.name, queue);
    report.names++;
  }

  // Oldest deadline first: the reply registry expires calls in the order they were added.
  const timeout = bus.limits.replyTimeoutMs;
  const now = Date.now();
  const deadline = (p: HandoffDocument['pendingCalls'][number]) => p.expiresAt ?? (timeout > 0 ? now + timeout : Infinity);
  for (const p of [...doc.pendingCalls].sort((a, b) => deadline(a) - deadline(b) || 0)) {
    const caller = peers.get(p.caller);
    const callee = peers.get(p.callee);
    if (caller && callee) {
      // The deadline set when the call was made still holds; a reply_timeout set since (a
      // reload) applies from now, as it would to a call made now.
      bus.replies.expect(caller, p.serial, callee, deadline(p));
      report.pendingCalls++;
    } else if (caller && departed.has(p.callee)) {
      bus.sendError(caller, p.serial, DBusErrorName.NoReply, 'Message recipient disconnected from message bus without replying');
    }
  }

  // Services being started, with what waited for them (after the names: one may have an owner now).
  if (doc.activation) report.dropped.push(...restoreActivation(doc.activation, bus, peers));

  // What a disconnect would have told everyone, for the connections that could not be taken over.
  for (const unique of departed.values()) bus.announceDeparted(unique, lostOwnership.get(unique) ?? []);

  // Half-received messages continue where they stopped, now that every peer exists.
  for (const [conn, bytes, fds] of replays) conn.replayInbound(bytes, fds);
  return report;
}
