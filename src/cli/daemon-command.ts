import { defaultAddress } from '../transport/address.js';
import { FerryError } from '../util/errors.js';
import { printToFd, startDaemon, type DaemonSettings } from '../supervisor/daemon.js';
import { createLogger, type Logger } from '../supervisor/logger.js';
import { settingsFromConfig } from '../supervisor/settings.js';

export interface DaemonArgs {
  address?: string;
  configFile?: string;
  session?: boolean;
  system?: boolean;
  printAddress?: string | boolean;
  printPid?: string | boolean;
  fork?: boolean;
  nofork?: boolean;
}

/** `--print-address` alone means stdout; `--print-address=FD` a given fd. */
function fdOf(flag: string | boolean | undefined, name: string): number | undefined {
  if (flag === undefined || flag === false) return undefined;
  if (flag === true || flag === '') return 1;
  const fd = Number(flag);
  if (!Number.isInteger(fd) || fd < 0) throw new FerryError('BadFlag', `--${name} takes a file descriptor number, got "${flag}"`);
  return fd;
}

export async function runDaemonCommand(args: DaemonArgs): Promise<void> {
  const log = createLogger();
  if (args.session && args.system) throw new FerryError('BadFlag', '--session and --system exclude each other');
  if (args.fork && !args.nofork) {
    log.warning('fork-ignored', '--fork is not supported: ferrybus stays in the foreground (run it under a service manager)');
  }
  const printAddressFd = fdOf(args.printAddress, 'print-address');
  const printPidFd = fdOf(args.printPid, 'print-pid');
  const settings: DaemonSettings = settingsFromConfig(args, log);
  if (settings.listen.length === 0) {
    settings.listen = [defaultAddress({ uid: process.getuid!(), env: process.env })];
  }
  const daemon = await startDaemon(settings, log);
  installSignalHandlers(daemon.stop, log);
  // Ready means: listening, then the address printed (launchers wait for this line).
  if (printAddressFd !== undefined) printToFd(printAddressFd, daemon.addresses[0]!);
  else if (process.stdout.isTTY) process.stdout.write(`ferrybus listening on ${daemon.addresses.join(';')}\n`);
  if (printPidFd !== undefined) printToFd(printPidFd, String(process.pid));
}

function installSignalHandlers(stop: (reason: string) => Promise<void>, log: Logger): void {
  const onSignal = (signal: NodeJS.Signals) => {
    void stop(`received ${signal}`).finally(() => process.exit(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', () => log.info('reload-ignored', 'SIGHUP received; configuration reload is not implemented yet'));
}
