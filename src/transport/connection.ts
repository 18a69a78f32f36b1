import { Buffer } from 'node:buffer';
import { BUS_NAME, type Bus, type QueueRefusal } from '../bus/bus.js';
import type { Credentials, Peer } from '../bus/peer.js';
import { UnixFds } from '../bus/unix-fds.js';
import { setNonBlocking } from '../sys/libc.js';
import { closeFd, RECEIVE_CHUNK, receiveBuffer, receiveFrom, SendGather, sendFileTo } from '../sys/socket-io.js';
import { FerryError, WireError } from '../util/errors.js';
import { Framer } from '../wire/framer.js';
import { buildMessage, MessageFlag, MessageType, parseMessage, type Message } from '../wire/message.js';
import { marshal } from '../wire/marshal.js';
import { BusError } from '../bus/errors.js';
import { SaslServer, type SaslOptions, type SaslState } from '../wire/sasl.js';
import { validateBody } from '../wire/validate.js';
import { InboundFds } from './inbound-fds.js';
import { OutboundQueue } from './outbound-queue.js';
import { poller, type PollHandler } from './poller.js';
import { readParts, SpooledBytes, type QueuedPart, type SpoolWriter } from './spooled-bytes.js';

/** One send is gathered at a time (single-threaded): shared by every connection. */
const gather = new SendGather();

/** dbus-daemon's system default (auth_timeout, 30 s). */
export const DEFAULT_AUTH_TIMEOUT_MS = 30_000;
/** dbus-daemon's default (pending_fd_timeout, 150 s). */
export const DEFAULT_PENDING_FD_TIMEOUT_MS = 150_000;

/** What a connection may hold and receive (the config's <limit>s). */
export interface ConnectionLimits {
  maxOutgoingBytes: number;
  authTimeoutMs: number;
  maxMessageSize: number;
  /** max_message_unix_fds: fds one message may carry. */
  maxMessageUnixFds: number;
  /** max_incoming_unix_fds: fds held for one connection's half-received messages. */
  maxIncomingUnixFds: number;
  /** max_outgoing_unix_fds: fds queued for one connection. */
  maxOutgoingUnixFds: number;
  /** pending_fd_timeout: how long fds may wait in a message not yet received whole. */
  pendingFdTimeoutMs: number;
}

/** dbus-daemon's compiled (system bus) defaults. */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxOutgoingBytes: 127 * 1024 * 1024,
  authTimeoutMs: DEFAULT_AUTH_TIMEOUT_MS,
  maxMessageSize: 32 * 1024 * 1024,
  maxMessageUnixFds: 16,
  maxIncomingUnixFds: 64,
  maxOutgoingUnixFds: 64,
  pendingFdTimeoutMs: DEFAULT_PENDING_FD_TIMEOUT_MS,
};

/** State carried over from an earlier image (handoff). */
export interface AdoptedState {
  sasl: SaslState | null;
  peer: Peer | undefined;
  /** In order: bytes in memory, or in the handoff's spool file (sent from there). */
  outbound: readonly QueuedPart[];
  /** Where in `outbound` a message with fds starts, and its fds (inherited). */
  outboundFds?: ReadonlyArray<{ at: number; fds: readonly number[] }>;
}

export interface ConnectionHooks {
  /** Called once the client authenticated and has a peer in the bus. */
  attached(conn: Connection): void;
  /** Called when the connection has bytes to write this turn. */
  markDirty(conn: Connection): void;
  /** Called once when the connection is gone. */
  closed(conn: Connection): void;
  /** The connection began (true) or stopped (false) holding fds of a message not received whole. */
  pendingFds(conn: Connection, holding: boolean): void;
  log(event: string, message: string, fields?: Record<string, unknown>): void;
}

/**
 * One client socket: SASL, then framing, then messages into the bus. ferrybus reads and writes
 * the socket itself (recvmsg/sendmsg, src/sys/socket-io.ts) so that fds travel with messages;
 * the poller (src/transport/poller.ts) tells when it is readable, or writable again after a
 * write would have blocked. The connection owns the fd and closes it. All bytes to the client
 * go through the OutboundQueue, written once per event-loop turn.
 */
