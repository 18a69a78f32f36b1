import * as fs from 'node:fs';
import { truncate } from './table.js';

/**
 * What the CLI itself reads from /proc about a process the daemon named by pid. The daemon
 * reports pids as the kernel gave them to it (SO_PEERCRED); /proc is read here, in the CLI's
 * own root and pid namespace, which is what the operator means by "that process".
 */

export interface ProcessCommand {
  /** argv joined by spaces (/proc/PID/cmdline), else the short name (/proc/PID/comm); null when unreadable. */
  command: string | null;
  /** The kernel's short name (/proc/PID/comm), null when unreadable. */
  comm: string | null;
  /** For a table cell: the command line with the program (and an interpreter's script) as a base name. */
  short: string | null;
}

const INTERPRETERS = /^(node|nodejs|python[0-9.]*|perl|ruby|sh|bash|dash|busybox)$/;

/** `/usr/bin/node /opt/x/bin/tool.js run` → `node tool.js run`: what a person recognizes in a table. */
export function shortCommand(argv: readonly string[]): string {
  const out = [...argv];
  const base = (p: string) => p.slice(p.lastIndexOf('/') + 1) || p;
  out[0] = base(out[0]!);
  if (INTERPRETERS.test(out[0]) && out[1]?.startsWith('/')) out[1] = base(out[1]);
  return out.join(' ');
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

export function processCommand(pid: number): ProcessCommand {
  if (!Number.isInteger(pid) || pid <= 0) return { command: null, comm: null, short: null };
  const comm = readText(`/proc/${pid}/comm`)?.trim() || null;
  const raw = readText(`/proc/${pid}/cmdline`);
  const argv = raw ? raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1) : [];
  // Kernel threads and zombies have an empty cmdline: their comm is all there is.
  const command = argv.length > 0 ? argv.join(' ') : comm;
  return { command, comm, short: argv.length > 0 ? shortCommand(argv) : comm };
}

/** Caches lookups: a table names the same pid many times. */
export class ProcessNames {
  private readonly cache = new Map<number, ProcessCommand>();

  of(pid: number): ProcessCommand {
    let c = this.cache.get(pid);
    if (!c) this.cache.set(pid, (c = processCommand(pid)));
    return c;
  }

  /** For a table cell: the shortened command line, cut to `max`; '?' when /proc does not say. */
  cell(pid: number, max = 48): string {
    const short = this.of(pid).short;
    return short === null ? '?' : truncate(short, max);
  }
}

export type ProcessRoot = { root: string; error?: undefined } | { root: null; error: string };

/**
 * The root directory of a process as this CLI sees it: readlink(/proc/PID/root). Reading it
 * needs the same user as the process or CAP_SYS_PTRACE; a process in another pid namespace
 * has no /proc entry here.
 */
export function processRoot(pid: number): ProcessRoot {
  try {
    return { root: fs.readlinkSync(`/proc/${pid}/root`) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    const why =
      code === 'ENOENT' ? `no /proc/${pid} here (the daemon runs in another pid namespace?)`
      : code === 'EACCES' || code === 'EPERM' ? `cannot read /proc/${pid}/root: ${code} (run as root or as the bus's user)`
      : `cannot read /proc/${pid}/root: ${code}`;
    return { root: null, error: why };
  }
}
