import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Repository root (this file lives in <root>/test/harness). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * python3-dbus is installed for Debian's interpreter only; the python3 first on PATH may be
 * another interpreter without it, so fixtures are always run with this one.
 */
export const SYSTEM_PYTHON = '/usr/bin/python3';

export function fixturePath(name: string): string {
  const file = fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
  if (!existsSync(file)) throw new Error(`missing test fixture ${file}`);
  return file;
}
