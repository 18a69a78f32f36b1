import type { UidAccount } from '../bus/uid-accounts.js';

/**
 * Bytes accepted for one connection and not yet taken by the kernel.
 *
 * Two parts: `pending` (queued this event-loop turn, not yet handed to the
 * socket) and `inFlight` (the one batch handed to the socket as a single
 * writev, whose completion has not been reported). libuv writes in order, so
 * what the kernel has not taken is always a tail of the batch: a handoff can
 * store exactly those bytes without waiting for a slow reader.
 *
 * Pieces are kept as given (a large body is a view of the received bytes) and
 * never joined: the socket writes them with one writev.
 *
 * Each byte is charged to a uid's account (src/bus/uid-accounts.ts) from push until the
 * kernel has it, or until the connection is gone.
 */
function totalLength(pieces: Buffer | readonly Buffer[]): number {
  if (Buffer.isBuffer(pieces)) return pieces.length;
  let n = 0;
  for (const p of pieces) n += p.length;
  return n;
}

function releaseAll(charges: Map<UidAccount, number>): void {
  for (const [account, bytes] of charges) account.release('queuedBytes', bytes);
  charges.clear();
}

export class OutboundQueue {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inFlight: Buffer[] = [];
  private inFlightBytes = 0;
  private pendingCharges = new Map<UidAccount, number>();
  private inFlightCharges = new Map<UidAccount, number>();
  /** One push is one message (Connection#send), for Debug.Stats' OutgoingMessages. */
  private pendingMessages = 0;
  private inFlightMessages = 0;
  /** The most bytes ever queued at once (PeakOutgoingBytes). */
  peakSize = 0;

  get size(): number {
    return this.pendingBytes + this.inFlightBytes;
  }

  /** Messages not yet fully taken by the kernel. */
  get messages(): number {
    return this.pendingMessages + this.inFlightMessages;
  }

  get hasPending(): boolean {
    return this.pendingBytes > 0;
  }

  /** Queues `length` bytes (the pieces' total), charged to `payer` when there is one. */
  push(pieces: Buffer | readonly Buffer[], length = totalLength(pieces), payer?: UidAccount): void {
    if (payer && length > 0) {
      payer.force('queuedBytes', length);
      this.pendingCharges.set(payer, (this.pendingCharges.get(payer) ?? 0) + length);
    }
    this.pendingMessages++;
    if (Buffer.isBuffer(pieces)) {
      this.pending.push(pieces);
      this.pendingBytes += pieces.length;
    } else {
      for (const piece of pieces) {
        this.pending.push(piece);
        this.pendingBytes += piece.length;
      }
    }
    if (this.size > this.peakSize) this.peakSize = this.size;
  }

  /** Takes everything pending as the next batch to write (one batch at a time). */
  takePending(): Buffer[] {
    const batch = this.pending;
    this.inFlight = batch;
    this.inFlightBytes = this.pendingBytes;
    this.inFlightMessages = this.pendingMessages;
    this.pending = [];
    this.pendingBytes = 0;
    // The maps swap roles, so a flush allocates nothing.
    const released = this.inFlightCharges;
    this.inFlightCharges = this.pendingCharges;
    this.pendingCharges = released;
    this.pendingMessages = 0;
    return batch;
  }

  /** The batch's write completed: the kernel has all of it. */
  written(): void {
    this.inFlight = [];
    this.inFlightBytes = 0;
    this.inFlightMessages = 0;
    releaseAll(this.inFlightCharges);
  }

  /** The connection is gone: nothing queued will be written, and nobody pays for it any more. */
  discard(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingMessages = 0;
    this.written();
    releaseAll(this.pendingCharges);
  }

  /**
   * Every byte not yet taken by the kernel, in order: the last `unsentInFlight`
   * bytes of the batch (libuv's write queue size), then what is pending.
   */
  unsent(unsentInFlight: number): Buffer {
    const parts: Buffer[] = [];
    let skip = this.inFlightBytes - Math.min(unsentInFlight, this.inFlightBytes);
    for (const b of this.inFlight) {
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
