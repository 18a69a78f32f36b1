import type { Bus, BusSink, QueueRefusal } from '../bus/bus.js';
import type { PeerTraffic, TrafficSource } from '../bus/debug-stats.js';
import type { Credentials, Peer } from '../bus/peer.js';
import type { UidAccount } from '../bus/uid-accounts.js';
import type { UnixFds } from '../bus/unix-fds.js';
import { closeFd } from '../sys/socket-io.js';
import { Connection, DEFAULT_CONNECTION_LIMITS, type ConnectionHooks, type ConnectionLimits } from './connection.js';
import { RateLimit } from '../util/rate-limit.js';
import { atTurnEnd, poller } from './poller.js';
import { emptyArray } from '../util/empty-array.js';
import { PendingFdWatch } from './pending-fd-watch.js';
import { SocketCredentials } from './socket-credentials.js';

function definedOnly<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export type TransportLog = (event: string, message: string, fields?: Record<string, unknown>) => void;

/**
 * Every client connection, and the BusSink the bus core writes through.
 * Writes are coalesced: connections with bytes queued are flushed together once the poller has
 * handled every socket ready in its turn, or by setImmediate when bytes were queued outside one
 * (a timer, a child's exit, a handoff).
 */
export class ConnectionSet implements BusSink, TrafficSource {
  private readonly byPeer = new Map<number, Connection>();
  readonly all = new Set<Connection>();
  /**
   * Connections with bytes to write this turn. An array, not a Set: a connection is added when its
   * queue stops being empty, so rarely twice (a second flush finds nothing), and an array is reused
   * where Set#clear allocates.
   */
  private dirty: Connection[] = [];
  private flushing: Connection[] = [];
  private flushScheduled = false;
  private readonly flushNow = (): void => this.flushAll();
  bus!: Bus;
  readonly hooks: ConnectionHooks;
  /** A connection flood must not become a log flood. */
  private readonly refusalLog = new RateLimit(10, 10_000);
  /** pending_fd_timeout, for every connection holding fds of a message not received whole. */
  readonly pendingFds = new PendingFdWatch();

  /** What each new connection may hold (dbus-daemon's system defaults unless configured). */
  limits: ConnectionLimits;

  constructor(
    private readonly log: TransportLog,
    limits: Partial<ConnectionLimits> = {},
    /** max_incomplete_connections (dbus-daemon's system default). */
    public maxIncompleteConnections = 64,
  ) {
    this.limits = DEFAULT_CONNECTION_LIMITS;
    this.setLimits(limits);
    // Set up now (its epoll fd), not in the middle of the first accept.
    poller();
    this.hooks = {
      attached: (conn) => this.byPeer.set(conn.peer!.id, conn),
      markDirty: (conn) => this.markDirty(conn),
      pendingFds: (conn, holding) => (holding ? this.pendingFds.hold(conn) : this.pendingFds.release(conn)),
      closed: (conn) => {
        this.pendingFds.release(conn);
        this.all.delete(conn);
        if (conn.peer) this.byPeer.delete(conn.peer.id);
      },
      log,
    };
  }

  /** The limits of connections accepted from now on (a reload); unset ones are the defaults. */
  setLimits(limits: Partial<ConnectionLimits>): void {
    this.limits = { ...DEFAULT_CONNECTION_LIMITS, ...definedOnly(limits) };
  }

  /** Takes a freshly accepted socket (its fd is ours from now on): reads its credentials, then starts SASL. */
  accept(fd: number): void {
    let credentials: Credentials;
    try {
      credentials = new SocketCredentials(fd);
    } catch (err) {
      this.log('client-refused', 'could not read peer credentials; closing', { error: String(err) });
      closeFd(fd);
      return;
    }
    // Connections still authenticating cost memory and a slot but have proven nothing yet.
    if (this.all.size - this.byPeer.size >= this.maxIncompleteConnections) {
      const suppressed = this.refusalLog.take();
      if (suppressed === undefined) return void closeFd(fd);
      this.log('client-refused', 'too many connections are still authenticating (max_incomplete_connections); closing the new one', {
        pid: credentials.pid,
        uid: credentials.uid,
        limit: this.maxIncompleteConnections,
        ...(suppressed > 0 ? { suppressedBefore: suppressed } : {}),
      });
      closeFd(fd);
      return;
    }
    let conn: Connection;
    try {
      conn = new Connection(fd, credentials, this.bus, this.hooks, this.limits);
    } catch (err) {
      this.log('client-refused', 'could not watch the new connection; closing', { pid: credentials.pid, uid: credentials.uid, error: String(err) });
      closeFd(fd);
      return;
    }
    this.all.add(conn);
    // A client writes its first bytes (the nul byte, AUTH) right after connect(), usually before
    // the bus gets to accept it: read them in this turn rather than after one more wake-up.
    conn.onReadable();
  }

  /** Takes a connection rebuilt from a handoff document. */
  adopt(conn: Connection): void {
    this.all.add(conn);
    if (conn.peer) this.byPeer.set(conn.peer.id, conn);
  }

  connectionOf(peer: Peer): Connection | undefined {
    return this.byPeer.get(peer.id);
  }

  get maxOutgoingBytes(): number {
    return this.limits.maxOutgoingBytes;
  }

  send(peer: Peer, pieces: readonly Buffer[], payer: UidAccount, fds?: UnixFds): QueueRefusal | undefined {
    return this.byPeer.get(peer.id)?.send(pieces, false, payer, fds);
  }

  traffic(peer: Peer): PeerTraffic | undefined {
    const conn = this.byPeer.get(peer.id);
    if (!conn) return undefined;
    return {
      incomingBytes: conn.framer.pendingLength,
      peakIncomingBytes: conn.peakIncomingBytes,
      outgoingMessages: conn.outbound.messages,
      outgoingBytes: conn.outbound.size,
      peakOutgoingBytes: conn.outbound.peakSize,
      incomingFds: conn.inboundFdCount,
      peakIncomingFds: conn.peakIncomingFds,
      outgoingFds: conn.outbound.fdCount,
      peakOutgoingFds: conn.outbound.peakFds,
    };
  }

  authenticatingConnections(): number {
    return this.all.size - this.byPeer.size;
  }

  disconnect(peer: Peer, reason: string): void {
    this.byPeer.get(peer.id)?.close(reason, true);
  }

  private markDirty(conn: Connection): void {
    this.dirty.push(conn);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    if (!atTurnEnd(this.flushNow)) setImmediate(this.flushNow);
  }

  /** Writes every connection's pending bytes now (also before a handoff snapshot). */
  flushAll(): void {
    this.flushScheduled = false;
    // Swapped first: a flush that queues more (a last answer) marks into the other list.
    const batch = this.dirty;
    this.dirty = this.flushing;
    this.flushing = batch;
    for (let i = 0; i < batch.length; i++) batch[i]!.flush();
    emptyArray(batch);
  }

  closeAll(reason: string): void {
    for (const conn of [...this.all]) conn.close(reason);
  }
}
