// dbus-daemon configuration files (the `busconfig` format, dbus-daemon(1) "CONFIGURATION FILE"),
// read as strictly as dbus-daemon reads them (bus/config-parser.c): an unknown element or
// attribute, a bad value or a rule that mixes what dbus-daemon keeps apart is an error naming
// file and line. What ferrybus reads: <type>, <listen>, <auth>, <limit>, <include>,
// <includedir>, <servicedir> and the standard service directories, and <policy>, whose rules
// are kept as data for the policy compiler (src/bus). Elements dbus-daemon knows but ferrybus
// does not act on (<user>, <fork>, ...) are checked like the rest and reported in `warnings`,
// never dropped silently.
//
// Deliberately stricter than dbus-daemon, where its reading is surprising:
//  - a file in an <includedir> that dbus-daemon refuses stops ferrybus too (dbus-daemon logs
//    it and carries on without the file's rules);
//  - numbers with anything after them ("1.5", "08") are refused (dbus-daemon reads 1 and 0);
//  - user="*"-style rules inside <policy user|group> are refused even when that user or group
//    does not exist (dbus-daemon then drops the policy unchecked);
//  - <policy user=""> and <policy group=""> are refused;
//  - XML: see xml.ts (internal DTD subsets and undefined entities).
//
// Reading is synchronous through a small `ConfigFs` seam, so tests and the handoff (which
// re-reads the config in the new root) can substitute the file system.

import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { AddressError, parseAddress } from '../transport/address.js';
import { ConfigError } from './config-error.js';
import { readPolicy } from './config-policy.js';
import { checkAttributes, checkEmpty, checkNoText, invalid, parseLong, rawText, trimmedText, where, yesNo } from './config-syntax.js';
import type { BusConfig, SourceLocation } from './config-types.js';
import { parseXml, type XmlElement } from './xml.js';
import { decodeConfigBytes } from './xml-bytes.js';

export { ConfigError, type ConfigErrorCode } from './config-error.js';
export type { BusConfig, Policy, PolicyRule, PolicyRuleKind, PolicySelector, SourceLocation } from './config-types.js';
export { parseXml, type XmlElement, type XmlNode, type XmlText } from './xml.js';
export { decodeConfigBytes } from './xml-bytes.js';

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
  readFile: (file) => decodeConfigBytes(nodeFs.readFileSync(file), file),
  readDir: (dir) => nodeFs.readdirSync(dir),
  realPath: (file) => nodeFs.realpathSync(file),
};

/**
 * dbus-daemon's limits (set_limit): `long` ones take any 64-bit value, `int` ones must fit
 * in 32 bits. Every one must be 0 or more.
 */
const LIMITS = new Map<string, 'long' | 'int'>([
  ['max_incoming_bytes', 'long'],
  ['max_incoming_unix_fds', 'long'],
  ['max_outgoing_bytes', 'long'],
  ['max_outgoing_unix_fds', 'long'],
  ['max_message_size', 'long'],
  ['max_message_unix_fds', 'long'],
  ['service_start_timeout', 'int'],
  ['auth_timeout', 'int'],
  ['pending_fd_timeout', 'int'],
  ['reply_timeout', 'int'],
  ['max_completed_connections', 'int'],
  ['max_incomplete_connections', 'int'],
  ['max_connections_per_user', 'int'],
  ['max_pending_service_starts', 'int'],
  ['max_names_per_connection', 'int'],
  ['max_match_rules_per_connection', 'int'],
  ['max_replies_per_connection', 'int'],
  ['max_containers', 'int'],
  ['max_containers_per_user', 'int'],
  ['max_container_metadata_bytes', 'int'],
  ['max_connections_per_container', 'int'],
]);

/** What dbus-daemon 1.14 can offer; it refuses to start with any other <auth>. */
const AUTH_MECHANISMS = ['EXTERNAL', 'DBUS_COOKIE_SHA1', 'ANONYMOUS'];

/** dbus-daemon elements ferrybus checks but does not act on yet, by what they may hold. */
const UNSUPPORTED_TEXT_ELEMENTS = new Set(['user', 'pidfile']);
const UNSUPPORTED_EMPTY_ELEMENTS = new Set(['fork', 'keep_umask', 'syslog', 'allow_anonymous']);
const APPARMOR_MODES = ['enabled', 'disabled', 'required'];

interface Reader {
  readonly fs: ConfigFs;
  readonly selinuxEnabled: boolean;
  readonly config: BusConfig;
  /** Canonical paths of the files being read, outermost first, for loop detection. */
  readonly stack: string[];
}

function emptyConfig(): BusConfig {
  return { listen: [], listenSources: [], auth: [], limits: {}, policies: [], warnings: [], files: [], directories: [], serviceDirs: [] };
}

