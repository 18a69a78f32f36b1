import type { BusLimits } from '../bus/bus.js';
import { FerryError } from '../util/errors.js';
import { checkListenAddresses, readConfig, type BusConfig, type ReadConfigOptions } from './config.js';
import { sessionConfig, stockConfigFile, STOCK_CONFIG_FILES, systemConfig } from './config-presets.js';
import type { DaemonSettings, TransportLimits } from './daemon.js';
import type { Logger } from './logger.js';

export interface SettingsSource {
  address?: string;
  configFile?: string;
  session?: boolean;
  system?: boolean;
  /** --systemd-activation: services with SystemdService= are started by systemd. */
  systemdActivation?: boolean;
}

/** dbus-daemon <limit> names that ferrybus enforces, and where they go. */
const LIMIT_NAMES: Record<string, keyof BusLimits | keyof TransportLimits> = {
  max_match_rules_per_connection: 'maxMatchRulesPerConnection',
  max_names_per_connection: 'maxNamesPerConnection',
  max_replies_per_connection: 'maxRepliesPerConnection',
  max_connections_per_user: 'maxConnectionsPerUser',
  max_outgoing_bytes: 'maxOutgoingBytes',
  max_completed_connections: 'maxCompletedConnections',
  reply_timeout: 'replyTimeoutMs',
  auth_timeout: 'authTimeoutMs',
  max_incomplete_connections: 'maxIncompleteConnections',
  max_message_size: 'maxMessageSize',
  max_message_unix_fds: 'maxMessageUnixFds',
  max_incoming_unix_fds: 'maxIncomingUnixFds',
  max_outgoing_unix_fds: 'maxOutgoingUnixFds',
  service_start_timeout: 'serviceStartTimeoutMs',
  max_pending_service_starts: 'maxPendingServiceStarts',
  pending_fd_timeout: 'pendingFdTimeoutMs',
};

/**
 * Limits that hold without code of their own, and why. (config.ts refuses names dbus-daemon does
 * not know; a known one missing from both tables is named in a warning.)
 * ferrybus routes each message as it arrives (no incoming queue), so these bounds cannot be exceeded.
 */
const HOLD_BY_DESIGN: Record<string, string> = {
  max_incoming_bytes: 'messages are routed as they arrive; at most one partial message per connection is buffered (bounded by max_message_size)',
};

/** Where --system/--session look, and how files are read: tests substitute both. */
export interface ConfigSources {
  readonly exists?: (file: string) => boolean;
  readonly read?: ReadConfigOptions;
}

/**
 * 'start' may fall back to the built-in preset where dbus is not installed. 'reread' (a reload,
 * a new image after a handoff) may not: stock files that existed at start and are gone now mean
 * the root is being emptied or taken apart (systemd removes the initramfs contents after
 * switch-root, while the bus still runs from it), not that the policy should become the preset.
 */
export type ConfigRead = 'start' | 'reread';

/**
 * --config-file reads that file; --system and --session read dbus-daemon's stock file with
 * everything it includes, as dbus-daemon does, and fall back to a built-in preset only where
 * dbus is not installed.
 */
export function loadConfig(args: SettingsSource, log: Logger, sources: ConfigSources = {}, read: ConfigRead = 'start'): BusConfig | undefined {
  if (args.configFile) return readConfig(args.configFile, sources.read);
  const kind = args.system ? 'system' : args.session ? 'session' : undefined;
  if (kind === undefined) return undefined;
  const file = stockConfigFile(kind, sources.exists);
  if (file !== undefined) return readConfig(file, sources.read);
  if (read === 'reread') {
    throw new FerryError('ConfigGone', `--${kind}: neither ${STOCK_CONFIG_FILES[kind].join(' nor ')} exists any more (is the root being emptied?)`);
  }
  log.warning(
    'config-stock-missing',
    `--${kind}: neither ${STOCK_CONFIG_FILES[kind].join(' nor ')} exists (is dbus installed?); using ferrybus's built-in ${kind} preset, which includes no ${kind}.d files`,
  );
  return kind === 'system' ? systemConfig() : sessionConfig({ uid: process.getuid!(), env: process.env });
}

