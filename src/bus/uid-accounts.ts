/**
 * Per-uid accounting: everything a connection holds on the bus is charged to a uid when it is
 * created and released when it is destroyed, so that one uid's flood fills its own account and
 * nobody else's.
 *
 * A uid is capped as dbus-broker caps a user: max_connections_per_user times the per-connection
 * limit. Queued bytes and unix fds are the exception: a uid may hold at most what one connection
 * may (dbus-daemon allows that much per connection, 256 × 127 MiB and 256 × 128 fds for one uid).
 * Queued bytes and queued fds are charged to whoever asked for the message — see Bus#deliver —
 * and the fds of a half-received message to its sender.
 */

export type UidResource = 'connections' | 'names' | 'matchRules' | 'pendingReplies' | 'queuedBytes' | 'fds';

export const UID_RESOURCES: readonly UidResource[] = ['connections', 'names', 'matchRules', 'pendingReplies', 'queuedBytes', 'fds'];

/** The most of a resource one uid may hold under the limits in force now. */
export type UidCeiling = (resource: UidResource) => number;

/** What one uid holds on the bus, across all its connections. */
export class UidAccount {
  connections = 0;
  names = 0;
  matchRules = 0;
  pendingReplies = 0;
  queuedBytes = 0;
  /** Unix fds the bus holds in this uid's half-received messages and in queues it pays for. */
  fds = 0;
  /** The highest each ever reached: what an operator sizing limits wants to know. */
  readonly peak: Record<UidResource, number> = { connections: 0, names: 0, matchRules: 0, pendingReplies: 0, queuedBytes: 0, fds: 0 };

  constructor(
    readonly uid: number,
    private readonly ceiling: UidCeiling,
  ) {}

  /** Would `amount` more still fit under the ceiling? */
  allows(resource: UidResource, amount = 1): boolean {
    return this[resource] + amount <= this.ceiling(resource);
  }

  /** Charges `amount` unless that would take the account past its ceiling; false: nothing charged. */
  charge(resource: UidResource, amount = 1): boolean {
    if (!this.allows(resource, amount)) return false;
    this.force(resource, amount);
    return true;
  }

  /**
   * Charges without a check: for what must not be refused, such as state inherited from an
   * earlier image (a lowered limit must not take from clients what they already had).
   */
  force(resource: UidResource, amount = 1): void {
    const now = (this[resource] += amount);
    if (now > this.peak[resource]) this.peak[resource] = now;
  }

  release(resource: UidResource, amount = 1): void {
    // Never below zero: a miscount must not hand a uid a larger allowance.
    this[resource] = Math.max(0, this[resource] - amount);
  }

  get idle(): boolean {
    return this.connections === 0 && this.names === 0 && this.matchRules === 0 &&
      this.pendingReplies === 0 && this.queuedBytes === 0 && this.fds === 0;
  }
}

/** For peers made outside a bus (unit tests of the registries): charges that never refuse. */
export function unlimitedAccount(uid: number): UidAccount {
  return new UidAccount(uid, () => Infinity);
}

/** Every uid's account on one bus. */
export class UidAccounts {
  /** Kept once made (one small object per uid ever seen), so a reference never goes stale. */
  private readonly byUid = new Map<number, UidAccount>();

  constructor(private readonly ceiling: UidCeiling) {}

  account(uid: number): UidAccount {
    let account = this.byUid.get(uid);
    if (!account) this.byUid.set(uid, (account = new UidAccount(uid, this.ceiling)));
    return account;
  }

  /** The ceilings in force now, for reports. */
  ceilings(): Record<UidResource, number> {
    return Object.fromEntries(UID_RESOURCES.map((r) => [r, this.ceiling(r)])) as Record<UidResource, number>;
  }

  /** Every uid that holds something now, by uid. */
  active(): UidAccount[] {
    return [...this.byUid.values()].filter((a) => !a.idle).sort((a, b) => a.uid - b.uid);
  }
}
