#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { FerryError } from '../util/errors.js';
import { READABLE_FORMATS } from '../handoff/document.js';
import { defaultAddress } from '../transport/address.js';
import { runDaemonCommand } from './daemon-command.js';
import { runHandoffCommand } from './handoff-command.js';
import { VERSION } from './version.js';

function fail(err: unknown): never {
  if (err instanceof FerryError) {
    process.stderr.write(`ferrybus: ${err.message}\n`);
    process.exit(err.code === 'BadFlag' ? 64 : 1);
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    process.stderr.write(`ferrybus: ${e.message}\n`);
    process.exit(1);
  }
  throw err;
}

await yargs(hideBin(process.argv))
  .scriptName('ferrybus')
  .command(
    'daemon',
    'run the message bus (accepts the dbus-daemon flags launchers use)',
    (y) =>
      y
        .option('address', { type: 'string', describe: 'listen address, e.g. unix:path=/run/ferrybus/bus (overrides <listen>)' })
        .option('config-file', { type: 'string', describe: 'dbus-daemon style XML configuration file' })
        .option('session', { type: 'boolean', describe: 'use the session bus defaults' })
        .option('system', { type: 'boolean', describe: 'use the system bus defaults (/run/dbus/system_bus_socket)' })
        .option('print-address', { type: 'string', describe: 'print the address to FD (default 1) once ready' })
        .option('print-pid', { type: 'string', describe: 'print the pid to FD (default 1) once ready' })
        .option('nofork', { type: 'boolean', describe: 'stay in the foreground (always the case)' })
        .option('fork', { type: 'boolean', describe: 'accepted for compatibility; ferrybus never forks' })
        .option('nopidfile', { type: 'boolean', describe: 'accepted for compatibility; no pid file is written' })
        .option('syslog', { type: 'boolean', describe: 'accepted for compatibility; logs go to stderr' })
        .option('nosyslog', { type: 'boolean', describe: 'accepted for compatibility' })
        .option('syslog-only', { type: 'boolean', describe: 'accepted for compatibility' })
        .option('handoff-document', { type: 'string', hidden: true })
        .option('handoff-nonce', { type: 'string', hidden: true })
        .option('handoff-listen-fds', { type: 'string', hidden: true })
        .option('handoff-generation', { type: 'number', hidden: true })
        .option('handoff-next-unique', { type: 'number', hidden: true }),
    async (argv) => {
      await runDaemonCommand({
        address: argv.address,
        configFile: argv['config-file'],
        session: argv.session,
        system: argv.system,
        printAddress: argv['print-address'] === undefined ? undefined : argv['print-address'] || true,
        printPid: argv['print-pid'] === undefined ? undefined : argv['print-pid'] || true,
        fork: argv.fork,
        nofork: argv.nofork,
        handoff: argv['handoff-document']
          ? {
              document: argv['handoff-document'],
              nonce: argv['handoff-nonce'] ?? '',
              listenFds: (argv['handoff-listen-fds'] ?? '').split(',').filter(Boolean).map(Number),
              generation: argv['handoff-generation'] ?? 2,
              nextUniqueId: argv['handoff-next-unique'] ?? 1,
            }
          : undefined,
      }).catch(fail);
    },
  )
  .command(
    'handoff',
    'hand the running bus off to a new image, in place or into another root (same PID, no client notices)',
    (y) =>
      y
        .option('root', { type: 'string', describe: 'root directory to move into (e.g. /proc/<pid>/root); default: in place' })
        .option('address', { type: 'string', describe: 'the bus to talk to (default: the default address)' })
        .option('json', { type: 'boolean', describe: 'print the result as JSON' }),
    async (argv) => {
      await runHandoffCommand({
        address: argv.address ?? defaultAddress({ uid: process.getuid!(), env: process.env }),
        root: argv.root,
        json: argv.json,
      }).catch(fail);
    },
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
  .completion('completion', 'print a shell completion script')
  .help()
  .fail((msg, err) => {
    if (err) fail(err);
    process.stderr.write(`ferrybus: ${msg}\nRun 'ferrybus --help' for usage.\n`);
    process.exit(64);
  })
  .parseAsync();
