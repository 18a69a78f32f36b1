import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { socketFd } from '../sys/libc.js';
import { receiveFrom } from '../sys/socket-io.js';
import { Poller } from './poller.js';

/** A connected unix socket pair; Node never reads the receiving end (the poller does). */
async function socketPair(dir: string, name: string): Promise<{ sender: net.Socket; receiverFd: number; close(): void }> {
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(path.join(dir, name), resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const sender = net.connect(path.join(dir, name));
  await new Promise<void>((resolve) => sender.once('connect', resolve));
  const receiver = await accepted;
  return {
    sender,
    receiverFd: socketFd(receiver),
    close() {
      sender.destroy();
      receiver.destroy();
      server.close();
    },
  };
}

describe('Poller turn end', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  it('runs what a turn scheduled once, after every socket ready in that turn, before setImmediate', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ferrybus-poller-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const a = await socketPair(dir, 'a');
    const b = await socketPair(dir, 'b');
    cleanups.push(a.close, b.close);
    const poller = new Poller();
    cleanups.push(() => {
      poller.unwatch(a.receiverFd);
      poller.unwatch(b.receiverFd);
      poller.close();
    });
    const events: string[] = [];
    let scheduled = 0;
    const reader = (label: string, fd: number) => ({
      onReadable() {
        expect(receiveFrom(fd).kind).toBe('data');
        events.push(`read ${label}`);
        if (poller.atTurnEnd(() => events.push('turn end'))) scheduled++;
        setImmediate(() => events.push(`immediate ${label}`));
      },
      onWritable() {},
    });
    // Both sockets readable before the poller's next turn: one turn sees both.
    await Promise.all([
      new Promise<void>((resolve) => a.sender.write('x', () => resolve())),
      new Promise<void>((resolve) => b.sender.write('y', () => resolve())),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    poller.watch(a.receiverFd, reader('a', a.receiverFd));
    poller.watch(b.receiverFd, reader('b', b.receiverFd));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(scheduled).toBe(2);
    const reads = events.filter((e) => e.startsWith('read')).sort();
    expect(reads).toEqual(['read a', 'read b']);
    // Each registration runs once, after both reads, before either immediate.
    expect(events.slice(2, 4)).toEqual(['turn end', 'turn end']);
    expect(events.slice(4).sort()).toEqual(['immediate a', 'immediate b']);
  });

  it('outside a turn schedules nothing and says so', () => {
    const poller = new Poller();
    cleanups.push(() => poller.close());
    let ran = false;
    expect(poller.atTurnEnd(() => (ran = true))).toBe(false);
    expect(ran).toBe(false);
  });
});
