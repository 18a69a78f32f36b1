import * as net from 'node:net';
import { Framer } from '../src/wire/framer.js';
import { encodeMessage, encodeWithArgs, MessageType, parseMessage, readBody, type Message, type NewMessage } from '../src/wire/message.js';
import type { DBusValue } from '../src/wire/values.js';

/**
 * A deliberately small D-Bus client on the project's own wire code, for the scenarios
 * dbus-test-tool cannot drive (signals, connection storms). It does as little as possible
 * per message so that the bus, not the client, is what the benchmark measures:
 * frames are counted by their fixed header, and only setup replies are parsed.
 */

const UID_HEX = Buffer.from(String(process.getuid!())).toString('hex');
export const AUTH_LINE = `\0AUTH EXTERNAL ${UID_HEX}\r\n`;
export const BUS_NAME = 'org.freedesktop.DBus';
export const BUS_PATH = '/org/freedesktop/DBus';

export const helloMessage = (serial: number): Buffer =>
  encodeMessage({ type: MessageType.MethodCall, serial, destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member: 'Hello' });

/** Connects and completes EXTERNAL authentication; resolves with the socket right after OK. */
export function connectAuthenticated(socketPath: string, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath });
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`authentication on ${socketPath} timed out`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (!answer.includes('\r\n')) return;
      socket.off('data', onData);
      clearTimeout(timer);
      if (!answer.startsWith('OK ')) {
        socket.destroy();
        reject(new Error(`authentication refused: ${answer.trim()}`));
        return;
      }
      resolve(socket);
    };
    socket.on('data', onData);
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.once('connect', () => socket.write(AUTH_LINE));
  });
}

/** A registered bus connection (Hello done) with a call helper and a raw frame hook. */
export class RawClient {
  private serial = 1;
  private readonly framer = new Framer();
  private readonly waiting = new Map<number, (m: Message) => void>();
  uniqueName = '';
  /** Called for every incoming frame that is not a reply to call(); bytes are not parsed. */
  onFrame: ((frame: Buffer) => void) | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.framer.push(chunk)) {
        const type = frame[1];
        if ((type === MessageType.MethodReturn || type === MessageType.Error) && this.waiting.size > 0) {
          const msg = parseMessage(frame);
          const w = this.waiting.get(msg.header.replySerial!);
          if (w) {
            this.waiting.delete(msg.header.replySerial!);
            w(msg);
            continue;
          }
        }
        this.onFrame?.(frame);
      }
    });
    socket.on('error', () => {});
  }

  static async connect(socketPath: string): Promise<RawClient> {
    const socket = await connectAuthenticated(socketPath);
    socket.write('BEGIN\r\n');
    const client = new RawClient(socket);
    const [name] = await client.call(BUS_NAME, BUS_PATH, BUS_NAME, 'Hello', '', []);
    client.uniqueName = name as string;
    return client;
  }

  nextSerial(): number {
    return this.serial++;
  }

  call(destination: string, path: string, iface: string, member: string, signature: string, args: DBusValue[], timeoutMs = 10_000): Promise<DBusValue[]> {
    const serial = this.serial++;
    const bytes = encodeWithArgs({ type: MessageType.MethodCall, serial, destination, path, interface: iface, member, signature }, args);
    return new Promise<DBusValue[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(serial);
        reject(new Error(`${member} got no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(serial, (m) => {
        clearTimeout(timer);
        const body = readBody(m);
        if (m.header.type === MessageType.Error) reject(new Error(`${m.header.errorName}: ${String(body[0] ?? '')}`));
        else resolve(body);
      });
      this.socket.write(bytes);
    });
  }

  write(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * `count` copies of one message with consecutive serials starting at `firstSerial`, as one
 * buffer (the serial sits at offset 8, little-endian, in messages built by encodeMessage).
 */
export function batchOf(template: Buffer, count: number, firstSerial: number): Buffer {
  const out = Buffer.allocUnsafe(template.length * count);
  for (let i = 0; i < count; i++) {
    const at = i * template.length;
    template.copy(out, at);
    out.writeUInt32LE(firstSerial + i, at + 8);
  }
  return out;
}

export function templateMessage(m: Omit<NewMessage, 'serial'>): Buffer {
  return encodeMessage({ ...m, serial: 1 });
}

export async function waitForName(socketPath: string, name: string, timeoutMs = 10_000): Promise<void> {
  const client = await RawClient.connect(socketPath);
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [has] = await client.call(BUS_NAME, BUS_PATH, BUS_NAME, 'NameHasOwner', 's', [name]);
      if (has === true) return;
      if (Date.now() > deadline) throw new Error(`${name} has no owner after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    client.close();
  }
}