export class Connection implements PollHandler {
  private sasl: SaslServer | null;
  readonly framer: Framer;
  readonly outbound = new OutboundQueue();
  peer: Peer | undefined;
  private closing = false;
  /** Set when the bus refused this client after authentication: only Hello is answered. */
  private refusal: BusError | undefined;
  /** A write would block: wait until the socket takes bytes again. */
  private blocked = false;
  /** The most bytes read from this client and held at once (Debug.Stats' PeakIncomingBytes). */
  peakIncomingBytes = 0;
  /** The most fds from this client held at once (PeakIncomingFDs). */
  peakIncomingFds = 0;
  /** auth_timeout: a client that never finishes SASL must not hold a slot forever. */
  private authTimer: NodeJS.Timeout | undefined;
  /** Bytes handed to the framer so far, and bytes of the messages it gave back. */
  private framedBytes = 0;
  private consumedBytes = 0;
  /** Fds received and not yet given to a message, oldest first. */
  private readonly inboundFds = new InboundFds();

  constructor(
    readonly fd: number,
    readonly credentials: Credentials,
    private readonly bus: Bus,
    private readonly hooks: ConnectionHooks,
    readonly limits: ConnectionLimits,
    adopted?: AdoptedState,
  ) {
    this.framer = new Framer(limits.maxMessageSize);
    // First, so that a socket the poller refuses leaves nothing behind (no timer, nothing queued).
    poller().watch(fd, this);
    if (adopted) {
      this.sasl = adopted.sasl ? SaslServer.fromState(this.saslOptions(), adopted.sasl) : null;
      this.peer = adopted.peer;
      this.adoptOutbound(adopted);
    } else {
      this.sasl = new SaslServer(this.saslOptions());
    }
    if (this.sasl) {
      this.authTimer = setTimeout(() => {
        if (this.sasl) this.close(`authentication did not finish within auth_timeout (${limits.authTimeoutMs} ms)`, true);
      }, limits.authTimeoutMs);
      this.authTimer.unref();
    }
  }

  /** What the SASL conversation needs (made only for one: a handoff adopts most connections past it). */
  private saslOptions(): SaslOptions {
    const { bus, credentials, hooks } = this;
    return {
      peerUid: credentials.uid,
      guid: bus.options.guid,
      unixFds: true,
      allowUid: () => {
        if (bus.allowsConnect(credentials)) return true;
        hooks.log('policy-denied', 'the policy does not let this user connect', { uid: credentials.uid, pid: credentials.pid });
        return false;
      },
    };
  }

  /** Still in SASL: counts against max_incomplete_connections. */
  get authenticating(): boolean {
    return this.sasl !== null;
  }

  get label(): string {
    return this.peer?.label ?? `pid ${this.credentials.pid}`;
  }

  /** Fds received from this client and held until their message is complete. */
  get inboundFdCount(): number {
    return this.inboundFds.count;
  }

  /** Since when the oldest of them waits for the rest of its message (pending_fd_timeout); 0: none waits. */
  get pendingFdsSince(): number {
    return this.inboundFds.since;
  }

  /** One recvmsg (the poller calls again on the next turn while bytes remain); true when more may be waiting. */
  onReadable(): boolean {
    if (this.closing) return false;
    // The rest of a large message goes straight into its own buffer (never during SASL).
    const room = this.sasl ? undefined : this.framer.room;
    const r = receiveFrom(this.fd, room);
    if (r.kind === 'again') return false;
    if (r.kind === 'eof') {
      this.close('peer closed the connection');
      return false;
    }
    if (r.kind === 'error') {
      this.close(`socket error: ${r.error.message}`);
      return false;
    }
    if (r.fds) {
      if (r.truncated) return this.dropWithFds(r.fds, 'fds were dropped on the way (MSG_CTRUNC; a security module refused some?)');
      if (!this.acceptsFds) return this.dropWithFds(r.fds, 'sent unix fds without negotiating them');
      if (this.inboundFds.count + r.fds.length > this.limits.maxIncomingUnixFds) {
        return this.dropWithFds(r.fds, `holds more than max_incoming_unix_fds (${this.limits.maxIncomingUnixFds}) fds in messages not yet complete`);
      }
    } else if (r.truncated) {
      this.close('fds were dropped on the way (MSG_CTRUNC; a security module refused some?)', true);
      return false;
    }
    const direct = room ? Math.min(r.length, room.length) : 0;
    const shared = r.length - direct;
    this.onData(receiveBuffer(), true, r.fds, direct, shared);
    this.notePendingFds();
    // The kernel ends a read after bytes that carried fds: more may be queued behind them.
    // A read that filled every buffer it was given may have left bytes behind too.
    const full = shared === RECEIVE_CHUNK || (room !== undefined && direct === room.length && shared === 0);
    return !this.closing && (full || r.fds !== undefined);
  }

