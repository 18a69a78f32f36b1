import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UnixFds } from '../bus/unix-fds.js';
import { OutboundQueue } from './outbound-queue.js';
import { SpooledBytes, SpoolFile } from './spooled-bytes.js';

const b = (s: string) => Buffer.from(s);

/** Drains the queue through a send buffer of `size` bytes, as the socket would take it. */
function drain(q: OutboundQueue, size: number, take = (n: number) => n): Array<{ bytes: string; fds: readonly number[] | undefined }> {
  const target = Buffer.alloc(size);
  const sends = [];
  while (q.hasPending) {
    const { length, fds } = q.fill(target);
    const taken = take(length);
    sends.push({ bytes: target.subarray(0, taken).toString(), fds });
    q.consume(taken);
  }
  return sends;
}

describe('OutboundQueue', () => {
  it('sends everything queued in one send when it fits, pieces in order', () => {
    const q = new OutboundQueue();
    q.push(b('ab'));
    q.push([b('cd'), b('ef')]);
    expect(q.size).toBe(6);
    expect(q.messages).toBe(2);
    expect(drain(q, 64)).toEqual([{ bytes: 'abcdef', fds: undefined }]);
    expect(q.size).toBe(0);
    expect(q.messages).toBe(0);
  });

  it('continues a partial send at the first byte the kernel did not take', () => {
    const q = new OutboundQueue();
    q.push(b('0123456789'));
    q.push(b('abc'));
    const sends = drain(q, 64, (n) => Math.min(n, 4));
    expect(sends.map((s) => s.bytes).join('')).toBe('0123456789abc');
    expect(sends[0]!.bytes).toBe('0123');
  });

  it('reports as unsent exactly the bytes not taken, and where each message with fds starts', () => {
    const closed: number[] = [];
    const q = new OutboundQueue();
    q.push(b('0123456789'));
    const fds = new UnixFds([7, 8], (fd) => closed.push(fd));
    q.push(b('abc'), 3, undefined, fds);
    fds.release(); // the router's reference; the queue holds its own
    const target = Buffer.alloc(64);
    q.fill(target);
    q.consume(6);
    const unsent = q.unsent();
    expect(unsent.bytes.toString()).toBe('6789abc');
    expect(unsent.fds).toEqual([{ at: 4, fds: [7, 8] }]);
    expect(closed).toEqual([]);
  });

  it('reports the same as the pieces they are queued in, without copying them', () => {
    const q = new OutboundQueue();
    const first = b('0123456789');
    q.push([b('ab'), first, b('cd')]);
    q.push(b('xyz'), 3, undefined, new UnixFds([9], () => {}));
    q.fill(Buffer.alloc(64));
    q.consume(5);
    const { parts, length, fds } = q.unsentParts();
    expect(parts.map(String)).toEqual(['3456789', 'cd', 'xyz']);
    expect((parts[0] as Buffer).buffer).toBe(first.buffer);
    expect(length).toBe(12);
    expect(fds).toEqual([{ at: 9, fds: [9] }]);
    expect(Buffer.concat(parts as Buffer[]).equals(q.unsent().bytes)).toBe(true);
  });

  it('starts a new send at each message with fds, so fds never go with another message', () => {
    const closed: number[] = [];
    const q = new OutboundQueue();
    q.push(b('aa'));
    const first = new UnixFds([3], (fd) => closed.push(fd));
    q.push(b('bb'), 2, undefined, first);
    q.push(b('cc'));
    const second = new UnixFds([4, 5], (fd) => closed.push(fd));
    q.push(b('dd'), 2, undefined, second);
    first.release();
    second.release();
    expect(q.fdCount).toBe(3);
    expect(drain(q, 64)).toEqual([
      { bytes: 'aa', fds: undefined },
      { bytes: 'bbcc', fds: [3] },
      { bytes: 'dd', fds: [4, 5] },
    ]);
    expect(closed).toEqual([3, 4, 5]);
    expect(q.fdCount).toBe(0);
  });

  it('closes the fds of a message once its first byte is sent, even if the rest waits', () => {
    const closed: number[] = [];
    const q = new OutboundQueue();
    const fds = new UnixFds([9], (fd) => closed.push(fd));
    q.push(b('long message'), 12, undefined, fds);
    fds.release();
    const target = Buffer.alloc(64);
    expect(q.fill(target).fds).toEqual([9]);
    q.consume(1);
    expect(closed).toEqual([9]);
    expect(q.fill(target)).toEqual({ length: 11, fds: undefined });
    expect(q.unsent().fds).toEqual([]);
  });

  it('closes every queued fd exactly once when the connection is discarded', () => {
    const closed: number[] = [];
    const q = new OutboundQueue();
    const fds = new UnixFds([11, 12], (fd) => closed.push(fd));
    q.push(b('x'), 1, undefined, fds);
    q.push(b('y'), 1, undefined, fds); // the same message queued twice (e.g. two receivers' worth)
    fds.release();
    q.discard();
    expect(closed).toEqual([11, 12]);
    q.discard();
    expect(closed).toEqual([11, 12]);
  });

  it('keeps order across many sends', () => {
    const q = new OutboundQueue();
    let expected = '';
    for (let i = 0; i < 3000; i++) {
      q.push(b(`${i},`));
      expected += `${i},`;
    }
    expect(drain(q, 100, (n) => Math.max(1, n - 7)).map((s) => s.bytes).join('')).toBe(expected);
  });
});

