import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { socketFd } from './libc.js';
import { receiveBuffer, receiveFrom, SEND_CHUNK, SEND_IN_PLACE, SendGather } from './socket-io.js';

/** A connected unix socket pair whose receiving end Node never reads (the test reads it raw). */
async function socketPair(): Promise<{ sender: net.Socket; receiver: net.Socket; close(): void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ferrybus-socket-io-'));
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(path.join(dir, 's'), resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const sender = net.connect(path.join(dir, 's'));
  await new Promise<void>((resolve) => sender.once('connect', resolve));
  const receiver = await accepted;
  return {
    sender,
    receiver,
    close() {
      sender.destroy();
      receiver.destroy();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads until `n` bytes arrived (the socket is non-blocking: waits a turn when it is empty). */
async function receiveAll(fd: number, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const r = receiveFrom(fd);
    if (r.kind === 'again') {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    if (r.kind !== 'data') throw new Error(`unexpected ${r.kind}`);
    parts.push(Buffer.from(receiveBuffer().subarray(0, r.length)));
    got += r.length;
  }
  return Buffer.concat(parts);
}

const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

describe('raw socket I/O', () => {
  let pair: Awaited<ReturnType<typeof socketPair>> | undefined;
  afterEach(() => pair?.close());

  it('sends small pieces copied and large ones in place, in order, in one sendmsg', async () => {
    pair = await socketPair();
    const pieces = [pattern(100, 1), pattern(SEND_IN_PLACE + 5, 2), pattern(50, 3), pattern(70_000, 4).subarray(3), pattern(10, 5)];
    const gather = new SendGather().reset();
    let from = 0;
    for (const p of pieces) from += gather.add(p, 0);
    expect(gather.length).toBe(from);
    const sent = gather.sendTo(socketFd(pair.sender));
    expect(sent).toBe(from);
    const got = await receiveAll(socketFd(pair.receiver), sent);
    expect(got.equals(Buffer.concat(pieces))).toBe(true);
  });

  it('takes a piece from an offset, and no more than SEND_CHUNK bytes per send', async () => {
    pair = await socketPair();
    const big = pattern(SEND_CHUNK + 10_000, 9);
    const gather = new SendGather().reset();
    expect(gather.add(pattern(20, 8), 4)).toBe(16);
    expect(gather.add(big, 0)).toBe(SEND_CHUNK - 16);
    expect(gather.add(pattern(20, 7), 0)).toBe(0);
    const sent = gather.sendTo(socketFd(pair.sender));
    const got = await receiveAll(socketFd(pair.receiver), sent);
    expect(got.equals(Buffer.concat([pattern(20, 8).subarray(4), big]).subarray(0, sent))).toBe(true);
  });

  it('receives into a room first, then into the shared buffer', async () => {
    pair = await socketPair();
    const bytes = pattern(10_000, 3);
    pair.sender.write(bytes);
    const fd = socketFd(pair.receiver);
    const room = Buffer.allocUnsafeSlow(6000);
    let r = receiveFrom(fd, room);
    for (let i = 0; r.kind === 'again' && i < 1000; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      r = receiveFrom(fd, room);
    }
    expect(r.kind).toBe('data');
    const length = r.kind === 'data' ? r.length : 0;
    // A unix stream socket hands over everything written at once (well below RECEIVE_CHUNK).
    expect(length).toBe(10_000);
    expect(room.equals(bytes.subarray(0, 6000))).toBe(true);
    expect(receiveBuffer().subarray(0, 4000).equals(bytes.subarray(6000))).toBe(true);
    // The next plain read uses the shared buffer from its start again.
    pair.sender.write(Buffer.from('xyz'));
    const rest = await receiveAll(fd, 3);
    expect(rest.toString()).toBe('xyz');
  });
});
