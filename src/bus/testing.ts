import { Buffer } from 'node:buffer';
/**
 * Test support for the bus core: an in-memory BusSink that records what each
 * peer was sent, and helpers that speak to a Bus the way a client would. No sockets.
 */
import { encodeMessage, MessageType, parseMessage, readBody, type Header, type NewMessage } from '../wire/message.js';
import { marshal } from '../wire/marshal.js';
import type { DBusValue } from '../wire/values.js';
import { Bus, BUS_NAME, BUS_PATH, type BusLimits, type BusSink, type QueueRefusal } from './bus.js';
import type { Credentials, Peer } from './peer.js';
import type { UidAccount } from './uid-accounts.js';

/** A message as a peer received it: its header fields and decoded body. */
export type Received = Header & { args: DBusValue[] };

export class MemorySink implements BusSink {
  private readonly inbox = new Map<Peer, Received[]>();
  readonly disconnected = new Map<Peer, string>();
  /** Peers whose outbound queue is "full": send() refuses and queues nothing. */
  readonly full = new Set<Peer>();

  /** Who pays for each message held in an inbox, until a take releases it (like a socket's queue). */
  private readonly charges = new WeakMap<Received, [UidAccount, number]>();

  send(peer: Peer, pieces: readonly Buffer[], payer: UidAccount): QueueRefusal | undefined {
    if (this.full.has(peer)) return 'bytes';
    const bytes = Buffer.concat(pieces);
    if (!payer.charge('queuedBytes', bytes.length)) return 'uid-bytes';
    const msg = parseMessage(bytes);
    const list = this.inbox.get(peer) ?? [];
    const received = { ...msg.header, args: readBody(msg) };
    this.charges.set(received, [payer, bytes.length]);
    list.push(received);
    this.inbox.set(peer, list);
    return undefined;
  }

  disconnect(peer: Peer, reason: string): void {
    this.disconnected.set(peer, reason);
  }

  /** Everything `peer` received since the last take, oldest first. */
  take(peer: Peer): Received[] {
    const list = this.inbox.get(peer) ?? [];
    this.inbox.delete(peer);
    for (const m of list) this.release(m);
    return list;
  }

  private release(m: Received | undefined): Received | undefined {
    const charge = m && this.charges.get(m);
    if (charge) charge[0].release('queuedBytes', charge[1]);
    return m;
  }

  /** Removes and returns the reply to `serial` from the peer's inbox, leaving other mail queued. */
  takeReply(peer: Peer, serial: number): Received | undefined {
    const list = this.inbox.get(peer) ?? [];
    const at = list.findIndex((m) => m.replySerial === serial);
    return at < 0 ? undefined : this.release(list.splice(at, 1)[0]);
  }
}

export const USER: Credentials = { uid: 1000, gid: 1000, pid: 4242, groups: [1000, 10] };
export const BUS_SELF: Credentials = { uid: 1000, gid: 1000, pid: 1, groups: [1000] };

export function newBus(limits: Partial<BusLimits> = {}, kind = 'session'): { bus: Bus; sink: MemorySink } {
  const sink = new MemorySink();
  const bus = new Bus(sink, { guid: 'f'.repeat(32), machineId: 'a'.repeat(32), kind, self: BUS_SELF, limits });
  return { bus, sink };
}

const serials = new WeakMap<Peer, number>();

/** Feeds one message from `peer` into the bus; returns its serial. `args` are marshalled with `signature`. */
export function send(bus: Bus, peer: Peer, m: Omit<NewMessage, 'serial' | 'body'> & { args?: DBusValue[]; serial?: number }): number {
  const serial = m.serial ?? (serials.get(peer) ?? 0) + 1;
  serials.set(peer, Math.max(serial, serials.get(peer) ?? 0));
  const { args, ...rest } = m;
  const body = m.signature ? marshal(m.signature, args ?? []) : undefined;
  bus.receive(peer, parseMessage(encodeMessage({ ...rest, serial, body })));
  return serial;
}

/** Calls an org.freedesktop.DBus method; returns the reply (return or error) and keeps the peer's other mail. */
export function callDriver(
  bus: Bus,
  sink: MemorySink,
  peer: Peer,
  member: string,
  signature = '',
  args: DBusValue[] = [],
  extra: Partial<NewMessage> = {},
): Received | undefined {
  const serial = send(bus, peer, {
    type: MessageType.MethodCall, destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member, signature, args, ...extra,
  });
  return sink.takeReply(peer, serial);
}

/** Attaches a connection and says Hello; the Hello reply and NameAcquired are consumed. */
export function connect(bus: Bus, sink: MemorySink, credentials: Credentials = USER): Peer {
  const peer = bus.attach(credentials);
  callDriver(bus, sink, peer, 'Hello');
  sink.take(peer);
  return peer;
}

/** A compact view for assertions: "signal NameOwnerChanged('com.x', '', ':1.1')". */
export function show(m: Received): string {
  const args = m.args.map((a) => JSON.stringify(a, (_k, v: unknown) => (v instanceof Map ? [...v] : v)).replace(/"/g, "'"));
  switch (m.type) {
    case MessageType.Signal: return `signal ${m.member}(${args.join(', ')})`;
    case MessageType.MethodCall: return `call ${m.member}(${args.join(', ')})`;
    case MessageType.MethodReturn: return `return(${args.join(', ')})`;
    default: return `error ${m.errorName}`;
  }
}
