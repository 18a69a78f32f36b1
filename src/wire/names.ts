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

const ELEMENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BUS_ELEMENT = /^[A-Za-z_-][A-Za-z0-9_-]*$/;
const UNIQUE_ELEMENT = /^[A-Za-z0-9_-]+$/;
const PATH = /^\/$|^(\/[A-Za-z0-9_]+)+$/;

function dotted(name: string, element: RegExp): boolean {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false;
  const parts = name.split('.');
  if (parts.length < 2) return false;
  for (const part of parts) if (!element.test(part)) return false;
  return true;
}

export function isValidInterfaceName(name: string): name is InterfaceName {
  return dotted(name, ELEMENT);
}

export function isValidErrorName(name: string): name is ErrorName {
  return dotted(name, ELEMENT);
}

export function isValidMemberName(name: string): name is MemberName {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && ELEMENT.test(name);
}

export function isValidObjectPath(path: string): path is ObjectPath {
  return PATH.test(path);
}

export function isValidUniqueName(name: string): name is UniqueName {
  return name.startsWith(':') && dotted(name.slice(1), UNIQUE_ELEMENT) && name.length <= MAX_NAME_LENGTH;
}

/** Well-known names: dotted, elements may not start with a digit. */
export function isValidWellKnownName(name: string): name is BusName {
  return !name.startsWith(':') && dotted(name, BUS_ELEMENT);
}

export function isValidBusName(name: string): name is BusName {
  return name.startsWith(':') ? isValidUniqueName(name) : isValidWellKnownName(name);
}
