import * as net from 'node:net';
import { FerryError } from '../util/errors.js';
import { Framer } from '../wire/framer.js';
import { marshal } from '../wire/marshal.js';
import { encodeMessage, MessageType, parseMessage, readBody, type Message } from '../wire/message.js';
import type { DBusValue } from '../wire/values.js';
import { firstListenTarget } from '../transport/address.js';

export class BusCallError extends FerryError {
  constructor(
    readonly errorName: string,
    message: string,
  ) {
    super('BusCallFailed', `${errorName}: ${message}`);
  }
}

/**
 * The CLI's own minimal D-Bus client: EXTERNAL auth, Hello, method calls.
 * It speaks to the daemon like any other client does.
 */
export class BusClient {
  private serial = 1;
  private readonly framer = new Framer();
  private readonly waiting = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  uniqueName = '';

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const bytes of this.framer.push(chunk)) {
        const msg = parseMessage(bytes);
        const w = msg.header.replySerial !== undefined ? this.waiting.get(msg.header.replySerial) : undefined;
        if (!w) continue;
        this.waiting.delete(msg.header.replySerial!);
        w.resolve(msg);
      }
    });
    const fail = (why: string) => {
      for (const w of this.waiting.values()) w.reject(new FerryError('BusConnectionLost', why));
      this.waiting.clear();
    };
    socket.on('close', () => fail('the bus closed the connection'));
    socket.on('error', (e) => fail(e.message));
  }

  static async connect(address: string, timeoutMs = 10_000): Promise<BusClient> {
    const target = firstListenTarget(address.replace(/,guid=[0-9a-f]+/, ''));
    const socket = net.connect({ path: target.path });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new FerryError('BusTimeout', `no answer from ${address} in ${timeoutMs} ms`)), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new FerryError('BusUnreachable', `cannot connect to ${target.path}: ${e.code ?? e.message}`));
      });
    });
    await authenticate(socket, timeoutMs);
    const client = new BusClient(socket);
    const [name] = await client.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello', '', [], timeoutMs);
    client.uniqueName = name as string;
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
    const serial = this.serial++;
    const bytes = encodeMessage({
      type: MessageType.MethodCall,
      serial,
      destination,
      path,
      interface: iface,
      member,
      signature,
      body: signature ? marshal(signature, args) : undefined,
    });
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(serial);
        reject(new FerryError('BusTimeout', `${member} got no reply in ${timeoutMs} ms`));
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
        throw new BusCallError(reply.header.errorName!, typeof body[0] === 'string' ? body[0] : '');
      }
      return body;
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

function authenticate(socket: net.Socket, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const uid = Buffer.from(String(process.getuid!())).toString('hex');
    let answer = '';
    const timer = setTimeout(() => reject(new FerryError('BusTimeout', 'authentication timed out')), timeoutMs);
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (!answer.includes('\r\n')) return;
      socket.off('data', onData);
      clearTimeout(timer);
      if (!answer.startsWith('OK ')) return reject(new FerryError('BusAuthFailed', `authentication refused: ${answer.trim()}`));
      socket.write('BEGIN\r\n');
      resolve();
    };
    socket.on('data', onData);
    socket.write(`\0AUTH EXTERNAL ${uid}\r\n`);
  });
}
