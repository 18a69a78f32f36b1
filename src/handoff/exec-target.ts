import type * as ChildProcess from 'node:child_process';
import { FerryError } from '../util/errors.js';
import { WRITABLE_FORMATS } from './document.js';
import { lazyBuiltin } from '../util/lazy-builtin.js';

const childProcess = lazyBuiltin<typeof ChildProcess>('node:child_process');

/** What a handoff executes: the node binary and ferrybus entry point, by path in the target root. */
export interface ExecTarget {
  execPath: string;
  script: string;
}

/**
 * The image running now, located by the same paths (the default target in every root).
 * Node learns process.execPath from /proc/self/exe; in a root without procfs it falls back to
 * argv[0], which a handoff sets to '@ferrybus'. So an image started by a handoff is told the
 * path it was exec'd by (`inheritedExecPath`), and that is the truth in this root.
 */
export function currentExecTarget(inheritedExecPath?: string): ExecTarget {
  return { execPath: inheritedExecPath ?? process.execPath, script: process.argv[1]! };
}

const PREFLIGHT_TIMEOUT_MS = 20_000;

/**
 * Runs the target's `handoff-check` as a child: proves the binary exists, starts, and reads a
 * document format this image writes: the newest, or else (an older target, which answers with
 * the formats it reads and exit 1) one before it. Runs while the bus keeps serving.
 */
export function preflight(target: ExecTarget, root: string): Promise<{ version: string; format: number }> {
  return new Promise((resolve, reject) => {
    const where = root === '/' ? '' : ` in root ${root}`;
    // stdin is a pipe, not 'ignore': that would open /dev/null inside the target root, and a
    // root without it made the child fail before exec with a misleading "spawn <node> ENOENT".
    const child = childProcess().spawn(target.execPath, [target.script, 'handoff-check', '--format', String(WRITABLE_FORMATS[0])], {
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: PREFLIGHT_TIMEOUT_MS,
    });
    child.stdin.end();
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) =>
      reject(new FerryError('HandoffPreflightFailed', `cannot run ${target.execPath}${where}: ${e.message}`)),
    );
    child.on('close', (code, signal) => {
      const last = err.trim().split('\n').slice(-3).join(' | ');
      const older = code === 1 ? olderFormat(out) : undefined;
      if (older !== undefined) return resolve(older);
      if (code !== 0) {
        return reject(new FerryError('HandoffPreflightFailed',
          `${target.script}${where} refused the handoff (${signal ?? `exit ${code}`})${last ? `: ${last}` : ''}`));
      }
      try {
        const answer = JSON.parse(out) as { ok?: boolean; version?: string };
        if (answer.ok !== true) throw new Error('no ok');
        resolve({ version: String(answer.version ?? 'unknown'), format: WRITABLE_FORMATS[0]! });
      } catch {
        reject(new FerryError('HandoffPreflightFailed', `${target.script}${where} gave no valid handoff-check answer`));
      }
    });
  });
}

/** A target that reads none of the newest format but one this image also writes: that one. */
function olderFormat(out: string): { version: string; format: number } | undefined {
  try {
    const answer = JSON.parse(out) as { ok?: boolean; formats?: unknown; version?: string };
    const reads = Array.isArray(answer.formats) ? answer.formats : [];
    const format = WRITABLE_FORMATS.slice(1).find((f) => reads.includes(f));
    return answer.ok === false && format !== undefined ? { version: String(answer.version ?? 'unknown'), format } : undefined;
  } catch {
    return undefined;
  }
}
