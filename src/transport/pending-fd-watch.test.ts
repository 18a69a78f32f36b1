import { describe, expect, it } from 'vitest';
import { PendingFdWatch, tickFor, type PendingFdHolder } from './pending-fd-watch.js';

function holder(since: number, timeoutMs: number): PendingFdHolder & { closedFor?: string } {
  const h: PendingFdHolder & { closedFor?: string } = {
    pendingFdsSince: since,
    inboundFdCount: 2,
    limits: { pendingFdTimeoutMs: timeoutMs },
    close(reason: string) {
      h.closedFor = reason;
    },
  };
  return h;
}

describe('PendingFdWatch', () => {
  it('closes only the connections whose fds waited their whole timeout, and stops watching them', () => {
    const watch = new PendingFdWatch();
    const old = holder(1_000, 500);
    const young = holder(1_400, 500);
    watch.hold(old);
    watch.hold(young);
    expect(watch.sweep(1_600)).toBe(1);
    expect(old.closedFor).toBe('held 2 unix fds in a message not received whole for longer than pending_fd_timeout (500 ms)');
    expect(young.closedFor).toBeUndefined();
    expect(watch.watching).toBe(1);
    watch.release(young);
    expect(watch.watching).toBe(0);
    expect(watch.sweep(10_000)).toBe(0);
  });

  it('ticks at a quarter of the timeout, between 50 ms and 1 s', () => {
    expect(tickFor(150_000)).toBe(1000);
    expect(tickFor(1000)).toBe(250);
    expect(tickFor(40)).toBe(50);
  });
});
