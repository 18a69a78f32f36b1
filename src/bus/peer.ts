import type { MatchRule } from './match-rule.js';
import type { PeerPolicy } from './policy.js';
import { unlimitedAccount, type UidAccount } from './uid-accounts.js';

/** What the kernel told us about a peer when it connected (SO_PEERCRED & co). */
export interface Credentials {
  uid: number;
  gid: number;
  pid: number;
  groups: number[];
  securityLabel?: string;
}

/** A peer's well-known names (owned or queued for): each one is charged to the peer's uid. */
class OwnedNames extends Set<string> {
  constructor(private readonly account: UidAccount) {
    super();
  }

  override add(name: string): this {
    if (!this.has(name)) {
      super.add(name);
      // The driver checked the ceiling before asking; queue moves and restores must not fail.
      this.account.force('names');
    }
    return this;
  }

  override delete(name: string): boolean {
    if (!super.delete(name)) return false;
    this.account.release('names');
    return true;
  }

  override clear(): void {
    this.account.release('names', this.size);
    super.clear();
  }
}

/**
 * One client connection as the bus core sees it. Plain data, so that a handoff
 * can snapshot and restore it; the socket lives in the transport layer.
 */
export class Peer {
  /** Unique name, set by Hello; undefined until then. */
  uniqueName: string | undefined;
  readonly matches: MatchRule[] = [];
  /** Well-known names this peer owns or waits for, in request order. */
  readonly names: Set<string>;
  /** Non-null once the peer called BecomeMonitor: its rules (empty = everything). */
  monitorRules: MatchRule[] | null = null;
  /** Method calls this peer made that still await a reply. */
  pendingCalls = 0;
  /** The security policy's rules for this connection; undefined on a bus without policy. */
  policy: PeerPolicy | undefined;
  /** The client negotiated unix fd passing (NEGOTIATE_UNIX_FD): messages with fds may reach it. */
  acceptsFds = false;
  /** Set while messages to this peer are refused for its outbound quota (logs once per episode). */
  overQuota = false;
  /** The last broadcast delivered to this peer (the bus's count): one copy even when several rules match. */
  lastBroadcast = 0;

  constructor(
    readonly id: number,
    readonly credentials: Credentials,
    /** Where everything this peer holds is charged (src/bus/uid-accounts.ts). */
    readonly account: UidAccount = unlimitedAccount(credentials.uid),
  ) {
    this.names = new OwnedNames(account);
  }

  get registered(): boolean {
    return this.uniqueName !== undefined;
  }

  get isMonitor(): boolean {
    return this.monitorRules !== null;
  }

  /** For logs: the unique name when known, else the connection id. */
  get label(): string {
    return this.uniqueName ?? `#${this.id}`;
  }
}
