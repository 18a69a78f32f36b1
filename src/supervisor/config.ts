// dbus-daemon configuration files (the `busconfig` format, dbus-daemon(1) "CONFIGURATION FILE").
//
// Supported: <type>, <listen>, <auth>, <limit>, <include>, <includedir>, and <policy>, whose
// <allow>/<deny> rules are kept as data (enforcement is the bus's business, not done yet).
// Every other element is reported in `warnings`, never dropped silently; malformed XML and
// invalid content are errors naming file and line.
//
// The XML itself is read by the small strict parser in xml.ts.
//
// Reading is synchronous through a small `ConfigFs` seam, so tests and the handoff (which
// re-reads the config in the new root) can substitute the file system.

import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { AddressError, defaultAddress, parseAddress } from '../transport/address.js';
import { ConfigError } from './config-error.js';
import { parseXml, type XmlElement, type XmlText } from './xml.js';

export { ConfigError, type ConfigErrorCode } from './config-error.js';
export { parseXml, type XmlElement, type XmlNode, type XmlText } from './xml.js';


// ---------------------------------------------------------------------------------------------
// busconfig

export interface SourceLocation {
  readonly file: string;
  readonly line: number;
}

export type PolicySelector =
  | { readonly context: 'default' | 'mandatory' }
  | { readonly user: string }
  | { readonly group: string }
  | { readonly atConsole: boolean };

export interface PolicyRule {
  readonly kind: 'allow' | 'deny';
  /** The rule's attributes as written, e.g. { send_destination: 'org.foo', send_type: 'method_call' }. */
  readonly attributes: Readonly<Record<string, string>>;
  readonly source: SourceLocation;
}

export interface Policy {
  readonly selector: PolicySelector;
  readonly rules: PolicyRule[];
  readonly source: SourceLocation;
}

export interface BusConfig {
  /** The last <type> wins. */
  type?: string;
  /** Every <listen> address, in file order (each may be a ';'-separated list). */
  listen: string[];
  /** Allowed SASL mechanisms; empty means all that ferrybus knows. */
  auth: string[];
  /** Known limits by dbus-daemon name; the last <limit> of a name wins. */
  limits: Record<string, number>;
  policies: Policy[];
  /** Everything read but not acted on, each ending with "(file:line)". */
  warnings: string[];
  /** Files read, root first: what a reload should watch. */
  files: string[];
  /** <includedir> directories consulted, existing or not: new files there also matter. */
  directories: string[];
}

/** The file system as the config reader sees it: throw errors with `code: 'ENOENT'` for missing paths. */
export interface ConfigFs {
  readFile(file: string): string;
  readDir(dir: string): string[];
  /** Canonical path for include-loop detection; defaults to path.resolve. */
  realPath?(file: string): string;
}

export interface ReadConfigOptions {
  readonly fs?: ConfigFs;
  /** Whether SELinux is enabled, for <include if_selinux_enabled="yes">; detected by default. */
  readonly selinuxEnabled?: boolean;
}

export const SYSTEM_BUS_ADDRESS = 'unix:path=/run/dbus/system_bus_socket';

const nodeConfigFs: ConfigFs = {
  readFile: (file) => nodeFs.readFileSync(file, 'utf8'),
  readDir: (dir) => nodeFs.readdirSync(dir),
  realPath: (file) => nodeFs.realpathSync(file),
};

const KNOWN_LIMITS = new Set([
  'max_incoming_bytes',
  'max_incoming_unix_fds',
  'max_outgoing_bytes',
  'max_outgoing_unix_fds',
  'max_message_size',
  'max_message_unix_fds',
  'service_start_timeout',
  'auth_timeout',
  'pending_fd_timeout',
  'max_completed_connections',
  'max_incomplete_connections',
  'max_connections_per_user',
  'max_pending_service_starts',
  'max_names_per_connection',
  'max_match_rules_per_connection',
  'max_replies_per_connection',
  'reply_timeout',
  'max_containers',
  'max_containers_per_user',
  'max_container_metadata_bytes',
  'max_connections_per_container',
]);

