import { Buffer } from 'node:buffer';
import type { UidAccount } from '../bus/uid-accounts.js';
import type { UnixFds } from '../bus/unix-fds.js';
import { readParts, SpooledBytes, type QueuedPart, type SpoolWriter } from './spooled-bytes.js';

/**
 * Messages accepted for one connection and not yet taken by the kernel, in order.
 *
 * Pieces are kept as given (a large body is a view of the received bytes) and handed to a
 * Gather, as much as one sendmsg takes: small ones are copied, large ones sent in place. What the kernel took is known to the byte, so
 * a handoff stores exactly the rest without waiting for a slow reader.
 *
 * A message's fds travel with its first byte: a send never starts in the middle of a batch
 * with a message that has fds, so a receiver never gets fds attached to the wrong message.
 *
 * Each message's bytes are charged to a uid's account (src/bus/uid-accounts.ts) from push until
 * the kernel has all of them, or until the connection is gone; its fds are held (UnixFds), and
 * charged to the same uid, until its first byte is sent.
 *
 * Bytes a handoff left in a file (SpooledBytes) are an entry of their own, sent with sendfile
 * rather than gathered: fill() stops before one, and spooledHead() tells when one is next.
 */
interface Entry {
  pieces: Buffer | readonly Buffer[] | SpooledBytes;
  length: number;
  payer: UidAccount | undefined;
  /** Still to send with the first byte; undefined once sent (or for a message without fds). */
  fds: UnixFds | undefined;
}

/** Unsent bytes for a handoff, and where in them each message with fds starts. */
export interface UnsentOutbound {
  bytes: Buffer;
  fds: Array<{ at: number; fds: readonly number[] }>;
}

/** Where fill() puts the next bytes to send (socket-io's SendGather: copied or sent in place). */
export interface Gather {
  /** Takes bytes of `piece` from `from` on; returns how many it took (fewer once full). */
  add(piece: Buffer, from: number): number;
}

/** A Gather that copies into one buffer (tests, and anything that wants the bytes contiguous). */
export class CopyGather implements Gather {
  length = 0;
  constructor(readonly target: Buffer) {}
  add(piece: Buffer, from: number): number {
    const n = piece.copy(this.target, this.length, from);
    this.length += n;
    return n;
  }
}

function totalLength(pieces: Buffer | readonly Buffer[] | SpooledBytes): number {
  if (Buffer.isBuffer(pieces) || pieces instanceof SpooledBytes) return pieces.length;
  let n = 0;
  for (const p of pieces) n += p.length;
  return n;
}

export class OutboundQueue {
  /**
   * entries[head, end) are queued. Slots past `end` are reused: a queue that empties after every
   * message (a round trip) would otherwise grow a fresh array per message.
   */
  private entries: Entry[] = [];
  private end = 0;
  /** Index of the first entry not fully sent. */
  private head = 0;
  /** Bytes of entries[head] already sent. */
  private offset = 0;
  private bytes = 0;
  private heldFds = 0;
  /** Entries in a spool file (non-zero only after a handoff, until they are sent). */
  private spooled = 0;
  /** The most bytes ever queued at once (PeakOutgoingBytes). */
  peakSize = 0;
  /** The most fds ever held at once (PeakOutgoingFDs). */
  peakFds = 0;

  get size(): number {
    return this.bytes;
  }

  /** Messages not yet fully taken by the kernel (Debug.Stats' OutgoingMessages). */
  get messages(): number {
    return this.end - this.head;
  }

  /** Fds held for messages whose first byte is not sent yet. */
  get fdCount(): number {
    return this.heldFds;
  }

  get hasPending(): boolean {
    return this.bytes > 0;
  }

  /** Queues one message (`length` = the pieces' total), charged to `payer`; takes a reference on `fds`. */
  push(pieces: Buffer | readonly Buffer[] | SpooledBytes, length = totalLength(pieces), payer?: UidAccount, fds?: UnixFds): void {
    if (length === 0) return;
    if (pieces instanceof SpooledBytes) {
      pieces.file.retain();
      this.spooled++;
    }
    if (payer) payer.force('queuedBytes', length);
    if (fds) {
      payer?.force('fds', fds.count);
      fds.retain();
      this.heldFds += fds.count;
      if (this.heldFds > this.peakFds) this.peakFds = this.heldFds;
    }
    this.entries[this.end++] = { pieces, length, payer, fds };
    this.bytes += length;
    if (this.bytes > this.peakSize) this.peakSize = this.bytes;
  }

  /**
   * Hands the next bytes to send to `gather` and names the fds that must go with them: those
   * of the first message when its first byte is among them. Stops before any later message
   * with fds, which starts a send of its own. A Buffer target is filled by copying.
   */
  fill(target: Gather | Buffer): { length: number; fds: readonly number[] | undefined } {
    const gather = Buffer.isBuffer(target) ? new CopyGather(target) : target;
    let length = 0;
    let fds: readonly number[] | undefined;
    for (let i = this.head; i < this.end; i++) {
      const entry = this.entries[i]!;
      if (entry.fds) {
        if (i !== this.head) break;
        fds = entry.fds.fds;
      }
      let skip = i === this.head ? this.offset : 0;
      const pieces = entry.pieces;
      if (pieces instanceof SpooledBytes) break; // sent with sendfile (spooledHead)
      if (Buffer.isBuffer(pieces)) {
        const taken = gather.add(pieces, skip);
        length += taken;
        if (taken < pieces.length - skip) return { length, fds };
        continue;
      }
      for (const piece of pieces) {
        if (skip >= piece.length) {
          skip -= piece.length;
          continue;
        }
        const taken = gather.add(piece, skip);
        length += taken;
        if (taken < piece.length - skip) return { length, fds };
        skip = 0;
      }
    }
    return { length, fds };
  }

