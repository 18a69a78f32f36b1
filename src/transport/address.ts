import { Buffer } from 'node:buffer';
// D-Bus server addresses (D-Bus specification, "Server Addresses"):
//
//   address  = entry *( ";" entry )        e.g. unix:path=/run/x,guid=0123…;unix:abstract=y
//   entry    = transport ":" [ key "=" value *( "," key "=" value ) ]
//
// Values are escaped byte-wise exactly like libdbus (`dbus_address_escape_value`): the bytes
// [-0-9A-Za-z_/.\*] and backslash may appear as they are, every other byte of the UTF-8
// encoding is written as %xx (lowercase hex). Parsing follows `dbus_parse_address`, a little
// stricter where libdbus would accept something it later fails on (empty transport name,
// duplicate keys).
//
// Pure: no sockets, no files. `listenAddressFor` only decides which path to bind; creating
// directories and binding is the listener's job.

import { randomBytes } from '../sys/libc.js';
import * as path from 'node:path';

export type AddressErrorCode =
  | 'ADDRESS_EMPTY'
  | 'ADDRESS_NO_COLON'
  | 'ADDRESS_EMPTY_TRANSPORT'
  | 'ADDRESS_BAD_PAIR'
  | 'ADDRESS_DUPLICATE_KEY'
  | 'ADDRESS_BAD_ESCAPE'
  | 'ADDRESS_UNESCAPED_CHAR'
  | 'ADDRESS_BAD_UTF8'
  | 'ADDRESS_BAD_NAME'
  | 'ADDRESS_UNSUPPORTED_TRANSPORT'
  | 'ADDRESS_MISSING_PARAM'
  | 'ADDRESS_CONFLICTING_PARAMS'
  | 'ADDRESS_UNKNOWN_PARAM'
  | 'ADDRESS_BAD_VALUE'
  | 'ADDRESS_NO_RUNTIME_DIR'
  | 'ADDRESS_NO_SYSTEMD_SOCKETS';

export class AddressError extends Error {
  readonly code: AddressErrorCode;

  constructor(code: AddressErrorCode, message: string) {
    super(message);
    this.name = 'AddressError';
    this.code = code;
  }
}

/** One `transport:key=value,…` entry; values are unescaped. Key order is kept for formatting. */
export interface AddressEntry {
  readonly transport: string;
  readonly params: Readonly<Record<string, string>>;
}

/** Where to listen for one address entry. */
export interface ListenTarget {
  /** What to pass to `net.Server#listen({ path })`; an abstract name starts with '\0'. */
  readonly path: string;
  readonly abstract: boolean;
  /** The address clients connect to (the bus appends its guid when it advertises it). */
  readonly address: AddressEntry;
  /**
   * `systemd:`: serve the sockets systemd passed (sd_listen_fds) instead of binding `path`
   * (which is then ''). The listener finds out where they are bound.
   */
  readonly systemd?: true;
}

export interface ListenOptions {
  /** Environment for `unix:runtime=yes` (XDG_RUNTIME_DIR); defaults to process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The socket file name for `unix:dir=`/`unix:tmpdir=`; defaults to `dbus-` + 10 random characters. */
  readonly randomName?: () => string;
  /**
   * For `systemd:`: how many listening sockets systemd passed, and if none why not (e.g.
   * 'LISTEN_FDS unset'). Deciding that reads the environment, so the caller does it.
   * Default: none were passed.
   */
  readonly systemd?: { readonly passed: number; readonly missing?: string };
}

/** Transports other D-Bus implementations know, which ferrybus does not listen on. */
const KNOWN_UNSUPPORTED = new Set([
  'tcp',
  'nonce-tcp',
  'launchd',
  'autolaunch',
  'unixexec',
  'vsock',
]);

const UNIX_LOCATION_KEYS = ['path', 'abstract', 'dir', 'tmpdir', 'runtime'] as const;

/** sockaddr_un.sun_path is 108 bytes: a path needs its terminating NUL, an abstract name its leading one. */
const SUN_PATH_BYTES = 108;

