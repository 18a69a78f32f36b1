import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_NAME_LENGTH,
  isValidBusName,
  isValidErrorName,
  isValidInterfaceName,
  isValidMemberName,
  isValidObjectPath,
  isValidUniqueName,
  isValidWellKnownName,
} from './names.js';

/** A dotted name of exactly `length` characters made of `element`s. */
function dottedOfLength(length: number, first = 'a'): string {
  let s = `${first}.b`;
  while (s.length < length) s += 'c';
  return s;
}

const show = (s: string) => (s.length > 30 ? `${s.slice(0, 20)}… (${s.length} chars)` : JSON.stringify(s));

describe('isValidObjectPath', () => {
  const valid = ['/', '/a', '/org/freedesktop/DBus', '/_', '/a_b/C9', '/0', '/1/2/3', `/${'x'.repeat(1000)}`];
  const invalid = ['', 'a', 'org/freedesktop', '//', '/a/', '/a//b', '/a-b', '/a.b', '/a b', '/é', '/a\0', ' /a', '/a\n'];
  it.each(valid.map((s) => [show(s), s]))('accepts %s', (_, s) => expect(isValidObjectPath(s)).toBe(true));
  it.each(invalid.map((s) => [show(s), s]))('rejects %s', (_, s) => expect(isValidObjectPath(s)).toBe(false));
});

describe('isValidInterfaceName', () => {
  const valid = [
    'org.freedesktop.DBus', 'a.b', '_a._b', 'A9.b_c', 'org.freedesktop.DBus.Properties',
    dottedOfLength(MAX_NAME_LENGTH),
  ];
  const invalid = [
    '', 'a', 'org', '.a.b', 'a.b.', 'a..b', '0a.b', 'a.0b', 'a-b.c', 'a.b-c', 'a.b c', 'a.é', ':1.2',
    'org.freedesktop.DBus\n', dottedOfLength(MAX_NAME_LENGTH + 1),
  ];
  it.each(valid.map((s) => [show(s), s]))('accepts %s', (_, s) => expect(isValidInterfaceName(s)).toBe(true));
  it.each(invalid.map((s) => [show(s), s]))('rejects %s', (_, s) => expect(isValidInterfaceName(s)).toBe(false));
});

describe('isValidErrorName', () => {
  const valid = ['org.freedesktop.DBus.Error.Failed', 'a.b', 'com.example.Error_1', dottedOfLength(MAX_NAME_LENGTH)];
  const invalid = ['', 'Failed', '.a.b', 'a..b', '1a.b', 'a.b-c', 'a.b.', dottedOfLength(MAX_NAME_LENGTH + 1)];
  it.each(valid.map((s) => [show(s), s]))('accepts %s', (_, s) => expect(isValidErrorName(s)).toBe(true));
  it.each(invalid.map((s) => [show(s), s]))('rejects %s', (_, s) => expect(isValidErrorName(s)).toBe(false));
});

describe('isValidMemberName', () => {
  const valid = ['Hello', 'a', '_', 'Get_All9', 'x'.repeat(MAX_NAME_LENGTH)];
  const invalid = ['', '9a', 'a.b', 'a-b', 'a b', 'é', 'Hello\0', 'x'.repeat(MAX_NAME_LENGTH + 1)];
  it.each(valid.map((s) => [show(s), s]))('accepts %s', (_, s) => expect(isValidMemberName(s)).toBe(true));
  it.each(invalid.map((s) => [show(s), s]))('rejects %s', (_, s) => expect(isValidMemberName(s)).toBe(false));
});

describe('isValidUniqueName', () => {
  const valid = [':1.0', ':1.42', ':a.b', ':0.0.0', ':1-2.3_4', ':-.-', `:${dottedOfLength(MAX_NAME_LENGTH - 1)}`];
  const invalid = [
    '', ':', ':1', ':1.', ':.1', ':1..2', '1.2', 'a.b', ':1.2 ', ':1.é', '::1.2', ':1.2.', `:${dottedOfLength(MAX_NAME_LENGTH)}`,
  ];
  it.each(valid.map((s) => [show(s), s]))('accepts %s', (_, s) => {
    expect(isValidUniqueName(s)).toBe(true);
    expect(isValidBusName(s)).toBe(true);
  });
  it.each(invalid.map((s) => [show(s), s]))('rejects %s', (_, s) => expect(isValidUniqueName(s)).toBe(false));
});

describe('isValidWellKnownName', () => {
  const valid = [
    'org.freedesktop.DBus', 'a.b', 'com.example-app.Service', '-a.b', '_a.b9', 'a.b-', dottedOfLength(MAX_NAME_LENGTH),
  ];
  const invalid = [
    '', 'a', 'org', '.a.b', 'a.b.', 'a..b', '1a.b', 'a.1b', 'a.b c', 'a.é', ':1.2', ':a.b', 'a/b.c',
    dottedOfLength(MAX_NAME_LENGTH + 1),
  ];
  it.each(valid.map((s) => [show(s), s]))('accepts %s', (_, s) => {
    expect(isValidWellKnownName(s)).toBe(true);
    expect(isValidBusName(s)).toBe(true);
  });
  it.each(invalid.map((s) => [show(s), s]))('rejects %s', (_, s) => expect(isValidWellKnownName(s)).toBe(false));
});

describe('isValidBusName', () => {
  it('lets digits start elements only in unique names', () => {
    expect(isValidBusName(':1.2')).toBe(true);
    expect(isValidBusName('1.2')).toBe(false);
    expect(isValidBusName('a.2')).toBe(false);
  });

  it('rejects invalid unique names rather than reading them as well-known names', () => {
    expect(isValidBusName(':1')).toBe(false);
    expect(isValidBusName(':')).toBe(false);
  });

  it('allows hyphens in bus names but not in interface names', () => {
    expect(isValidBusName('org.foo-bar.Baz')).toBe(true);
    expect(isValidInterfaceName('org.foo-bar.Baz')).toBe(false);
  });
});

describe('name checks agree with the specification written as regular expressions (property)', () => {
  // The specification's rules, spelled as regular expressions: the oracle for the fast checks.
  const element = /^[A-Za-z_][A-Za-z0-9_]*$/;
  const busElement = /^[A-Za-z_-][A-Za-z0-9_-]*$/;
  const uniqueElement = /^[A-Za-z0-9_-]+$/;
  const dottedBy = (name: string, re: RegExp) =>
    name.length > 0 && name.length <= 255 && name.split('.').length >= 2 && name.split('.').every((p) => re.test(p));
  const oracle = {
    interface: (s: string) => dottedBy(s, element),
    member: (s: string) => s.length > 0 && s.length <= 255 && element.test(s),
    path: (s: string) => /^\/$|^(\/[A-Za-z0-9_]+)+$/.test(s),
    bus: (s: string) => (s.startsWith(':') ? s.length <= 255 && dottedBy(s.slice(1), uniqueElement) : dottedBy(s, busElement)),
  };
  const names = fc.string({ unit: fc.constantFrom('a', 'Z', '_', '-', '0', '9', '.', '/', ':', 'é', ' ', '\0'), maxLength: 12 });

  it('for interface, member, object path and bus names', () => {
    fc.assert(
      fc.property(names, (s) => {
        expect(isValidInterfaceName(s)).toBe(oracle.interface(s));
        expect(isValidErrorName(s)).toBe(oracle.interface(s));
        expect(isValidMemberName(s)).toBe(oracle.member(s));
        expect(isValidObjectPath(s)).toBe(oracle.path(s));
        expect(isValidBusName(s)).toBe(oracle.bus(s));
      }),
      { numRuns: 3000 },
    );
  });
});
