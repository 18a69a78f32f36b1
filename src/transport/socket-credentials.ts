import type { Credentials } from '../bus/peer.js';
import { peerCredentials, peerGroups, peerSecurityLabel } from '../sys/libc.js';

/** What is known of a peer's credentials: groups and label only once read (a handoff document). */
export interface KnownCredentials {
  pid: number;
  uid: number;
  gid: number;
  /** Absent: not read yet (the socket still tells). */
  groups?: number[];
  /** A string, null for none, absent: not read yet. */
  securityLabel?: string | null;
}

/**
 * The peer's credentials: pid, uid and gid now (every connection needs them); groups
 * and security label on first use (GetConnectionCredentials, a group rule of the policy),
 * which saves two system calls per connection for the many clients that never ask. A
 * handoff carries what was read and leaves the rest to the new image, which reads it from the
 * same socket when it is first needed (the kernel keeps a peer's credentials from its connect).
 * A class, so the lazy reads cost no closures per connection.
 */
export class SocketCredentials implements Credentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  private cachedGroups: number[] | undefined;
  private labelRead = false;
  private cachedLabel: string | undefined;

  /** `known`: as a handoff document carried them (pid, uid and gid already checked against the socket). */
  constructor(private readonly fd: number, known?: KnownCredentials) {
    const { pid, uid, gid } = known ?? peerCredentials(fd);
    this.pid = pid;
    this.uid = uid;
    this.gid = gid;
    if (known?.groups) this.cachedGroups = known.groups;
    if (known?.securityLabel !== undefined) {
      this.labelRead = true;
      this.cachedLabel = known.securityLabel ?? undefined;
    }
  }

  get groups(): number[] {
    // SO_PEERGROUPS lists supplementary groups only; clients expect the primary gid too.
    this.cachedGroups ??= [...new Set([this.gid, ...orDefault(() => peerGroups(this.fd), [])])];
    return this.cachedGroups;
  }

  get securityLabel(): string | undefined {
    if (!this.labelRead) {
      this.labelRead = true;
      this.cachedLabel = orDefault(() => peerSecurityLabel(this.fd), undefined);
    }
    return this.cachedLabel;
  }

  /** What has been read so far, reading nothing more. */
  known(): KnownCredentials {
    const known: KnownCredentials = { pid: this.pid, uid: this.uid, gid: this.gid };
    if (this.cachedGroups) known.groups = [...this.cachedGroups];
    if (this.labelRead) known.securityLabel = this.cachedLabel ?? null;
    return known;
  }
}

function orDefault<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback; // the socket is gone: nothing more to learn
  }
}
