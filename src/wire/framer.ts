import { Buffer } from 'node:buffer';
import { WireError } from '../util/errors.js';
import { FIXED_HEADER_SIZE, MAX_MESSAGE_SIZE, messageSize } from './message.js';

/**
 * A message at least this large that is only partly here gets a buffer of its own, and the
 * rest of its bytes are received straight into it (`room`). 4 KiB and up: such a Buffer's
 * memory is off the V8 heap, so the kernel can be given its address.
 */
export const OWN_BUFFER_SIZE = 4096;

/** Sizes of the complete messages found in one read (reused: single-threaded). */
const sizes: number[] = [];

/**
 * Incremental framing: bytes in, complete messages out. A message is handed out
 * only when all of its announced bytes have arrived, and its size is checked
 * against the limits from the fixed header before any body is buffered.
 *
 * Stable chunks (push) are kept as a list and only joined when a message straddles
 * them. Transient bytes (pushCopy: the shared receive buffer) are copied once: the
 * complete messages in one piece, a large unfinished one into its own buffer, which
 * the rest of it is then received into directly.
 */
export class Framer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Total size of the message at the head, once its fixed header was read. */
  private nextSize = -1;
  /** The head message's own buffer (a large one, partly here), and how much of it is filled. */
  private own: Buffer | undefined;
  private ownFilled = 0;

  /** Set when bad framing followed complete messages in the same chunk; thrown on the next call. */
  private failure: unknown;

  /** `maxMessageSize`: the config's max_message_size (never above the protocol's 128 MiB). */
  constructor(private readonly maxMessageSize = MAX_MESSAGE_SIZE) {}

  /**
   * Appends bytes the framer may keep; returns the complete messages they finish. Throws
   * WireError on bad framing — unless complete messages came first in this chunk: those are
   * returned, and the error is thrown by the next push() or throwIfFailed().
   */
  push(chunk: Buffer): Buffer[] {
    this.throwIfFailed();
    const out: Buffer[] = [];
    if (this.own) chunk = chunk.subarray(this.fillOwn(chunk, out));
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    this.frame(out);
    return out;
  }

  /**
   * As push(), for bytes that are only valid during the call (the first `length` bytes of the
   * shared receive buffer): what the framer keeps is copied — once.
   */
  pushCopy(view: Buffer, length = view.length): Buffer[] {
    this.throwIfFailed();
    if (!this.own && this.chunks.length === 0) return this.copyComplete(view, length, undefined);
    view = view.subarray(0, length);
    const out: Buffer[] = [];
    if (this.own) view = view.subarray(this.fillOwn(view, out));
    if (view.length === 0) return out;
    if (this.own || this.chunks.length > 0) {
      // A small message straddles reads: join as before.
      for (const m of this.push(Buffer.from(view))) out.push(m);
      return out;
    }
    return this.copyComplete(view, view.length, out);
  }

  /**
   * pushCopy with nothing buffered before `view`. The common read — one whole message — costs
   * one copy and a one-element array: a message is read once per routing, so every object
   * made here is made per message.
   */
  private copyComplete(view: Buffer, length: number, out: Buffer[] | undefined): Buffer[] {
    // Find the end of the last complete message, copy them in one piece, slice them out.
    let end = 0;
    let size = -1;
    let count = 0;
    let failure: unknown;
    try {
      while (length - end >= FIXED_HEADER_SIZE) {
        size = this.sizeAt(view, end);
        if (end + size > length) break;
        sizes[count++] = size;
        end += size;
        size = -1;
      }
    } catch (err) {
      failure = err;
    }
    if (end > 0) {
      const whole = Buffer.allocUnsafe(end);
      view.copy(whole, 0, 0, end);
      if (count === 1 && out === undefined) {
        out = [whole];
      } else {
        out ??= [];
        for (let i = 0, at = 0; i < count; i++) {
          out.push(whole.subarray(at, at + sizes[i]!));
          at += sizes[i]!;
        }
      }
    }
    out ??= [];
    if (failure !== undefined) {
      if (out.length === 0) throw failure;
      this.failure = failure;
      return out;
    }
    if (end === length) return out;
    const tail = view.subarray(end, length);
    this.buffered = tail.length;
    this.nextSize = size;
    if (size >= OWN_BUFFER_SIZE) {
      this.own = Buffer.allocUnsafeSlow(size);
      this.ownFilled = tail.copy(this.own);
    } else {
      this.chunks.push(Buffer.from(tail));
    }
    return out;
  }

  /** Where the rest of a large message can be received directly; undefined when none is due. */
  get room(): Buffer | undefined {
    return this.own?.subarray(this.ownFilled);
  }

  /**
   * `n` bytes were received into `room`. Returns the message when they finish it (a framer
   * with an own buffer holds nothing else, so nothing else can be complete).
   */
  filled(n: number): Buffer | undefined {
    this.ownFilled += n;
    this.buffered += n;
    const own = this.own!;
    if (this.ownFilled < own.length) return undefined;
    this.own = undefined;
    this.ownFilled = 0;
    this.nextSize = -1;
    this.buffered -= own.length;
    return own;
  }

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Bytes received that do not yet form a complete message (a handoff carries them over). */
  pending(): Buffer {
    if (this.own) return this.own.subarray(0, this.ownFilled);
    if (this.chunks.length === 0) return Buffer.alloc(0);
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
  }

  get pendingLength(): number {
    return this.buffered;
  }

  /** Copies the start of `bytes` into the own buffer; returns how many it took. */
  private fillOwn(bytes: Buffer, out: Buffer[]): number {
    const room = this.own!.length - this.ownFilled;
    const n = bytes.copy(this.own!, this.ownFilled, 0, Math.min(room, bytes.length));
    const done = this.filled(n);
    if (done) out.push(done);
    return n;
  }

  private frame(out: Buffer[]): void {
    try {
      while (!this.own) {
        if (this.nextSize < 0) {
          if (this.buffered < FIXED_HEADER_SIZE) break;
          this.nextSize = this.sizeAt(this.peek(FIXED_HEADER_SIZE), 0);
        }
        if (this.buffered < this.nextSize) {
          if (this.nextSize >= OWN_BUFFER_SIZE) this.moveToOwn();
          break;
        }
        out.push(this.take(this.nextSize));
        this.nextSize = -1;
      }
    } catch (err) {
      if (out.length === 0) throw err;
      this.failure = err;
    }
  }

  /** The total size the fixed header at `at` announces, checked against max_message_size. */
  private sizeAt(bytes: Buffer, at: number): number {
    const size = messageSize(bytes, at);
    if (size > this.maxMessageSize) {
      throw new WireError('InvalidMessage', `a message of ${size} bytes exceeds max_message_size (${this.maxMessageSize})`);
    }
    return size;
  }

  /** The buffered start of a large message goes into its own buffer, which the rest then fills. */
  private moveToOwn(): void {
    const own = Buffer.allocUnsafeSlow(this.nextSize);
    let filled = 0;
    for (const chunk of this.chunks) filled += chunk.copy(own, filled);
    this.chunks = [];
    this.own = own;
    this.ownFilled = filled;
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