/** dbus-daemon elements ferrybus reads but does not act on yet. */
const UNSUPPORTED_ELEMENTS = new Set([
  'user',
  'fork',
  'keep_umask',
  'syslog',
  'pidfile',
  'allow_anonymous',
  'servicedir',
  'standard_session_servicedirs',
  'standard_system_servicedirs',
  'servicehelper',
  'selinux',
  'apparmor',
]);

const RULE_ATTRIBUTES = new Set([
  'send_interface', 'send_member', 'send_error', 'send_broadcast', 'send_destination',
  'send_destination_prefix', 'send_type', 'send_path', 'send_requested_reply',
  'receive_interface', 'receive_member', 'receive_error', 'receive_sender', 'receive_type',
  'receive_path', 'receive_requested_reply', 'eavesdrop', 'own', 'own_prefix', 'user', 'group',
  'min_fds', 'max_fds', 'log',
]);

interface Reader {
  readonly fs: ConfigFs;
  readonly selinuxEnabled: boolean;
  readonly config: BusConfig;
  /** Canonical paths of the files being read, outermost first, for loop detection. */
  readonly stack: string[];
}

function emptyConfig(): BusConfig {
  return { listen: [], auth: [], limits: {}, policies: [], warnings: [], files: [], directories: [] };
}

function where(file: string, line: number): string {
  return `(${file}:${line})`;
}

function invalid(file: string, element: XmlElement | XmlText, message: string): never {
  throw new ConfigError('CONFIG_INVALID', file, element.line, message);
}

/** The trimmed text of an element that may hold only text. */
function textOf(file: string, element: XmlElement, allowEmpty = false): string {
  let text = '';
  for (const child of element.children) {
    if (child.kind === 'element') invalid(file, child, `element <${child.name}> is not allowed inside <${element.name}>`);
    text += child.text;
  }
  text = text.trim();
  if (!allowEmpty && text.length === 0) invalid(file, element, `<${element.name}> must not be empty`);
  return text;
}

function noText(file: string, element: XmlElement): void {
  for (const child of element.children) {
    if (child.kind === 'text' && child.text.trim().length > 0) {
      // Point at the first word, not at the line break that starts the text node.
      const leading = child.text.slice(0, child.text.length - child.text.trimStart().length);
      const line = child.line + leading.split('\n').length - 1;
      throw new ConfigError('CONFIG_INVALID', file, line, `text is not allowed inside <${element.name}>`);
    }
  }
}

function warnUnknownAttributes(reader: Reader, file: string, element: XmlElement, known: readonly string[]): void {
  for (const name of Object.keys(element.attributes)) {
    if (!known.includes(name)) {
      reader.config.warnings.push(`attribute ${name} of <${element.name}> is not supported ${where(file, element.line)}`);
    }
  }
}

function yesNo(file: string, element: XmlElement, attribute: string): boolean {
  const value = element.attributes[attribute];
  if (value === undefined || value === 'no') return false;
  if (value === 'yes') return true;
  return invalid(file, element, `${attribute} must be "yes" or "no", not "${value}"`);
}

function isMissing(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ENOENT';
}

function readFileText(reader: Reader, file: string, from?: { file: string; line: number }): string | undefined {
  try {
    return reader.fs.readFile(file);
  } catch (error) {
    if (from === undefined) {
      throw new ConfigError('CONFIG_READ', file, undefined, `cannot read configuration: ${(error as Error).message}`);
    }
    if (isMissing(error)) return undefined;
    throw new ConfigError('CONFIG_READ', from.file, from.line, `cannot read included file ${file}: ${(error as Error).message}`);
  }
}

function readInto(reader: Reader, file: string, text: string, from?: { file: string; line: number }): void {
  const canonical = reader.fs.realPath ? safeRealPath(reader.fs, file) : path.resolve(file);
  const loopAt = reader.stack.indexOf(canonical);
  if (loopAt >= 0) {
    const chain = [...reader.stack.slice(loopAt), canonical].join(' -> ');
    throw new ConfigError('CONFIG_INCLUDE_LOOP', from?.file ?? file, from?.line, `include loop: ${chain}`);
  }
  reader.stack.push(canonical);
  reader.config.files.push(file);
  const root = parseXml(text, file);
  if (root.name !== 'busconfig') invalid(file, root, `the root element must be <busconfig>, not <${root.name}>`);
  noText(file, root);
  for (const child of root.children) {
    if (child.kind === 'element') topLevel(reader, file, child);
  }
  reader.stack.pop();
}

