import * as net from 'node:net';
import { withTimeout } from '../../harness/timeout.js';
import { Framer } from '../../../src/wire/framer.js';
import { encodeWithArgs, parseMessage, readBody, type Message, type NewMessage } from '../../../src/wire/message.js';
import type { DBusValue } from '../../../src/wire/values.js';

/** D-Bus message types (the wire module's const enum is not importable at run time). */
export const TYPE = { METHOD_CALL: 1, METHOD_RETURN: 2, ERROR: 3, SIGNAL: 4 } as const;

interface Waiter {
  match: (m: Message) => boolean;
  resolve: (m: Message) => void;
  reject: (err: Error) => void;
}

const DRIVER = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };

/**
 * A D-Bus client written straight on a unix socket, for what library clients cannot do on
 * purpose: send half a message, stop reading while the bus queues for it, stop half-way
 * through authentication. Uses the project's own wire encoder and framer.
 */
export class RawClient {
  readonly received: Message[] = [];
  /** Set when the socket closed or failed: a client that was meant to stay must never see it. */
  closed: string | undefined;
  uniqueName = '';
  guid = '';
  private readonly framer = new Framer();
  private nextSerial = 1;
  /** Set when the bytes from the bus did not frame or parse: nothing after that can be trusted. */
  corrupt: string | undefined;
  private readonly waiters = new Set<Waiter>();
  private authenticated = false;
  private saslText = '';
  private saslWaiter: ((line: string) => void) | undefined;

