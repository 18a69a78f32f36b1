import { WireError } from '../util/errors.js';
import { FIXED_HEADER_SIZE, MAX_MESSAGE_SIZE, readFixedHeader } from './message.js';

/**
 * Incremental framing: bytes in, complete messages out. A message is handed out
 * only when all of its announced bytes have arrived, and its size is checked
 * against the limits from the fixed header before any body is buffered.
 *
 * Chunks are kept as a list and only joined when a message straddles them, so a
 * chunk holding whole messages is sliced without copying.
 */
export class Framer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Total size of the message at the head, once its fixed header was read. */
  private nextSize = -1;

  /** Set when bad framing followed complete messages in the same chunk; thrown on the next call. */
  private failure: unknown;

  /** `maxMessageSize`: the config's max_message_size (never above the protocol's 128 MiB). */
  constructor(private readonly maxMessageSize = MAX_MESSAGE_SIZE) {}

  /**
   * Appends bytes; returns the complete messages they finish. Throws WireError on bad
   * framing — unless complete messages came first in this chunk: those are returned,
   * and the error is thrown by the next push() or throwIfFailed().
   */
  push(chunk: Buffer): Buffer[] {
    this.throwIfFailed();
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Buffer[] = [];
    try {
      for (;;) {
        if (this.nextSize < 0) {
          if (this.buffered < FIXED_HEADER_SIZE) break;
          const head = this.peek(FIXED_HEADER_SIZE);
          this.nextSize = readFixedHeader(head).totalSize;
          if (this.nextSize > this.maxMessageSize) {
            throw new WireError('InvalidMessage', `a message of ${this.nextSize} bytes exceeds max_message_size (${this.maxMessageSize})`);
          }
        }
        if (this.buffered < this.nextSize) break;
        out.push(this.take(this.nextSize));
        this.nextSize = -1;
      }
    } catch (err) {
      if (out.length === 0) throw err;
      this.failure = err;
    }
    return out;
  }

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Bytes received that do not yet form a complete message (a handoff carries them over). */
  pending(): Buffer {
    if (this.chunks.length === 0) return Buffer.alloc(0);
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
  }

  get pendingLength(): number {
    return this.buffered;
  }

  /** The first n buffered bytes, contiguous (joined only when they straddle chunks). */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return this.gather(n, false);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length < n) return this.gather(n, true);
    const msg = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return msg;
  }

  /** Copies exactly n bytes from the front chunks into one buffer; bytes after them stay views. */
  private gather(n: number, consume: boolean): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let i = 0;
    while (filled < n) {
      const chunk = this.chunks[i]!;
      const part = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, part);
      filled += part;
      if (part < chunk.length) {
        if (consume) this.chunks[i] = chunk.subarray(part);
        break;
      }
      i++;
    }
    if (consume) {
      this.chunks.splice(0, i);
      this.buffered -= n;
    }
    return out;
  }
}
