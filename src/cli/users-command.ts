import * as fs from 'node:fs';
import { fetchUsers, withBus, type BusArgs } from './supervisor-client.js';
import { formatBytes, formatTable, printJson } from './table.js';

export interface UsersArgs extends BusArgs {
  json?: boolean;
}

const COLUMNS: Array<[resource: string, header: string]> = [
  ['connections', 'CONNECTIONS'],
  ['names', 'NAMES'],
  ['matchRules', 'MATCH RULES'],
  ['pendingReplies', 'PENDING CALLS'],
  ['queuedBytes', 'QUEUED'],
  ['fds', 'UNIX FDS'],
];

/**
 * `ferrybus users`: what each uid holds on the bus (connections, names, match rules, calls
 * awaiting replies, bytes queued and unix fds held that it is charged for), next to the most
 * one uid may hold.
 * A uid at its ceiling is refused more; everyone else is not.
 */
export async function runUsersCommand(args: UsersArgs): Promise<void> {
  const users = await withBus(args, fetchUsers);
  const names = nameOfUid();
  const rows = users.map((u) => ({ uid: u.uid, user: names.get(u.uid) ?? null, ...u.usage }));
  if (args.json) {
    printJson(rows);
    return;
  }
  const cell = (resource: string, usage: { held: number; ceiling: number } | undefined) => {
    if (!usage) return '-';
    const show = resource === 'queuedBytes' ? formatBytes : String;
    return `${show(usage.held)} / ${show(usage.ceiling)}`;
  };
  process.stdout.write(
    formatTable(
      [{ header: 'UID', align: 'right' }, 'USER', ...COLUMNS.map(([, header]) => ({ header, align: 'right' as const }))],
      users.map((u) => [String(u.uid), names.get(u.uid) ?? '-', ...COLUMNS.map(([r]) => cell(r, u.usage[r]))]),
    ),
  );
  if (rows.length === 0) process.stdout.write('(no uid holds anything on the bus)\n');
}

/** uid → user name from this root's /etc/passwd (the first name for a uid). */
function nameOfUid(): Map<number, string> {
  const out = new Map<number, string>();
  let text = '';
  try {
    text = fs.readFileSync('/etc/passwd', 'utf8');
  } catch {
    return out; // no user database: numbers only
  }
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid && /^[0-9]+$/.test(uid) && !out.has(Number(uid))) out.set(Number(uid), name);
  }
  return out;
}
