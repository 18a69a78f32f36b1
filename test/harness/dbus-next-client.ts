import type { Socket } from 'node:net';
import dbus from 'dbus-next';
import { withTimeout } from './timeout.js';

export type Message = dbus.Message;
export const { Message: MessageClass, MessageType, MessageFlag } = dbus;

export const DRIVER = {
  destination: 'org.freedesktop.DBus',
  path: '/org/freedesktop/DBus',
  interface: 'org.freedesktop.DBus',
} as const;

/** RequestName flags and replies, ReleaseName replies (D-Bus specification). */
export const NAME_FLAG = { ALLOW_REPLACEMENT: 1, REPLACE_EXISTING: 2, DO_NOT_QUEUE: 4 } as const;
export const REQUEST_NAME_REPLY = { PRIMARY_OWNER: 1, IN_QUEUE: 2, EXISTS: 3, ALREADY_OWNER: 4 } as const;
export const RELEASE_NAME_REPLY = { RELEASED: 1, NON_EXISTENT: 2, NOT_OWNER: 3 } as const;

interface Waiter {
  match: (m: Message) => boolean;
  resolve: (m: Message) => void;
}

/**
 * One dbus-next connection (the npm package, an independent client implementation) with every
 * message it receives recorded, so tests can wait for a signal instead of sleeping and can
 * also check that something did NOT arrive.
 */
export class NextClient {
  readonly received: Message[] = [];
  private readonly waiters = new Set<Waiter>();

  private constructor(
    readonly bus: dbus.MessageBus,
    readonly uniqueName: string,
  ) {
    bus.on('message', (m: Message) => {
      this.received.push(m);
      for (const w of [...this.waiters]) {
        if (w.match(m)) {
          this.waiters.delete(w);
          w.resolve(m);
        }
      }
    });
  }

  static async connect(address: string, timeoutMs = 10_000): Promise<NextClient> {
    const bus = dbus.sessionBus({ busAddress: address });
    // Recording starts before Hello returns, so NameAcquired(unique name) is not lost.
    const early: Message[] = [];
    const record = (m: Message) => early.push(m);
    bus.on('message', record);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        bus.once('connect', () => resolve());
        bus.once('error', (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))));
      }),
      timeoutMs,
      `dbus-next to connect to ${address}`,
    );
    bus.removeListener('message', record);
    const client = new NextClient(bus, (bus as unknown as { name: string }).name);
    client.received.push(...early);
    return client;
  }

  /** Resolves with the first received message (past or future) for which `match` is true. */
  waitFor(match: (m: Message) => boolean, what: string, timeoutMs = 10_000): Promise<Message> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    let waiter: Waiter | undefined;
    const arrived = new Promise<Message>((resolve) => {
      waiter = { match, resolve };
      this.waiters.add(waiter);
    });
    return withTimeout(arrived, timeoutMs, `${what} on ${this.uniqueName}`).finally(() => {
      if (waiter) this.waiters.delete(waiter);
    });
  }

  waitForSignal(member: string, args: unknown[] = [], timeoutMs?: number): Promise<Message> {
    return this.waitFor(
      (m) => m.type === MessageType.SIGNAL && m.member === member && args.every((a, i) => m.body[i] === a),
      `signal ${member}(${args.join(', ')})`,
      timeoutMs,
    );
  }

  signals(member: string): Message[] {
    return this.received.filter((m) => m.type === MessageType.SIGNAL && m.member === member);
  }

  /** Calls a bus driver method; rejects with dbus-next's DBusError (`.type` is the error name). */
  async driver(member: string, signature = '', body: unknown[] = [], iface: string = DRIVER.interface): Promise<unknown[]> {
    const reply = await this.bus.call(
      new MessageClass({ destination: DRIVER.destination, path: DRIVER.path, interface: iface, member, signature, body }),
    );
    return reply?.body ?? [];
  }

  async addMatch(rule: string): Promise<void> {
    await this.driver('AddMatch', 's', [rule]);
  }

  /** A round trip through the bus: every message this client sent before is routed after it. */
  async ping(): Promise<void> {
    await this.driver('Ping', '', [], 'org.freedesktop.DBus.Peer');
  }

  /** Closes the socket and waits until it is fully closed. */
  async disconnect(timeoutMs = 5_000): Promise<void> {
    const stream = (this.bus as unknown as { _connection: { stream: Socket } })._connection.stream;
    if (stream.destroyed) return;
    const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
    this.bus.disconnect();
    try {
      await withTimeout(closed, timeoutMs, 'dbus-next socket to close');
    } catch {
      stream.destroy();
    }
  }
}
