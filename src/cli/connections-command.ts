import { ProcessNames } from './proc-info.js';
import { fetchConnections, withBus, type BusArgs, type ConnectionInfo } from './supervisor-client.js';
import { formatBytes, formatTable, listCell, printJson } from './table.js';

export interface ConnectionsArgs extends BusArgs {
  json?: boolean;
}

export type ConnectionState = 'authenticating' | 'connected' | 'monitor';

export function stateOf(c: ConnectionInfo): ConnectionState {
  return c.monitor ? 'monitor' : c.uniqueName === null ? 'authenticating' : 'connected';
}

/** A connection's names for a table cell: owned ones, then queued ones marked. */
export function namesCell(c: ConnectionInfo): string {
  return listCell([...c.ownedNames, ...c.queuedNames.map((n) => `${n} (queued)`)]);
}

/** Order of Hello (:1.2 before :1.10); connections still authenticating last. */
export function byUniqueName(a: ConnectionInfo, b: ConnectionInfo): number {
  const n = (c: ConnectionInfo) => (c.uniqueName ? Number(c.uniqueName.slice(c.uniqueName.indexOf('.') + 1)) : Infinity);
  return n(a) - n(b) || a.peerId - b.peerId;
}

/** `ferrybus connections`: every client connection, with the command behind each pid. */
export async function runConnectionsCommand(args: ConnectionsArgs): Promise<void> {
  const connections = (await withBus(args, fetchConnections)).sort(byUniqueName);
  const procs = new ProcessNames();
  if (args.json) {
    printJson(
      connections.map((c) => ({
        uniqueName: c.uniqueName,
        peerId: c.peerId,
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
        command: procs.of(c.pid).command,
        comm: procs.of(c.pid).comm,
        ownedNames: c.ownedNames,
        queuedNames: c.queuedNames,
        matchRules: c.matchRules,
        outboundBytes: c.outboundBytes,
        inboundBytes: c.inboundBytes,
        pendingCalls: c.pendingCalls,
        monitor: c.monitor,
        state: stateOf(c),
      })),
    );
    return;
  }
  const right = (header: string) => ({ header, align: 'right' as const });
  process.stdout.write(
    formatTable(
      ['UNIQUE', right('PID'), right('UID'), 'COMMAND', 'NAMES', right('MATCHES'), right('OUTBOUND'), 'MONITOR'],
      connections.map((c) => [
        c.uniqueName ?? '(authenticating)',
        String(c.pid),
        String(c.uid),
        procs.cell(c.pid),
        namesCell(c),
        String(c.matchRules),
        formatBytes(c.outboundBytes),
        c.monitor ? 'yes' : 'no',
      ]),
    ),
  );
}