  /**
   * Moves every message still queued in memory, fds excepted, into the spool file `writer`
   * appends to: from now on they are sent from there (sendfile), and a handoff passes the file
   * on instead of writing them again. Returns the bytes moved. A message partly sent moves
   * whole (its sent part too), so where the queue stands in it stays the same.
   */
  spoolTo(writer: SpoolWriter): number {
    let moved = 0;
    for (let i = this.head; i < this.end; i++) {
      const entry = this.entries[i]!;
      if (entry.fds || entry.pieces instanceof SpooledBytes) continue;
      const position = writer.append(Buffer.isBuffer(entry.pieces) ? [entry.pieces] : entry.pieces);
      entry.pieces = new SpooledBytes(writer.file, position, entry.length);
      writer.file.retain();
      this.spooled++;
      moved += entry.length - (i === this.head ? this.offset : 0);
    }
    return moved;
  }

  /** The unsent bytes of the first entry when it lies in a spool file (to send with sendfile), else undefined. */
  spooledHead(): SpooledBytes | undefined {
    if (this.spooled === 0 || this.head >= this.end) return undefined;
    const pieces = this.entries[this.head]!.pieces;
    return pieces instanceof SpooledBytes ? pieces.from(this.offset) : undefined;
  }

  /** The kernel took the first `n` bytes of the last fill() (or of spooledHead()). */
  consume(n: number): void {
    while (n > 0 && this.head < this.end) {
      const entry = this.entries[this.head]!;
      if (entry.fds) this.releaseFds(entry); // they went with the first byte
      const rest = entry.length - this.offset;
      // Charges follow the bytes the kernel took, so a uid's account always equals its queues.
      if (n < rest) {
        this.offset += n;
        this.bytes -= n;
        entry.payer?.release('queuedBytes', n);
        return;
      }
      n -= rest;
      this.bytes -= rest;
      entry.payer?.release('queuedBytes', rest);
      if (this.spooled > 0 && entry.pieces instanceof SpooledBytes) this.dropSpooled(entry.pieces);
      this.entries[this.head++] = undefined as unknown as Entry;
      this.offset = 0;
    }
    this.compact();
  }

  /** The connection is gone: nothing queued will be written, nobody pays for it, its fds close. */
  discard(): void {
    for (let i = this.head; i < this.end; i++) {
      const entry = this.entries[i]!;
      entry.payer?.release('queuedBytes', entry.length - (i === this.head ? this.offset : 0));
      if (entry.fds) this.releaseFds(entry);
      if (entry.pieces instanceof SpooledBytes) this.dropSpooled(entry.pieces);
    }
    this.entries = [];
    this.head = this.end = 0;
    this.offset = 0;
    this.bytes = 0;
  }

  /** Every byte not yet taken by the kernel, in order (spooled ones read), and the fds still to go with them. */
  unsent(): UnsentOutbound {
    const { parts, fds } = this.unsentParts();
    return { bytes: readParts(parts), fds };
  }

  /**
   * unsent(), the bytes left in the pieces they are queued as (views, no copy: a handoff writes
   * them as they are, and passes spooled ones on as ranges of their file).
   */
  unsentParts(): { parts: QueuedPart[]; length: number; fds: UnsentOutbound['fds'] } {
    const parts: QueuedPart[] = [];
    const fds: UnsentOutbound['fds'] = [];
    let at = 0;
    for (let i = this.head; i < this.end; i++) {
      const entry = this.entries[i]!;
      if (entry.fds) fds.push({ at, fds: entry.fds.fds });
      let skip = i === this.head ? this.offset : 0;
      if (entry.pieces instanceof SpooledBytes) {
        const rest = entry.pieces.from(skip);
        parts.push(rest);
        at += rest.length;
        continue;
      }
      for (const piece of Buffer.isBuffer(entry.pieces) ? [entry.pieces] : entry.pieces) {
        if (skip >= piece.length) {
          skip -= piece.length;
          continue;
        }
        const part = skip > 0 ? piece.subarray(skip) : piece;
        skip = 0;
        parts.push(part);
        at += part.length;
      }
    }
    return { parts, length: at, fds };
  }

  /** Sent or dropped: the file closes with its last range. */
  private dropSpooled(bytes: SpooledBytes): void {
    this.spooled--;
    bytes.file.release();
  }

  private releaseFds(entry: Entry): void {
    this.heldFds -= entry.fds!.count;
    entry.payer?.release('fds', entry.fds!.count);
    entry.fds!.release();
    entry.fds = undefined;
  }

  private compact(): void {
    if (this.head === this.end) {
      // Emptied: a small array is kept for the next messages, a large one (a burst) let go.
      if (this.entries.length > 64) this.entries = [];
      this.head = this.end = 0;
    } else if (this.head > 1024 && this.head * 2 > this.end) {
      this.entries = this.entries.slice(this.head, this.end);
      this.end -= this.head;
      this.head = 0;
    }
  }
}
