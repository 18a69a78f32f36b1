import { ProcessNames } from './proc-info.js';
import { fetchNames, nameFlags, withBus, type BusArgs } from './supervisor-client.js';
import { formatTable, listCell, printJson } from './table.js';

export interface NamesArgs extends BusArgs {
  json?: boolean;
}

/** `ferrybus names`: every well-known name, its owner (pid and command read here) and its queue. */
export async function runNamesCommand(args: NamesArgs): Promise<void> {
  const names = await withBus(args, fetchNames);
  const procs = new ProcessNames();
  const owner = (o: { uniqueName: string; pid: number; flags: number }) => ({
    uniqueName: o.uniqueName,
    pid: o.pid,
    command: procs.of(o.pid).command,
    flags: nameFlags(o.flags),
  });
  const rows = names.map((n) => ({ name: n.name, owner: owner(n.queue[0]!), queue: n.queue.slice(1).map(owner) }));
  if (args.json) {
    printJson(rows);
    return;
  }
  const queued = (q: ReturnType<typeof owner>) => `${q.uniqueName} (pid ${q.pid}${q.flags.length ? ', ' + q.flags.join(',') : ''})`;
  process.stdout.write(
    formatTable(
      ['NAME', 'OWNER', { header: 'PID', align: 'right' }, 'COMMAND', 'FLAGS', 'QUEUED'],
      rows.map((r) => [
        r.name,
        r.owner.uniqueName,
        String(r.owner.pid),
        procs.cell(r.owner.pid),
        listCell(r.owner.flags),
        listCell(r.queue.map(queued)),
      ]),
    ),
  );
  if (rows.length === 0) process.stdout.write('(no well-known names are owned)\n');
}