const HEX = '0123456789abcdef';

function isOptionallyEscaped(byte: number): boolean {
  return (
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x2d || // -
    byte === 0x5f || // _
    byte === 0x2f || // /
    byte === 0x5c || // backslash (libdbus accepts it unescaped too)
    byte === 0x2a || // *
    byte === 0x2e // .
  );
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  return -1;
}

/** Escapes a value like `dbus_address_escape_value`. */
export function escapeValue(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out += isOptionallyEscaped(byte)
      ? String.fromCharCode(byte)
      : `%${HEX[byte >> 4]!}${HEX[byte & 15]!}`;
  }
  return out;
}

/** Reverses `escapeValue`; rejects bad %xx, bytes that must be escaped, and invalid UTF-8. */
export function unescapeValue(escaped: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < escaped.length; i++) {
    const code = escaped.charCodeAt(i);
    if (code < 0x80 && isOptionallyEscaped(code)) {
      bytes.push(code);
    } else if (code === 0x25 /* % */) {
      const high = i + 1 < escaped.length ? hexValue(escaped.charCodeAt(i + 1)) : -1;
      const low = i + 2 < escaped.length ? hexValue(escaped.charCodeAt(i + 2)) : -1;
      if (high < 0 || low < 0) {
        throw new AddressError(
          'ADDRESS_BAD_ESCAPE',
          `in D-Bus address value '${escaped}', '%' at offset ${i} is not followed by two hex digits`,
        );
      }
      bytes.push(high * 16 + low);
      i += 2;
    } else {
      throw new AddressError(
        'ADDRESS_UNESCAPED_CHAR',
        `in D-Bus address value '${escaped}', character ${JSON.stringify(escaped[i])} at offset ${i} should have been escaped`,
      );
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    throw new AddressError(
      'ADDRESS_BAD_UTF8',
      `D-Bus address value '${escaped}' does not decode to valid UTF-8`,
    );
  }
}

/** Parses a semicolon-separated address list into its entries (at least one). */
export function parseAddress(address: string): AddressEntry[] {
  if (address.length === 0) throw new AddressError('ADDRESS_EMPTY', 'empty D-Bus address');
  const entries: AddressEntry[] = [];
  // Like libdbus, one trailing ';' is tolerated; an empty entry anywhere else has no colon.
  const parts = address.split(';');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  for (const part of parts) {
    const colon = part.indexOf(':');
    if (colon < 0) {
      throw new AddressError(
        'ADDRESS_NO_COLON',
        `D-Bus address entry '${part}' in '${address}' does not contain a colon`,
      );
    }
    const transport = part.slice(0, colon);
    if (transport.length === 0) {
      throw new AddressError(
        'ADDRESS_EMPTY_TRANSPORT',
        `D-Bus address entry '${part}' in '${address}' has no transport name before the colon`,
      );
    }
    const pairs: [string, string][] = [];
    const seen = new Set<string>();
    const rest = part.slice(colon + 1);
    // A trailing ',' is tolerated, as libdbus does.
    const items = rest === '' ? [] : rest.split(',');
    if (items.length > 1 && items[items.length - 1] === '') items.pop();
    for (const item of items) {
      const equals = item.indexOf('=');
      if (equals <= 0 || equals === item.length - 1) {
        throw new AddressError(
          'ADDRESS_BAD_PAIR',
          `D-Bus address entry '${part}': '${item}' is not key=value with a non-empty key and value`,
        );
      }
      const key = item.slice(0, equals);
      if (seen.has(key)) {
        throw new AddressError(
          'ADDRESS_DUPLICATE_KEY',
          `D-Bus address entry '${part}' gives key '${key}' more than once`,
        );
      }
      seen.add(key);
      pairs.push([key, unescapeValue(item.slice(equals + 1))]);
    }
    entries.push({ transport, params: Object.fromEntries(pairs) });
  }
  return entries;
}