  private readonly closedPromise: Promise<string>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => resolve((this.closed ??= 'closed')));
      socket.on('end', () => resolve((this.closed ??= 'end of stream')));
      socket.on('error', (err) => resolve((this.closed ??= `error: ${err.message}`)));
    });
  }

  /** Resolves with how the connection ended, once the bus closed it. */
  whenClosed(timeoutMs = 10_000): Promise<string> {
    return withTimeout(this.closedPromise, timeoutMs, `the bus to close raw client ${this.uniqueName || '(no name)'}`);
  }

  /** For a connection a handoff document declares authenticated: speak messages from now on. */
  assumeRegistered(uniqueName: string): void {
    this.authenticated = true;
    this.uniqueName = uniqueName;
  }

  /** Connects; `stage` says how far to go: just connected, SASL OK received (no BEGIN), or Hello done. */
  static async connect(socketPath: string, stage: 'connected' | 'sasl-ok' | 'hello' = 'hello'): Promise<RawClient> {
    const socket = net.connect({ path: socketPath });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      }),
      10_000,
      `raw connect to ${socketPath}`,
    );
    const client = new RawClient(socket);
    if (stage === 'connected') return client;
    await client.authenticate();
    if (stage === 'sasl-ok') return client;
    await client.begin();
    return client;
  }

  /** Sends AUTH EXTERNAL and waits for the server's OK (BEGIN is not sent). */
  async authenticate(): Promise<void> {
    const uid = Buffer.from(String(process.getuid!())).toString('hex');
    const line = this.saslLine();
    this.socket.write(`\0AUTH EXTERNAL ${uid}\r\n`);
    const answer = await withTimeout(line, 10_000, 'SASL answer');
    if (!answer.startsWith('OK ')) throw new Error(`authentication refused: ${answer}`);
    this.guid = answer.slice(3).trim();
  }

  /** BEGIN, then Hello: from here on the connection speaks messages. */
  async begin(): Promise<void> {
    this.socket.write('BEGIN\r\n');
    this.authenticated = true;
    const [name] = await this.call({ ...DRIVER, member: 'Hello' });
    this.uniqueName = name as string;
  }

  /** The bytes of a method call with this connection's next serial (not sent). */
  encodeCall(m: Omit<NewMessage, 'type' | 'serial' | 'body' | 'signature'>, signature = '', args: DBusValue[] = []): {
    serial: number;
    bytes: Buffer;
  } {
    const serial = this.nextSerial++;
    const bytes = encodeWithArgs({ ...m, type: TYPE.METHOD_CALL, serial, signature }, args);
    return { serial, bytes };
  }

  /** Sends any message with this connection's next serial; returns the serial. */
  send(m: Omit<NewMessage, 'serial' | 'body' | 'signature'>, signature = '', args: DBusValue[] = []): number {
    const serial = this.nextSerial++;
    this.socket.write(encodeWithArgs({ ...m, serial, signature }, args));
    return serial;
  }

  write(bytes: Buffer | string): void {
    this.socket.write(bytes);
  }

  /** Calls a method and resolves with the reply body; rejects with the error name on an error reply. */
  async call(m: Omit<NewMessage, 'type' | 'serial' | 'body' | 'signature'>, signature = '', args: DBusValue[] = []): Promise<DBusValue[]> {
    const { serial, bytes } = this.encodeCall(m, signature, args);
    const reply = this.waitForReply(serial, `reply to ${m.member}`);
    this.socket.write(bytes);
    return bodyOrThrow(await reply);
  }

  async addMatch(rule: string): Promise<void> {
    await this.call({ ...DRIVER, member: 'AddMatch' }, 's', [rule]);
  }

  waitForReply(serial: number, what: string, timeoutMs = 10_000): Promise<Message> {
    return this.waitFor((m) => (m.header.type === TYPE.METHOD_RETURN || m.header.type === TYPE.ERROR) && m.header.replySerial === serial, what, timeoutMs);
  }

  /** Resolves with the first received message (past or future) for which `match` is true. */
  waitFor(match: (m: Message) => boolean, what: string, timeoutMs = 10_000): Promise<Message> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    if (this.corrupt) return Promise.reject(new Error(`${what}: ${this.corrupt}`));
    let waiter: Waiter | undefined;
    const arrived = new Promise<Message>((resolve, reject) => {
      waiter = { match, resolve, reject };
      this.waiters.add(waiter);
    });
    return withTimeout(arrived, timeoutMs, `${what} on raw client ${this.uniqueName || '(no name)'}`).finally(() => {
      if (waiter) this.waiters.delete(waiter);
    });
  }

  /** Stops reading: the kernel buffer fills and the bus has to queue for this client. */
  stopReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  close(): void {
    this.socket.destroy();
  }

  private saslLine(): Promise<string> {
    return new Promise((resolve) => (this.saslWaiter = resolve));
  }

  private onData(chunk: Buffer): void {
    if (!this.authenticated) {
      // Only one SASL exchange is ever outstanding; the server sends nothing before BEGIN after OK.
      this.saslText += chunk.toString('latin1');
      const end = this.saslText.indexOf('\r\n');
      if (end < 0) return;
      const line = this.saslText.slice(0, end);
      this.saslText = this.saslText.slice(end + 2);
      this.saslWaiter?.(line);
      this.saslWaiter = undefined;
      return;
    }
    if (this.corrupt) return;
    try {
      for (const bytes of this.framer.push(chunk)) this.deliver(parseMessage(Buffer.from(bytes)));
    } catch (err) {
      this.corrupt = `the bus sent bytes that are not D-Bus messages after ${this.received.length} messages: ${(err as Error).message}`;
      for (const w of [...this.waiters]) w.reject(new Error(this.corrupt));
      this.waiters.clear();
    }
  }

  private deliver(m: Message): void {
    this.received.push(m);
    for (const w of [...this.waiters]) {
      if (w.match(m)) {
        this.waiters.delete(w);
        w.resolve(m);
      }
    }
  }
}

export function bodyOrThrow(m: Message): DBusValue[] {
  const body = readBody(m);
  if (m.header.type === TYPE.ERROR) {
    const err = new Error(`${m.header.errorName}: ${String(body[0] ?? '')}`);
    (err as Error & { errorName?: string }).errorName = m.header.errorName;
    throw err;
  }
  return body;
}

export { readBody };