  onWritable(): void {
    this.blocked = false;
    poller().watchWritable(this.fd, false);
    this.flush();
  }

  private get acceptsFds(): boolean {
    return this.peer ? this.peer.acceptsFds : this.sasl?.unixFdsNegotiated === true;
  }

  private dropWithFds(fds: readonly number[], reason: string): false {
    for (const fd of fds) closeFd(fd);
    this.close(reason, true);
    return false;
  }

  /**
   * After each read: the fds left waiting for the rest of their message are charged to this
   * client's uid (over its ceiling: disconnected, as a half-received message cannot be
   * answered), and pending_fd_timeout watches them. Costs one comparison when none wait.
   */
  private notePendingFds(inherited = false): void {
    if (this.closing) return;
    const change = this.inboundFds.settle(this.peer?.account, inherited);
    if (change === 'none') return;
    if (change === 'over-ceiling') {
      const account = this.peer!.account;
      return this.close(`uid ${account.uid} would hold more than its ${this.bus.accounts.ceilings().fds} unix fds in the bus (max_incoming_unix_fds + max_outgoing_unix_fds)`, true);
    }
    this.hooks.pendingFds(this, change === 'started-holding');
  }

  /**
   * Bytes from the client: `direct` bytes received into the framer's room, then the first
   * `length` bytes of `view`. `transient`: `view` is the shared receive buffer, valid only
   * during this call (given whole with a length: no view of it is made per read).
   */
  private onData(view: Buffer, transient: boolean, fds: readonly number[] | undefined, direct = 0, length = view.length): void {
    if (this.closing) return;
    try {
      if (this.sasl) {
        // SASL keeps what it has not parsed yet: it gets bytes of its own.
        const chunk = transient ? Buffer.from(view.subarray(0, length)) : view.subarray(0, length);
        const step = this.sasl.feed(chunk);
        if (step.state === 'failed') {
          if (fds) for (const fd of fds) closeFd(fd);
          return this.lastWords(Buffer.from(step.reply, 'latin1'), `authentication failed: ${step.reason}`);
        }
        // Through the outbound queue, so a handoff mid-authentication carries unsent replies too.
        if (step.reply) this.send(Buffer.from(step.reply, 'latin1'), true);
        if (step.state === 'continue') {
          if (fds) this.dropWithFds(fds, 'sent unix fds during authentication');
          return;
        }
        const negotiatedFds = this.sasl.unixFdsNegotiated;
        this.sasl = null;
        clearTimeout(this.authTimer);
        this.authTimer = undefined;
        try {
          this.peer = this.bus.attach(this.credentials);
          this.peer.acceptsFds = negotiatedFds;
          this.hooks.attached(this);
          this.hooks.log('client-authenticated', 'client authenticated', { pid: this.credentials.pid, uid: step.uid });
        } catch (err) {
          if (!(err instanceof BusError)) throw err;
          this.refusal = err; // told in the answer to Hello, as dbus-daemon tells it
          this.authTimer = setTimeout(() => this.close(`${err.message}; no Hello to answer within auth_timeout`, true), this.limits.authTimeoutMs);
          this.authTimer.unref();
        }
        view = step.rest;
        length = view.length;
        transient = false;
      }
      const received = direct + length;
      if (fds) {
        if (received === 0) return void this.dropWithFds(fds, 'sent unix fds during authentication');
        // The kernel ends a read right after the bytes that carried fds: they came with the
        // read's last byte, which belongs to the message they are for (its first sendmsg).
        const at = this.framedBytes + received - 1;
        this.inboundFds.add(at, fds);
        if (this.inboundFds.count > this.peakIncomingFds) this.peakIncomingFds = this.inboundFds.count;
      }
      this.framedBytes += received;
      const held = this.framer.pendingLength + received;
      if (held > this.peakIncomingBytes) this.peakIncomingBytes = held;
      const finished = direct > 0 ? this.framer.filled(direct) : undefined;
      if (finished && !this.route(finished)) return;
      const messages = transient ? this.framer.pushCopy(view, length) : this.framer.push(view.subarray(0, length));
      // Indexed: a for-of here made an iterator and a result object per message read.
      for (let i = 0; i < messages.length; i++) if (!this.route(messages[i]!)) return;
      // Messages before bad framing in the same chunk were routed; now the error counts.
      this.framer.throwIfFailed();
    } catch (err) {
      if (err instanceof WireError) return this.close(`malformed input: ${err.message}`, true);
      if (err instanceof FerryError) return this.close(err.message, true);
      // A bug reached by this client's input: it loses its connection, everyone else keeps
      // theirs. Crashing instead would let one client take the whole bus down, again and again.
      this.hooks.log('internal-error', 'unexpected error while handling a client; disconnecting it', {
        peer: this.label,
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
      return this.close('internal error', true);
    }
  }

  /** One complete message into the bus; false when the connection stops reading (refused, closed). */
  private route(bytes: Buffer): boolean {
    const end = (this.consumedBytes += bytes.length);
    const msg = parseMessage(bytes);
    validateBody(msg);
    const messageFds = this.claimFds(msg, end);
    if (this.refusal) {
      messageFds?.release();
      this.refuse(msg, this.refusal);
      return false;
    }
    try {
      this.bus.receive(this.peer!, msg, messageFds);
    } finally {
      messageFds?.release(); // receivers that queued it hold their own references
    }
    return !this.closing;
  }

  /** The fds that came with a message's bytes (see InboundFds#take). */
  private claimFds(msg: Message, end: number): UnixFds | undefined {
    const fds = this.inboundFds.take(msg.header.unixFds ?? 0, end, this.limits.maxMessageUnixFds);
    return fds && new UnixFds(fds, closeFd);
  }

  /**
   * A client the bus would not take (a connection limit): its first call, Hello, is answered
   * with the error from the bus, then the connection is closed once the answer is written.
   */
  private refuse(msg: Message, refusal: BusError): void {
    const reason = refusal.message;
    const h = msg.header;
    if (h.type !== MessageType.MethodCall || (h.flags & MessageFlag.NoReplyExpected) !== 0) return this.close(reason, true);
    const answer = buildMessage({
      type: MessageType.Error, serial: 1, replySerial: h.serial, sender: BUS_NAME,
      errorName: refusal.dbusName, signature: 's', body: marshal('s', [reason]),
    });
    this.lastWords(answer.bytes, reason);
  }

  /** Writes what the socket takes of a last answer now, then disconnects. */
  private lastWords(bytes: Buffer, reason: string): void {
    if (bytes.length > 0) {
      this.send(bytes, true);
      this.flush();
    }
    this.close(reason, true);
  }

  /** Feeds bytes (and fds) received by an earlier image (a handoff) as if they had just arrived. */
  replayInbound(bytes: Buffer, fds?: readonly number[]): void {
    if (bytes.length > 0 || fds?.length) this.onData(bytes, false, fds?.length ? fds : undefined);
    // Inherited: charged whatever the ceiling says. pending_fd_timeout starts again here (the
    // old image's clock did not cross the handoff).
    this.notePendingFds(true);
  }

  /** The SASL conversation, while the client is still authenticating. */
  saslState(): SaslState | null {
    return this.sasl?.exportState() ?? null;
  }

  /**
   * Queues a message for this client, charged to `payer` (by default this client's own uid)
   * until the kernel takes it. Returns undefined when queued, else the quota it would exceed
   * (nothing queued): this connection's bytes or fds, or the payer's. `force`: queued whatever
   * the quotas say (SASL, a handoff).
   */
  send(pieces: Buffer | readonly Buffer[] | SpooledBytes, force = false, payer = this.peer?.account, fds?: UnixFds): QueueRefusal | undefined {
    if (this.closing) return undefined; // gone: accepted and discarded, like a closed socket
    let length = 0;
    if (Buffer.isBuffer(pieces)) length = pieces.length;
    else if (pieces instanceof SpooledBytes) length = pieces.length;
    else for (const p of pieces) length += p.length;
    if (!force) {
      if (this.outbound.size + length > this.limits.maxOutgoingBytes) return 'bytes';
      if (fds && this.outbound.fdCount + fds.count > this.limits.maxOutgoingUnixFds) return 'fds';
      if (payer && !payer.allows('queuedBytes', length)) return 'uid-bytes';
      if (fds && payer && !payer.allows('fds', fds.count)) return 'uid-fds';
    }
    const wasIdle = !this.outbound.hasPending;
    this.outbound.push(pieces, length, payer, fds);
    if (wasIdle && !this.blocked) this.hooks.markDirty(this);
    return undefined;
  }

  /** Writes queued bytes until the socket would block (then waits to be told it is writable). */
  flush(): void {
    if (this.closing || this.blocked) return;
    while (this.outbound.hasPending) {
      const spooled = this.outbound.spooledHead();
      let sent: number;
      try {
        if (spooled) {
          sent = sendFileTo(this.fd, spooled.file.fd, spooled.position, spooled.length);
        } else {
          const { fds } = this.outbound.fill(gather.reset());
          sent = gather.sendTo(this.fd, fds);
        }
      } catch (err) {
        return this.close(`socket error: ${(err as Error).message}`);
      }
      if (sent < 0) {
        // A slow reader: wait until its socket takes bytes again.
        this.blocked = true;
        poller().watchWritable(this.fd, true);
        return;
      }
      this.outbound.consume(sent);
    }
  }

  /** Moves what is queued in memory for this client (fds excepted) into a spool file; returns the bytes moved. */
  spoolOutbound(writer: SpoolWriter): number {
    setNonBlocking(this.fd); // sendfile has no MSG_DONTWAIT (an accepted socket is non-blocking already)
    return this.outbound.spoolTo(writer);
  }

  /** unsent(), the bytes as the pieces they are queued in (a handoff writes them without gathering). */
  unsentParts(): ReturnType<OutboundQueue['unsentParts']> {
    return this.outbound.unsentParts();
  }

  /** Fds received for a half-received message (a handoff carries them with the bytes). */
  pendingInboundFds(): number[] {
    return this.inboundFds.numbers();
  }

  private adoptOutbound(adopted: AdoptedState): void {
    if (!adopted.outboundFds?.length) {
      // Spooled bytes stay in their file until sent (sendfile needs a non-blocking socket,
      // as an inherited one should be already).
      if (adopted.outbound.some((p) => p instanceof SpooledBytes)) setNonBlocking(this.fd);
      for (const part of adopted.outbound) this.send(part, true);
      return;
    }
    const marks = [...adopted.outboundFds].sort((a, b) => a.at - b.at);
    // Messages with fds are cut where they start (their fds go with their first byte): in memory.
    const bytes = readParts(adopted.outbound);
    let from = 0;
    for (const mark of marks) {
      if (mark.at > from) this.send(bytes.subarray(from, mark.at), true);
      const fds = new UnixFds(mark.fds, closeFd);
      this.send(bytes.subarray(mark.at, nextMark(marks, mark, bytes.length)), true, undefined, fds);
      fds.release();
      from = nextMark(marks, mark, bytes.length);
    }
    if (from < bytes.length) this.send(bytes.subarray(from), true);
  }

  /** Disconnects; the bus releases what the peer held. Safe to call more than once. */
  close(reason: string, loud = false): void {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.authTimer);
    const fields = { peer: this.label, pid: this.credentials.pid, reason };
    if (loud) this.hooks.log('client-dropped', `disconnecting client: ${reason}`, fields);
    else this.hooks.log('client-disconnected', 'client disconnected', fields);
    poller().unwatch(this.fd);
    closeFd(this.fd);
    this.outbound.discard();
    this.inboundFds.discard(this.peer?.account);
    if (this.peer) this.bus.detach(this.peer);
    this.hooks.closed(this);
  }
}

function nextMark(marks: ReadonlyArray<{ at: number }>, mark: { at: number }, end: number): number {
  const i = marks.indexOf(mark);
  return i + 1 < marks.length ? marks[i + 1]!.at : end;
}
