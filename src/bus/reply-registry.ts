import type { Peer } from './peer.js';

interface PendingCall {
  caller: Peer;
  serial: number;
  callee: Peer;
  /** When the bus answers NoReply itself (reply_timeout); Infinity: never. */
  expiresAt: number;
}

/**
 * Method calls awaiting a reply. A reply is routed only if it answers one of
 * these (as dbus-daemon does), which stops peers from injecting fake replies.
 * Indexed both ways, so a disconnect costs only that peer's own calls; the bus calls
 * dropCaller and dropCallee for every peer that leaves.
 */
export class ReplyRegistry {
  private readonly byCaller = new Map<Peer, Map<number, PendingCall>>();
  private readonly byCallee = new Map<Peer, Set<PendingCall>>();
  /** Every call in the order it was made: with one timeout for all, also the order they expire. */
  private readonly inOrder = new Set<PendingCall>();

  expect(caller: Peer, serial: number, callee: Peer, expiresAt = Infinity): void {
    const old = this.byCaller.get(caller)?.get(serial);
    if (old) this.forget(old);
    let calls = this.byCaller.get(caller);
    if (!calls) this.byCaller.set(caller, (calls = new Map()));
    const call = { caller, serial, callee, expiresAt };
    calls.set(serial, call);
    if (expiresAt !== Infinity) this.inOrder.add(call);
    let set = this.byCallee.get(callee);
    if (!set) this.byCallee.set(callee, (set = new Set()));
    set.add(call);
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
    const calls = this.byCallee.get(callee);
    if (!calls) return [];
    const owed = [...calls].map((c) => ({ caller: c.caller, serial: c.serial }));
    for (const call of [...calls]) this.forget(call);
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
    for (const call of this.inOrder) {
      if (call.expiresAt > now) break;
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
    // one call at a time would otherwise make and drop a Map and a Set per call.
    this.byCaller.get(call.caller)?.delete(call.serial);
    this.byCallee.get(call.callee)?.delete(call);
    if (call.expiresAt !== Infinity) this.inOrder.delete(call);
    call.caller.pendingCalls--;
    call.caller.account.release('pendingReplies');
  }
}