/** Formats one entry; `parseAddress(formatAddressEntry(e))` gives back `[e]`. */
export function formatAddressEntry(entry: AddressEntry): string {
  if (entry.transport.length === 0 || /[:;,=]/.test(entry.transport)) {
    throw new AddressError(
      'ADDRESS_BAD_NAME',
      `'${entry.transport}' cannot be a D-Bus address transport name`,
    );
  }
  const pairs = Object.entries(entry.params).map(([key, value]) => {
    if (key.length === 0 || /[;,=]/.test(key)) {
      throw new AddressError('ADDRESS_BAD_NAME', `'${key}' cannot be a D-Bus address key`);
    }
    if (value.length === 0) {
      throw new AddressError(
        'ADDRESS_BAD_VALUE',
        `D-Bus address key '${key}' has an empty value, which cannot be written`,
      );
    }
    return `${key}=${escapeValue(value)}`;
  });
  return `${entry.transport}:${pairs.join(',')}`;
}

/** Formats an address list (entries joined by ';'). */
export function formatAddress(entries: readonly AddressEntry[]): string {
  if (entries.length === 0) throw new AddressError('ADDRESS_EMPTY', 'no D-Bus address entries to format');
  return entries.map(formatAddressEntry).join(';');
}

function randomSocketName(): string {
  // libdbus names these dbus-XXXXXXXXXX with ten random alphanumerics.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let name = 'dbus-';
  for (const byte of randomBytes(10)) name += alphabet[byte % alphabet.length]!;
  return name;
}

function requireAbsolute(key: string, value: string): string {
  if (!path.posix.isAbsolute(value)) {
    throw new AddressError(
      'ADDRESS_BAD_VALUE',
      `unix:${key}= must be an absolute path (got '${value}'): the daemon's working directory is not the client's`,
    );
  }
  return value;
}

function checkLength(location: string, bytes: number, limit: number): void {
  if (bytes > limit) {
    throw new AddressError(
      'ADDRESS_BAD_VALUE',
      `unix socket ${location} is ${bytes} bytes long, the kernel allows at most ${limit}`,
    );
  }
}

/**
 * Decides where to listen for one address entry. Supported: `unix:path=`, `unix:abstract=`,
 * `unix:dir=` and `unix:tmpdir=` (a fresh random socket name in that directory, never an
 * abstract socket), `unix:runtime=yes` ($XDG_RUNTIME_DIR/bus), and `systemd:` (the sockets
 * systemd passed; unusable when it passed none, so a list can fall back to the next entry,
 * as with libdbus). Anything else throws.
 */
export function listenAddressFor(entry: AddressEntry, options: ListenOptions = {}): ListenTarget {
  if (entry.transport === 'systemd') return systemdTarget(entry, options);
  if (entry.transport !== 'unix') {
    const known = KNOWN_UNSUPPORTED.has(entry.transport) ? '' : ' (unknown transport)';
    throw new AddressError(
      'ADDRESS_UNSUPPORTED_TRANSPORT',
      `ferrybus cannot listen on transport '${entry.transport}'${known}: only unix: addresses are supported`,
    );
  }
  const keys = Object.keys(entry.params);
  for (const key of keys) {
    if (!(UNIX_LOCATION_KEYS as readonly string[]).includes(key)) {
      throw new AddressError(
        'ADDRESS_UNKNOWN_PARAM',
        `unix listen address does not take key '${key}' (expected one of ${UNIX_LOCATION_KEYS.join(', ')})`,
      );
    }
  }
  if (keys.length === 0) {
    throw new AddressError(
      'ADDRESS_MISSING_PARAM',
      `unix listen address needs one of ${UNIX_LOCATION_KEYS.join(', ')}`,
    );
  }
  if (keys.length > 1) {
    throw new AddressError(
      'ADDRESS_CONFLICTING_PARAMS',
      `unix listen address gives ${keys.join(' and ')}; exactly one location is allowed`,
    );
  }
  const key = keys[0]!;
  const value = entry.params[key]!;
  let socketPath: string;
  switch (key) {
    case 'abstract': {
      checkLength('abstract name (with its leading NUL)', Buffer.byteLength(value) + 1, SUN_PATH_BYTES);
      return { path: `\0${value}`, abstract: true, address: { transport: 'unix', params: { abstract: value } } };
    }
    case 'path':
      socketPath = requireAbsolute(key, value);
      break;
    case 'dir':
    case 'tmpdir':
      socketPath = path.posix.join(requireAbsolute(key, value), (options.randomName ?? randomSocketName)());
      break;
    case 'runtime': {
      if (value !== 'yes') {
        throw new AddressError('ADDRESS_BAD_VALUE', `unix:runtime= only accepts 'yes' (got '${value}')`);
      }
      const runtimeDir = runtimeDirectory(options.env ?? process.env);
      if (runtimeDir === undefined) {
        throw new AddressError(
          'ADDRESS_NO_RUNTIME_DIR',
          'unix:runtime=yes needs XDG_RUNTIME_DIR to be set to an absolute path',
        );
      }
      socketPath = path.posix.join(runtimeDir, 'bus');
      break;
    }
    default:
      throw new Error(`unreachable: unix key ${key}`);
  }
  checkLength(`path '${socketPath}'`, Buffer.byteLength(socketPath), SUN_PATH_BYTES - 1);
  return { path: socketPath, abstract: false, address: { transport: 'unix', params: { path: socketPath } } };
}

