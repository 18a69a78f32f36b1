import type { Peer } from './peer.js';

interface PendingCall {
  caller: Peer;
  serial: number;
  callee: Peer;
  /** When the bus answers NoReply itself (reply_timeout); Infinity: never. */
  expiresAt: number;
  /** Neighbours in the order calls expire (those with a deadline). */
  older: PendingCall | undefined;
  newer: PendingCall | undefined;
  /** Neighbours among the calls made to the same callee. */
  prevToCallee: PendingCall | undefined;
  nextToCallee: PendingCall | undefined;
}

/**
 * Method calls awaiting a reply. A reply is routed only if it answers one of
 * these (as dbus-daemon does), which stops peers from injecting fake replies.
 * Indexed both ways, so a disconnect costs only that peer's own calls; the bus calls
 * dropCaller and dropCallee for every peer that leaves.
 *
 * The expiry order and each callee's calls are lists linked through the calls themselves: a
 * call is made and answered per routed round trip, and a Set each would allocate as it churns.
 */
export class ReplyRegistry {
  private readonly byCaller = new Map<Peer, Map<number, PendingCall>>();
  /** The first of each callee's calls (undefined once they are answered, until the peer leaves). */
  private readonly byCallee = new Map<Peer, PendingCall | undefined>();
  /** Every call with a deadline in the order it was made: with one timeout for all, also the order they expire. */
  private oldest: PendingCall | undefined;
  private newest: PendingCall | undefined;

  expect(caller: Peer, serial: number, callee: Peer, expiresAt = Infinity): void {
    const old = this.byCaller.get(caller)?.get(serial);
    if (old) this.forget(old);
    let calls = this.byCaller.get(caller);
    if (!calls) this.byCaller.set(caller, (calls = new Map()));
    const call: PendingCall = {
      caller, serial, callee, expiresAt,
      older: undefined, newer: undefined, prevToCallee: undefined, nextToCallee: undefined,
    };
    calls.set(serial, call);
    if (expiresAt !== Infinity) {
      call.older = this.newest;
      if (this.newest) this.newest.newer = call;
      else this.oldest = call;
      this.newest = call;
    }
    const first = this.byCallee.get(callee);
    if (first) {
      first.prevToCallee = call;
      call.nextToCallee = first;
    }
    this.byCallee.set(callee, call);
    caller.pendingCalls++;
    caller.account.force('pendingReplies');
  }

  /** True (and forgotten) when `callee` may answer `caller`'s call `serial`. */
  consume(callee: Peer, caller: Peer, serial: number): boolean {
    const call = this.byCaller.get(caller)?.get(serial);
    if (!call || call.callee !== callee) return false;
    this.forget(call);
    return true;
  }

  /** Forgets calls made to a peer that is going away; their callers are owed a NoReply error. */
  dropCallee(callee: Peer): Array<{ caller: Peer; serial: number }> {
    const owed: Array<{ caller: Peer; serial: number }> = [];
    for (let call = this.byCallee.get(callee); call; call = call.nextToCallee) owed.push({ caller: call.caller, serial: call.serial });
    // The list holds the newest call first: owed oldest first.
    owed.reverse();
    for (let call = this.byCallee.get(callee); call; call = this.byCallee.get(callee)) this.forget(call);
    this.byCallee.delete(callee);
    return owed;
  }

  /** Forgets calls made by a peer that is going away. */
  dropCaller(caller: Peer): void {
    const calls = this.byCaller.get(caller);
    if (calls) for (const call of [...calls.values()]) this.forget(call);
    this.byCaller.delete(caller);
  }

  /** Forgets and returns the calls whose time ran out by `now`, oldest first. */
  expire(now: number): Array<{ caller: Peer; serial: number }> {
    const expired: Array<{ caller: Peer; serial: number }> = [];
    while (this.oldest && this.oldest.expiresAt <= now) {
      const call = this.oldest;
      expired.push({ caller: call.caller, serial: call.serial });
      this.forget(call);
    }
    return expired;
  }

  /** Every pending call, for snapshots and reports. */
  *all(): IterableIterator<PendingCall> {
    for (const calls of this.byCaller.values()) yield* calls.values();
  }

  private forget(call: PendingCall): void {
    // A peer's (empty) index stays until the peer leaves (dropCaller/dropCallee): a client making
    // one call at a time would otherwise make and drop a Map per call.
    this.byCaller.get(call.caller)?.delete(call.serial);
    if (call.prevToCallee) call.prevToCallee.nextToCallee = call.nextToCallee;
    else if (this.byCallee.get(call.callee) === call) this.byCallee.set(call.callee, call.nextToCallee);
    if (call.nextToCallee) call.nextToCallee.prevToCallee = call.prevToCallee;
    call.prevToCallee = call.nextToCallee = undefined;
    if (call.expiresAt !== Infinity) {
      if (call.older) call.older.newer = call.newer;
      else if (this.oldest === call) this.oldest = call.newer;
      if (call.newer) call.newer.older = call.older;
      else if (this.newest === call) this.newest = call.older;
      call.older = call.newer = undefined;
    }
    call.caller.pendingCalls--;
    call.caller.account.release('pendingReplies');
  }
}
