import { WireError } from '../util/errors.js';

/**
 * D-Bus type signatures parsed into small trees. Parsing is cached per signature
 * string: a bus sees the same few signatures over and over.
 */
export type BasicCode = 'y' | 'b' | 'n' | 'q' | 'i' | 'u' | 'x' | 't' | 'd' | 's' | 'o' | 'g' | 'h';

export type TypeNode =
  | { kind: 'basic'; code: BasicCode; sig: string }
  | { kind: 'variant'; sig: 'v' }
  | { kind: 'array'; elem: TypeNode; sig: string }
  | { kind: 'dict'; key: TypeNode & { kind: 'basic' }; value: TypeNode; sig: string }
  | { kind: 'struct'; fields: TypeNode[]; sig: string };

export const MAX_SIGNATURE_LENGTH = 255;
export const MAX_ARRAY_DEPTH = 32;
export const MAX_STRUCT_DEPTH = 32;

const BASIC = new Set<string>(['y', 'b', 'n', 'q', 'i', 'u', 'x', 't', 'd', 's', 'o', 'g', 'h']);

export function isBasicCode(code: string): code is BasicCode {
  return BASIC.has(code);
}

/** Alignment in bytes of the first byte of a value of this type. */
export function alignmentOf(node: TypeNode): number {
  switch (node.kind) {
    case 'basic':
      switch (node.code) {
        case 'y': case 'g': return 1;
        case 'n': case 'q': return 2;
        case 'x': case 't': case 'd': return 8;
        default: return 4;
      }
    case 'variant': return 1;
    case 'array': case 'dict': return 4;
    case 'struct': return 8;
  }
}

class SignatureParser {
  private pos = 0;
  private arrayDepth = 0;
  private structDepth = 0;

  constructor(private readonly sig: string) {}

  parseAll(): TypeNode[] {
    const out: TypeNode[] = [];
    while (this.pos < this.sig.length) out.push(this.parseOne());
    return out;
  }

  private fail(why: string): never {
    throw new WireError('InvalidSignature', `invalid signature "${this.sig}": ${why}`);
  }

  private parseOne(): TypeNode {
    const start = this.pos;
    const c = this.sig[this.pos++];
    if (c === undefined) this.fail('unexpected end');
    if (isBasicCode(c)) return { kind: 'basic', code: c, sig: c };
    if (c === 'v') return { kind: 'variant', sig: 'v' };
    if (c === 'a') {
      if (++this.arrayDepth > MAX_ARRAY_DEPTH) this.fail('arrays nested too deeply');
      let node: TypeNode;
      if (this.sig[this.pos] === '{') {
        this.pos++;
        if (++this.structDepth > MAX_STRUCT_DEPTH) this.fail('structs nested too deeply');
        const key = this.parseOne();
        if (key.kind !== 'basic') this.fail('dict entry key must be a basic type');
        const value = this.parseOne();
        if (this.sig[this.pos++] !== '}') this.fail('dict entry must have exactly two types');
        this.structDepth--;
        node = { kind: 'dict', key, value, sig: this.sig.slice(start, this.pos) };
      } else {
        const elem = this.parseOne();
        node = { kind: 'array', elem, sig: this.sig.slice(start, this.pos) };
      }
      this.arrayDepth--;
      return node;
    }
    if (c === '(') {
      if (++this.structDepth > MAX_STRUCT_DEPTH) this.fail('structs nested too deeply');
      const fields: TypeNode[] = [];
      while (this.sig[this.pos] !== ')') {
        if (this.pos >= this.sig.length) this.fail('unterminated struct');
        fields.push(this.parseOne());
      }
      this.pos++;
      if (fields.length === 0) this.fail('empty struct');
      this.structDepth--;
      return { kind: 'struct', fields, sig: this.sig.slice(start, this.pos) };
    }
    if (c === '{') this.fail('dict entry outside an array');
    return this.fail(`unknown type code "${c}"`);
  }
}

const cache = new Map<string, readonly TypeNode[]>();
const CACHE_LIMIT = 4096;

/** Parses and validates a signature (any number of complete types). Throws WireError. */
export function parseSignature(sig: string): readonly TypeNode[] {
  const hit = cache.get(sig);
  if (hit) return hit;
  if (sig.length > MAX_SIGNATURE_LENGTH) {
    throw new WireError('InvalidSignature', `signature longer than ${MAX_SIGNATURE_LENGTH} bytes`);
  }
  const nodes = new SignatureParser(sig).parseAll();
  // A hostile peer could send endless distinct signatures: bound the cache.
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(sig, nodes);
  return nodes;
}

/** Parses a signature that must hold exactly one complete type (variants). */
export function parseSingleType(sig: string): TypeNode {
  const nodes = parseSignature(sig);
  if (nodes.length !== 1) {
    throw new WireError('InvalidSignature', `signature "${sig}" must be a single complete type`);
  }
  return nodes[0]!;
}

export function isValidSignature(sig: string): boolean {
  try {
    parseSignature(sig);
    return true;
  } catch {
    return false;
  }
}
