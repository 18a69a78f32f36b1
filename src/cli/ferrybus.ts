#!/usr/bin/env node
/**
 * Entry point. A new image started by a handoff goes straight to adopting its
 * inheritance: every millisecond of start-up here is pause for every client,
 * so the argument parser (yargs) is loaded only for ordinary commands.
 */
import './signal-guard.js';
import { parseHandoffArgv } from '../supervisor/handoff-controller.js';

const handoff = parseHandoffArgv(process.argv.slice(2));
if (handoff) {
  const { runDaemonCommand } = await import('./daemon-command.js');
  await runDaemonCommand({ handoff });
} else {
  await import('./main.js');
}
