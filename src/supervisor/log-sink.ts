import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';

/** Errors that mean nobody reads stderr any more (journald stopped at shutdown). */
const GONE = new Set(['EPIPE', 'EBADF', 'ECONNRESET', 'ENOTCONN', 'ECONNREFUSED']);

/**
 * Writes each log line synchronously to stderr (journald's stream under systemd),
 * so no line is left in a buffer when the process execs into its next generation.
 * When stderr stops being read (journald is gone late in shutdown), lines go to
 * /dev/kmsg, which keeps the syslog priority prefix.
 *
 * Plain code with no dependency: the logger writes through it before winston is loaded,
 * and winston's transport (log-transport.ts) writes through the same one afterwards.
 */
export class StderrOrKmsg {
  private kmsgFd: number | undefined;
  private toKmsg = false;

  /** `line` ends with a newline. */
  write(line: string): void {
    if (!this.toKmsg) {
      try {
        writeFully(2, line);
      } catch (err) {
        if (GONE.has((err as NodeJS.ErrnoException).code ?? '')) this.toKmsg = true;
      }
    }
    if (this.toKmsg) this.writeKmsg(line);
  }

  private writeKmsg(line: string): void {
    try {
      this.kmsgFd ??= fs.openSync('/dev/kmsg', 'w');
      // The kernel log takes one record per write, at most ~1 KiB.
      fs.writeSync(this.kmsgFd, line.length > 1000 ? `${line.slice(0, 996)}…\n` : line);
    } catch {
      // No kernel log either: nothing left to tell.
    }
  }
}

function writeFully(fd: number, text: string): void {
  let buf = Buffer.from(text);
  for (let attempts = 0; buf.length > 0; attempts++) {
    try {
      buf = buf.subarray(fs.writeSync(fd, buf));
    } catch (err) {
      // A non-blocking stderr that is momentarily full: retry briefly, then drop the line.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempts > 1000) throw err;
    }
  }
}
