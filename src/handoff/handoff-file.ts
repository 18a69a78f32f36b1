import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HandoffDocument } from './document.js';

/** Where handoff documents live: a root-only directory under /run (or the user's runtime dir). */
export function handoffDirectory(uid: number, env: NodeJS.ProcessEnv): string {
  if (uid === 0) return '/run/ferrybus/handoff';
  const runtime = env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR) ? env.XDG_RUNTIME_DIR : `/tmp/ferrybus-${uid}`;
  return path.join(runtime, 'ferrybus', 'handoff');
}

/** Writes the document atomically: temp file, fsync, rename; mode 0600 in a 0700 directory. */
export function writeHandoffFile(dir: string, doc: HandoffDocument): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  const file = path.join(dir, `generation-${doc.generation + 1}.json`);
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(doc));
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
