import * as path from 'node:path';
import { callSupervisor, withBus, type BusArgs } from './supervisor-client.js';

export interface HandoffCommandArgs extends BusArgs {
  root?: string;
  json?: boolean;
}

/** `ferrybus handoff`: asks the daemon to re-execute (into --root) and reports the new generation. */
export async function runHandoffCommand(args: HandoffCommandArgs): Promise<void> {
  // The daemon resolves paths in its own root, which may differ from ours (initrd, shutdown
  // root): name our root through /proc so the path means what the caller meant.
  const root = args.root ? `/proc/${process.pid}/root${path.resolve(args.root)}` : '';
  const [generation, pauseUs] = await withBus(args, (client) => callSupervisor(client, 'Handoff', 's', [root], 120_000));
  const result = { generation: generation as number, pauseMs: Number(pauseUs as bigint) / 1000, root: args.root ? path.resolve(args.root) : '(in place)' };
  if (args.json) process.stdout.write(JSON.stringify(result) + '\n');
  else process.stdout.write(`handoff complete: generation ${result.generation}, pause ${result.pauseMs.toFixed(1)} ms, root ${result.root}\n`);
}
