import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { SpooledBytes, SpoolFile, type QueuedPart } from '../transport/spooled-bytes.js';
import {
  CONNECTION_UNIX_FDS,
  DOCUMENT_HEADER_BYTES,
  DOCUMENT_MAGIC,
  HANDOFF_FORMAT,
  HANDOFF_FORMAT_BINARY,
  HANDOFF_FORMAT_SPOOLED,
  type ByteRange,
  type ConnectionDoc,
  type HandoffDocument,
} from './document.js';

/**
 * The format-2, -3 and -4 file (see document.ts): header, JSON, binary section. Bytes are
 * never encoded: the writer hands the old image's own buffers to writev, the reader takes each
 * range out of the section as it is. Formats 3 and 4 pass spooled bytes on as ranges of their
 * file; format 4 writes the connections as a table.
 */

/** The pieces of a document file, in order, to be written as they are (no concatenation). */
export interface EncodedDocument {
  pieces: Buffer[];
  size: number;
  /** The JSON part's length (what a limit on parsing cares about). */
  jsonBytes: number;
  /** Format 3: the spool files the document points into, to keep open across exec. */
  spoolFds: number[];
}

/**
 * `doc`: as read, or as snapshot() takes it (outbound bytes in parts). `format`: 4, or 3 or 2
 * for a target that reads no 4 (format 2: spooled bytes are read back into the section).
 */
export function encodeDocument(doc: HandoffDocument, format: number = HANDOFF_FORMAT): EncodedDocument {
  if (format !== HANDOFF_FORMAT && format !== HANDOFF_FORMAT_SPOOLED && format !== HANDOFF_FORMAT_BINARY) {
    throw new Error(`cannot write handoff format ${format}`);
  }
  const section: Buffer[] = [];
  let offset = 0;
  const put = (bytes: Buffer | readonly Buffer[]): ByteRange => {
    const start = offset;
    for (const piece of Buffer.isBuffer(bytes) ? [bytes] : bytes) {
      if (piece.length === 0) continue;
      section.push(piece);
      offset += piece.length;
    }
    return { offset: start, length: offset - start };
  };
  const files = new Map<SpoolFile, number>();
  /** Outbound parts: runs in memory go to the section, spooled ones stay where they are (format 3). */
  const putOutbound = (parts: readonly QueuedPart[]): ByteRange | ByteRange[] => {
    if (format === HANDOFF_FORMAT_BINARY) return put(parts.map((p) => (p instanceof SpooledBytes ? p.read() : p)));
    const ranges: ByteRange[] = [];
    let run: Buffer[] = [];
    const endRun = () => {
      if (run.length > 0) ranges.push(put(run));
      run = [];
    };
    for (const part of parts) {
      if (!(part instanceof SpooledBytes)) {
        run.push(part);
        continue;
      }
      endRun();
      let file = files.get(part.file);
      if (file === undefined) files.set(part.file, (file = files.size));
      // Messages spooled one after another are one range (a slow reader's thousand signals).
      const last = ranges[ranges.length - 1];
      if (last && last.file === file && last.offset + last.length === part.position) last.length += part.length;
      else ranges.push({ file, offset: part.position, length: part.length });
    }
    endRun();
    return ranges.length === 1 && ranges[0]!.file === undefined ? ranges[0]! : ranges.length === 0 ? put([]) : ranges;
  };
  const { connections: records, ...rest } = doc;
  const onDisk = {
    ...rest,
    format,
    ...(format === HANDOFF_FORMAT
      ? connectionTable(records, put, putOutbound)
      : { connections: records.map((c) => ({ ...c, inbound: put(c.inbound), outbound: putOutbound(c.outbound) })) }),
    ...(files.size > 0 ? { files: [...files.keys()].map((f) => ({ fd: f.fd })) } : {}),
    ...(doc.activation
      ? {
          activation: {
            ...doc.activation,
            pending: doc.activation.pending.map((p) => ({ ...p, held: p.held.map((h) => ({ ...h, message: put(h.message) })) })),
          },
        }
      : {}),
  };
  const json = Buffer.from(JSON.stringify(onDisk), 'utf8');
  const header = Buffer.alloc(DOCUMENT_HEADER_BYTES);
  DOCUMENT_MAGIC.copy(header, 0);
  header.writeUInt32LE(format, 8);
  header.writeUInt32LE(json.length, 12);
  header.writeBigUInt64LE(BigInt(offset), 16);
  return {
    pieces: [header, json, ...section],
    size: header.length + json.length + offset,
    jsonBytes: json.length,
    spoolFds: [...files.keys()].map((f) => f.fd),
  };
}

/** ":1.N" as N (a row's unique name), or undefined for a name a row cannot hold. */
function uniqueNumber(name: string): number | undefined {
  const n = name.startsWith(':1.') ? Number(name.slice(3)) : NaN;
  return Number.isSafeInteger(n) && n > 0 && name === `:1.${n}` ? n : undefined;
}

/**
 * Format 4's connections: a row of CONNECTION_ROW integers each, and details for those that
 * have more to carry. An idle connection costs the writer no object at all.
 */