/**
 * Combines the config file (or what --session/--system read) with --address,
 * which wins over <listen>. Everything the config asks for that ferrybus does
 * not do yet is said in a warning, never silently ignored.
 */
export function settingsFromConfig(args: SettingsSource, log: Logger, sources: ConfigSources = {}, read: ConfigRead = 'start'): DaemonSettings {
  const config = loadConfig(args, log, sources, read);
  // Like dbus-daemon, a bad address fails the start, not the reading; --address replaces them.
  if (config && !args.address) checkListenAddresses(config);
  const kind = config?.type ?? (args.system ? 'system' : 'session');
  const settings: DaemonSettings = { listen: config ? [...config.listen] : [], kind, limits: {}, source: { ...args } };
  if (args.address) settings.listen = [args.address];
  if (!config) return settings;

  for (const warning of config.warnings) log.warning('config-unsupported', warning);
  const mechanisms = config.auth.filter((m) => m !== 'EXTERNAL');
  if (mechanisms.length > 0) {
    log.warning('config-auth', `auth mechanisms ${mechanisms.join(', ')} are not supported; only EXTERNAL is offered`);
  }
  if (config.auth.length > 0 && !config.auth.includes('EXTERNAL')) {
    log.warning('config-auth', 'the config does not allow EXTERNAL; ferrybus offers EXTERNAL anyway (the only mechanism it has)');
  }
  for (const [name, value] of Object.entries(config.limits)) {
    const key = LIMIT_NAMES[name];
    if (key) settings.limits[key] = value;
    else if (HOLD_BY_DESIGN[name]) log.debug('config-limit-holds', `limit ${name} holds by design: ${HOLD_BY_DESIGN[name]}`, { value });
    else log.warning('config-limit-unsupported', `limit ${name} is not enforced by ferrybus`, { value });
  }
  settings.policies = config.policies;
  settings.serviceDirs = config.serviceDirs ?? [];
  settings.watch = [...config.files, ...config.directories];
  return settings;
}

/**
 * A new image re-reads the configuration its predecessor was started with and
 * keeps what it can apply live (limits); listening sockets are inherited, so a
 * changed <listen> is reported, not applied.
 */
export function rereadSettings(inherited: DaemonSettings, log: Logger): DaemonSettings {
  const source = inherited.source;
  if (!source?.configFile && !source?.system && !source?.session) return inherited;
  let fresh: DaemonSettings;
  try {
    fresh = settingsFromConfig(source, log, {}, 'reread');
  } catch (err) {
    log.warning('config-reread-failed', 'could not re-read the configuration; the policy and limits in force stay', {
      file: source.configFile ?? (source.system ? '--system' : '--session'),
      error: (err as Error).message,
    });
    return inherited;
  }
  if (JSON.stringify(fresh.policies) === JSON.stringify(inherited.policies)) {
    log.info('policy-unchanged', 'the policy on disk equals the one in force', { blocks: fresh.policies?.length ?? 0 });
  } else {
    log.notice('policy-changed', 'the policy on disk differs from the one in force; applying the one on disk', {
      blocksInForce: inherited.policies?.length ?? 0,
      blocksOnDisk: fresh.policies?.length ?? 0,
    });
  }
  if (source.address === undefined && JSON.stringify(fresh.listen) !== JSON.stringify(inherited.listen)) {
    log.warning('config-listen-changed', 'listen addresses changed in the configuration; the inherited sockets stay until a restart', {
      inForce: inherited.listen.join(' '),
      configured: fresh.listen.join(' '),
    });
  }
  if (JSON.stringify(fresh.limits) !== JSON.stringify(inherited.limits)) {
    log.notice('config-limits-changed', 'limits changed in the configuration; applying them', { limits: fresh.limits });
  }
  // What the bus set up at start (pid file, systemd's sockets) is not configuration: it stays.
  return { ...fresh, listen: inherited.listen, runtime: inherited.runtime };
}
