import type * as net from 'node:net';
import { BUS_NAME, type Bus } from '../bus/bus.js';
import type { Credentials, Peer } from '../bus/peer.js';
import { FerryError, WireError } from '../util/errors.js';
import { Framer } from '../wire/framer.js';
import { buildMessage, MessageFlag, MessageType, parseMessage, type Message } from '../wire/message.js';
import { marshal } from '../wire/marshal.js';
import { BusError } from '../bus/errors.js';
import { SaslServer, type SaslState } from '../wire/sasl.js';
import { validateBody } from '../wire/validate.js';
import { OutboundQueue } from './outbound-queue.js';

/** dbus-daemon's system default (auth_timeout, 30 s). */
export const DEFAULT_AUTH_TIMEOUT_MS = 30_000;

/** State carried over from an earlier image (handoff). */
export interface AdoptedState {
  sasl: SaslState | null;
  peer: Peer | undefined;
  inbound: Buffer;
  outbound: Buffer;
}

export interface ConnectionHooks {
  /** Called once the client authenticated and has a peer in the bus. */
  attached(conn: Connection): void;
  /** Called when the connection has bytes to write this turn. */
  markDirty(conn: Connection): void;
  /** Called once when the connection is gone. */
  closed(conn: Connection): void;
  log(event: string, message: string, fields?: Record<string, unknown>): void;
}

/**
 * One client socket: SASL, then framing, then messages into the bus. All bytes
 * to the client go through the OutboundQueue, written once per event-loop turn.
 */
