import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAX_DOCUMENT_BYTES, type HandoffDocument } from './document.js';
import { HandoffError, readDocument, type ReadResult } from './read-document.js';

/** Where handoff documents live: a root-only directory under /run (or the user's runtime dir). */
export function handoffDirectory(uid: number, env: NodeJS.ProcessEnv): string {
  if (uid === 0) return '/run/ferrybus/handoff';
  const runtime = env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR) ? env.XDG_RUNTIME_DIR : `/tmp/ferrybus-${uid}`;
  return path.join(runtime, 'ferrybus', 'handoff');
}

/**
 * Writes the document atomically: temp file, fsync, rename; mode 0600 in a 0700 directory.
 * The name carries the pid: every bus run by one user shares the directory, and two of them
 * handing off to the same generation at once must not replace each other's document.
 */
export function writeHandoffFile(dir: string, doc: HandoffDocument): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  const file = path.join(dir, `generation-${doc.generation + 1}-pid-${doc.pid}.json`);
  const temp = `${file}.tmp`;
  const text = JSON.stringify(doc);
  // Refused here, before exec, rather than by the new image after it.
  if (text.length > MAX_DOCUMENT_BYTES) {
    throw new HandoffError('HandoffDocumentTooLarge', `the state is ${text.length} bytes, over the ${MAX_DOCUMENT_BYTES}-byte document limit`);
  }
  const fd = fs.openSync(temp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  return file;
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
 * memory, all of it a pause, before failing anyway).
 */
export function readHandoffFile(file: string, expect: { nonce?: string; pid?: number }): ReadResult {
  const fd = fs.openSync(file, 'r');
  try {
    const { size } = fs.fstatSync(fd);
    if (size > MAX_DOCUMENT_BYTES) {
      throw new HandoffError('HandoffDocumentInvalid', `document of ${size} bytes exceeds ${MAX_DOCUMENT_BYTES}`);
    }
    return readDocument(fs.readFileSync(fd, 'utf8'), expect);
  } finally {
    fs.closeSync(fd);
  }
}
