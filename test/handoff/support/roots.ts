import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Every shared library a binary needs, by absolute path (from ldd). */
function librariesOf(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  return [...out.matchAll(/(\/\S+)/g)].map((m) => m[1]!).filter((p) => existsSync(p));
}

/** Copies host binaries (and their libraries) into `root` at the same paths. */
function install(root: string, binaries: string[]): void {
  const files = new Set<string>();
  for (const b of binaries) {
    files.add(b);
    for (const lib of librariesOf(b)) files.add(lib);
  }
  for (const file of files) {
    const target = path.join(root, file);
    mkdirSync(path.dirname(target), { recursive: true });
    copyFileSync(realpathSync(file), target);
    chmodSync(target, 0o755);
  }
}

/**
 * A minimal root (/bin/sh, /bin/chmod and their libraries) whose "node", at the path of the
 * node running the daemon, is the given shell script. The preflight and the exec of a handoff
 * into this root run that script as `<node> <ferrybus script> handoff-check --format N` and
 * `<node> <ferrybus script> daemon --handoff-...` respectively.
 */
export function scriptRoot(root: string, script: string): { nodePath: string } {
  install(root, ['/bin/sh', '/bin/chmod']);
  const nodePath = path.join(root, process.execPath);
  mkdirSync(path.dirname(nodePath), { recursive: true });
  writeFileSync(nodePath, script, { mode: 0o755 });
  chmodSync(nodePath, 0o755);
  return { nodePath };
}

/** A target image that refuses: handoff-check exits 1 and says why on stderr. */
export const REFUSING_IMAGE = `#!/bin/sh
echo "ferrybus: handoff document format $4 is not readable by this image (it reads 7)" >&2
exit 1
`;

/** A target image that answers handoff-check with something that is not its JSON answer. */
export const CONFUSED_IMAGE = `#!/bin/sh
echo "Welcome to node"
exit 0
`;

/**
 * A target image that passes the preflight and then stops being executable, as when a package
 * upgrade replaces the binary between the preflight and the exec: the execve fails (EACCES).
 */
export const VANISHING_IMAGE = `#!/bin/sh
if [ "$2" = handoff-check ]; then
  /bin/chmod 0644 "$0"
  echo '{"ok":true,"formats":[1],"version":"vanishing"}'
  exit 0
fi
echo "the exec of a vanished image must never run" >&2
exit 70
`;
