import { describe, expect, it } from 'vitest';
import { WireError } from '../util/errors.js';
import {
  MAX_ARRAY_DEPTH,
  MAX_SIGNATURE_LENGTH,
  MAX_STRUCT_DEPTH,
  alignmentOf,
  isBasicCode,
  isValidSignature,
  parseSignature,
  parseSingleType,
} from './signature.js';

const nestedArrays = (n: number, inner = 'y') => 'a'.repeat(n) + inner;
const nestedStructs = (n: number, inner = 'y') => '('.repeat(n) + inner + ')'.repeat(n);

function invalidSignatureError(sig: string): WireError {
  try {
    parseSignature(sig);
  } catch (e) {
    expect(e).toBeInstanceOf(WireError);
    return e as WireError;
  }
  throw new Error(`"${sig}" was accepted`);
}

describe('parseSignature', () => {
  it.each('ybnqiuxtdsogh'.split(''))('parses the basic type "%s"', (code) => {
    expect(isBasicCode(code)).toBe(true);
    expect(parseSingleType(code)).toEqual({ kind: 'basic', code, sig: code });
  });

  it('does not count v, a, (, { as basic types', () => {
    for (const c of ['v', 'a', '(', '{', 'z', '']) expect(isBasicCode(c)).toBe(false);
  });

  it('parses the empty signature into no types', () => {
    expect(parseSignature('')).toEqual([]);
  });

  it('parses a sequence of complete types and records each one\'s own signature', () => {
    const nodes = parseSignature('sa{sv}(iay)v');
    expect(nodes.map((n) => n.sig)).toEqual(['s', 'a{sv}', '(iay)', 'v']);
    expect(nodes.map((n) => n.kind)).toEqual(['basic', 'dict', 'struct', 'variant']);
  });

  it('builds a tree for nested containers', () => {
    expect(parseSingleType('a(sa{oi})')).toEqual({
      kind: 'array',
      sig: 'a(sa{oi})',
      elem: {
        kind: 'struct',
        sig: '(sa{oi})',
        fields: [
          { kind: 'basic', code: 's', sig: 's' },
          {
            kind: 'dict',
            sig: 'a{oi}',
            key: { kind: 'basic', code: 'o', sig: 'o' },
            value: { kind: 'basic', code: 'i', sig: 'i' },
          },
        ],
      },
    });
  });

  it('distinguishes an array of bytes from other arrays', () => {
    expect(parseSingleType('ay')).toMatchObject({ kind: 'array', elem: { kind: 'basic', code: 'y' } });
    expect(parseSingleType('aay')).toMatchObject({ kind: 'array', elem: { kind: 'array' } });
  });

  const valid = [
    'y', 'b', 'n', 'q', 'i', 'u', 'x', 't', 'd', 's', 'o', 'g', 'h', 'v',
    'ay', 'as', 'av', 'aay', 'a(ii)', 'a{sv}', 'a{ys}', 'a{bv}', 'a{hv}', 'a{ga{sv}}', 'a{oa{sa{sv}}}',
    '(i)', '(ii)', '((i))', '(a{sv}as)', '(yv)', 'a(yv)', 'yyyyuua(yv)', 'sa{sv}as', 'aaaa{sv}',
    nestedArrays(MAX_ARRAY_DEPTH),
    nestedStructs(MAX_STRUCT_DEPTH),
    // 32 arrays and 32 structs at once: the deepest a single signature may go (64 containers).
    nestedArrays(MAX_ARRAY_DEPTH, nestedStructs(MAX_STRUCT_DEPTH)),
    'y'.repeat(MAX_SIGNATURE_LENGTH),
  ];
  it.each(valid.map((s) => [s.length > 40 ? `${s.slice(0, 40)}… (${s.length})` : s, s]))('accepts %s', (_, sig) => {
    expect(isValidSignature(sig)).toBe(true);
    expect(() => parseSignature(sig)).not.toThrow();
  });

  const invalid: [string, string][] = [
    ['a', 'array without an element type'],
    ['aa', 'array of array without an element type'],
    ['(', 'unterminated struct'],
    ['(i', 'unterminated struct with a field'],
    [')', 'stray close paren'],
    ['i)', 'stray close paren after a type'],
    ['()', 'empty struct'],
    ['a()', 'array of empty struct'],
    ['{sv}', 'dict entry outside an array'],
    ['({sv})', 'dict entry inside a struct'],
    ['a{sv', 'unterminated dict entry'],
    ['a{s}', 'dict entry with one type'],
    ['a{}', 'empty dict entry'],
    ['a{svv}', 'dict entry with three types'],
    ['a{vs}', 'dict entry with a variant key'],
    ['a{(i)s}', 'dict entry with a struct key'],
    ['a{ays}', 'dict entry with an array key'],
    ['a{sv}}', 'stray close brace'],
    ['}', 'lone close brace'],
    ['z', 'unknown type code'],
    ['r', 'the reserved struct code r'],
    ['e', 'the reserved dict-entry code e'],
    ['m', 'the reserved maybe code m'],
    ['*', 'the reserved wildcard *'],
    ['i ', 'trailing space'],
    ['\0', 'NUL'],
    ['é', 'non-ASCII'],
    [nestedArrays(MAX_ARRAY_DEPTH + 1), '33 nested arrays'],
    [nestedStructs(MAX_STRUCT_DEPTH + 1), '33 nested structs'],
    ['y'.repeat(MAX_SIGNATURE_LENGTH + 1), '256 bytes'],
  ];
  it.each(invalid)('rejects "%s" (%s)', (sig) => {
    expect(isValidSignature(sig)).toBe(false);
    const e = invalidSignatureError(sig);
    expect(e.code).toBe('InvalidSignature');
  });

  it('counts a dict entry as a struct level for the nesting limit', () => {
    expect(isValidSignature(nestedStructs(MAX_STRUCT_DEPTH - 1, 'a{sv}'))).toBe(true);
    expect(isValidSignature(nestedStructs(MAX_STRUCT_DEPTH, 'a{sv}'))).toBe(false);
  });

  it('counts nesting depth, not the number of containers side by side', () => {
    const wide = `(${'(i)'.repeat(40)})`;
    expect(isValidSignature(wide)).toBe(true);
    expect(isValidSignature('ai'.repeat(100))).toBe(true);
  });

  it('gives the same answer when a signature is parsed again (cached)', () => {
    const first = parseSignature('a{s(ix)}');
    expect(parseSignature('a{s(ix)}')).toEqual(first);
    expect(isValidSignature('a{s(ix')).toBe(false);
    expect(isValidSignature('a{s(ix')).toBe(false);
  });

  it('keeps working after more distinct signatures than its cache holds', () => {
    for (let i = 0; i < 5000; i++) parseSignature(`(${'i'.repeat(1 + (i % 200))}${'s'.repeat(Math.floor(i / 200))})`);
    expect(parseSingleType('(ii)').sig).toBe('(ii)');
  });
});

describe('parseSingleType', () => {
  it('rejects an empty signature', () => {
    expect(() => parseSingleType('')).toThrow(WireError);
  });

  it('rejects more than one complete type', () => {
    expect(() => parseSingleType('ii')).toThrow(WireError);
    expect(() => parseSingleType('a{sv}s')).toThrow(WireError);
  });

  it('rejects an invalid signature', () => {
    expect(() => parseSingleType('a')).toThrow(WireError);
  });
});

describe('alignmentOf', () => {
  const table: [string, number][] = [
    ['y', 1], ['b', 4], ['n', 2], ['q', 2], ['i', 4], ['u', 4], ['x', 8], ['t', 8], ['d', 8],
    ['s', 4], ['o', 4], ['g', 1], ['h', 4], ['v', 1], ['ay', 4], ['ax', 4], ['a{sv}', 4], ['(y)', 8], ['(yy)', 8],
  ];
  it.each(table)('aligns "%s" to %i bytes (specification table)', (sig, n) => {
    expect(alignmentOf(parseSingleType(sig))).toBe(n);
  });
});
