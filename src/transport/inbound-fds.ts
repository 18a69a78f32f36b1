import type { UidAccount } from '../bus/uid-accounts.js';
import { closeFd } from '../sys/socket-io.js';
import { FerryError } from '../util/errors.js';

/** An fd that came with the byte at stream position `at`, not yet given to a message. */
interface InboundFd {
  at: number;
  fd: number;
}

/** What changed after a read (see InboundFds#settle). */
export type InboundFdChange = 'none' | 'started-holding' | 'stopped-holding' | 'over-ceiling';

/**
 * The fds one connection received and has not yet given to a message, oldest first, and what
 * they cost while they wait: they are charged to the sender's uid, and pending_fd_timeout counts
 * from the arrival of the oldest. The fds of a message read whole never wait here past the read
 * that brought them, so they are never charged nor timed.
 */
export class InboundFds {
  private fds: InboundFd[] = [];
  /** The oldest fd when last settled, and since when it waits (Date.now()); 0: none waits. */
  private oldest: InboundFd | undefined;
  since = 0;
  /** How many waited when last settled, and how many are charged to the sender's uid. */
  private seen = 0;
  private charged = 0;

  get count(): number {
    return this.fds.length;
  }

  /** The fds, in order (a handoff carries them with the bytes). */
  numbers(): number[] {
    return this.fds.map((f) => f.fd);
  }

  /** Fds that came with the byte at stream position `at`. */
  add(at: number, fds: readonly number[]): void {
    for (const fd of fds) this.fds.push({ at, fd });
  }

  /**
   * The fds of a message whose bytes end before stream position `end`: exactly as many as its
   * UNIX_FDS header says (dbus-broker's rule; dbus-daemon is looser), or a FerryError that
   * disconnects the sender. undefined for a message without fds.
   */
  take(declared: number, end: number, maxMessageUnixFds: number): number[] | undefined {
    let arrived = 0;
    while (arrived < this.fds.length && this.fds[arrived]!.at < end) arrived++;
    if (declared === 0 && arrived === 0) return undefined;
    if (declared > maxMessageUnixFds) {
      throw new FerryError('TooManyFds', `sent a message with ${declared} unix fds, more than max_message_unix_fds (${maxMessageUnixFds})`);
    }
    if (arrived !== declared) {
      throw new FerryError('FdCountMismatch', `sent a message whose UNIX_FDS header says ${declared} fds while ${arrived} came with it`);
    }
    return this.fds.splice(0, declared).map((f) => f.fd);
  }

  /**
   * After each read: the fds still waiting for the rest of their message are charged to
   * `account` (`inherited`: whatever the ceiling says, they crossed a handoff), and the clock
   * restarts when the oldest one changed. One comparison when nothing waits.
   */
  settle(account: UidAccount | undefined, inherited: boolean): InboundFdChange {
    const oldest = this.fds[0];
    const held = this.fds.length;
    if (oldest === this.oldest && held === this.seen) return 'none';
    this.seen = held;
    if (account && held > this.charged) {
      if (inherited) account.force('fds', held - this.charged);
      else if (!account.charge('fds', held - this.charged)) return 'over-ceiling';
    } else if (account) account.release('fds', this.charged - held);
    this.charged = account ? held : 0;
    const was = this.oldest !== undefined;
    if (oldest !== this.oldest) this.since = oldest ? Date.now() : 0;
    this.oldest = oldest;
    if (was === (oldest !== undefined)) return 'none';
    return oldest ? 'started-holding' : 'stopped-holding';
  }

  /** The connection is gone: every fd closes, its uid is charged for none. */
  discard(account: UidAccount | undefined): void {
    for (const f of this.fds) closeFd(f.fd);
    account?.release('fds', this.charged);
    this.fds = [];
    this.charged = 0;
    this.seen = 0;
    this.oldest = undefined;
    this.since = 0;
  }
}
