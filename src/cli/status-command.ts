import { processRoot } from './proc-info.js';
import { formatHandoffPhases } from '../supervisor/handoff-phases.js';
import { fetchStatus, withBus, type BusArgs } from './supervisor-client.js';
import { formatBytes, formatDuration, formatFields, printJson } from './table.js';

export interface StatusArgs extends BusArgs {
  json?: boolean;
}

/**
 * `ferrybus status`: the daemon's own report (Supervisor1.Status), plus its root as this CLI
 * sees it — the daemon itself can only ever call its root "/", which says nothing after it
 * moved into another root; readlink(/proc/PID/root) from here names the directory.
 */
export async function runStatusCommand(args: StatusArgs): Promise<void> {
  const { status, where } = await withBus(args, async (client) => ({ status: await fetchStatus(client), where: client.where }));
  const root = processRoot(status.pid);
  if (args.json) {
    printJson({
      socket: where,
      ...status,
      root: root.root,
      rootError: root.error ?? null,
      lastHandoff: status.lastHandoff
        ? {
          at: status.lastHandoff.at,
          pauseMs: status.lastHandoff.pauseUs / 1000,
          root: status.lastHandoff.root,
          phasesMs: Object.fromEntries(status.lastHandoff.phases.map(([name, us]) => [name, us / 1000])),
        }
        : null,
    });
    return;
  }
  const connections = [`${status.connections}`];
  const extra: string[] = [];
  if (status.monitors !== undefined) extra.push(`${status.monitors} monitor${status.monitors === 1 ? '' : 's'}`);
  if (status.authenticating) extra.push(`${status.authenticating} not yet registered`);
  if (extra.length > 0) connections.push(`(${extra.join(', ')})`);
  const quota = status.maxOutgoingBytes !== undefined ? ` (quota ${formatBytes(status.maxOutgoingBytes)} per connection)` : '';
  const last = status.lastHandoff;
  const fields: Array<[string, string]> = [
    ['socket', where],
    ['address', status.addresses.join(' ') || '?'],
    ['pid', String(status.pid)],
    ['generation', String(status.generation)],
    ['root', root.root ?? `unknown: ${root.error}`],
  ];
  if (status.kind !== undefined) fields.push(['kind', status.kind]);
  fields.push(
    ['started', `${status.startedAt} (up ${formatDuration(status.uptimeSeconds)})`],
    ['connections', connections.join(' ')],
    ['names', `${status.names} well-known`],
    ['queued bytes', `${formatBytes(status.queuedBytes)}${quota}`],
  );
  if (status.pendingCalls !== undefined) fields.push(['pending calls', String(status.pendingCalls)]);
  if (status.activatableServices !== undefined) {
    const starting = status.activating
      ? `, ${status.activating} starting (${status.heldMessages ?? 0} message${status.heldMessages === 1 ? '' : 's'} waiting)`
      : '';
    fields.push(['activation', `${status.activatableServices} activatable${starting}`]);
  }
  fields.push([
    'last handoff',
    last ? `${last.at} (pause ${(last.pauseUs / 1000).toFixed(1)} ms, into ${last.root || '/'})`
      : status.generation <= 1 ? 'none' : 'not recorded',
  ]);
  if (last && last.phases.length > 0) fields.push(['pause, ms', formatHandoffPhases(last.phases)]);
  process.stdout.write(formatFields(fields));
}
