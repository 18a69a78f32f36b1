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

  it('expires calls oldest first, whichever of them were answered in between', () => {
    const r = new ReplyRegistry();
    const [x, y] = [new Peer(21, USER), new Peer(22, USER)];
    r.expect(x, 1, b, 100);
    r.expect(y, 1, c, 200);
    r.expect(x, 2, b, 300);
    r.expect(y, 2, b, 400);
    r.expect(x, 3, c); // no deadline: never expires
    expect(r.consume(c, y, 1)).toBe(true); // the middle one answered
    expect(r.expire(99)).toEqual([]);
    expect(r.expire(300)).toEqual([{ caller: x, serial: 1 }, { caller: x, serial: 2 }]);
    expect(r.consume(b, x, 2)).toBe(false); // expired calls can no longer be answered
    // Of b's calls only y's second is left; x's call to c never expires.
    expect(r.dropCallee(b)).toEqual([{ caller: y, serial: 2 }]);
    expect(r.expire(Number.MAX_SAFE_INTEGER)).toEqual([]);
    expect([x.pendingCalls, y.pendingCalls]).toEqual([1, 0]);
    expect(r.consume(c, x, 3)).toBe(true);
    expect([...r.all()]).toEqual([]);
  });

  it('keeps a callee\'s other calls when one in the middle is answered', () => {
    const r = new ReplyRegistry();
    const callers = [31, 32, 33, 34].map((id) => new Peer(id, USER));
    for (const [i, p] of callers.entries()) r.expect(p, i + 1, b, 1000 + i);
    expect(r.consume(b, callers[1]!, 2)).toBe(true);
    expect(r.consume(b, callers[3]!, 4)).toBe(true); // the newest
    expect(r.dropCallee(b)).toEqual([{ caller: callers[0], serial: 1 }, { caller: callers[2], serial: 3 }]);
    expect(r.expire(Number.MAX_SAFE_INTEGER)).toEqual([]);
  });
});
