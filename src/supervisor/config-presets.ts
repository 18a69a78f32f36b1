// What --system and --session read: the stock dbus-daemon files where they exist, else a
// built-in preset that amounts to the same for ferrybus (settings.ts chooses).

import * as nodeFs from 'node:fs';
import { defaultAddress } from '../transport/address.js';
import { type ConfigFs, parseConfig, SYSTEM_BUS_ADDRESS } from './config.js';
import type { BusConfig } from './config-types.js';

/**
 * Where dbus-daemon --system and --session read their configuration: the stock file in
 * /usr/share/dbus-1 (dbus 1.10 and later); /etc/dbus-1 held it before that and is now an
 * optional local file that the stock one includes itself (ignore_missing), so it is read
 * directly only when /usr/share has none. Undefined when neither exists.
 */
export function stockConfigFile(
  kind: 'system' | 'session',
  exists: (file: string) => boolean = nodeFs.existsSync,
): string | undefined {
  return STOCK_CONFIG_FILES[kind].find((file) => exists(file));
}

export const STOCK_CONFIG_FILES = {
  system: ['/usr/share/dbus-1/system.conf', '/etc/dbus-1/system.conf'],
  session: ['/usr/share/dbus-1/session.conf', '/etc/dbus-1/session.conf'],
} as const;

const noFs: ConfigFs = {
  readFile: (file) => {
    throw Object.assign(new Error(`presets include nothing (${file})`), { code: 'EACCES' });
  },
  readDir: (dir) => {
    throw Object.assign(new Error(`presets include nothing (${dir})`), { code: 'EACCES' });
  },
};

function preset(name: string, text: string): BusConfig {
  const config = parseConfig(text, `<${name} preset>`, { fs: noFs, selinuxEnabled: false });
  config.files = [];
  return config;
}

/**
 * What dbus-daemon's stock session.conf amounts to for ferrybus (`--session`): listen at the
 * default address, EXTERNAL only, allow everything, the session limits. Includes nothing.
 */
export function sessionConfig(options: {
  readonly uid: number;
  readonly env: Readonly<Record<string, string | undefined>>;
}): BusConfig {
  return preset(
    'session',
    `<busconfig>
  <type>session</type>
  <listen>${defaultAddress(options)}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_incoming_unix_fds">250000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_outgoing_unix_fds">250000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="service_start_timeout">120000</limit>
  <limit name="auth_timeout">240000</limit>
  <limit name="pending_fd_timeout">150000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_pending_service_starts">10000</limit>
  <limit name="max_names_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>`,
  );
}

/**
 * What dbus-daemon's stock system.conf amounts to for ferrybus (`--system`): listen on the
 * well-known system bus socket, EXTERNAL only, the stock default-deny policy, built-in
 * limits. Includes nothing (no system.d).
 */
export function systemConfig(): BusConfig {
  return preset(
    'system',
    `<busconfig>
  <type>system</type>
  <listen>${SYSTEM_BUS_ADDRESS}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Containers1"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
</busconfig>`,
  );
}
