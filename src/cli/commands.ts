// The yargs program: every command, its help and its usage errors. Loaded by main.ts only when
// the command line needs it (not for a handoff, nor for a plain `ferrybus daemon …`).
import yargs, { type Argv } from 'yargs';
import { READABLE_FORMATS } from '../handoff/document.js';
import { CliError, EXIT_USAGE, exitWithError as fail } from './cli-error.js';
import { runConnectionsCommand } from './connections-command.js';
import { defaultClientAddress } from './default-bus.js';
import { runHandoffCommand } from './handoff-command.js';
import { runInspectCommand } from './inspect-command.js';
import { runMonitorCommand } from './monitor-command.js';
import { runNamesCommand } from './names-command.js';
import { runUsersCommand } from './users-command.js';
import { runQueueCommand } from './queue-command.js';
import { runStatusCommand } from './status-command.js';
import type { BusArgs } from './supervisor-client.js';
import { VERSION } from './version.js';
import { DAEMON_FLAGS, flagValuesOf, runDaemonFlags } from './daemon-flags.js';

/** Runs a command's work; every failure goes through fail(). */
async function run(work: () => Promise<void> | void): Promise<void> {
  try {
    await work();
  } catch (err) {
    fail(err);
  }
}

/** The quick-start bus, then the system bus (see default-bus.ts). */
const DEFAULT_ADDRESS = defaultClientAddress({ uid: process.getuid!(), env: process.env });

/** --address, --json and --timeout: what every command that talks to a running daemon takes. */
function busOptions<T>(y: Argv<T>) {
  return y
    .option('address', { type: 'string', describe: `the bus to talk to (default: ${DEFAULT_ADDRESS})` })
    .option('json', { type: 'boolean', describe: 'print JSON (one line) instead of a table' })
    .option('timeout', { type: 'number', default: 10, describe: 'seconds to wait for the daemon before giving up' });
}

function busArgs(argv: { address?: string; timeout: number }): BusArgs {
  if (!Number.isFinite(argv.timeout) || argv.timeout <= 0) {
    throw new CliError(`--timeout takes a positive number of seconds, got "${argv.timeout}"`, EXIT_USAGE);
  }
  if (argv.address === '') throw new CliError('--address is empty; name a bus address such as unix:path=/run/ferrybus/bus', EXIT_USAGE);
  return {
    address: argv.address ?? DEFAULT_ADDRESS,
    addressSource: argv.address === undefined ? 'default' : 'flag',
    timeoutMs: argv.timeout * 1000,
  };
}

export async function runCommands(args: readonly string[]): Promise<void> {
  await yargs(args)
  .scriptName('ferrybus')
  .command(
    'daemon',
    'run the message bus (takes dbus-daemon\'s command line; see `ferrybus daemon --help`)',
    (y) => {
      // dbus-daemon --version prints the daemon's version text, not yargs' bare version.
      let withFlags = y.version(false);
      for (const f of DAEMON_FLAGS) {
        withFlags = withFlags.option(f.name, { type: f.value ? 'string' : 'boolean', describe: f.describe, hidden: f.hidden });
      }
      return withFlags;
    },
    (argv) => run(() => runDaemonFlags(flagValuesOf(argv as Record<string, unknown>), args)),
  )
  .command(
    'status',
    'show the running daemon: pid, generation, root, uptime, addresses, connections, names, queued bytes, last handoff',
    (y) => busOptions(y),
    (argv) => run(() => runStatusCommand({ ...busArgs(argv), json: argv.json })),
  )
  .command(
    'names',
    'list well-known names: owner (unique name, pid, command) and queued owners with their flags',
    (y) => busOptions(y),
    (argv) => run(() => runNamesCommand({ ...busArgs(argv), json: argv.json })),
  )
  .command(
    'connections',
    'list client connections: unique name, pid, uid, command, names, match rules, queued bytes, monitor',
    (y) => busOptions(y),
    (argv) => run(() => runConnectionsCommand({ ...busArgs(argv), json: argv.json })),
  )
  .command(
    'users',
    'show what each uid holds on the bus (connections, names, match rules, pending calls, queued bytes) against its ceiling',
    (y) => busOptions(y),
    (argv) => run(() => runUsersCommand({ ...busArgs(argv), json: argv.json })),
  )
  .command(
    'queue',
    'show connections with outbound bytes queued (largest first) and method calls awaiting replies',
    (y) => busOptions(y).option('all', { type: 'boolean', describe: 'list connections with nothing queued too' }),
    (argv) => run(() => runQueueCommand({ ...busArgs(argv), json: argv.json, all: argv.all })),
  )
  .command(
    'monitor [rules..]',
    'print every message on the bus, one per line, until Ctrl-C (optionally only those matching RULES)',
    (y) =>
      busOptions(y)
        .positional('rules', { type: 'string', array: true, describe: "match rules, e.g. \"type='signal',interface='org.example.Foo'\"" })
        .option('body', { type: 'boolean', describe: 'decode and print each message\'s arguments too' })
        .option('json', { type: 'boolean', describe: 'print one JSON object per message, one per line' }),
    (argv) =>
      run(() =>
        runMonitorCommand({ ...busArgs(argv), rules: (argv.rules ?? []).map(String), json: argv.json, body: argv.body }),
      ),
  )
  .command(
    'handoff',
    'hand the running bus off to a new image, in place or into another root (same PID, no client notices)',
    (y) =>
      y
        .option('root', { type: 'string', describe: 'root directory to move into (e.g. /proc/<pid>/root); default: in place' })
        .option('address', { type: 'string', describe: `the bus to talk to (default: ${DEFAULT_ADDRESS})` })
        .option('json', { type: 'boolean', describe: 'print the result as JSON' })
        .option('timeout', { type: 'number', default: 10, describe: 'seconds to wait for the daemon to answer the connection' }),
    (argv) => run(() => runHandoffCommand({ ...busArgs(argv), root: argv.root, json: argv.json })),
  )
  .command(
    'inspect <file>',
    'read a handoff document without a daemon: generation, listeners, connections, names, queues',
    (y) =>
      y
        .positional('file', { type: 'string', demandOption: true, describe: 'the document, e.g. /run/ferrybus/handoff/generation-2.json' })
        .option('json', { type: 'boolean', describe: 'print JSON (one line) instead of tables' }),
    (argv) => run(() => runInspectCommand({ file: argv.file, json: argv.json })),
  )
  .command(
    'handoff-check',
    'tell a running bus whether this image can take over its handoff (used by the preflight)',
    (y) => y.option('format', { type: 'number', demandOption: true, describe: 'handoff document format to accept' }),
    (argv) => {
      const ok = READABLE_FORMATS.includes(argv.format);
      process.stdout.write(JSON.stringify({ ok, formats: READABLE_FORMATS, version: VERSION }) + '\n');
      if (!ok) {
        process.stderr.write(`ferrybus: handoff document format ${argv.format} is not readable by this image\n`);
        process.exit(1);
      }
    },
  )
  .demandCommand(1, 'name a command, e.g. `ferrybus daemon`')
  .strict()
  .completion('completion', 'print a shell completion script (add `source <(ferrybus completion)` to ~/.bashrc)')
  .version(VERSION)
  .help()
  .epilog('Exit status: 0 on success, 1 when something failed at run time, 64 for a usage error.')
  .fail((msg, err) => {
    if (err) fail(err);
    process.stderr.write(`ferrybus: ${msg}\nRun 'ferrybus --help' for usage.\n`);
    process.exit(EXIT_USAGE);
  })
  .parseAsync();
}
