import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Repository root: the nearest folder above this file with a package.json. This file runs
 * from <root>/test/harness under vitest and from <root>/dist/test/harness when compiled (bench).
 */
function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (no package.json above the test harness)');
    dir = up;
  }
  return dir + path.sep;
}

export const REPO_ROOT = findRepoRoot();

/**
 * python3-dbus is installed for Debian's interpreter only; the python3 first on PATH may be
 * another interpreter without it, so fixtures are always run with this one.
 */
export const SYSTEM_PYTHON = '/usr/bin/python3';

export function fixturePath(name: string): string {
  const file = path.join(REPO_ROOT, 'test', 'fixtures', name);
  if (!existsSync(file)) throw new Error(`missing test fixture ${file}`);
  return file;
}
