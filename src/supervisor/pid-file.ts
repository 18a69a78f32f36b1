import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../util/errors.js';

/**
 * Writes "PID\n" to `file` (mode 0644) through a temporary file in the same directory and a
 * rename, so a reader never sees a partial or empty file. An existing file is replaced:
 * a pid file left by a crash must not keep the bus from starting (a live bus on the same
 * address is refused by the listener anyway).
 */
export function writePidFile(file: string, pid = process.pid): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${pid}.tmp`);
  try {
    // O_EXCL: never write through a link someone planted under the temporary name.
    fs.rmSync(temp, { force: true });
    const fd = fs.openSync(temp, 'wx', 0o644);
    try {
      fs.writeSync(fd, `${pid}\n`);
      // The umask may have taken bits away: the pid file is for everyone to read.
      fs.fchmodSync(fd, 0o644);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (err) {
    try {
      fs.unlinkSync(temp);
    } catch {
      // never created
    }
    throw new FerryError('PidFileFailed', `cannot write pid file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Removes the pid file on a clean exit, if it still names this process: one that another bus
 * has written since belongs to that bus.
 */
export function removePidFile(file: string, pid = process.pid): void {
  try {
    if (fs.readFileSync(file, 'utf8').trim() === String(pid)) fs.unlinkSync(file);
  } catch {
    // gone already, or unreadable: nothing of ours to remove
  }
}
