import { Buffer } from 'node:buffer';
import * as net from 'node:net';
import { AddressError, listenAddressFor, parseAddress, type AddressEntry } from '../transport/address.js';
import { FerryError } from '../util/errors.js';
import { Framer } from '../wire/framer.js';
import { encodeWithArgs, MessageType, parseMessage, readBody, type Message } from '../wire/message.js';
import type { DBusValue } from '../wire/values.js';
import { CliError, EXIT_USAGE } from './cli-error.js';

export class BusCallError extends FerryError {
  constructor(
    readonly errorName: string,
    readonly text: string,
    readonly member: string,
  ) {
    super('BusCallFailed', `${errorName}: ${text}`);
  }
}

export interface ConnectOptions {
  /** How long to wait for the socket, authentication and Hello (each). */
  timeoutMs?: number;
  /** How the address was chosen, for messages: 'default' (nobody said) or 'flag' (--address). */
  source?: 'default' | 'flag';
}

/** Where a client connects for one address entry; `display` is how a human writes it. */
interface ConnectTarget {
  path: string;
  display: string;
}

const CONNECT_HINTS: Record<string, string> = {
  ENOENT: 'is the daemon running?',
  ECONNREFUSED: 'nothing listens on that socket (a stale socket file?); is the daemon running?',
  EACCES: 'permission denied; run as root or as the user the bus runs as',
  EPERM: 'permission denied; run as root or as the user the bus runs as',
  ENOTSOCK: 'that file is not a socket',
  ENOTDIR: 'a component of the path is not a directory',
};

/**
 * The unix entries of an address a client can connect to, in order (as libdbus tries them).
 * `guid=` is a client-side check and ignored here; `dir=`/`tmpdir=` only make sense to a server.
 */
export function connectTargets(address: string): ConnectTarget[] {
  let entries: AddressEntry[];
  try {
    entries = parseAddress(address);
  } catch (err) {
    if (err instanceof AddressError) throw new CliError(`bad bus address "${address}": ${err.message}`, EXIT_USAGE);
    throw err;
  }
  const targets: ConnectTarget[] = [];
  const reasons: string[] = [];
  for (const entry of entries) {
    const { guid: _guid, ...params } = entry.params;
    if (entry.transport === 'unix' && ('dir' in params || 'tmpdir' in params)) {
      reasons.push(`${entry.transport}:${Object.keys(params).join(',')} is a listen-only address`);
      continue;
    }
    try {
      const t = listenAddressFor({ transport: entry.transport, params });
      targets.push({ path: t.path, display: t.abstract ? `@${t.path.slice(1)}` : t.path });
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      reasons.push(err.message);
    }
  }
  if (targets.length === 0) {
    throw new CliError(`bad bus address "${address}": nothing to connect to (${reasons.join('; ')})`, EXIT_USAGE);
  }
  return targets;
}

function lookedAt(address: string, source: ConnectOptions['source']): string {
  return source === 'flag' ? `looked at ${address} from --address` : `looked at ${address}, the default address; set --address`;
}

