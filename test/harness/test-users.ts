import { execFileSync } from 'node:child_process';

/** A real local account made for the tests: clients run as it through setpriv. */
export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

export const isRoot = process.getuid?.() === 0;

function lookup(name: string): TestUser | undefined {
  try {
    const line = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim();
    const [, , uid, gid] = line.split(':');
    return { name, uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

/**
 * The account `name` (system user, own group, no home, no shell), created on first use.
 * Needs root; the policy tests that use it are skipped otherwise (CI runs as root).
 */
export function ensureTestUser(name: string): TestUser {
  const existing = lookup(name);
  if (existing) return existing;
  execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', name]);
  const made = lookup(name);
  if (!made) throw new Error(`useradd ${name} succeeded but getent cannot find it`);
  return made;
}

/** argv prefix that runs a command as `user` with only its own group. */
export function asUser(user: TestUser): string[] {
  return ['/usr/bin/setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--'];
}
