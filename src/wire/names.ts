/**
 * Validation of the names the D-Bus specification constrains ("Valid Names"),
 * and branded types so that code past the boundary knows a string was checked.
 */
export type BusName = string & { readonly __brand: 'BusName' };
export type UniqueName = BusName & { readonly __unique: true };
export type ObjectPath = string & { readonly __brand: 'ObjectPath' };
export type InterfaceName = string & { readonly __brand: 'InterfaceName' };
export type MemberName = string & { readonly __brand: 'MemberName' };
export type ErrorName = string & { readonly __brand: 'ErrorName' };

export const MAX_NAME_LENGTH = 255;

// Character classes of name elements, one bit each, by char code (ASCII only: anything else is
// invalid). Checked with a loop instead of split() and regular expressions: every message's
// header names pass through here.
const LETTER = 1; // A-Z a-z _
const DIGIT = 2;
const HYPHEN = 4;
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z_]/.test(ch)) CLASS[c] = LETTER;
  else if (/[0-9]/.test(ch)) CLASS[c] = DIGIT;
  else if (ch === '-') CLASS[c] = HYPHEN;
}
const DOT = 0x2e;
const SLASH = 0x2f;

/** What may start an element, and what may follow. */
interface ElementRule {
  first: number;
  rest: number;
}
const ELEMENT: ElementRule = { first: LETTER, rest: LETTER | DIGIT };
const BUS_ELEMENT: ElementRule = { first: LETTER | HYPHEN, rest: LETTER | DIGIT | HYPHEN };
const UNIQUE_ELEMENT: ElementRule = { first: LETTER | DIGIT | HYPHEN, rest: LETTER | DIGIT | HYPHEN };

function classOf(code: number): number {
  return code < 128 ? CLASS[code]! : 0;
}

/** `name[from..]` is two or more non-empty elements joined by dots, each following `rule`. */
function dotted(name: string, rule: ElementRule, from = 0): boolean {
  const length = name.length;
  if (length - from === 0 || length - from > MAX_NAME_LENGTH) return false;
  let elements = 1;
  let atStart = true;
  for (let i = from; i < length; i++) {
    const code = name.charCodeAt(i);
    if (code === DOT) {
      if (atStart) return false;
      atStart = true;
      elements++;
      continue;
    }
    if ((classOf(code) & (atStart ? rule.first : rule.rest)) === 0) return false;
    atStart = false;
  }
  return !atStart && elements >= 2;
}

export function isValidInterfaceName(name: string): name is InterfaceName {
  return dotted(name, ELEMENT);
}

export function isValidErrorName(name: string): name is ErrorName {
  return dotted(name, ELEMENT);
}

export function isValidMemberName(name: string): name is MemberName {
  const length = name.length;
  if (length === 0 || length > MAX_NAME_LENGTH) return false;
  if ((classOf(name.charCodeAt(0)) & ELEMENT.first) === 0) return false;
  for (let i = 1; i < length; i++) if ((classOf(name.charCodeAt(i)) & ELEMENT.rest) === 0) return false;
  return true;
}

/** "/", or "/"-separated non-empty elements of [A-Za-z0-9_], no trailing "/". */
export function isValidObjectPath(path: string): path is ObjectPath {
  const length = path.length;
  if (length === 0 || path.charCodeAt(0) !== SLASH) return false;
  if (length === 1) return true;
  let atStart = true;
  for (let i = 1; i < length; i++) {
    const code = path.charCodeAt(i);
    if (code === SLASH) {
      if (atStart) return false;
      atStart = true;
    } else if ((classOf(code) & (LETTER | DIGIT)) === 0) {
      return false;
    } else {
      atStart = false;
    }
  }
  return !atStart;
}

const COLON = 0x3a;

export function isValidUniqueName(name: string): name is UniqueName {
  return name.charCodeAt(0) === COLON && name.length <= MAX_NAME_LENGTH && dotted(name, UNIQUE_ELEMENT, 1);
}

/** Well-known names: dotted, elements may not start with a digit. */
export function isValidWellKnownName(name: string): name is BusName {
  return name.charCodeAt(0) !== COLON && dotted(name, BUS_ELEMENT);
}

export function isValidBusName(name: string): name is BusName {
  return name.charCodeAt(0) === COLON ? isValidUniqueName(name) : isValidWellKnownName(name);
}
