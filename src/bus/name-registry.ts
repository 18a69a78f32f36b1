import type { Peer } from './peer.js';

export const enum NameFlag {
  AllowReplacement = 0x1,
  ReplaceExisting = 0x2,
  DoNotQueue = 0x4,
}

export const enum RequestNameReply {
  PrimaryOwner = 1,
  InQueue = 2,
  Exists = 3,
  AlreadyOwner = 4,
}

export const enum ReleaseNameReply {
  Released = 1,
  NonExistent = 2,
  NotOwner = 3,
}

/** A change of primary owner; the driver turns it into NameOwnerChanged/NameLost/NameAcquired. */
export interface NameOwnerChange {
  name: string;
  oldOwner: Peer | undefined;
  newOwner: Peer | undefined;
}

export interface NameOwnership {
  peer: Peer;
  flags: number;
}

/**
 * Well-known names and their owner queues. The head of each queue is the primary
 * owner. Pure bookkeeping: it reports changes and never sends anything.
 */
export class NameRegistry {
  private readonly queues = new Map<string, NameOwnership[]>();

  owner(name: string): Peer | undefined {
    return this.queues.get(name)?.[0]?.peer;
  }

  /** The queue of `name` in order, primary owner first (empty when unowned). */
  queue(name: string): readonly NameOwnership[] {
    return this.queues.get(name) ?? [];
  }

  /** Names that currently have a primary owner. */
  ownedNames(): IterableIterator<string> {
    return this.queues.keys();
  }

  request(peer: Peer, name: string, flags: number): { reply: RequestNameReply; changes: NameOwnerChange[] } {
    const queue = this.queues.get(name);
    if (!queue) {
      this.queues.set(name, [{ peer, flags }]);
      peer.names.add(name);
      return { reply: RequestNameReply.PrimaryOwner, changes: [{ name, oldOwner: undefined, newOwner: peer }] };
    }
    const primary = queue[0]!;
    if (primary.peer === peer) {
      primary.flags = flags;
      return { reply: RequestNameReply.AlreadyOwner, changes: [] };
    }
    const mayReplace =
      (flags & NameFlag.ReplaceExisting) !== 0 && (primary.flags & NameFlag.AllowReplacement) !== 0;
    const queuedAt = queue.findIndex((o) => o.peer === peer);
    if (mayReplace) {
      if (queuedAt > 0) queue.splice(queuedAt, 1);
      queue.shift();
      // The replaced owner keeps its place right behind the new one unless it refused queuing.
      if ((primary.flags & NameFlag.DoNotQueue) === 0) queue.unshift(primary);
      else primary.peer.names.delete(name);
      queue.unshift({ peer, flags });
      peer.names.add(name);
      return { reply: RequestNameReply.PrimaryOwner, changes: [{ name, oldOwner: primary.peer, newOwner: peer }] };
    }
    if ((flags & NameFlag.DoNotQueue) !== 0) {
      if (queuedAt > 0) {
        queue.splice(queuedAt, 1);
        peer.names.delete(name);
      }
      return { reply: RequestNameReply.Exists, changes: [] };
    }
    if (queuedAt > 0) queue[queuedAt]!.flags = flags;
    else {
      queue.push({ peer, flags });
      peer.names.add(name);
    }
    return { reply: RequestNameReply.InQueue, changes: [] };
  }

  release(peer: Peer, name: string): { reply: ReleaseNameReply; changes: NameOwnerChange[] } {
    const queue = this.queues.get(name);
    if (!queue) return { reply: ReleaseNameReply.NonExistent, changes: [] };
    const at = queue.findIndex((o) => o.peer === peer);
    if (at < 0) return { reply: ReleaseNameReply.NotOwner, changes: [] };
    return { reply: ReleaseNameReply.Released, changes: this.remove(name, queue, at) };
  }

  /** Drops every ownership and queue place of a peer (disconnect, BecomeMonitor). */
  releaseAll(peer: Peer): NameOwnerChange[] {
    const changes: NameOwnerChange[] = [];
    for (const name of [...peer.names]) {
      const queue = this.queues.get(name);
      const at = queue ? queue.findIndex((o) => o.peer === peer) : -1;
      if (queue && at >= 0) changes.push(...this.remove(name, queue, at));
    }
    peer.names.clear();
    return changes;
  }

  private remove(name: string, queue: NameOwnership[], at: number): NameOwnerChange[] {
    const [removed] = queue.splice(at, 1);
    removed!.peer.names.delete(name);
    if (at !== 0) return [];
    const next = queue[0]?.peer;
    if (!next) this.queues.delete(name);
    return [{ name, oldOwner: removed!.peer, newOwner: next }];
  }

  /** Every queue, for snapshots and the CLI. */
  entries(): IterableIterator<[string, readonly NameOwnership[]]> {
    return this.queues.entries();
  }

  /** Restores a queue verbatim (handoff). */
  restore(name: string, queue: NameOwnership[]): void {
    this.queues.set(name, queue);
    for (const o of queue) o.peer.names.add(name);
  }
}
