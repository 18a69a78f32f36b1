import type * as net from 'node:net';
import type { Bus } from '../bus/bus.js';
import type { Credentials, Peer } from '../bus/peer.js';
import { FerryError, WireError } from '../util/errors.js';
import { Framer } from '../wire/framer.js';
import { parseMessage } from '../wire/message.js';
import { SaslServer } from '../wire/sasl.js';
import { OutboundQueue } from './outbound-queue.js';

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
  readonly framer = new Framer();
  readonly outbound = new OutboundQueue();
  peer: Peer | undefined;
  private closing = false;

  constructor(
    readonly socket: net.Socket,
    readonly credentials: Credentials,
    private readonly bus: Bus,
    private readonly hooks: ConnectionHooks,
    readonly maxOutgoingBytes: number,
  ) {
    this.sasl = new SaslServer({ peerUid: credentials.uid, guid: bus.options.guid });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.close('peer closed the connection'));
    socket.on('end', () => this.close('peer closed the connection'));
  }

  get label(): string {
    return this.peer?.label ?? `pid ${this.credentials.pid}`;
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    try {
      if (this.sasl) {
        const step = this.sasl.feed(chunk);
        if (step.reply) this.socket.write(step.reply);
        if (step.state === 'failed') return this.close(`authentication failed: ${step.reason}`, true);
        if (step.state === 'continue') return;
        this.sasl = null;
        this.peer = this.bus.attach(this.credentials);
        this.hooks.attached(this);
        this.hooks.log('client-authenticated', 'client authenticated', { pid: this.credentials.pid, uid: step.uid });
        chunk = step.rest;
      }
      for (const bytes of this.framer.push(chunk)) {
        this.bus.receive(this.peer!, parseMessage(bytes));
        if (this.closing) return;
      }
    } catch (err) {
      if (err instanceof WireError) return this.close(`malformed input: ${err.message}`, true);
      if (err instanceof FerryError) return this.close(err.message, true);
      throw err;
    }
  }

  /** Queues bytes for this client; false (and nothing queued) when over its quota. */
  send(bytes: Buffer): boolean {
    if (this.closing) return true; // gone: accepted and discarded, like a closed socket
    if (this.outbound.size + bytes.length > this.maxOutgoingBytes) return false;
    const wasIdle = !this.outbound.hasPending;
    this.outbound.push(bytes);
    if (wasIdle) this.hooks.markDirty(this);
    return true;
  }

  /** Hands this turn's bytes to the socket as one write. */
  flush(): void {
    if (this.closing || !this.outbound.hasPending) return;
    this.socket.write(this.outbound.takePending(), () => this.outbound.written());
  }

  /** Disconnects; the bus releases what the peer held. Safe to call more than once. */
  close(reason: string, loud = false): void {
    if (this.closing) return;
    this.closing = true;
    const fields = { peer: this.label, pid: this.credentials.pid, reason };
    if (loud) this.hooks.log('client-dropped', `disconnecting client: ${reason}`, fields);
    else this.hooks.log('client-disconnected', 'client disconnected', fields);
    this.socket.destroy();
    if (this.peer) this.bus.detach(this.peer);
    this.hooks.closed(this);
  }
}
