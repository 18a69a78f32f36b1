import { Buffer } from 'node:buffer';
/**
 * Test support: fast-check arbitraries for D-Bus signatures and matching values,
 * shared by the wire layer's property tests.
 */
import fc from 'fast-check';
import { parseSingleType, type TypeNode } from './signature.js';
import { Variant, type DBusValue } from './values.js';

const BASIC_CODES = 'ybnqiuxtdsogh'.split('');

/** One complete type, nesting at most `depth` containers (variants included, through their contents). */
function typeSig(depth: number): fc.Arbitrary<string> {
  const basic = fc.constantFrom(...BASIC_CODES);
  if (depth <= 0) return basic;
  const inner = typeSig(depth - 1);
  return fc.oneof(
    { weight: 4, arbitrary: basic },
    { weight: 1, arbitrary: fc.constant('v') },
    { weight: 2, arbitrary: inner.map((t) => `a${t}`) },
    { weight: 2, arbitrary: fc.tuple(basic, inner).map(([k, v]) => `a{${k}${v}}`) },
    { weight: 2, arbitrary: fc.array(inner, { minLength: 1, maxLength: 3 }).map((f) => `(${f.join('')})`) },
  );
}

const objectPath = fc
  .array(fc.stringMatching(/^[A-Za-z0-9_]{1,6}$/), { maxLength: 3 })
  .map((parts) => `/${parts.join('/')}`);
const text = fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => s.replace(/\0/g, ''));
const signatureValue = fc.array(typeSig(2), { maxLength: 3 }).map((t) => t.join(''));

/** Values matching a parsed type; variants pick a fresh type at most `depth` deep. */
function valueFor(node: TypeNode, depth: number): fc.Arbitrary<DBusValue> {
  switch (node.kind) {
    case 'basic':
      switch (node.code) {
        case 'y': return fc.integer({ min: 0, max: 0xff });
        case 'b': return fc.boolean();
        case 'n': return fc.integer({ min: -0x8000, max: 0x7fff });
        case 'q': return fc.integer({ min: 0, max: 0xffff });
        case 'i': return fc.integer({ min: -0x80000000, max: 0x7fffffff });
        case 'u': case 'h': return fc.integer({ min: 0, max: 0xffffffff });
        case 'x': return fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n });
        case 't': return fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
        case 'd': return fc.double();
        case 's': return text;
        case 'o': return objectPath;
        case 'g': return signatureValue;
      }
      break;
    case 'variant':
      return typeSig(Math.max(0, depth - 1)).chain((sig) =>
        valueFor(parseSingleType(sig), depth - 1).map((v) => new Variant(sig, v)),
      );
    case 'array':
      if (node.elem.kind === 'basic' && node.elem.code === 'y') {
        return fc.uint8Array({ maxLength: 9 }).map((a) => Buffer.from(a));
      }
      return fc.array(valueFor(node.elem, depth), { maxLength: 3 });
    case 'dict':
      return fc
        .uniqueArray(fc.tuple(valueFor(node.key, depth), valueFor(node.value, depth)), {
          maxLength: 3,
          selector: (e) => e[0],
          comparator: 'SameValueZero',
        })
        .map((entries) => new Map<DBusValue, DBusValue>(entries));
    case 'struct':
      return fc.tuple(...node.fields.map((f) => valueFor(f, depth))).map((v) => v as DBusValue[]);
  }
  throw new Error('unreachable');
}

/** A signature of up to four complete types and values for it. */
export const signatureAndValues = fc
  .array(typeSig(3), { maxLength: 4 })
  .chain((types) =>
    fc.tuple(fc.constant(types.join('')), fc.tuple(...types.map((t) => valueFor(parseSingleType(t), 3)))),
  );
