import { describe, expect, it } from 'vitest';
import { OutboundQueue } from './outbound-queue.js';

const b = (s: string) => Buffer.from(s);

describe('OutboundQueue', () => {
  it('coalesces everything queued in a turn into one buffer to write', () => {
    const q = new OutboundQueue();
    q.push(b('ab'));
    q.push(b('cd'));
    expect(q.size).toBe(4);
    expect(Buffer.concat(q.takePending()).toString()).toBe('abcd');
    expect(q.hasPending).toBe(false);
    expect(q.size).toBe(4); // in flight until the write completes
    q.written();
    expect(q.size).toBe(0);
  });

  it('reports as unsent the unwritten tail of the write in flight, then what is pending, in order', () => {
    const q = new OutboundQueue();
    q.push(b('0123456789'));
    q.takePending();
    q.push(b('abc'));
    // libuv says 4 bytes of the outstanding write have not reached the kernel.
    expect(q.unsent(4).toString()).toBe('6789abc');
    expect(q.unsent(0).toString()).toBe('abc');
    expect(q.unsent(10).toString()).toBe('0123456789abc');
  });

  it('has nothing unsent once every write completed', () => {
    const q = new OutboundQueue();
    q.push(b('x'));
    q.takePending();
    q.written();
    expect(q.unsent(0).length).toBe(0);
  });

  it('keeps order across many completed writes', () => {
    const q = new OutboundQueue();
    for (let i = 0; i < 3000; i++) {
      q.push(b(String(i % 10)));
      q.takePending();
      q.written();
    }
    q.push(b('tail'));
    q.takePending();
    expect(q.unsent(2).toString()).toBe('il');
    expect(q.size).toBe(4);
  });

  it('keeps pieces as given and finds the unsent tail across them', () => {
    const q = new OutboundQueue();
    const body = b('BODY-BYTES');
    q.push([b('head:'), body]);
    q.push(b('next'));
    const batch = q.takePending();
    expect(batch).toHaveLength(3);
    expect(batch[1]).toBe(body); // not copied
    expect(q.unsent(7).toString()).toBe('TESnext');
    expect(q.unsent(19).toString()).toBe('head:BODY-BYTESnext');
  });

  it('counts queued messages and remembers the most bytes ever queued', () => {
    const q = new OutboundQueue();
    q.push([b('ab'), b('c')]);
    q.takePending();
    q.push(b('de'));
    expect([q.messages, q.size, q.peakSize]).toEqual([2, 5, 5]);
    q.written();
    expect([q.messages, q.size, q.peakSize]).toEqual([1, 2, 5]);
  });
});
