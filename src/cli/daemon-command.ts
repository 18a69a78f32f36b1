import { defaultAddress } from '../transport/address.js';
import { FerryError } from '../util/errors.js';
import { adoptDaemon } from '../supervisor/adopt.js';
import { Daemon, printToFd, type DaemonSettings } from '../supervisor/daemon.js';
import { HandoffController, type HandoffArgs } from '../supervisor/handoff-controller.js';
import { createLogger, type Logger } from '../supervisor/logger.js';
import { initAnchors } from '../supervisor/anchors.js';
import { notifySystemd } from '../supervisor/notify.js';
import { handleHandoffSignal } from './signal-guard.js';
import { settingsFromConfig } from '../supervisor/settings.js';
import { supervisorMethods } from '../supervisor/supervisor-methods.js';
import { reloadConfig, watchConfig } from '../supervisor/reload.js';

export interface DaemonArgs {
  address?: string;
  configFile?: string;
  session?: boolean;
  system?: boolean;
  printAddress?: string | boolean;
  printPid?: string | boolean;
  fork?: boolean;
  nofork?: boolean;
  /** Set only by a handoff: the new image's inheritance. */
  handoff?: HandoffArgs;
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
  // Before anything can change root: /proc and the notify socket, opened now or inherited.
  initAnchors(args.handoff, log);
  const controller = new HandoffController(log, args.handoff?.execPath);
  let daemon: Daemon | undefined;
  const methods = supervisorMethods(() => daemon!, controller);

  if (args.handoff) {
    daemon = adoptDaemon(args.handoff, log, methods);
  } else {
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
    daemon = await Daemon.start(settings, log, methods);
    // Ready means: listening, then the address printed (launchers wait for this line).
    if (printAddressFd !== undefined) printToFd(printAddressFd, daemon.addresses[0]!);
    else if (process.stdout.isTTY) process.stdout.write(`ferrybus listening on ${daemon.addresses.join(';')}\n`);
    if (printPidFd !== undefined) printToFd(printPidFd, String(process.pid));
  }
  controller.daemon = daemon;
  const served = daemon;
  served.bus.reloadConfig = () => reloadConfig(served, 'ReloadConfig', log);
  watchConfig(served, log);
  // reply_timeout: a quarter-second sweep (cheap: it stops at the first call not yet due).
  setInterval(() => served.bus.expireCalls(), 250).unref();
  installSignalHandlers(daemon, controller, log);
  notifySystemd({ READY: 1, STATUS: `serving ${daemon.addresses.join(' ')} (generation ${daemon.generation})` }, log);
}

function installSignalHandlers(daemon: Daemon, controller: HandoffController, log: Logger): void {
  const onSignal = (signal: NodeJS.Signals) => {
    void daemon.stop(`received ${signal}`).finally(() => process.exit(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // The way to ask for a handoff when the bus itself cannot be reached.
  handleHandoffSignal(() => {
    log.notice('handoff-signal', 'SIGUSR2: handing off in place');
    controller.request('/');
  });
  process.on('SIGHUP', () => reloadConfig(daemon, 'SIGHUP', log));
}
