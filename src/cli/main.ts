#!/usr/bin/env node
/**
 * Entry point. What a command line needs decides what is loaded: every millisecond here is
 * start-up time of the bus (at boot, at every restart) or pause of a handoff for every client.
 *  - a new image started by a handoff adopts its inheritance at once (its flags are internal);
 *  - `ferrybus daemon` with plainly known flags starts the bus without the argument parser;
 *  - everything else (operator commands, --help, a flag that needs yargs' judgement) goes
 *    through the yargs program in commands.ts.
 */
// First import: it must run before anything else is loaded (see signal-guard.ts).
import './signal-guard.js';
// Second: when the program started, for the handoff's phase report.
import '../util/start-marks.js';
import { parseHandoffArgv } from '../supervisor/handoff-controller.js';
import { restoreHeldEnvironment } from '../handoff/exec-environment.js';
import { quickDaemonFlags, runDaemonFlags } from './daemon-flags.js';

// No top-level await: the bundle is a CommonJS script (loaded with a V8 code cache, see
// scripts/bundle.mjs), and a rejection here still ends the process as an unhandled one.
async function main(args: readonly string[]): Promise<void> {
  // What the last handoff held back from node's start goes back before anything spawns.
  restoreHeldEnvironment(process.env);
  const handoff = parseHandoffArgv(args);
  const quick = !handoff && args[0] === 'daemon' ? quickDaemonFlags(args.slice(1)) : undefined;
  if (handoff) {
    const { runDaemonCommand } = await import('./daemon-command.js');
    await runDaemonCommand({ handoff });
  } else if (quick) {
    try {
      await runDaemonFlags(quick, args);
    } catch (err) {
      (await import('./cli-error.js')).exitWithError(err);
    }
  } else {
    // The command parser's package may fail to load (a bundle installed incompletely): one line.
    const commands = await import('./commands.js').catch(async (err: unknown) => (await import('./cli-error.js')).exitWithError(err));
    await commands.runCommands(args);
  }
}

void main(process.argv.slice(2));
