import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { closeFd } from '../sys/socket-io.js';

/**
 * Bytes queued for clients that were not reading when a handoff started: moved to a spool file
 * while the bus still served, or written into the handoff document. The new image does not read
 * them: each client's queue points into the file, and the bytes go from there to the socket
 * with sendfile(2) when the client reads again. So a handoff never copies queued bytes into
 * memory, and a later handoff passes the open file on instead of writing them again.
 *
 * One file holds the bytes of every client that was not reading: it stays open while any queue
 * still points into it (reference counted) and its space is freed when the last range is sent.
 * Nothing in it is ever overwritten or punched out: sendfile to a unix socket hands the file's
 * pages to the socket without copying them, so a page changed before the client reads it would
 * change what the client reads (seen here: a hole punched after sending zeroed the tail of a
 * message still in the socket).
 */
export class SpoolFile {
  /** The reader's reference, until it lets go after adoption. */
  private refs = 1;

  /** `fd` < 0: a file this process cannot reach (a document read from bytes, e.g. by inspect). */
  constructor(readonly fd: number) {}

  retain(): void {
    this.refs++;
  }

  release(): void {
    if (--this.refs === 0 && this.fd >= 0) closeFd(this.fd);
  }

  get open(): boolean {
    return this.refs > 0;
  }
}

/** `length` bytes at `position` of a spool file, queued for one client. */
export class SpooledBytes {
  constructor(
    readonly file: SpoolFile,
    readonly position: number,
    readonly length: number,
  ) {}

  /** The bytes from `skip` on (what is left once the kernel took `skip` of them). */
  from(skip: number): SpooledBytes {
    return skip === 0 ? this : new SpooledBytes(this.file, this.position + skip, this.length - skip);
  }

  /** Reads them into memory (a document for an image that cannot take the file, a message with fds). */
  read(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    let done = 0;
    while (done < this.length) {
      const n = fs.readSync(this.file.fd, out, done, this.length - done, this.position + done);
      if (n === 0) throw new Error(`the spool file ended at ${this.position + done}, inside queued bytes`);
      done += n;
    }
    return out;
  }
}

/** What a queue holds for a client: bytes in memory, or bytes in a spool file. */
export type QueuedPart = Buffer | SpooledBytes;

/** The parts' bytes in memory, in order (spooled ones read). */
export function readParts(parts: readonly QueuedPart[]): Buffer {
  return Buffer.concat(parts.map((p) => (p instanceof SpooledBytes ? p.read() : p)));
}

export function partsLength(parts: readonly QueuedPart[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** Appends bytes to a spool file this image writes (queues spooled as a handoff starts). */
export class SpoolWriter {
  private size = 0;

  constructor(readonly file: SpoolFile) {}

  /** Writes `pieces` at the end of the file; returns where they start. */
  append(pieces: readonly Buffer[]): number {
    const start = this.size;
    for (const piece of pieces) {
      let done = 0;
      while (done < piece.length) done += fs.writeSync(this.file.fd, piece, done, piece.length - done, this.size + done);
      this.size += piece.length;
    }
    return start;
  }

  get bytes(): number {
    return this.size;
  }
}
