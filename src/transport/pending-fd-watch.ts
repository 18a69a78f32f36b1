/**
 * pending_fd_timeout: a connection that holds fds in a half-received message for too long is
 * closed. Without it a client could pin fds in the bus for ever by never finishing a message
 * (dbus-daemon's CVE-2014-3637), and they count against its uid's fd ceiling meanwhile.
 *
 * One coarse timer for every connection, running only while some connection holds such fds, so
 * the hot path (a message whose fds and bytes arrive in one read) never arms or clears anything.
 * A connection is closed between timeout and timeout + one tick after its oldest held fd came.
 */

/** What the watch needs of a connection (src/transport/connection.ts). */
export interface PendingFdHolder {
  /** When the fds of its oldest incomplete message arrived (Date.now()); 0 when it holds none. */
  readonly pendingFdsSince: number;
  readonly inboundFdCount: number;
  readonly limits: { readonly pendingFdTimeoutMs: number };
  close(reason: string, loud?: boolean): void;
}

/** The tick: a quarter of the timeout, between 50 ms and 1 s (150 s by default: 1 s ticks). */
export function tickFor(timeoutMs: number): number {
  return Math.min(1000, Math.max(50, Math.floor(timeoutMs / 4)));
}

export class PendingFdWatch {
  private readonly holders = new Set<PendingFdHolder>();
  private timer: NodeJS.Timeout | undefined;
  private tickMs = 0;

  get watching(): number {
    return this.holders.size;
  }

  /** `holder` began holding fds of an incomplete message. */
  hold(holder: PendingFdHolder): void {
    this.holders.add(holder);
    const tick = tickFor(holder.limits.pendingFdTimeoutMs);
    if (this.timer && tick >= this.tickMs) return;
    clearInterval(this.timer);
    this.tickMs = tick;
    this.timer = setInterval(() => this.sweep(), tick);
    this.timer.unref(); // the bus lives for its sockets, not for this timer
  }

  /** `holder` holds no such fds any more (its message completed, or it closed). */
  release(holder: PendingFdHolder): void {
    if (!this.holders.delete(holder) || this.holders.size > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Closes every connection past its timeout; returns how many. */
  sweep(now = Date.now()): number {
    let closed = 0;
    for (const holder of [...this.holders]) {
      const timeout = holder.limits.pendingFdTimeoutMs;
      if (now - holder.pendingFdsSince < timeout) continue;
      this.release(holder);
      holder.close(`held ${holder.inboundFdCount} unix fds in a message not received whole for longer than pending_fd_timeout (${timeout} ms)`, true);
      closed++;
    }
    return closed;
  }
}
