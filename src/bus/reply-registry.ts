import type { Peer } from './peer.js';

interface PendingCall {
  caller: Peer;
  serial: number;
  callee: Peer;
}

/**
 * Method calls awaiting a reply. A reply is routed only if it answers one of
 * these (as dbus-daemon does), which stops peers from injecting fake replies.
 */
export class ReplyRegistry {
  private readonly byKey = new Map<string, PendingCall>();
  private readonly byCallee = new Map<Peer, Set<string>>();

  private static key(caller: Peer, serial: number): string {
    return `${caller.id}/${serial}`;
  }

  expect(caller: Peer, serial: number, callee: Peer): void {
    const key = ReplyRegistry.key(caller, serial);
    const old = this.byKey.get(key);
    if (old) this.forget(key, old);
    this.byKey.set(key, { caller, serial, callee });
    let set = this.byCallee.get(callee);
    if (!set) this.byCallee.set(callee, (set = new Set()));
    set.add(key);
    caller.pendingCalls++;
  }

  /** True (and forgotten) when `callee` may answer `caller`'s call `serial`. */
  consume(callee: Peer, caller: Peer, serial: number): boolean {
    const key = ReplyRegistry.key(caller, serial);
    const call = this.byKey.get(key);
    if (!call || call.callee !== callee) return false;
    this.forget(key, call);
    return true;
  }

  /** Forgets calls made to a peer that is going away; their callers are owed a NoReply error. */
  dropCallee(callee: Peer): Array<{ caller: Peer; serial: number }> {
    const keys = this.byCallee.get(callee);
    if (!keys) return [];
    const owed: Array<{ caller: Peer; serial: number }> = [];
    for (const key of [...keys]) {
      const call = this.byKey.get(key)!;
      this.forget(key, call);
      owed.push({ caller: call.caller, serial: call.serial });
    }
    return owed;
  }

  /** Forgets calls made by a peer that is going away. */
  dropCaller(caller: Peer): void {
    const prefix = `${caller.id}/`;
    for (const [key, call] of this.byKey) if (key.startsWith(prefix)) this.forget(key, call);
  }

  /** Every pending call, for snapshots. */
  all(): IterableIterator<PendingCall> {
    return this.byKey.values();
  }

  private forget(key: string, call: PendingCall): void {
    this.byKey.delete(key);
    const set = this.byCallee.get(call.callee);
    set?.delete(key);
    if (set?.size === 0) this.byCallee.delete(call.callee);
    call.caller.pendingCalls--;
  }
}