function systemdTarget(entry: AddressEntry, options: ListenOptions): ListenTarget {
  const keys = Object.keys(entry.params);
  if (keys.length > 0) {
    throw new AddressError('ADDRESS_UNKNOWN_PARAM', `systemd: listen address takes no keys (got ${keys.join(', ')})`);
  }
  const passed = options.systemd?.passed ?? 0;
  if (passed === 0) {
    throw new AddressError(
      'ADDRESS_NO_SYSTEMD_SOCKETS',
      `systemd: but no sockets were passed (${options.systemd?.missing ?? 'LISTEN_FDS unset'})`,
    );
  }
  return { path: '', abstract: false, address: { transport: 'systemd', params: {} }, systemd: true };
}

/**
 * Like libdbus's server listen: the first entry of an address list ferrybus can listen on.
 * Throws if none is usable, naming every entry's reason (the code is the first entry's).
 */
export function firstListenTarget(
  address: string | readonly AddressEntry[],
  options: ListenOptions = {},
): ListenTarget {
  const entries = typeof address === 'string' ? parseAddress(address) : address;
  const failures: AddressError[] = [];
  for (const entry of entries) {
    try {
      return listenAddressFor(entry, options);
    } catch (error) {
      if (!(error instanceof AddressError)) throw error;
      failures.push(error);
    }
  }
  if (failures.length === 0) throw new AddressError('ADDRESS_EMPTY', 'no D-Bus address entries to listen on');
  if (failures.length === 1) throw failures[0]!;
  throw new AddressError(
    failures[0]!.code,
    `no usable listen address: ${failures.map((failure) => failure.message).join('; ')}`,
  );
}

function runtimeDirectory(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const dir = env.XDG_RUNTIME_DIR;
  // The XDG base directory spec says relative values are invalid and must be ignored.
  return dir !== undefined && path.posix.isAbsolute(dir) ? dir : undefined;
}

/**
 * Where ferrybus listens when told nothing: root gets `/run/ferrybus/bus`, other users
 * `$XDG_RUNTIME_DIR/ferrybus/bus`, or `/tmp/ferrybus-<uid>/bus` without a runtime dir.
 */
export function defaultAddress(options: {
  readonly uid: number;
  readonly env: Readonly<Record<string, string | undefined>>;
}): string {
  let socketPath: string;
  if (options.uid === 0) {
    socketPath = '/run/ferrybus/bus';
  } else {
    const runtimeDir = runtimeDirectory(options.env);
    socketPath =
      runtimeDir === undefined
        ? `/tmp/ferrybus-${options.uid}/bus`
        : path.posix.join(runtimeDir, 'ferrybus', 'bus');
  }
  return formatAddressEntry({ transport: 'unix', params: { path: socketPath } });
}
