/**
 * Bytes accepted for one connection and not yet taken by the kernel.
 *
 * Two parts: `pending` (queued this event-loop turn, not yet handed to the
 * socket) and `inFlight` (handed to socket.write, whose callback has not fired).
 * libuv writes in order, so what the kernel has not taken is always a tail of
 * inFlight: a handoff can store exactly those bytes without waiting for a slow
 * reader.
 */
export class OutboundQueue {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly inFlight: Buffer[] = [];
  private inFlightHead = 0;
  private inFlightBytes = 0;

  get size(): number {
    return this.pendingBytes + this.inFlightBytes;
  }

  get hasPending(): boolean {
    return this.pendingBytes > 0;
  }

  push(bytes: Buffer): void {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  /** Takes everything pending as one buffer to write (one write per connection per turn). */
  takePending(): Buffer {
    const out = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.inFlight.push(out);
    this.inFlightBytes += out.length;
    return out;
  }

  /** A socket.write callback fired: the oldest in-flight buffer is now the kernel's. */
  written(): void {
    const done = this.inFlight[this.inFlightHead];
    if (!done) return;
    this.inFlight[this.inFlightHead++] = undefined as unknown as Buffer;
    this.inFlightBytes -= done.length;
    if (this.inFlightHead > 1024 && this.inFlightHead * 2 > this.inFlight.length) {
      this.inFlight.splice(0, this.inFlightHead);
      this.inFlightHead = 0;
    }
  }

  /**
   * Every byte not yet taken by the kernel, in order: the last `unsentInFlight`
   * bytes of in-flight buffers (from libuv's write queue size), then pending.
   */
  unsent(unsentInFlight: number): Buffer {
    const parts: Buffer[] = [];
    let skip = this.inFlightBytes - Math.min(unsentInFlight, this.inFlightBytes);
    for (let i = this.inFlightHead; i < this.inFlight.length; i++) {
      const b = this.inFlight[i]!;
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      parts.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    parts.push(...this.pending);
    return Buffer.concat(parts);
  }
}
