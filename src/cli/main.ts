#!/usr/bin/env node
// First import: it must run before anything else is loaded (see signal-guard.ts).
import './signal-guard.js';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { FerryError } from '../util/errors.js';
import { READABLE_FORMATS } from '../handoff/document.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE } from './cli-error.js';
import { runConnectionsCommand } from './connections-command.js';
import { defaultClientAddress } from './default-bus.js';
import { parseHandoffArgv } from '../supervisor/handoff-controller.js';
import { runHandoffCommand } from './handoff-command.js';
import { runInspectCommand } from './inspect-command.js';
import { runMonitorCommand } from './monitor-command.js';
import { runNamesCommand } from './names-command.js';
import { runUsersCommand } from './users-command.js';
import { runQueueCommand } from './queue-command.js';
import { runStatusCommand } from './status-command.js';
import type { BusArgs } from './supervisor-client.js';
import { VERSION } from './version.js';

/**
 * Exit status: 0 success, 1 a runtime failure (EXIT_FAILURE), 64 a usage error (EX_USAGE).
 * Every failure is one line on stderr that starts with "ferrybus: ".
 */
function fail(err: unknown): never {
  if (err instanceof CliError) {
    process.stderr.write(`ferrybus: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  if (err instanceof FerryError) {
    process.stderr.write(`ferrybus: ${err.message}\n`);
    process.exit(err.code === 'BadFlag' ? EXIT_USAGE : EXIT_FAILURE);
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    process.stderr.write(`ferrybus: ${e.message}\n`);
    process.exit(EXIT_FAILURE);
  }
  throw err;
}

/** Runs a command's work; every failure goes through fail(). */
async function run(work: () => Promise<void> | void): Promise<void> {
  try {
    await work();
  } catch (err) {
    fail(err);
  }
}

/** dbus-daemon refuses a value flag given twice (yargs would collect an array). */
function once(value: string | string[] | undefined, flag: string): string | undefined {
  if (!Array.isArray(value)) return value;
  throw new CliError(`--${flag} given more than once ("${value.join('" and "')}")`, EXIT_USAGE);
}

/** Like dbus-daemon, which reads its flags in order: of --fork and --nofork, the last one wins. */
function lastForkFlag(args: readonly string[]): boolean {
  let fork = false;
  for (const arg of args) {
    if (arg === '--') break;
    if (arg === '--fork') fork = true;
    else if (arg === '--nofork' || arg === '--no-fork') fork = false;
  }
  return fork;
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

// A handoff start never goes through the parser: its flags are internal (see ferrybus.ts).
const inheritance = parseHandoffArgv(process.argv.slice(2));
if (inheritance) await (await import('./daemon-command.js')).runDaemonCommand({ handoff: inheritance });
else await yargs(hideBin(process.argv))
  .scriptName('ferrybus')
  .command(
    'daemon',
    'run the message bus (takes dbus-daemon\'s command line; see `ferrybus daemon --help`)',
    (y) =>
      y
        // dbus-daemon --version prints the daemon's version text, not yargs' bare version.
        .version(false)
        .option('address', { type: 'string', describe: 'listen address, e.g. unix:path=/run/ferrybus/bus or systemd: (overrides <listen>)' })
        .option('config-file', { type: 'string', describe: 'dbus-daemon style XML configuration file' })
        .option('session', { type: 'boolean', describe: 'use the session bus defaults' })
        .option('system', { type: 'boolean', describe: 'use the system bus defaults (/run/dbus/system_bus_socket)' })
        .option('print-address', { type: 'string', describe: 'print the address to FD (default 1) once ready' })
        .option('print-pid', { type: 'string', describe: 'print the pid of the serving process to FD (default 1) once ready' })
        .option('fork', { type: 'boolean', describe: 'run in the background; return once the bus is ready (the last of --fork/--nofork wins)' })
        .option('nofork', { type: 'boolean', describe: 'stay in the foreground (the default)' })
        .option('pidfile', { type: 'string', describe: 'write the pid of the serving process to FILE once ready; removed on exit' })
        .option('nopidfile', { type: 'boolean', describe: 'write no pid file, even if --pidfile is given' })
        .option('systemd-activation', { type: 'boolean', describe: 'services with SystemdService= are started by systemd (ActivationRequest), and requests wait for systemd to connect' })
        .option('syslog', { type: 'boolean', describe: 'accepted with a warning: logs go to stderr (there is no syslog transport)' })
        .option('syslog-only', { type: 'boolean', describe: 'accepted with a warning: logs go to stderr (there is no syslog transport)' })
        .option('nosyslog', { type: 'boolean', describe: 'log to stderr only (what ferrybus always does)' })
        .option('introspect', { type: 'boolean', describe: 'print the bus driver\'s introspection XML and exit' })
        .option('version', { type: 'boolean', describe: 'print the version and exit' })
        // Internal: how a --fork launcher and the bus it starts talk (see fork-launcher.ts).
        .option('ready-fd', { type: 'string', hidden: true })
        .option('stderr-fd', { type: 'string', hidden: true }),
    async (argv) => {
      if (argv.version || argv.introspect) {
        const { introspectionText, versionText } = await import('./daemon-info.js');
        process.stdout.write(argv.version ? versionText() : introspectionText());
        return;
      }
      // Loaded on demand: the operator commands never need the daemon (or koffi).
      const { runDaemonCommand, fdOf } = await import('./daemon-command.js');
      await Promise.resolve()
        .then(() => {
          const printAddress = once(argv['print-address'], 'print-address');
          const printPid = once(argv['print-pid'], 'print-pid');
          return runDaemonCommand({
            address: once(argv.address, 'address'),
            configFile: once(argv['config-file'], 'config-file'),
            session: argv.session,
            system: argv.system,
            printAddress: printAddress === undefined ? undefined : printAddress || true,
            printPid: printPid === undefined ? undefined : printPid || true,
            fork: lastForkFlag(hideBin(process.argv)),
            pidFile: once(argv.pidfile, 'pidfile'),
            noPidFile: argv.nopidfile,
            systemdActivation: argv['systemd-activation'],
            syslog: argv.syslog,
            syslogOnly: argv['syslog-only'],
            nosyslog: argv.nosyslog,
            readyFd: fdOf(once(argv['ready-fd'], 'ready-fd'), 'ready-fd'),
            stderrFd: fdOf(once(argv['stderr-fd'], 'stderr-fd'), 'stderr-fd'),
          });
        })
        .catch(fail);
    },
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