describe('OutboundQueue with bytes in a spool file (after a handoff)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrybus-spool-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A spool file holding `text` after `lead` bytes of something else, as a document's section would. */
  function spool(text: string, lead = 4096): { file: SpoolFile; bytes: SpooledBytes; fd: number } {
    const name = path.join(dir, `spool-${Math.random()}`);
    fs.writeFileSync(name, Buffer.concat([Buffer.alloc(lead, 0x2e), b(text)]), { mode: 0o600 });
    const fd = fs.openSync(name, 'r+');
    const file = new SpoolFile(fd);
    return { file, bytes: new SpooledBytes(file, lead, text.length), fd };
  }
  const isOpen = (fd: number) => {
    try {
      fs.fstatSync(fd);
      return true;
    } catch {
      return false;
    }
  };

  it('names the spooled bytes as the next to send, and gathers none of them with the messages around them', () => {
    const { file, bytes, fd } = spool('spooled');
    const q = new OutboundQueue();
    q.push(b('before,'));
    q.push(bytes);
    q.push(b(',after'));
    file.release(); // the reader's reference: the queue holds its own
    expect(q.size).toBe(7 + 7 + 6);
    expect(q.spooledHead()).toBeUndefined();
    const target = Buffer.alloc(64);
    expect(q.fill(target)).toEqual({ length: 7, fds: undefined });
    q.consume(7);
    const head = q.spooledHead()!;
    expect(head.read().toString()).toBe('spooled');
    q.consume(3); // the socket took 3 of them
    expect(q.spooledHead()!.read().toString()).toBe('oled');
    expect(q.unsent().bytes.toString()).toBe('oled,after');
    expect(isOpen(fd)).toBe(true);
    q.consume(4);
    expect(isOpen(fd)).toBe(false);
    expect(q.spooledHead()).toBeUndefined();
    expect(q.fill(target)).toEqual({ length: 6, fds: undefined });
  });

  it('reports unsent spooled bytes as a range of their file, not read', () => {
    const { file, bytes } = spool('0123456789');
    const q = new OutboundQueue();
    q.push(bytes);
    q.push(b('tail'));
    q.consume(4);
    const { parts, length } = q.unsentParts();
    expect(length).toBe(10);
    expect(parts[0]).toBeInstanceOf(SpooledBytes);
    expect(parts[0]).toMatchObject({ file, position: 4096 + 4, length: 6 });
    expect(parts[1]!.toString()).toBe('tail');
    q.discard();
    file.release();
  });

  it('keeps the file open, unchanged, while another queue points into it; a discarded queue lets go too', () => {
    const big = 'x'.repeat(256 * 1024);
    const { file, bytes, fd } = spool(big);
    const other = new SpooledBytes(file, 0, 4096);
    const q = new OutboundQueue();
    const r = new OutboundQueue();
    q.push(bytes);
    r.push(other);
    file.release();
    q.consume(big.length);
    // Sent bytes stay in the file (a client may not have read them from its socket yet).
    expect(bytes.read().toString()).toBe(big);
    expect(isOpen(fd)).toBe(true); // r still points into it
    r.discard();
    expect(isOpen(fd)).toBe(false);
  });
});
