import { namesCell } from './connections-command.js';
import { ProcessNames } from './proc-info.js';
import { fetchConnectionFds, fetchConnections, fetchPendingCalls, withBus, type BusArgs } from './supervisor-client.js';
import { formatBytes, formatTable, listCell, printJson } from './table.js';

export interface QueueArgs extends BusArgs {
  json?: boolean;
  /** List connections with nothing queued too. */
  all?: boolean;
}

/**
 * `ferrybus queue`: where bytes and replies are waiting. Connections with outbound bytes the
 * kernel has not taken (slow or stuck readers), largest first, with the unix fds the bus holds
 * for them (queued) and from them (in a message not received whole); then method calls the bus
 * routed whose reply has not come back (caller → callee, by the caller's serial).
 */
export async function runQueueCommand(args: QueueArgs): Promise<void> {
  const { connections, calls, fds } = await withBus(args, async (client) => ({
    connections: await fetchConnections(client),
    calls: await fetchPendingCalls(client),
    fds: await fetchConnectionFds(client),
  }));
  const procs = new ProcessNames();
  const byName = new Map(connections.filter((c) => c.uniqueName).map((c) => [c.uniqueName!, c]));
  const queues = connections
    .filter((c) => args.all || c.outboundBytes > 0)
    .sort((a, b) => b.outboundBytes - a.outboundBytes || a.peerId - b.peerId)
    .map((c) => ({
      uniqueName: c.uniqueName,
      pid: c.pid,
      command: procs.of(c.pid).command,
      outboundBytes: c.outboundBytes,
      outboundFds: fds.get(c.peerId)?.outbound ?? 0,
      inboundBytes: c.inboundBytes,
      inboundFds: fds.get(c.peerId)?.inbound ?? 0,
      names: [...c.ownedNames],
      monitor: c.monitor,
      cell: namesCell(c),
    }));
  const pending = calls.map((p) => {
    const caller = byName.get(p.caller);
    const callee = byName.get(p.callee);
    return {
      caller: p.caller,
      callerPid: caller?.pid ?? null,
      callerCommand: caller ? procs.of(caller.pid).command : null,
      callee: p.callee,
      calleePid: callee?.pid ?? null,
      calleeCommand: callee ? procs.of(callee.pid).command : null,
      calleeNames: callee?.ownedNames ?? [],
      serial: p.serial,
    };
  });
  if (args.json) {
    printJson({ outbound: queues.map(({ cell: _cell, ...q }) => q), pendingCalls: pending });
    return;
  }
  const right = (header: string) => ({ header, align: 'right' as const });
  process.stdout.write(args.all ? 'Outbound queues (largest first):\n' : 'Connections with outbound bytes queued (largest first):\n');
  process.stdout.write(
    formatTable(
      ['UNIQUE', right('PID'), 'COMMAND', right('QUEUED'), right('FDS'), right('INBOUND'), right('IN FDS'), 'NAMES'],
      queues.map((q) => [
        q.uniqueName ?? '(authenticating)',
        String(q.pid),
        procs.cell(q.pid),
        formatBytes(q.outboundBytes),
        String(q.outboundFds),
        formatBytes(q.inboundBytes),
        String(q.inboundFds),
        q.cell,
      ]),
    ),
  );
  if (queues.length === 0) process.stdout.write('(none: every connection is keeping up)\n');
  process.stdout.write('\nPending method calls (awaiting a reply):\n');
  process.stdout.write(
    formatTable(
      ['CALLER', right('CALLER PID'), 'CALLER COMMAND', '', 'CALLEE', right('CALLEE PID'), 'CALLEE NAMES', right('SERIAL')],
      pending.map((p) => [
        p.caller,
        p.callerPid === null ? '?' : String(p.callerPid),
        p.callerPid === null ? '?' : procs.cell(p.callerPid, 32),
        '→',
        p.callee,
        p.calleePid === null ? '?' : String(p.calleePid),
        listCell(p.calleeNames),
        String(p.serial),
      ]),
    ),
  );
  if (pending.length === 0) process.stdout.write('(none)\n');
}
