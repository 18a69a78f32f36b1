// `ferrybus daemon`'s flags (dbus-daemon's command line) in one table: the yargs program declares
// them from it for --help and for every unusual command line, and the start-up path reads the
// usual ones without loading yargs at all. yargs and the terminal-width code it pulls in cost
// more start-up time than the bus itself (~50 ms of ~175 ms with the bundle), and a bus is
// started on every boot, by every test harness and at every `systemctl restart`.

import { FerryError } from '../util/errors.js';
import type { DaemonArgs } from './daemon-command.js';

export interface DaemonFlag {
  readonly name: string;
  /** Takes a value (`--name=V` or `--name V`); else a switch. */
  readonly value: boolean;
  readonly describe: string;
  /** Internal (the --fork launcher and the bus it starts): not in --help. */
  readonly hidden?: boolean;
}

export const DAEMON_FLAGS: readonly DaemonFlag[] = [
  { name: 'address', value: true, describe: 'listen address, e.g. unix:path=/run/ferrybus/bus or systemd: (overrides <listen>)' },
  { name: 'config-file', value: true, describe: 'dbus-daemon style XML configuration file' },
  { name: 'session', value: false, describe: 'use the session bus defaults' },
  { name: 'system', value: false, describe: 'use the system bus defaults (/run/dbus/system_bus_socket)' },
  { name: 'print-address', value: true, describe: 'print the address to FD (default 1) once ready' },
  { name: 'print-pid', value: true, describe: 'print the pid of the serving process to FD (default 1) once ready' },
  { name: 'fork', value: false, describe: 'run in the background; return once the bus is ready (the last of --fork/--nofork wins)' },
  { name: 'nofork', value: false, describe: 'stay in the foreground (the default)' },
  { name: 'pidfile', value: true, describe: 'write the pid of the serving process to FILE once ready; removed on exit' },
  { name: 'nopidfile', value: false, describe: 'write no pid file, even if --pidfile is given' },
  { name: 'systemd-activation', value: false, describe: 'services with SystemdService= are started by systemd (ActivationRequest), and requests wait for systemd to connect' },
  { name: 'syslog', value: false, describe: 'accepted with a warning: logs go to stderr (there is no syslog transport)' },
  { name: 'syslog-only', value: false, describe: 'accepted with a warning: logs go to stderr (there is no syslog transport)' },
  { name: 'nosyslog', value: false, describe: 'log to stderr only (what ferrybus always does)' },
  { name: 'introspect', value: false, describe: 'print the bus driver\'s introspection XML and exit' },
  { name: 'version', value: false, describe: 'print the version and exit' },
  { name: 'ready-fd', value: true, describe: 'internal', hidden: true },
  { name: 'stderr-fd', value: true, describe: 'internal', hidden: true },
];

const BY_NAME = new Map(DAEMON_FLAGS.map((f) => [f.name, f]));

/** The flags as given: a switch is `true`, a value flag its values (more than one is a usage error). */
export type DaemonFlagValues = ReadonlyMap<string, true | string[]>;

/**
 * Reads `ferrybus daemon`'s flags when each one is plainly a known flag: `--switch`,
 * `--name=VALUE` or `--name VALUE`. Anything else — an unknown flag, `--help`, a positional
 * argument, `--no-…`, `--switch=…` — returns undefined: the yargs program then reads the line and
 * says what is wrong in its words, so both paths accept exactly the same command lines.
 */
export function quickDaemonFlags(args: readonly string[]): DaemonFlagValues | undefined {
  const values = new Map<string, true | string[]>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--') || arg === '--') return undefined;
    const eq = arg.indexOf('=');
    const flag = BY_NAME.get(eq < 0 ? arg.slice(2) : arg.slice(2, eq));
    if (!flag) return undefined;
    if (!flag.value) {
      if (eq >= 0) return undefined;
      values.set(flag.name, true);
      continue;
    }
    let value: string;
    if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else if (i + 1 < args.length && !args[i + 1]!.startsWith('-')) {
      // yargs takes the next argument as the value unless it looks like a flag.
      value = args[++i]!;
    } else {
      value = '';
    }
    const seen = values.get(flag.name);
    values.set(flag.name, Array.isArray(seen) ? [...seen, value] : [value]);
  }
  return values;
}

/** The flags as a parser (yargs) read them, by name: the same values the quick reader gives. */
export function flagValuesOf(parsed: Readonly<Record<string, unknown>>): DaemonFlagValues {
  const values = new Map<string, true | string[]>();
  for (const f of DAEMON_FLAGS) {
    const v = parsed[f.name];
    if (f.value && v !== undefined) values.set(f.name, (Array.isArray(v) ? v : [v]).map(String));
    else if (!f.value && v === true) values.set(f.name, true);
  }
  return values;
}

/** dbus-daemon refuses a value flag given twice. */
function once(values: DaemonFlagValues, flag: string): string | undefined {
  const v = values.get(flag);
  if (v === undefined || v === true) return undefined;
  if (v.length > 1) throw new FerryError('BadFlag', `--${flag} given more than once ("${v.join('" and "')}")`);
  return v[0];
}

/** `--print-address` alone means stdout; `--print-address=FD` a given fd. */
export function fdOf(flag: string | boolean | undefined, name: string): number | undefined {
  if (flag === undefined || flag === false) return undefined;
  if (flag === true || flag === '') return 1;
  const fd = Number(flag);
  if (!/^[0-9]+$/.test(String(flag)) || !Number.isSafeInteger(fd)) {
    throw new FerryError('BadFlag', `--${name} takes a file descriptor number, got "${flag}"`);
  }
  return fd;
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

/** The daemon's arguments from its flags (`args`: the command line after `daemon`, for flag order). */
export function daemonArgs(values: DaemonFlagValues, args: readonly string[]): DaemonArgs {
  const flag = (name: string) => (values.get(name) === true ? true : undefined);
  const printAddress = once(values, 'print-address');
  const printPid = once(values, 'print-pid');
  return {
    address: once(values, 'address'),
    configFile: once(values, 'config-file'),
    session: flag('session'),
    system: flag('system'),
    printAddress: printAddress === undefined ? undefined : printAddress || true,
    printPid: printPid === undefined ? undefined : printPid || true,
    fork: lastForkFlag(args),
    pidFile: once(values, 'pidfile'),
    noPidFile: flag('nopidfile'),
    systemdActivation: flag('systemd-activation'),
    syslog: flag('syslog'),
    syslogOnly: flag('syslog-only'),
    nosyslog: flag('nosyslog'),
    readyFd: fdOf(once(values, 'ready-fd'), 'ready-fd'),
    stderrFd: fdOf(once(values, 'stderr-fd'), 'stderr-fd'),
  };
}

/**
 * `ferrybus daemon` with its flags read: --version and --introspect print and return; else the
 * bus runs. Shared by the quick path and the yargs program.
 */
export async function runDaemonFlags(values: DaemonFlagValues, args: readonly string[]): Promise<void> {
  if (values.get('version') === true || values.get('introspect') === true) {
    const { introspectionText, versionText } = await import('./daemon-info.js');
    process.stdout.write(values.get('version') === true ? versionText() : introspectionText());
    return;
  }
  // Loaded on demand: the operator commands never need the daemon (or koffi).
  const { runDaemonCommand } = await import('./daemon-command.js');
  await runDaemonCommand(daemonArgs(values, args));
}
