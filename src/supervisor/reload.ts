import type { FSWatcher } from 'chokidar';
import { watchFiles } from './file-watch.js';
import { DEFAULT_LIMITS } from '../bus/bus.js';
import { connectionLimits, type Daemon, type DaemonSettings } from './daemon.js';
import type { Logger } from './logger.js';
import { compilePolicy } from './policy-loader.js';
import { settingsFromConfig } from './settings.js';

/**
 * Re-reads the whole configuration (SIGHUP, ReloadConfig, a changed file) and applies what can
 * change live: the policy (every connection takes a new snapshot) and the bus limits. An invalid
 * config is refused with one log line and the one in force stays. Listen addresses belong to
 * sockets already open: a change is reported, not applied.
 * Returns undefined on success, else the reason (ReloadConfig hands it to the caller).
 */
export function reloadConfig(daemon: Daemon, trigger: string, log: Logger): string | undefined {
  const source = daemon.settings.source;
  if (!source || (!source.configFile && !source.system && !source.session)) {
    log.info('reload-nothing', `${trigger}: the bus runs without a configuration file; nothing to reload`);
    return undefined;
  }
  let fresh: DaemonSettings;
  try {
    // 'reread': stock files gone since the start are refused, not replaced by the built-in preset.
    fresh = settingsFromConfig(source, log, {}, 'reread');
  } catch (err) {
    const reason = (err as Error).message;
    log.error('reload-refused', `${trigger}: the new configuration is invalid; the one in force stays`, { error: reason });
    return reason;
  }
  const before = daemon.bus.policy?.fingerprint;
  const policy = compilePolicy(fresh.policies, log);
  daemon.bus.setPolicy(policy);
  Object.assign(daemon.bus.limits, DEFAULT_LIMITS, fresh.limits);
  // New connections get the new limits; one already open keeps those it was accepted with.
  daemon.connections.setLimits(connectionLimits(fresh.limits));
  if (JSON.stringify(fresh.listen) !== JSON.stringify(daemon.settings.listen) && !source.address) {
    log.warning('config-listen-changed', 'listen addresses changed in the configuration; the open sockets stay until a restart', {
      inForce: daemon.settings.listen.join(' '),
      configured: fresh.listen.join(' '),
    });
  }
  daemon.settings = { ...fresh, listen: daemon.settings.listen, runtime: daemon.settings.runtime };
  // Service files are read again on every reload (dbus-daemon too), whatever changed.
  daemon.services.reload(fresh.serviceDirs ?? []);
  log.notice('reloaded', `${trigger}: configuration reloaded`, {
    policy: policy?.fingerprint === before ? 'unchanged' : 'changed',
    connections: daemon.bus.peers.size,
  });
  return undefined;
}

/**
 * Reloads when any file the configuration was read from, or any <includedir>, changes.
 * Bursts of events (an editor's save, a package installing several files) become one reload.
 */
export function watchConfig(daemon: Daemon, log: Logger): FSWatcher | undefined {
  const paths = daemon.settings.watch ?? [];
  if (paths.length === 0) return undefined;
  const watcher = watchFiles(paths, { ignoreInitial: true, depth: 0 });
  if (!watcher) return undefined; // not loaded yet: the daemon watches once it is
  let timer: NodeJS.Timeout | undefined;
  const changed = (event: string, file: string) => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      reloadConfig(daemon, `${file} ${event}`, log);
    }, 200);
  };
  watcher.on('all', changed);
  watcher.on('error', (err) => log.warning('config-watch-failed', 'cannot watch the configuration files', { error: String(err) }));
  return watcher;
}