function warn(reader: Reader, message: string, file: string, line: number): void {
  reader.config.warnings.push(`${message} ${where(file, line)}`);
}

function isMissing(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ENOENT';
}

function readFileText(reader: Reader, file: string, from?: SourceLocation): string | undefined {
  try {
    return reader.fs.readFile(file);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    if (from === undefined) {
      throw new ConfigError('CONFIG_READ', file, undefined, `cannot read configuration: ${(error as Error).message}`);
    }
    if (isMissing(error)) return undefined;
    throw new ConfigError('CONFIG_READ', from.file, from.line, `cannot read included file ${file}: ${(error as Error).message}`);
  }
}

function readInto(reader: Reader, file: string, text: string, from?: SourceLocation): void {
  const canonical = reader.fs.realPath ? safeRealPath(reader.fs, file) : path.resolve(file);
  const loopAt = reader.stack.indexOf(canonical);
  if (loopAt >= 0) {
    const chain = [...reader.stack.slice(loopAt), canonical].join(' -> ');
    throw new ConfigError('CONFIG_INCLUDE_LOOP', from?.file ?? file, from?.line, `Circular inclusion: ${chain}`);
  }
  reader.stack.push(canonical);
  reader.config.files.push(file);
  const root = parseXml(text, file);
  if (root.name !== 'busconfig') invalid(file, root, `the root element must be <busconfig>, not <${root.name}>`);
  checkAttributes(file, root, []);
  checkNoText(file, root);
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
      checkAttributes(file, element, []);
      config.type = trimmedText(file, element);
      return;
    case 'listen':
      checkAttributes(file, element, []);
      config.listen.push(trimmedText(file, element));
      config.listenSources?.push({ file, line: element.line });
      return;
    case 'auth': {
      checkAttributes(file, element, []);
      // As written: dbus-daemon does not trim it either.
      const mechanism = rawText(file, element);
      if (!AUTH_MECHANISMS.includes(mechanism)) {
        invalid(file, element, `Unsupported auth mechanism "${mechanism}": the mechanisms are ${AUTH_MECHANISMS.join(', ')}`);
      }
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
      config.policies.push(readPolicy(file, element, (message, at, line) => warn(reader, message, at, line)));
      return;
    case 'servicedir': {
      checkAttributes(file, element, []);
      const dir = path.resolve(path.dirname(file), pathText(reader, file, element));
      config.serviceDirs?.push({ kind: 'dir', path: dir, source: { file, line: element.line } });
      return;
    }
    case 'standard_session_servicedirs':
    case 'standard_system_servicedirs':
      checkAttributes(file, element, []);
      checkEmpty(file, element);
      config.serviceDirs?.push({
        kind: element.name === 'standard_session_servicedirs' ? 'standard-session' : 'standard-system',
        source: { file, line: element.line },
      });
      return;
    case 'servicehelper':
      // dbus-daemon's setuid launcher for system services; ferrybus runs as root and starts
      // them itself as their User=, so the helper is read and not needed.
      checkAttributes(file, element, []);
      rawText(file, element);
      return;
    case 'selinux':
      selinux(file, element);
      warn(reader, `element <selinux> is not supported yet`, file, element.line);
      return;
    case 'apparmor': {
      checkAttributes(file, element, ['mode']);
      const mode = element.attributes.mode;
      if (mode !== undefined && !APPARMOR_MODES.includes(mode)) {
        invalid(file, element, `Mode attribute on <apparmor> must have value "required", "enabled" or "disabled", not "${mode}"`);
      }
      checkEmpty(file, element);
      warn(reader, `element <apparmor> is not supported yet`, file, element.line);
      return;
    }
    case 'busconfig':
      return invalid(file, element, '<busconfig> cannot be nested');
    case 'allow':
    case 'deny':
    case 'associate':
      return invalid(file, element, `element <${element.name}> is only allowed inside ${element.name === 'associate' ? '<selinux>' : '<policy>'}`);
    default:
      if (UNSUPPORTED_TEXT_ELEMENTS.has(element.name)) {
        checkAttributes(file, element, []);
        rawText(file, element);
      } else if (UNSUPPORTED_EMPTY_ELEMENTS.has(element.name)) {
        checkAttributes(file, element, []);
        checkEmpty(file, element);
      } else {
        invalid(file, element, `Element <${element.name}> not allowed inside <busconfig> in configuration file`);
      }
      warn(reader, `element <${element.name}> is not supported yet`, file, element.line);
  }
}