function connectSocket(target: ConnectTarget, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: target.path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * The CLI's own minimal D-Bus client: EXTERNAL auth, Hello, method calls, and (for monitors)
 * every other message handed to `onMessage`. It speaks to the daemon like any other client does.
 */
export class BusClient {
  private serial = 1;
  private readonly framer = new Framer();
  private readonly waiting = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  private closedByUs = false;
  private lost: string | undefined;
  uniqueName = '';
  /** Messages that are not replies to our calls (signals, and everything a monitor sees). */
  onMessage: ((message: Message) => void) | undefined;
  /** The connection ended without close() (the bus went away, or sent garbage). */
  onClose: ((why: string) => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    /** The socket path we are connected to, as a human writes it. */
    readonly where: string,
    /** Which address was tried and where it came from, for messages ("looked at …"). */
    readonly lookedAt: string,
  ) {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const bytes of this.framer.push(chunk)) this.dispatch(parseMessage(bytes));
      } catch (err) {
        this.fail(`the bus sent something unreadable: ${(err as Error).message}`);
        socket.destroy();
      }
    });
    socket.on('close', () => this.fail('the bus closed the connection'));
    socket.on('error', (e: NodeJS.ErrnoException) => this.fail(`connection error: ${e.code ?? e.message}`));
  }

  private dispatch(msg: Message): void {
    const replyTo = msg.header.replySerial;
    // A monitor also sees other peers' replies: ours are addressed to us (before Hello returns
    // we have no name yet, and nothing else arrives).
    const ours = replyTo !== undefined && (this.uniqueName === '' || msg.header.destination === this.uniqueName);
    const w = ours ? this.waiting.get(replyTo) : undefined;
    if (w) {
      this.waiting.delete(replyTo!);
      w.resolve(msg);
      return;
    }
    this.onMessage?.(msg);
  }

  private fail(why: string): void {
    if (this.lost !== undefined) return;
    this.lost = why;
    for (const w of this.waiting.values()) w.reject(new FerryError('BusConnectionLost', `${why} (${this.where})`));
    this.waiting.clear();
    if (!this.closedByUs) this.onClose?.(why);
  }

  /**
   * Connects to the first reachable entry of `address`, authenticates and says Hello.
   * Every failure is a CliError that says what went wrong and where it looked.
   */
  static async connect(address: string, options: ConnectOptions = {}): Promise<BusClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const targets = connectTargets(address);
    const failures: Array<{ target: ConnectTarget; code: string }> = [];
    let socket: net.Socket | undefined;
    let target: ConnectTarget | undefined;
    for (const t of targets) {
      try {
        socket = await connectSocket(t, timeoutMs);
        target = t;
        break;
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        failures.push({ target: t, code: e.code ?? e.message });
      }
    }
    if (!socket || !target) {
      const first = failures[0]!;
      const hint = first.code === 'ETIMEDOUT'
        ? `no answer in ${timeoutMs / 1000} s; the daemon may be busy or wedged`
        : (CONNECT_HINTS[first.code] ?? 'is the daemon running?');
      const what = failures.length === 1
        ? `cannot connect to ${first.target.display}: ${first.code}`
        : `cannot connect to any of ${failures.map((f) => `${f.target.display}: ${f.code}`).join(', ')}`;
      throw new CliError(`${what} — ${hint} (${lookedAt(address, options.source)})`);
    }
    try {
      await authenticate(socket, timeoutMs);
    } catch (err) {
      socket.destroy();
      throw new CliError(`${(err as Error).message} at ${target.display} (${lookedAt(address, options.source)})`);
    }
    const client = new BusClient(socket, target.display, lookedAt(address, options.source));
    try {
      const [name] = await client.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello', '', [], timeoutMs);
      client.uniqueName = name as string;
    } catch (err) {
      client.close();
      throw new CliError(`Hello to the bus at ${target.display} failed: ${(err as Error).message}`);
    }
    return client;
  }

  call(
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature: string,
    args: DBusValue[],
    timeoutMs = 30_000,
  ): Promise<DBusValue[]> {
    if (this.lost !== undefined) {
      return Promise.reject(new FerryError('BusConnectionLost', `${this.lost} (${this.where})`));
    }
    const serial = this.serial++;
    const bytes = encodeWithArgs({ type: MessageType.MethodCall, serial, destination, path, interface: iface, member, signature }, args);
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(serial);
        reject(new FerryError('BusTimeout', `${member} got no reply from the bus at ${this.where} in ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiting.set(serial, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(bytes);
    }).then((reply) => {
      const body = readBody(reply);
      if (reply.header.type === MessageType.Error) {
        throw new BusCallError(reply.header.errorName!, typeof body[0] === 'string' ? body[0] : '', member);
      }
      return body;
    });
  }

  close(): void {
    this.closedByUs = true;
    this.socket.destroy();
  }
}

function authenticate(socket: net.Socket, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const uid = process.getuid!();
    let answer = '';
    const done = (err?: Error) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(
      () => done(new FerryError('BusTimeout', `no answer to authentication in ${timeoutMs / 1000} s; the daemon may be busy or wedged`)),
      timeoutMs,
    );
    const onClose = () => done(new FerryError('BusAuthFailed', 'the bus closed the connection during authentication'));
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (!answer.includes('\r\n')) return;
      if (!answer.startsWith('OK ')) {
        return done(new FerryError('BusAuthFailed', `authentication as uid ${uid} refused: ${answer.trim()}`));
      }
      socket.write('BEGIN\r\n');
      done();
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(`\0AUTH EXTERNAL ${Buffer.from(String(uid)).toString('hex')}\r\n`);
  });
}
