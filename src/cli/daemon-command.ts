import * as fs from 'node:fs';
import { defaultAddress } from '../transport/address.js';
import { FerryError } from '../util/errors.js';
import { holdOptimizingCompiler, releaseOptimizingCompiler } from '../util/start-up-compiler.js';
import { capYoungGeneration } from '../util/young-generation.js';
import { fdOf } from './daemon-flags.js';
import { dup2, releaseFreeMemory } from '../sys/libc.js';
import { poller } from '../transport/poller.js';
import { IdleTrim } from '../supervisor/idle-trim.js';
import { stopIdleTimeMetrics } from '../sys/event-loop.js';
import { adoptDaemon } from '../supervisor/adopt.js';
import { Daemon, printToFd, type DaemonSettings } from '../supervisor/daemon.js';
import { HandoffController, type HandoffArgs } from '../supervisor/handoff-controller.js';
import { createLogger, type DaemonLogger, type Logger } from '../supervisor/logger.js';
import { initAnchors } from '../supervisor/anchors.js';
import { notifySystemd } from '../supervisor/notify.js';
import { removePidFile, writePidFile } from '../supervisor/pid-file.js';
import { handleHandoffSignal } from './signal-guard.js';
import { settingsFromConfig } from '../supervisor/settings.js';
import { supervisorMethods } from '../supervisor/supervisor-methods.js';
import { reloadConfig, watchConfig } from '../supervisor/reload.js';
import { loadFileWatch } from '../supervisor/file-watch.js';

export interface DaemonArgs {
  address?: string;
  configFile?: string;
  session?: boolean;
  system?: boolean;
  printAddress?: string | boolean;
  printPid?: string | boolean;
  /** Whether to daemonize: the last of --fork and --nofork given (dbus-daemon reads flags in order). */
  fork?: boolean;
  pidFile?: string;
  noPidFile?: boolean;
  systemdActivation?: boolean;
  syslog?: boolean;
  syslogOnly?: boolean;
  nosyslog?: boolean;
  /** Internal, set by the --fork launcher for its child: where to report readiness (see fork-launcher.ts). */
  readyFd?: number;
  /** Internal: the fd the forked bus's stderr becomes once ready (else /dev/null). */
  stderrFd?: number;
  /** Set only by a handoff: the new image's inheritance. */
  handoff?: HandoffArgs;
}


/** Flags whose effect ferrybus does not have: accepted, each named in one warning. */
function warnUnsupportedFlags(args: DaemonArgs, log: Logger): void {
  // The logger writes to stderr (journald reads it under systemd) and falls back to /dev/kmsg;
  // there is no syslog transport. --nosyslog asks for stderr only, which is what happens.
  if (args.syslog) log.warning('flag-unsupported', '--syslog: ferrybus has no syslog transport; logs go to stderr only (the journal under systemd)');
  if (args.syslogOnly) log.warning('flag-unsupported', '--syslog-only: ferrybus has no syslog transport; logs go to stderr instead (the journal under systemd)');
}

function pidFileOf(args: DaemonArgs): string | undefined {
  if (args.pidFile === '') throw new FerryError('BadFlag', '--pidfile needs a file name, e.g. --pidfile=/run/ferrybus.pid');
  return args.noPidFile ? undefined : args.pidFile;
}

export async function runDaemonCommand(args: DaemonArgs): Promise<void> {
  // Usage errors first, before anything starts (and in the --fork launcher, before it spawns).
  const printAddressFd = args.handoff ? undefined : fdOf(args.printAddress, 'print-address');
  const printPidFd = args.handoff ? undefined : fdOf(args.printPid, 'print-pid');
  if (!args.handoff) {
    if (args.session && args.system) throw new FerryError('BadFlag', '--session and --system exclude each other');
    pidFileOf(args);
    if (args.fork) {
      // The launcher only waits for the bus it starts (see fork-launcher.ts).
      const { runForkLauncher } = await import('./fork-launcher.js');
      return runForkLauncher(args, { printAddressFd, printPidFd });
    }
  }
  // Node's modules for the bus are loaded by now (the bundle's loader did this already).
  capYoungGeneration();
  holdOptimizingCompiler();
  // One system call less per wait for events (see event-loop.ts).
  stopIdleTimeMetrics();
  const log = createLogger();
  // Before anything can change root: /proc and the notify socket, opened now or inherited.
  initAnchors(args.handoff, log);
  const controller = new HandoffController(log, args.handoff?.execPath);
  let daemon: Daemon | undefined;
  const methods = supervisorMethods(() => daemon!, controller);

  if (args.handoff) {
    const adopted = adoptDaemon(args.handoff, log, methods);
    daemon = adopted.daemon;
    installStopSignals(daemon);
    await supervise(daemon, log, true);
    // As a first start prints its address: once a change to the configuration would be seen.
    adopted.answerCallers();
    releaseOptimizingCompiler();
  } else {
    warnUnsupportedFlags(args, log);
    const pidFile = pidFileOf(args);
    const settings: DaemonSettings = settingsFromConfig(
      { address: args.address, configFile: args.configFile, session: args.session, system: args.system, systemdActivation: args.systemdActivation },
      log,
    );
    if (settings.listen.length === 0) {
      settings.listen = [defaultAddress({ uid: process.getuid!(), env: process.env })];
    }
    if (pidFile !== undefined) settings.runtime = { ...settings.runtime, pidFile };
    daemon = await Daemon.start(settings, log, methods);
    // Before anything says "ready": whoever reads the address or the pid may send SIGTERM at
    // once (a SIGTERM with no listener yet kills the process: no clean-up, no exit 0), and a
    // config file written as soon as the bus listens must not go unnoticed.
    installStopSignals(daemon);
    await supervise(daemon, log);
    releaseOptimizingCompiler();
    // Ready means: listening, the pid file written, then the address printed (launchers wait for that line).
    if (pidFile !== undefined) {
      try {
        writePidFile(pidFile);
      } catch (err) {
        await daemon.stop('the pid file cannot be written');
        throw err;
      }
    }
    if (args.readyFd !== undefined) {
      reportReady(args.readyFd, args.stderrFd, daemon);
    } else {
      if (printAddressFd !== undefined) printToFd(printAddressFd, daemon.addresses[0]!);
      else if (process.stdout.isTTY) process.stdout.write(`ferrybus listening on ${daemon.addresses.join(';')}\n`);
      if (printPidFd !== undefined) printToFd(printPidFd, String(process.pid));
    }
  }
  controller.daemon = daemon;
  installSignalHandlers(daemon, controller, log);
  notifySystemd({ READY: 1, STATUS: `serving ${daemon.addresses.join(' ')} (generation ${daemon.generation})` }, log);
  // Serving: the next line logged asks for winston, loaded at the next quiet sweep (logger.ts, supervise).
  log.serving();
}