function selinux(file: string, element: XmlElement): void {
  checkAttributes(file, element, []);
  checkNoText(file, element);
  for (const child of element.children) {
    if (child.kind === 'text') continue;
    if (child.name !== 'associate') invalid(file, child, `Element <${child.name}> not allowed inside <selinux> in configuration file`);
    checkAttributes(file, child, ['own', 'context']);
    if (child.attributes.own === undefined || child.attributes.context === undefined) {
      invalid(file, child, 'Element <associate> must have attributes own="<servicename>" and context="<selinux context>"');
    }
    checkEmpty(file, child);
  }
}

function limit(reader: Reader, file: string, element: XmlElement): void {
  checkAttributes(file, element, ['name']);
  const name = element.attributes.name;
  if (name === undefined) invalid(file, element, '<limit> element must have a "name" attribute');
  const text = rawText(file, element);
  const parsed = parseLong(text);
  if (parsed === undefined) {
    const written = text.trim();
    const reason = /^[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.test(written)
      ? 'out of the range of a 64-bit integer'
      : /^[+-]?[0-9]/.test(written)
        ? 'write the number alone: dbus-daemon would read its leading digits and ignore the rest'
        : 'could not parse as integer';
    invalid(file, element, `<limit name="${name}"> element has invalid value '${written}' (${reason})`);
  }
  const kind = LIMITS.get(name);
  if (kind === undefined) invalid(file, element, `There is no limit called "${name}"`);
  if (parsed.value < 0n) invalid(file, element, `<limit name="${name}"> must be a positive number (0 or more), not ${parsed.value}`);
  if (kind === 'int' && parsed.value > 0x7fffffffn) invalid(file, element, `<limit name="${name}"> value is too large (at most 2147483647)`);
  if (parsed.octal) {
    warn(reader, `<limit name="${name}">${text.trim()}</limit> starts with 0, so it is octal: ${parsed.value}, as dbus-daemon reads it`, file, element.line);
  }
  reader.config.limits[name] = Number(parsed.value);
}

/** An <include> or <includedir> path, as written: dbus-daemon does not trim it either. */
function pathText(reader: Reader, file: string, element: XmlElement): string {
  const text = rawText(file, element);
  if (text.trim() !== text) {
    warn(reader, `<${element.name}> path ${JSON.stringify(text)} has spaces or line breaks around it, which are part of the path (as in dbus-daemon)`, file, element.line);
  }
  return text;
}

function include(reader: Reader, file: string, element: XmlElement): void {
  checkAttributes(file, element, ['ignore_missing', 'if_selinux_enabled', 'selinux_root_relative']);
  const ignoreMissing = yesNo(file, element, 'ignore_missing');
  const ifSelinux = yesNo(file, element, 'if_selinux_enabled');
  const selinuxRootRelative = yesNo(file, element, 'selinux_root_relative');
  const target = pathText(reader, file, element);
  if (ifSelinux && !reader.selinuxEnabled) return;
  if (selinuxRootRelative) {
    warn(reader, `<include selinux_root_relative="yes">${target}</include> is not supported yet; skipped`, file, element.line);
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
  checkAttributes(file, element, []);
  const dir = path.resolve(path.dirname(file), pathText(reader, file, element));
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

function detectSelinux(): boolean {
  return nodeFs.existsSync('/sys/fs/selinux/enforce');
}

function newReader(options: ReadConfigOptions): Reader {
  return {
    fs: options.fs ?? nodeConfigFs,
    selinuxEnabled: options.selinuxEnabled ?? detectSelinux(),
    config: emptyConfig(),
    stack: [],
  };
}

/**
 * Parses configuration text as if it were read from `file` (includes resolve relative to it).
 */
export function parseConfig(text: string, file: string, options: ReadConfigOptions = {}): BusConfig {
  const reader = newReader(options);
  // A name in angle brackets names no file: the built-in presets.
  readInto(reader, /^<.*>$/.test(file) ? file : path.resolve(file), text);
  return reader.config;
}

/**
 * Reads a configuration file and everything it includes. Relative includes resolve against
 * the path as given, not its symlink target, as in dbus-daemon.
 */
export function readConfig(file: string, options: ReadConfigOptions = {}): BusConfig {
  const reader = newReader(options);
  const resolved = path.resolve(file);
  readInto(reader, resolved, readFileText(reader, resolved)!);
  return reader.config;
}

/**
 * Checks every <listen> address before the bus listens: dbus-daemon reads them as text and
 * fails only when it listens, so reading a file never fails on them.
 */
export function checkListenAddresses(config: BusConfig): void {
  config.listen.forEach((address, index) => {
    try {
      parseAddress(address);
    } catch (error) {
      if (!(error instanceof AddressError)) throw error;
      const source = config.listenSources?.[index];
      throw new ConfigError('CONFIG_INVALID', source?.file ?? '<config>', source?.line, `bad <listen> address '${address}': ${error.message}`);
    }
  });
}