function safeRealPath(fs: ConfigFs, file: string): string {
  try {
    return fs.realPath!(file);
  } catch {
    return path.resolve(file);
  }
}

function topLevel(reader: Reader, file: string, element: XmlElement): void {
  const { config } = reader;
  switch (element.name) {
    case 'type':
      config.type = textOf(file, element);
      return;
    case 'listen': {
      const address = textOf(file, element);
      try {
        parseAddress(address);
      } catch (error) {
        if (error instanceof AddressError) invalid(file, element, `bad <listen> address '${address}': ${error.message}`);
        throw error;
      }
      config.listen.push(address);
      return;
    }
    case 'auth': {
      const mechanism = textOf(file, element);
      if (!/^[A-Za-z0-9_-]+$/.test(mechanism)) invalid(file, element, `'${mechanism}' is not a SASL mechanism name`);
      if (!config.auth.includes(mechanism)) config.auth.push(mechanism);
      return;
    }
    case 'limit':
      limit(reader, file, element);
      return;
    case 'include':
      include(reader, file, element);
      return;
    case 'includedir':
      includeDir(reader, file, element);
      return;
    case 'policy':
      config.policies.push(policy(reader, file, element));
      return;
    case 'busconfig':
      return invalid(file, element, '<busconfig> cannot be nested');
    default:
      if (UNSUPPORTED_ELEMENTS.has(element.name)) {
        config.warnings.push(`element <${element.name}> is not supported yet ${where(file, element.line)}`);
      } else if (['allow', 'deny', 'associate'].includes(element.name)) {
        invalid(file, element, `element <${element.name}> is only allowed inside ${element.name === 'associate' ? '<selinux>' : '<policy>'}`);
      } else {
        config.warnings.push(`element <${element.name}> is not part of the busconfig format; ignored ${where(file, element.line)}`);
      }
  }
}

function limit(reader: Reader, file: string, element: XmlElement): void {
  const name = element.attributes.name;
  if (name === undefined || name.length === 0) invalid(file, element, '<limit> needs a name attribute');
  warnUnknownAttributes(reader, file, element, ['name']);
  const text = textOf(file, element);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    invalid(file, element, `limit ${name} must be a non-negative integer, not '${text}'`);
  }
  if (!KNOWN_LIMITS.has(name)) {
    reader.config.warnings.push(`limit "${name}" is unknown; ignored ${where(file, element.line)}`);
    return;
  }
  reader.config.limits[name] = Number(text);
}

function include(reader: Reader, file: string, element: XmlElement): void {
  warnUnknownAttributes(reader, file, element, ['ignore_missing', 'if_selinux_enabled', 'selinux_root_relative']);
  const target = textOf(file, element);
  const ignoreMissing = yesNo(file, element, 'ignore_missing');
  if (yesNo(file, element, 'if_selinux_enabled') && !reader.selinuxEnabled) return;
  if (yesNo(file, element, 'selinux_root_relative')) {
    reader.config.warnings.push(
      `<include selinux_root_relative="yes">${target}</include> is not supported yet; skipped ${where(file, element.line)}`,
    );
    return;
  }
  const resolved = path.resolve(path.dirname(file), target);
  const from = { file, line: element.line };
  const text = readFileText(reader, resolved, from);
  if (text === undefined) {
    if (ignoreMissing) return;
    throw new ConfigError('CONFIG_READ', file, element.line, `included file ${resolved} does not exist`);
  }
  readInto(reader, resolved, text, from);
}

