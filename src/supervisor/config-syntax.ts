// Checks shared by every busconfig element, each worded after dbus-daemon's own message
// (bus/config-parser.c) so that a refusal reads the same whichever daemon gave it.

import { ConfigError } from './config-error.js';
import type { XmlElement, XmlText } from './xml.js';

export function invalid(file: string, node: XmlElement | XmlText | number, message: string): never {
  throw new ConfigError('CONFIG_INVALID', file, typeof node === 'number' ? node : node.line, message);
}

export function where(file: string, line: number): string {
  return `(${file}:${line})`;
}

/** dbus-daemon's locate_attributes: an attribute not in `allowed` is an error, never ignored. */
export function checkAttributes(file: string, element: XmlElement, allowed: readonly string[]): void {
  for (const name of Object.keys(element.attributes)) {
    if (!allowed.includes(name)) {
      invalid(file, element, `Attribute "${name}" is invalid on <${element.name}> element in this context`);
    }
  }
}

/** The line of the first non-blank character of a text node (not the line break before it). */
function firstWordLine(text: XmlText): number {
  const leading = text.text.slice(0, text.text.length - text.text.trimStart().length);
  return text.line + leading.split('\n').length - 1;
}

/** An element that holds no text (whitespace aside) and no child elements: <fork/>, <allow/>. */
export function checkEmpty(file: string, element: XmlElement): void {
  for (const child of element.children) {
    if (child.kind === 'element') invalid(file, child, `element <${child.name}> is not allowed inside <${element.name}>`);
  }
  checkNoText(file, element);
}

/** Child elements are the caller's business; text other than whitespace is an error. */
export function checkNoText(file: string, element: XmlElement): void {
  for (const child of element.children) {
    if (child.kind === 'text' && child.text.trim().length > 0) {
      invalid(file, firstWordLine(child), `text is not allowed inside <${element.name}>`);
    }
  }
}

/**
 * The text of an element that must hold text and nothing else, exactly as written (dbus-daemon
 * does not trim it). An element with no text at all is an error, as in dbus-daemon.
 */
export function rawText(file: string, element: XmlElement): string {
  let text = '';
  for (const child of element.children) {
    if (child.kind === 'element') invalid(file, child, `element <${child.name}> is not allowed inside <${element.name}>`);
    text += child.text;
  }
  if (text.length === 0) invalid(file, element, `<${element.name}> must not be empty`);
  return text;
}

/** rawText, trimmed, and not blank. */
export function trimmedText(file: string, element: XmlElement): string {
  const text = rawText(file, element).trim();
  if (text.length === 0) invalid(file, element, `<${element.name}> must not be empty`);
  return text;
}

/** An attribute that dbus-daemon reads as "yes" or "no"; absent is `fallback`. */
export function yesNo(file: string, element: XmlElement, attribute: string, fallback = false): boolean {
  const value = element.attributes[attribute];
  if (value === undefined) return fallback;
  if (value === 'yes') return true;
  if (value === 'no') return false;
  return invalid(file, element, `${attribute} attribute must have value "yes" or "no", not "${value}"`);
}

export interface ParsedInteger {
  readonly value: bigint;
  /** Written with a leading 0: C's strtol, and so dbus-daemon, reads it in octal. */
  readonly octal: boolean;
}

/**
 * An integer as dbus-daemon reads it with strtol(…, 0): optional leading whitespace and sign,
 * 0x for hexadecimal, a leading 0 for octal, and the range of a 64-bit long. Unlike strtol,
 * anything after the number other than whitespace is refused: dbus-daemon would read "1.5"
 * as 1 and "08" as 0, and a limit or fd count read differently from what it says is a misread.
 */
export function parseLong(text: string): ParsedInteger | undefined {
  const match = /^[ \t\n\r\f\v]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)[ \t\n\r\f\v]*$/.exec(text);
  if (!match) return undefined;
  const [, sign, digits] = match as unknown as [string, string, string];
  const octal = digits.length > 1 && digits.startsWith('0') && !/^0[xX]/.test(digits);
  const magnitude = octal ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  const value = sign === '-' ? -magnitude : magnitude;
  if (value > 0x7fffffffffffffffn || value < -0x8000000000000000n) return undefined;
  return { value, octal };
}
