import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { socketFd } from '../sys/libc.js';
import { receiveFrom, SendGather } from '../sys/socket-io.js';
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

describe('Poller while a client keeps it busy', () => {
  it('runs promise jobs between turns, and lets timers, immediates and signals in while the traffic lasts', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ferrybus-poller-'));
    const server = net.createServer({ pauseOnConnect: true });
    const socketPath = path.join(dir, 'busy');
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    // Another process, so that nothing of the traffic goes through this process's event loop.
    const ROUND_TRIPS = 20_000;
    const peer = spawn('python3', ['-c', [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
      's.connect(sys.argv[1])',
      `for _ in range(${ROUND_TRIPS}):`,
      '    s.sendall(b"x")',
      '    assert s.recv(1) == b"x"',
    ].join('\n'), socketPath], { stdio: ['ignore', 'inherit', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => peer.once('exit', resolve));
    const socket = await accepted;
    const fd = socketFd(socket);
    const poller = new Poller();
    const gather = new SendGather();
    const answer = Buffer.from('x');
    let served = 0;
    const jobsLate: number[] = [];
    const seen: Record<string, number> = {};
    const onSignal = () => (seen.signal ??= served);
    process.on('SIGUSR2', onSignal);
    try {
      poller.watch(fd, {
        onReadable() {
          const r = receiveFrom(fd);
          if (r.kind !== 'data') return;
          const turn = ++served;
          // A promise job queued in this turn runs before the next read, as after any callback.
          void Promise.resolve().then(() => { if (served !== turn) jobsLate.push(turn); });
          gather.reset().add(answer, 0);
          gather.sendTo(fd);
          if (turn === 100) {
            setTimeout(() => (seen.timer ??= served), 10);
            setImmediate(() => (seen.immediate ??= served));
            process.kill(process.pid, 'SIGUSR2');
          }
        },
        onWritable() {},
      });
      expect(await exited).toBe(0);
      expect(served).toBe(ROUND_TRIPS);
      expect(jobsLate).toEqual([]);
      // Each ran while the client was still being served, not once the traffic stopped.
      for (const what of ['timer', 'immediate', 'signal']) {
        expect(seen[what], what).toBeGreaterThanOrEqual(100);
        expect(seen[what], what).toBeLessThan(ROUND_TRIPS);
      }
    } finally {
      process.off('SIGUSR2', onSignal);
      poller.unwatch(fd);
      poller.close();
      socket.destroy();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
