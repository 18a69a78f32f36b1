import { Buffer } from 'node:buffer';
// D-Bus service files (`[D-BUS Service]`, Name=, Exec=, User=, SystemdService=), read as
// dbus-daemon reads them (bus/desktop-file.c, bus/activation.c): a desktop-entry-like file of
// sections and Key=Value lines, `#` comments, values unescaped (\s \t \n \r \\). A file that
// dbus-daemon would not load is refused here too, with the reason; the caller logs and skips it.

import type { ServiceEntry } from '../bus/activation.js';

export const SERVICE_SECTION = 'D-BUS Service';
/** dbus-daemon refuses larger files (128 KiB). */
export const MAX_SERVICE_FILE_BYTES = 128 * 1024;

/** Keys dbus-daemon reads; any other key is named in a warning (never silently dropped). */
const KNOWN_KEYS = new Set(['Name', 'Exec', 'User', 'SystemdService', 'AssumedAppArmorLabel']);

export class ServiceFileError extends Error {}

export interface ParsedServiceFile {
  readonly entry: ServiceEntry;
  /** Keys read but not acted on, e.g. `AssumedAppArmorLabel (no AppArmor support)`. */
  readonly ignored: string[];
}

/** Parses sections of Key=Value lines; the first occurrence of a key in a section counts. */
function parseSections(text: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === '' || raw.startsWith('#')) return;
    if (raw.startsWith('[')) {
      if (raw.length <= 2 || !raw.endsWith(']')) throw new ServiceFileError(`line ${line}: invalid syntax for section header`);
      const name = raw.slice(1, -1);
      // Group names: printable ASCII without brackets (the section name itself has a space).
      if (/[\x00-\x1f\x7f-\uffff[\]]/.test(name)) throw new ServiceFileError(`line ${line}: invalid characters in section name`);
      current = sections.get(name) ?? new Map();
      sections.set(name, current);
      return;
    }
    if (!current) throw new ServiceFileError(`line ${line}: key=value before [Section]`);
    const m = /^([A-Za-z0-9-]+)(\[[^\]]*\])? *(=?)(.*)$/.exec(raw);
    if (!m) throw new ServiceFileError(`line ${line}: ${/^[A-Za-z0-9-]/.test(raw) ? 'invalid characters in key name' : 'empty key name'}`);
    const [, key, locale, equals, rest] = m as unknown as [string, string, string | undefined, string, string];
    if (locale !== undefined) return; // localized keys are ignored, as in dbus-daemon
    if (equals !== '=') throw new ServiceFileError(`line ${line}: ${rest === '' ? "no '=' in key/value pair" : 'invalid characters in key name'}`);
    const value = unescape(rest.replace(/^ +/, ''), line);
    if (!current.has(key)) current.set(key, value);
  });
  return sections;
}

function unescape(text: string, line: number): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\0') throw new ServiceFileError(`line ${line}: value contains a nul byte`);
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = text[++i];
    const map: Record<string, string> = { s: ' ', t: '\t', n: '\n', r: '\r', '\\': '\\' };
    if (next === undefined) throw new ServiceFileError(`line ${line}: value ends in \\`);
    const replaced = map[next];
    if (replaced === undefined) throw new ServiceFileError(`line ${line}: invalid escape sequence \\${next}`);
    out += replaced;
  }
  return out;
}

/**
 * Parses one service file. `strictName`: the file must be named after the service it
 * describes (`<Name>.service`), as dbus-daemon requires of system services and of the
 * transient session directory.
 */
export function parseServiceFile(text: string, file: string, fileName: string, strictName = false): ParsedServiceFile {
  if (Buffer.byteLength(text) > MAX_SERVICE_FILE_BYTES) {
    throw new ServiceFileError(`file is larger than ${MAX_SERVICE_FILE_BYTES} bytes`);
  }
  const section = parseSections(text).get(SERVICE_SECTION);
  if (!section) throw new ServiceFileError(`no [${SERVICE_SECTION}] section`);
  const name = section.get('Name');
  if (name === undefined) throw new ServiceFileError(`no Name= in [${SERVICE_SECTION}]`);
  const exec = section.get('Exec');
  if (exec === undefined) throw new ServiceFileError(`no Exec= in [${SERVICE_SECTION}]`);
  if (strictName && fileName !== `${name}.service`) {
    throw new ServiceFileError(`should have been named "${name}.service": not loading it`);
  }
  const user = section.get('User');
  const systemdService = section.get('SystemdService');
  const ignored = [...section.keys()].filter((k) => !KNOWN_KEYS.has(k));
  if (section.has('AssumedAppArmorLabel')) ignored.push('AssumedAppArmorLabel (no AppArmor support)');
  return {
    entry: {
      name,
      exec,
      file,
      ...(user !== undefined ? { user } : {}),
      ...(systemdService !== undefined ? { systemdService } : {}),
    },
    ignored,
  };
}

/**
 * Splits an Exec= line into argv as dbus-daemon does (a POSIX shell's quoting, without
 * expansions): '…' literal, "…" with \" \\ \$ \` and line continuations, \ outside quotes.
 */
export function splitExec(exec: string): string[] {
  const argv: string[] = [];
  let word: string | undefined;
  let i = 0;
  const add = (s: string) => {
    word = (word ?? '') + s;
  };
  while (i < exec.length) {
    const c = exec[i]!;
    if (c === ' ' || c === '\t' || c === '\n') {
      if (word !== undefined) argv.push(word);
      word = undefined;
      i++;
    } else if (c === "'") {
      const end = exec.indexOf("'", i + 1);
      if (end < 0) throw new ServiceFileError(`Exec= has an unterminated ' quote: ${exec}`);
      add(exec.slice(i + 1, end));
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      let text = '';
      for (;;) {
        if (j >= exec.length) throw new ServiceFileError(`Exec= has an unterminated " quote: ${exec}`);
        const d = exec[j]!;
        if (d === '"') break;
        if (d === '\\' && j + 1 < exec.length && '"\\$`\n'.includes(exec[j + 1]!)) {
          if (exec[j + 1] !== '\n') text += exec[j + 1];
          j += 2;
          continue;
        }
        text += d;
        j++;
      }
      add(text);
      i = j + 1;
    } else if (c === '\\') {
      if (i + 1 >= exec.length) throw new ServiceFileError(`Exec= ends in a backslash: ${exec}`);
      if (exec[i + 1] !== '\n') add(exec[i + 1]!);
      i += 2;
    } else if (c === '#' && word === undefined) {
      break; // a comment, as in a shell
    } else {
      add(c);
      i++;
    }
  }
  if (word !== undefined) argv.push(word);
  if (argv.length === 0) throw new ServiceFileError('Exec= names no program');
  return argv;
}
