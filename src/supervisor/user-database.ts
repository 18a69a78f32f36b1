import * as fs from 'node:fs';
import type { IdentityLookup } from '../bus/policy.js';

/**
 * User and group names as the policy's <policy user=…>/<allow group=…> need them: read from
 * /etc/passwd and /etc/group of the root the daemon runs in, at each config load. A number
 * stands for itself, as in dbus-daemon. Names served only by other NSS sources (LDAP) are
 * not seen; the policy compiler warns about each name it cannot resolve.
 */
export function userDatabase(root = '/'): IdentityLookup {
  const users = readIds(`${root}etc/passwd`);
  const groups = readIds(`${root}etc/group`);
  const lookup = (table: Map<string, number>) => (name: string) => {
    if (/^[0-9]+$/.test(name)) return Number(name);
    return table.get(name);
  };
  return { uidOf: lookup(users), gidOf: lookup(groups) };
}

/** name → id from a passwd/group-format file (name:x:id:…); a missing file is empty. */
function readIds(file: string): Map<string, number> {
  const ids = new Map<string, number>();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return ids;
  }
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id !== undefined && /^[0-9]+$/.test(id) && !ids.has(name)) ids.set(name, Number(id));
  }
  return ids;
}

/** A user as a program started for it needs it: ids and home (from /etc/passwd of this root). */
export interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

/** Looks up a user by name (or a number, which stands for itself with gid = uid); undefined when unknown. */
export function lookupUser(name: string, root = '/'): PasswdEntry | undefined {
  let text = '';
  try {
    text = fs.readFileSync(`${root}etc/passwd`, 'utf8');
  } catch {
    // no passwd file: only numbers resolve
  }
  for (const line of text.split('\n')) {
    const [user, , uid, gid, , home] = line.split(':');
    if (user !== name && uid !== name) continue;
    if (uid === undefined || gid === undefined || !/^[0-9]+$/.test(uid) || !/^[0-9]+$/.test(gid)) continue;
    return { name: user!, uid: Number(uid), gid: Number(gid), home: home || '/' };
  }
  if (/^[0-9]+$/.test(name)) return { name, uid: Number(name), gid: Number(name), home: '/' };
  return undefined;
}