function connectionTable(
  records: readonly ConnectionDoc[],
  put: (bytes: Buffer) => ByteRange,
  putOutbound: (parts: ConnectionDoc['outbound']) => ByteRange | ByteRange[],
): { connectionTable: number[]; connectionDetails: Array<Record<string, unknown>> } {
  const table: number[] = [];
  const details: Array<Record<string, unknown>> = [];
  // The row being written, and its details once it has any: made on the first field to carry.
  let row = 0;
  let detail: Record<string, unknown> | undefined;
  const add = (key: string, value: unknown): void => {
    (detail ??= { at: row })[key] = value;
  };
  records.forEach((c, at) => {
    row = at;
    detail = undefined;
    const unique = c.uniqueName === undefined ? 0 : uniqueNumber(c.uniqueName);
    const { pid, uid, gid, groups, securityLabel } = c.credentials;
    table.push(c.fd, c.peerId, pid, uid, gid, unique ?? 0, c.unixFds ? CONNECTION_UNIX_FDS : 0);
    if (unique === undefined) add('uniqueName', c.uniqueName);
    if (groups !== undefined) add('groups', groups);
    if (securityLabel !== undefined) add('securityLabel', securityLabel);
    if (c.sasl) add('sasl', c.sasl);
    if (c.inbound.length > 0) add('inbound', put(c.inbound));
    if (c.inboundFds) add('inboundFds', c.inboundFds);
    if (c.outbound.length > 0) add('outbound', putOutbound(c.outbound));
    if (c.outboundFds) add('outboundFds', c.outboundFds);
    if (c.matches.length > 0) add('matches', c.matches);
    if (c.monitorRules) add('monitorRules', c.monitorRules);
    if (detail) details.push(detail);
  });
  return { connectionTable: table, connectionDetails: details };
}

/** Writes every piece at the file's start, in order, whatever writev takes per call. */
export function writePieces(fd: number, pieces: readonly Buffer[]): void {
  // writev takes at most IOV_MAX (1024) buffers and may write fewer bytes than asked.
  const BATCH = 1024;
  let position = 0;
  let i = 0;
  let skip = 0; // bytes of pieces[i] already written
  while (i < pieces.length) {
    const batch: Buffer[] = [];
    for (let k = i; k < pieces.length && batch.length < BATCH; k++) {
      const p = k === i ? pieces[k]!.subarray(skip) : pieces[k]!;
      if (p.length > 0) batch.push(p);
    }
    if (batch.length === 0) break;
    let written = fs.writevSync(fd, batch, position);
    position += written;
    while (i < pieces.length && written >= pieces[i]!.length - skip) {
      written -= pieces[i]!.length - skip;
      skip = 0;
      i++;
    }
    skip += written;
  }
}

/** Where the bytes of a format-2 or -3 document are: a Buffer read whole, or the file itself. */
export interface ByteSection {
  readonly length: number;
  /** The bytes of a range already checked to lie inside the section. */
  bytes(range: ByteRange): Buffer;
  /** Queued outbound bytes of such a range: left in the file when the section is one. */
  queued(range: ByteRange): QueuedPart;
}

/** Ranges are views into `section`: no copy. */
export function bufferSection(section: Buffer): ByteSection {
  const bytes = (r: ByteRange) => section.subarray(r.offset, r.offset + r.length);
  return { length: section.length, bytes, queued: bytes };
}

/**
 * Ranges are read from the file, each into a Buffer of its own: one copy (page cache to
 * memory), as many as reading the file whole, but a slow client's leftover queue never keeps
 * every other client's bytes in memory with it, as views into one file-sized Buffer would.
 * Queued outbound bytes are not read at all: they are sent from the file (SpooledBytes).
 */
export function fileSection(file: SpoolFile, start: number, length: number): ByteSection {
  const fd = file.fd;
  return {
    length,
    queued: (r) => new SpooledBytes(file, start + r.offset, r.length),
    bytes(r) {
      const out = Buffer.allocUnsafe(r.length);
      let done = 0;
      while (done < r.length) {
        const n = fs.readSync(fd, out, done, r.length - done, start + r.offset + done);
        if (n === 0) throw new Error(`the file ended inside its binary section (at ${start + r.offset + done})`);
        done += n;
      }
      return out;
    },
  };
}

export interface ContainerHeader {
  format: number;
  jsonBytes: number;
  sectionBytes: number;
}

/** Does `head` (a file's first bytes) start like a format-2 file? Else it is JSON text (format 1). */
export const looksBinary = (head: Buffer): boolean => head.length > 0 && head[0] === DOCUMENT_MAGIC[0];

/** The header of a format-2 file, or why it is not one (the caller throws its own error). */
export function readHeader(head: Buffer, fileBytes: number): ContainerHeader | string {
  if (head.length < DOCUMENT_HEADER_BYTES) return `truncated: ${fileBytes} bytes, shorter than the ${DOCUMENT_HEADER_BYTES}-byte header`;
  if (!head.subarray(0, DOCUMENT_MAGIC.length).equals(DOCUMENT_MAGIC)) return 'bad magic: not a ferrybus handoff document';
  const sectionBytes = head.readBigUInt64LE(16);
  return {
    format: head.readUInt32LE(8),
    jsonBytes: head.readUInt32LE(12),
    sectionBytes: sectionBytes > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(sectionBytes),
  };
}

/** Why the file's size is not the one its header announces, or undefined when it is. */
export function sizeProblem(h: ContainerHeader, fileBytes: number): string | undefined {
  const expected = DOCUMENT_HEADER_BYTES + h.jsonBytes + h.sectionBytes;
  if (expected > fileBytes) {
    return `truncated: the header announces ${expected} bytes (${h.jsonBytes} of JSON, ${h.sectionBytes} of binary section), the file has ${fileBytes}`;
  }
  if (expected < fileBytes) return `${fileBytes - expected} bytes after the end the header announces (${expected})`;
  return undefined;
}
