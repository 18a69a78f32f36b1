import { Framer } from '../../src/wire/framer.js';
import { encodeWithArgs, parseMessage, readBody, type Message, type NewMessage } from '../../src/wire/message.js';
import type { DBusValue } from '../../src/wire/values.js';
import { fixturePath, SYSTEM_PYTHON } from './fixtures.js';
import { type LongRunning, startLongRunning } from './long-running.js';
import { asUser, type TestUser } from './test-users.js';

/** D-Bus message types (the wire module's const enum is not importable at run time). */
export const TYPE = { METHOD_CALL: 1, METHOD_RETURN: 2, ERROR: 3, SIGNAL: 4 } as const;

const DRIVER = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };

export interface FdRawOptions {
  /** Ask for fd passing (NEGOTIATE_UNIX_FD); default true. */
  negotiate?: boolean;
  /** Run as this user (setpriv), for per-uid accounting. */
  user?: TestUser;
  /** Say Hello first; default true. */
  hello?: boolean;
}

/**
 * A client that can attach any number of fds to any bytes (test/fixtures/fd-raw-client.py moves
 * the bytes and fds; this side encodes and parses the messages with the project's wire code).
 * For what client libraries never do on purpose: half a message with an fd, a UNIX_FDS header
 * that lies, fds without negotiating, more fds than the bus can take.
 */
export class FdRawClient {
  readonly received: Message[] = [];
  /** Fds the bus passed to this client (the fixture closes them). */
  fdsReceived = 0;
  uniqueName = '';
  negotiated = false;
  private nextSerial = 1;
  private writes = 0;
  private parsed = 0;
  private readonly framer = new Framer();

  private constructor(readonly proc: LongRunning) {}

  static async connect(socketPath: string, options: FdRawOptions = {}): Promise<FdRawClient> {
    const argv = [...(options.user ? asUser(options.user) : []), SYSTEM_PYTHON, fixturePath('fd-raw-client.py'), socketPath,
      ...(options.negotiate === false ? ['--no-negotiate'] : [])];
    const client = new FdRawClient(startLongRunning(argv[0]!, argv.slice(1), { stdinPipe: true }));
    const ready = await client.proc.waitFor(/^(ready (\S+)|closed .*)$/m, { timeoutMs: 15_000 });
    if (!ready[2]) throw new Error(`raw fd client was refused: ${ready[0]}`);
    client.negotiated = ready[2] === 'agree';
    if (options.hello !== false) {
      const [name] = await client.call({ ...DRIVER, member: 'Hello' });
      client.uniqueName = name as string;
    }
    return client;
  }

  /** Sends a message with this connection's next serial and `fds` fresh fds in the same sendmsg; returns the serial. */
  send(m: Omit<NewMessage, 'serial' | 'body' | 'signature'>, signature = '', args: DBusValue[] = [], fds = 0): number {
    const serial = this.nextSerial++;
    this.write(encodeWithArgs({ ...m, serial, signature }, args), fds);
    return serial;
  }

  /** Hands bytes and fds to the fixture; it sends them in order, one sendmsg each. */
  private write(bytes: Buffer, fds: number): void {
    this.writes++;
    this.proc.stdin!.write(`send ${bytes.toString('hex')} ${fds}\n`);
  }

  /** The bytes a send would write (serial taken), for sending in parts. */
  encode(m: Omit<NewMessage, 'serial' | 'body' | 'signature'>, signature = '', args: DBusValue[] = []): { serial: number; bytes: Buffer } {
    const serial = this.nextSerial++;
    return { serial, bytes: encodeWithArgs({ ...m, serial, signature }, args) };
  }

  /** One sendmsg of `bytes` with `fds` fresh fds attached; resolves with the fixture's "sent …" line once it did. */
  async sendBytes(bytes: Buffer, fds = 0): Promise<string> {
    this.write(bytes, fds);
    for (const deadline = Date.now() + 10_000; ;) {
      const lines = this.proc.stdout.split('\n').filter((l) => /^(sent|send-failed) /.test(l));
      if (lines.length >= this.writes) return lines[this.writes - 1]!;
      if (Date.now() > deadline || this.proc.exit) throw new Error(`raw fd client did not send: ${this.proc.describe()}`);
      await this.proc.waitFor(/\n/, { from: this.proc.stdout.length, timeoutMs: 1000 }).catch(() => undefined);
    }
  }

  async call(m: Omit<NewMessage, 'type' | 'serial' | 'body' | 'signature'>, signature = '', args: DBusValue[] = [], fds = 0): Promise<DBusValue[]> {
    const serial = this.send({ ...m, type: TYPE.METHOD_CALL }, signature, args, fds);
    const reply = await this.waitForReply(serial, `reply to ${m.member}`);
    if (reply.header.type === TYPE.ERROR) {
      throw new Error(`${reply.header.errorName}: ${String(readBody(reply)[0] ?? '')}`);
    }
    return readBody(reply);
  }

  waitForReply(serial: number, what: string, timeoutMs = 10_000): Promise<Message> {
    return this.waitFor((m) => (m.header.type === TYPE.METHOD_RETURN || m.header.type === TYPE.ERROR) && m.header.replySerial === serial, what, timeoutMs);
  }

  /** The first received message (past or future) for which `match` is true. */
  async waitFor(match: (m: Message) => boolean, what: string, timeoutMs = 10_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.pump();
      const found = this.received.find(match);
      if (found) return found;
      if (this.closedReason() !== undefined) throw new Error(`${what}: the bus closed raw client ${this.uniqueName}: ${this.closedReason()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what} on raw client ${this.uniqueName}`);
      await this.proc.waitFor(/\n/, { from: this.proc.stdout.length, timeoutMs: left }).catch(() => undefined);
    }
  }

  /** Why the bus closed this connection, once it did. */
  closedReason(): string | undefined {
    return /^closed (.*)$/m.exec(this.proc.stdout)?.[1] ?? (this.proc.exit ? 'fixture exited' : undefined);
  }

  /** Resolves with how the connection ended, once the bus closed it. */
  async whenClosed(timeoutMs = 10_000): Promise<string> {
    const m = await this.proc.waitFor(/^closed (.*)$/m, { timeoutMs });
    return m[1]!;
  }

  /** Stops reading: what the bus sends from now on piles up in the kernel, then in the bus. */
  async stall(): Promise<void> {
    this.proc.stdin!.write('stall\n');
    await this.proc.waitFor(/^stalled$/m);
  }

  async quit(): Promise<void> {
    this.proc.stdin?.end('quit\n');
    await this.proc.stop();
  }

  private pump(): void {
    const text = this.proc.stdout;
    let end: number;
    while ((end = text.indexOf('\n', this.parsed)) >= 0) {
      const line = text.slice(this.parsed, end);
      this.parsed = end + 1;
      if (line.startsWith('fds ')) this.fdsReceived += Number(line.slice(4));
      if (!line.startsWith('recv ')) continue;
      for (const bytes of this.framer.push(Buffer.from(line.slice(5), 'hex'))) this.received.push(parseMessage(bytes));
    }
  }
}

export const DRIVER_CALL = DRIVER;
