import { openSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { UidAccount } from '../bus/uid-accounts.js';
import { InboundFds } from './inbound-fds.js';

const account = (fdCeiling: number) => new UidAccount(1000, (r) => (r === 'fds' ? fdCeiling : Infinity));

describe('InboundFds', () => {
  it('gives a message exactly the fds its UNIX_FDS header declares, or refuses it', () => {
    const inbound = new InboundFds();
    inbound.add(9, [40, 41]);
    expect(() => inbound.take(1, 10, 16)).toThrow('sent a message whose UNIX_FDS header says 1 fds while 2 came with it');
    expect(() => inbound.take(17, 10, 16)).toThrow('more than max_message_unix_fds (16)');
    expect(inbound.take(0, 5, 16)).toBeUndefined(); // an earlier message, without fds
    expect(inbound.take(2, 10, 16)).toEqual([40, 41]);
    expect(inbound.count).toBe(0);
  });

  it('charges the fds left waiting after a read to the uid, times them from when the oldest came, and releases them', () => {
    const inbound = new InboundFds();
    const uid = account(3);
    expect(inbound.settle(uid, false)).toBe('none'); // nothing waits: nothing to do
    inbound.add(99, [40, 41]);
    expect(inbound.settle(uid, false)).toBe('started-holding');
    expect(uid.fds).toBe(2);
    expect(inbound.since).toBeGreaterThan(0);
    inbound.add(199, [42, 43]);
    expect(inbound.settle(uid, false)).toBe('over-ceiling'); // 4 > 3
    expect(inbound.take(2, 100, 16)).toEqual([40, 41]);
    inbound.take(2, 200, 16);
    expect(inbound.settle(uid, false)).toBe('stopped-holding');
    expect(uid.fds).toBe(0);
    expect(inbound.since).toBe(0);
  });

  it('charges inherited fds whatever the ceiling, and closes and releases everything when the connection goes', () => {
    const inbound = new InboundFds();
    const uid = account(0);
    const fd = openSync('/dev/null', 'r');
    inbound.add(5, [fd]);
    expect(inbound.settle(uid, true)).toBe('started-holding');
    expect(uid.fds).toBe(1);
    inbound.discard(uid);
    expect(uid.fds).toBe(0);
    expect(() => openSync(`/proc/self/fd/${fd}`, 'r')).toThrow(/ENOENT/);
  });
});
