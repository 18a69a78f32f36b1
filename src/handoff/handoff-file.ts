import { randomBytes } from '../sys/libc.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeDocument, writePieces } from './binary-document.js';
import { MAX_DOCUMENT_BYTES, type HandoffDocument } from './document.js';
import { HandoffError, readDocumentFile, type ReadResult } from './read-document.js';
import { SpoolFile } from '../transport/spooled-bytes.js';

/** Where handoff documents live: a root-only directory under /run (or the user's runtime dir). */
export function handoffDirectory(uid: number, env: NodeJS.ProcessEnv): string {
  if (uid === 0) return '/run/ferrybus/handoff';
  const runtime = env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR) ? env.XDG_RUNTIME_DIR : `/tmp/ferrybus-${uid}`;
  return path.join(runtime, 'ferrybus', 'handoff');
}

/**
 * Writes the document (format 4, or 3 or 2 for a target that reads no 4: header, JSON, binary
 * section; see document.ts) atomically: temp file, rename; mode 0600 in a 0700 directory. The
 * queued bytes go to writev as the old image holds them: never encoded, never gathered into one
 * buffer; those still in an earlier document's file stay there (formats 3, 4: `spoolFds`, the files
 * to keep open across exec).
 * The name carries the pid: every bus run by one user shares the directory, and two of them
 * handing off to the same generation at once must not replace each other's document.
 *
 * No fsync: the only reader is the next image, which reads the file moments later in the same
 * boot, through the same page cache. Durability across a crash buys nothing: a crash (of the
 * machine, or of this process before its exec) takes the process and every socket the
 * document describes with it, so a document that survived would describe nothing; and a
 * stale one is refused anyway (its nonce matches no command line). On tmpfs (/run) it is a
 * no-op; on a disk it cost up to 420 ms of pause for 16 MiB queued.
 */
export function writeHandoffFile(dir: string, doc: HandoffDocument, format?: number): { file: string; spoolFds: number[] } {
  preparePrivateDirectory(dir);
  const file = path.join(dir, `generation-${doc.generation + 1}-pid-${doc.pid}.json`);
  const temp = `${file}.tmp`;
  const encoded = encodeDocument(doc, format);
  // Refused here, before exec, rather than by the new image after it.
  if (encoded.size > MAX_DOCUMENT_BYTES) {
    throw new HandoffError('HandoffDocumentTooLarge', `the state is ${encoded.size} bytes, over the ${MAX_DOCUMENT_BYTES}-byte document limit`);
  }
  const fd = fs.openSync(temp, 'w', 0o600);
  try {
    writePieces(fd, encoded.pieces);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  return { file, spoolFds: encoded.spoolFds };
}

/**
 * A file without a name in the handoff directory (created 0600, unlinked at once) that the
 * queues of clients that are not reading are spooled into as a handoff starts. It is checked
 * as the document is: it holds the same bytes.
 */
export function createSpoolFile(dir: string): SpoolFile {
  preparePrivateDirectory(dir);
  const name = path.join(dir, `spool-pid-${process.pid}-${randomBytes(6).toString('hex')}`);
  const { O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  fs.unlinkSync(name);
  return new SpoolFile(fd);
}

function preparePrivateDirectory(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  checkPrivateDirectory(dir);
  fs.chmodSync(dir, 0o700);
}

/**
 * The document holds every client's queued bytes: a directory someone else owns, or a symlink
 * put in its place, would let them read it or plant one. Refused before anything is written.
 */
function checkPrivateDirectory(dir: string): void {
  const st = fs.lstatSync(dir);
  const uid = process.getuid!();
  if (!st.isDirectory()) {
    throw new HandoffError('HandoffDirectoryUnsafe', `${dir} is not a directory (a symlink?); refusing to write the handoff document there`);
  }
  if (st.uid !== uid) {
    throw new HandoffError('HandoffDirectoryUnsafe', `${dir} belongs to uid ${st.uid}, not to the bus's uid ${uid}; refusing to write the handoff document there`);
  }
  // Whoever may rename entries in a parent could swap the directory for their own (StrictModes).
  for (let parent = path.dirname(path.resolve(dir)); ; parent = path.dirname(parent)) {
    const p = fs.statSync(parent);
    const othersMayRename = (p.mode & 0o022) !== 0 && (p.mode & 0o1000) === 0 // sticky (/tmp): only owners rename;
    if ((p.uid !== uid && p.uid !== 0) || othersMayRename) {
      throw new HandoffError('HandoffDirectoryUnsafe', `${parent} (above ${dir}) can be changed by another user (owner uid ${p.uid}, mode ${(p.mode & 0o7777).toString(8)}); refusing to write the handoff document under it`);
    }
    if (parent === path.dirname(parent)) break;
  }
}

/** A document the new image trusts must be the bus's own: its uid's, readable by nobody else. */
function checkPrivateFile(file: string, st: fs.Stats): void {
  const uid = process.getuid!();
  if (!st.isFile()) throw new HandoffError('HandoffDocumentInvalid', `${file} is not a regular file`);
  if (st.uid !== uid) throw new HandoffError('HandoffDocumentInvalid', `${file} belongs to uid ${st.uid}, not to the bus's uid ${uid}`);
  if ((st.mode & 0o077) !== 0) {
    throw new HandoffError('HandoffDocumentInvalid', `${file} is accessible to other users (mode ${(st.mode & 0o777).toString(8)}); a document is written 0600`);
  }
}

export function removeHandoffFile(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // already gone
  }
}

/**
 * Reads and checks a document file. Its size is checked before a byte is read: a giant file
 * is refused at once, not loaded (reading a 1 GiB file took this machine 15 s and 1 GiB of
 * memory, all of it a pause, before failing anyway). The file stays open while queued bytes in
 * it wait to be sent (`spools`: the caller lets go of them once the connections hold theirs).
 */
export function readHandoffFile(file: string, expect: { nonce?: string; pid?: number }): ReadResult {
  const spool = new SpoolFile(fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW));
  try {
    const st = fs.fstatSync(spool.fd);
    checkPrivateFile(file, st);
    return readDocumentFile(spool, st.size, expect);
  } catch (err) {
    spool.release();
    throw err;
  }
}