function includeDir(reader: Reader, file: string, element: XmlElement): void {
  warnUnknownAttributes(reader, file, element, []);
  const dir = path.resolve(path.dirname(file), textOf(file, element));
  reader.config.directories.push(dir);
  let names: string[];
  try {
    names = reader.fs.readDir(dir);
  } catch (error) {
    // dbus-daemon treats a missing directory as empty: the stock configs name several.
    if (isMissing(error)) return;
    throw new ConfigError('CONFIG_READ', file, element.line, `cannot read directory ${dir}: ${(error as Error).message}`);
  }
  // dbus-daemon leaves the order undefined; sorting makes ours reproducible.
  for (const name of names.filter((entry) => entry.endsWith('.conf')).sort()) {
    const included = path.join(dir, name);
    const from = { file, line: element.line };
    const text = readFileText(reader, included, from);
    if (text !== undefined) readInto(reader, included, text, from);
  }
}

function policy(reader: Reader, file: string, element: XmlElement): Policy {
  const keys = Object.keys(element.attributes);
  const selectors = keys.filter((key) => ['context', 'user', 'group', 'at_console'].includes(key));
  if (selectors.length !== 1) {
    invalid(file, element, '<policy> needs exactly one of context, user, group or at_console');
  }
  warnUnknownAttributes(reader, file, element, selectors);
  const key = selectors[0]!;
  const value = element.attributes[key]!;
  let selector: PolicySelector;
  if (key === 'context') {
    if (value !== 'default' && value !== 'mandatory') invalid(file, element, `policy context must be "default" or "mandatory", not "${value}"`);
    selector = { context: value };
  } else if (key === 'at_console') {
    if (value !== 'true' && value !== 'false') invalid(file, element, `at_console must be "true" or "false", not "${value}"`);
    selector = { atConsole: value === 'true' };
  } else {
    if (value.length === 0) invalid(file, element, `policy ${key} must not be empty`);
    selector = key === 'user' ? { user: value } : { group: value };
  }
  noText(file, element);
  const rules: PolicyRule[] = [];
  for (const child of element.children) {
    if (child.kind === 'text') continue;
    if (child.name !== 'allow' && child.name !== 'deny') {
      invalid(file, child, `element <${child.name}> is not allowed inside <policy>; only <allow> and <deny> are`);
    }
    if (child.children.some((node) => node.kind === 'element' || node.text.trim().length > 0)) {
      invalid(file, child, `<${child.name}> must be empty`);
    }
    if (Object.keys(child.attributes).length === 0) invalid(file, child, `<${child.name}> needs at least one attribute`);
    warnUnknownAttributes(reader, file, child, [...RULE_ATTRIBUTES]);
    rules.push({ kind: child.name, attributes: child.attributes, source: { file, line: child.line } });
  }
  return { selector, rules, source: { file, line: element.line } };
}

function detectSelinux(): boolean {
  return nodeFs.existsSync('/sys/fs/selinux/enforce');
}

/**
 * Parses configuration text as if it were read from `file` (includes resolve relative to it).
 */
export function parseConfig(text: string, file: string, options: ReadConfigOptions = {}): BusConfig {
  return parseAs(text, path.resolve(file), options);
}

function parseAs(text: string, file: string, options: ReadConfigOptions): BusConfig {
  const reader: Reader = {
    fs: options.fs ?? nodeConfigFs,
    selinuxEnabled: options.selinuxEnabled ?? detectSelinux(),
    config: emptyConfig(),
    stack: [],
  };
  readInto(reader, file, text);
  return reader.config;
}

/** Reads a configuration file and everything it includes. */
export function readConfig(file: string, options: ReadConfigOptions = {}): BusConfig {
  const fs = options.fs ?? nodeConfigFs;
  const resolved = path.resolve(file);
  const reader: Reader = {
    fs,
    selinuxEnabled: options.selinuxEnabled ?? detectSelinux(),
    config: emptyConfig(),
    stack: [],
  };
  readInto(reader, resolved, readFileText(reader, resolved)!);
  return reader.config;
}

const noFs: ConfigFs = {
  readFile: (file) => {
    throw Object.assign(new Error(`presets include nothing (${file})`), { code: 'EACCES' });
  },
  readDir: (dir) => {
    throw Object.assign(new Error(`presets include nothing (${dir})`), { code: 'EACCES' });
  },
};

function preset(name: string, text: string): BusConfig {
  const config = parseAs(text, `<${name} preset>`, { fs: noFs, selinuxEnabled: false });
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