export class Connection {
  private sasl: SaslServer | null;
  readonly framer: Framer;
  readonly outbound = new OutboundQueue();
  peer: Peer | undefined;
  private closing = false;
  /** Set when the bus refused this client after authentication: only Hello is answered. */
  private refusal: BusError | undefined;
  /** At most one socket.write is outstanding, so unsent bytes are always known exactly. */
  private writing = false;
  /** The most bytes read from this client and held at once (Debug.Stats' PeakIncomingBytes). */
  peakIncomingBytes = 0;
  /** auth_timeout: a client that never finishes SASL must not hold a slot forever. */
  private authTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: net.Socket,
    readonly credentials: Credentials,
    private readonly bus: Bus,
    private readonly hooks: ConnectionHooks,
    readonly maxOutgoingBytes: number,
    adopted?: AdoptedState,
    private readonly authTimeoutMs = DEFAULT_AUTH_TIMEOUT_MS,
    maxMessageSize?: number,
  ) {
    this.framer = new Framer(maxMessageSize);
    const saslOptions = {
      peerUid: credentials.uid,
      guid: bus.options.guid,
      allowUid: () => {
        if (bus.allowsConnect(credentials)) return true;
        hooks.log('policy-denied', 'the policy does not let this user connect', { uid: credentials.uid, pid: credentials.pid });
        return false;
      },
    };
    if (adopted) {
      this.sasl = adopted.sasl ? SaslServer.fromState(saslOptions, adopted.sasl) : null;
      this.peer = adopted.peer;
      if (adopted.outbound.length > 0) this.send(adopted.outbound, true);
    } else {
      this.sasl = new SaslServer(saslOptions);
    }
    if (this.sasl) {
      this.authTimer = setTimeout(() => {
        if (this.sasl) this.close(`authentication did not finish within auth_timeout (${authTimeoutMs} ms)`, true);
      }, authTimeoutMs);
      this.authTimer.unref();
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.close('peer closed the connection'));
    socket.on('end', () => this.close('peer closed the connection'));
  }

  /** Still in SASL: counts against max_incomplete_connections. */
  get authenticating(): boolean {
    return this.sasl !== null;
  }

  get label(): string {
    return this.peer?.label ?? `pid ${this.credentials.pid}`;
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    try {
      if (this.sasl) {
        const step = this.sasl.feed(chunk);
        if (step.state === 'failed') {
          // The last word is written directly: the connection is closed right after.
          if (step.reply) this.socket.write(step.reply);
          return this.close(`authentication failed: ${step.reason}`, true);
        }
        // Through the outbound queue, so a handoff mid-authentication carries unsent replies too.
        if (step.reply) this.send(Buffer.from(step.reply, 'latin1'), true);
        if (step.state === 'continue') return;
        this.sasl = null;
        clearTimeout(this.authTimer);
        try {
          this.peer = this.bus.attach(this.credentials);
          this.hooks.attached(this);
          this.hooks.log('client-authenticated', 'client authenticated', { pid: this.credentials.pid, uid: step.uid });
        } catch (err) {
          if (!(err instanceof BusError)) throw err;
          this.refusal = err; // told in the answer to Hello, as dbus-daemon tells it
          this.authTimer = setTimeout(() => this.close(`${err.message}; no Hello to answer within auth_timeout`, true), this.authTimeoutMs);
          this.authTimer.unref();
        }
        chunk = step.rest;
      }
      const held = this.framer.pendingLength + chunk.length;
      if (held > this.peakIncomingBytes) this.peakIncomingBytes = held;
      for (const bytes of this.framer.push(chunk)) {
        const msg = parseMessage(bytes);
        validateBody(msg);
        if (this.refusal) return this.refuse(msg, this.refusal);
        this.bus.receive(this.peer!, msg);
        if (this.closing) return;
      }
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
    this.closing = true; // nothing more is read; the close follows the write
    this.socket.write(answer.bytes, () => {
      this.closing = false;
      this.close(reason, true);
    });
  }

  /** Feeds bytes received by an earlier image (a handoff) as if they had just arrived. */
  replayInbound(bytes: Buffer): void {
    if (bytes.length > 0) this.onData(bytes);
  }

  /** The SASL conversation, while the client is still authenticating. */
  saslState(): SaslState | null {
    return this.sasl?.exportState() ?? null;
  }

  /**
   * Queues bytes for this client, charged to `payer` (by default this client's own uid) until
   * the kernel takes them; false (and nothing queued) when over this connection's quota or the
   * payer's account. `force`: queued whatever the quotas say (SASL, a handoff's unsent bytes).
   */
  send(pieces: Buffer | readonly Buffer[], force = false, payer = this.peer?.account): boolean {
    if (this.closing) return true; // gone: accepted and discarded, like a closed socket
    let length = 0;
    if (Buffer.isBuffer(pieces)) length = pieces.length;
    else for (const p of pieces) length += p.length;
    if (!force && (this.outbound.size + length > this.maxOutgoingBytes || (payer && !payer.allows('queuedBytes', length)))) return false;
    const wasIdle = !this.outbound.hasPending;
    this.outbound.push(pieces, length, payer);
    if (wasIdle && !this.writing) this.hooks.markDirty(this);
    return true;
  }

  /**
   * Hands this turn's bytes to the socket as one writev (corked writes), unless a
   * batch is still outstanding. The last write's callback marks the batch done.
   */
  flush(): void {
    if (this.closing || this.writing || !this.outbound.hasPending) return;
    this.writing = true;
    const batch = this.outbound.takePending();
    const done = (err?: Error | null) => {
      this.writing = false;
      this.outbound.written();
      if (!err && this.outbound.hasPending) this.hooks.markDirty(this);
    };
    if (batch.length === 1) {
      this.socket.write(batch[0]!, done);
      return;
    }
    this.socket.cork();
    for (let i = 0; i < batch.length - 1; i++) this.socket.write(batch[i]!);
    this.socket.write(batch[batch.length - 1]!, done);
    this.socket.uncork();
  }

  /**
   * Every byte accepted for this client that the kernel has not taken, in order.
   * libuv's write queue size is the unsent tail of the one outstanding write.
   */
  unsentBytes(): Buffer {
    const handle = (this.socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle;
    return this.outbound.unsent(this.writing ? (handle?.writeQueueSize ?? 0) : 0);
  }

  /** Disconnects; the bus releases what the peer held. Safe to call more than once. */
  close(reason: string, loud = false): void {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.authTimer);
    const fields = { peer: this.label, pid: this.credentials.pid, reason };
    if (loud) this.hooks.log('client-dropped', `disconnecting client: ${reason}`, fields);
    else this.hooks.log('client-disconnected', 'client disconnected', fields);
    this.socket.destroy();
    this.outbound.discard();
    if (this.peer) this.bus.detach(this.peer);
    this.hooks.closed(this);
  }
}
