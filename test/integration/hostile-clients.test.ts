import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { connectNext } from '../harness/next-clients.js';
import { withTimeout } from '../harness/timeout.js';
import { useBus, useCleanup } from '../harness/use-bus.js';
import { encodeMessage, MessageType } from '../../src/wire/message.js';
import { marshal } from '../../src/wire/marshal.js';

const NAME = 'org.ferrybus.Test.Bystander';

/** A raw socket to the bus; resolves with everything it received once the bus closes it. */
function rawConnection(socketPath: string) {
  const socket = net.connect({ path: socketPath });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1'))));
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  const received = () => Buffer.concat(chunks).toString('latin1');
  return { socket, closed, connected, received };
}

const hexUid = (uid: number) => Buffer.from(String(uid)).toString('hex');

function hello(serial = 1): Buffer {
  return encodeMessage({
    type: MessageType.MethodCall,
    serial,
    destination: 'org.freedesktop.DBus',
    path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus',
    member: 'Hello',
  });
}

describe('hostile and broken clients are disconnected without harming anyone else', () => {
  const bus = useBus();
  const defer = useCleanup();

  /** A well-behaved client that owns a name: after each attack it must still own it and answer. */
  async function bystander() {
    const client = await connectNext(bus(), defer);
    await client.driver('RequestName', 'su', [NAME, 4]);
    return client;
  }

  async function expectBystanderUnharmed(client: Awaited<ReturnType<typeof bystander>>) {
    const [owner] = await client.driver('GetNameOwner', 's', [NAME]);
    expect(owner).toBe(client.uniqueName);
    await client.ping();
  }

  it('a first byte other than NUL ends the connection', async () => {
    const good = await bystander();
    const raw = rawConnection(bus().socketPath);
    await raw.connected;
    raw.socket.write('AUTH EXTERNAL 30\r\n');
    await withTimeout(raw.closed, 10_000, 'the bus to close a connection without the NUL byte');
    await expectBystanderUnharmed(good);
  });

  it('claiming another uid with EXTERNAL is rejected', async () => {
    const raw = rawConnection(bus().socketPath);
    await raw.connected;
    raw.socket.write(`\0AUTH EXTERNAL ${hexUid(process.getuid!() + 4242)}\r\n`);
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = () => (raw.received().includes('\r\n') ? resolve() : setTimeout(check, 10));
        check();
      }),
      10_000,
      'an answer to AUTH',
    );
    expect(raw.received()).toMatch(/^REJECTED/);
    raw.socket.destroy();
  });

  it('garbage after authentication disconnects only that client', async () => {
    const good = await bystander();
    const raw = rawConnection(bus().socketPath);
    await raw.connected;
    raw.socket.write(Buffer.concat([Buffer.from(`\0AUTH EXTERNAL ${hexUid(process.getuid!())}\r\nBEGIN\r\n`), hello(), Buffer.alloc(64, 0x99)]));
    await withTimeout(raw.closed, 10_000, 'the bus to close a connection that sent garbage');
    await expectBystanderUnharmed(good);
  });

  it('a message announcing more than 128 MiB is refused from its header alone', async () => {
    const good = await bystander();
    const raw = rawConnection(bus().socketPath);
    await raw.connected;
    const header = Buffer.alloc(16);
    header.write('l', 0, 'latin1');
    header[1] = MessageType.MethodCall;
    header[3] = 1;
    header.writeUInt32LE(200 * 1024 * 1024, 4); // body length
    header.writeUInt32LE(2, 8);
    header.writeUInt32LE(0, 12);
    raw.socket.write(Buffer.concat([Buffer.from(`\0AUTH EXTERNAL ${hexUid(process.getuid!())}\r\nBEGIN\r\n`), hello(), header]));
    await withTimeout(raw.closed, 10_000, 'the bus to close a connection announcing a huge message');
    await expectBystanderUnharmed(good);
  });

  it('a message before Hello ends the connection', async () => {
    const good = await bystander();
    const raw = rawConnection(bus().socketPath);
    await raw.connected;
    const call = encodeMessage({
      type: MessageType.MethodCall,
      serial: 1,
      destination: NAME,
      path: '/',
      interface: 'org.freedesktop.DBus.Peer',
      member: 'Ping',
    });
    raw.socket.write(Buffer.concat([Buffer.from(`\0AUTH EXTERNAL ${hexUid(process.getuid!())}\r\nBEGIN\r\n`), call]));
    await withTimeout(raw.closed, 10_000, 'the bus to close a connection that skipped Hello');
    await expectBystanderUnharmed(good);
  });

  it('a forged SENDER is replaced by the real unique name before delivery', async () => {
    const receiver = await connectNext(bus(), defer);
    await receiver.addMatch("type='signal',interface='org.ferrybus.Test.Forge'");
    const raw = rawConnection(bus().socketPath);
    await raw.connected;
    const signal = encodeMessage({
      type: MessageType.Signal,
      serial: 2,
      path: '/org/ferrybus/Test',
      interface: 'org.ferrybus.Test.Forge',
      member: 'Forged',
      sender: receiver.uniqueName,
      signature: 's',
      body: marshal('s', ['hello']),
    });
    raw.socket.write(Buffer.concat([Buffer.from(`\0AUTH EXTERNAL ${hexUid(process.getuid!())}\r\nBEGIN\r\n`), hello(), signal]));
    const got = await receiver.waitFor((m) => m.member === 'Forged', 'the forged signal');
    expect(got.sender).not.toBe(receiver.uniqueName);
    expect(got.sender).toMatch(/^:\d+\.\d+$/);
    raw.socket.destroy();
  });
});
