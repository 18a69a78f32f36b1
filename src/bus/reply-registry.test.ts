import { describe, expect, it } from 'vitest';
import { Peer } from './peer.js';
import { ReplyRegistry } from './reply-registry.js';
import { USER } from './testing.js';

const [a, b, c] = [1, 2, 3].map((id) => new Peer(id, USER)) as [Peer, Peer, Peer];

describe('ReplyRegistry', () => {
  it('lets only the callee answer, only once, and counts the caller\'s pending calls', () => {
    const r = new ReplyRegistry();
    r.expect(a, 7, b);
    expect(a.pendingCalls).toBe(1);
    expect(r.consume(c, a, 7)).toBe(false);
    expect(r.consume(b, a, 8)).toBe(false);
    expect(r.consume(b, a, 7)).toBe(true);
    expect(r.consume(b, a, 7)).toBe(false);
    expect(a.pendingCalls).toBe(0);
  });

  it('replaces a pending call that reuses a serial without counting it twice', () => {
    const r = new ReplyRegistry();
    const caller = new Peer(10, USER);
    r.expect(caller, 1, b);
    r.expect(caller, 1, c);
    expect(caller.pendingCalls).toBe(1);
    expect(r.consume(b, caller, 1)).toBe(false);
    expect(r.consume(c, caller, 1)).toBe(true);
  });

  it('hands back the callers owed NoReply when a callee goes, and forgets a departing caller\'s calls', () => {
    const r = new ReplyRegistry();
    const [x, y] = [new Peer(11, USER), new Peer(12, USER)];
    r.expect(x, 1, b);
    r.expect(y, 5, b);
    r.expect(x, 2, c);
    expect(r.dropCallee(b)).toEqual([{ caller: x, serial: 1 }, { caller: y, serial: 5 }]);
    expect(r.dropCallee(b)).toEqual([]);
    expect([x.pendingCalls, y.pendingCalls]).toEqual([1, 0]);
    r.dropCaller(x);
    expect(x.pendingCalls).toBe(0);
    expect([...r.all()]).toEqual([]);
    expect(r.dropCallee(c)).toEqual([]);
  });

  it('does not confuse callers whose ids share a prefix', () => {
    const r = new ReplyRegistry();
    const [p1, p12] = [new Peer(1, USER), new Peer(12, USER)];
    r.expect(p1, 3, b);
    r.expect(p12, 3, b);
    r.dropCaller(p1);
    expect(r.consume(b, p12, 3)).toBe(true);
  });
});