/** The resident set size, or undefined where /proc/self is not there to tell (node reads it). */
function residentSetSize(): number | undefined {
  try {
    return process.memoryUsage.rss();
  } catch {
    return undefined;
  }
}

/**
 * What runs beside the serving bus: ReloadConfig, the watches on the config files and service
 * directories (ready before this resolves, so that no change after start-up goes unseen), and
 * the sweep of reply_timeout and service_start_timeout.
 */
async function supervise(daemon: Daemon, log: DaemonLogger, handedOff = false): Promise<void> {
  daemon.bus.reloadConfig = () => reloadConfig(daemon, 'ReloadConfig', log);
  // A new image first serves the clients that waited through the pause (one turn of the event
  // loop), then sets up the watches: their set-up and first directory scans take milliseconds.
  if (handedOff) await new Promise<void>((resolve) => setImmediate(resolve));
  await loadFileWatch();
  const watchers = [watchConfig(daemon, log), daemon.services.watch()];
  const idleTrim = new IdleTrim({ turns: () => poller().turns, rss: residentSetSize, trim: releaseFreeMemory });
  // A quarter-second sweep: cheap when nothing is due.
  setInterval(() => {
    daemon.bus.expireCalls();
    if (daemon.bus.activator.pending.size > 0) daemon.bus.activator.expire();
    idleTrim.sweep();
    if (idleTrim.quiet) log.idle();
  }, 250).unref();
  // A watch that never gets ready (a hung file system) must not hold the bus back.
  const ready = Promise.all(watchers.map((w) => (w ? new Promise<void>((resolve) => w.once('ready', () => resolve())) : undefined)));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 2000)));
  if ((await Promise.race([ready, late])) === 'late') {
    log.warning('watch-slow', 'the configuration watch is not ready after 2 s; serving anyway (changes until then may be missed)');
  }
  clearTimeout(timer);
}

/**
 * The forked bus's side of --fork: stderr leaves the launcher's pipe for where the log goes
 * from now on (the fd the launcher chose, or /dev/null), then the launcher learns the address
 * and pid. In that order: once the launcher reads "ready", its copy of our stderr ends.
 */
function reportReady(readyFd: number, stderrFd: number | undefined, daemon: Daemon): void {
  const target = stderrFd ?? fs.openSync('/dev/null', 'w');
  dup2(target, 2);
  fs.closeSync(target);
  fs.writeSync(readyFd, `${JSON.stringify({ pid: process.pid, address: daemon.addresses[0] })}\n`);
  fs.closeSync(readyFd);
}

/** SIGTERM and SIGINT stop the bus cleanly. Installed as soon as the daemon exists. */
function installStopSignals(daemon: Daemon): void {
  const onSignal = (signal: NodeJS.Signals) => {
    void daemon.stop(`received ${signal}`).finally(() => {
      // Only here, on the way out: a handoff keeps the process (and so the pid file) alive.
      const pidFile = daemon.settings.runtime?.pidFile;
      if (pidFile !== undefined) removePidFile(pidFile);
      process.exit(0);
    });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/** The other signals need the handoff controller to know the daemon. */
function installSignalHandlers(daemon: Daemon, controller: HandoffController, log: Logger): void {
  // The way to ask for a handoff when the bus itself cannot be reached.
  handleHandoffSignal(() => {
    log.notice('handoff-signal', 'SIGUSR2: handing off in place');
    controller.request('/');
  });
  process.on('SIGHUP', () => reloadConfig(daemon, 'SIGHUP', log));
}
