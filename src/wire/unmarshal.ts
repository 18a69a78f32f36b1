import { Buffer, isUtf8 } from 'node:buffer';
import { WireError } from '../util/errors.js';
import { readU32 } from './bytes.js';
import { MAX_ARRAY_BYTES } from './marshal.js';
import { isValidObjectPath } from './names.js';
import { alignmentOf, parseSignature, parseSingleType, type TypeNode } from './signature.js';
import { Variant, type DBusValue } from './values.js';

/**
 * Total container depth (arrays, structs, dict entries, variants) a value may reach.
 * The 32-array and 32-struct limits belong to each signature on its own and are
 * enforced by parseSignature; only this total spans variants.
 */
export const MAX_TOTAL_DEPTH = 64;

/** Strings up to this many bytes are first tried as plain ASCII (a loop beats three native calls). */
const SHORT_TEXT = 128;

/**
 * The short ASCII strings decoded last, by a hash of their bytes. A bus reads the same few
 * names in every message (destination, path, interface, member, signature); comparing bytes
 * here costs less than making each string anew, and the routing tables then see strings
 * whose hash V8 has already computed. Content decides a hit, so a collision only costs a miss.
 */
const RECENT_SLOTS = 512;
const recentStrings: string[] = new Array<string>(RECENT_SLOTS).fill('');

function recentAscii(buf: Buffer, start: number, len: number, hash: number): string {
  const slot = hash & (RECENT_SLOTS - 1);
  const cached = recentStrings[slot]!;
  if (cached.length === len) {
    let i = 0;
    while (i < len && cached.charCodeAt(i) === buf[start + i]) i++;
    if (i === len) return cached;
  }
  const decoded = buf.toString('latin1', start, start + len);
  recentStrings[slot] = decoded;
  return decoded;
}

function fail(why: string): never {
  throw new WireError('InvalidMessage', why);
}

/**
 * Bounds-checked reader over one message. Offsets are absolute in `buf`, and
 * alignment is relative to `origin` (the first byte of the message).
 */
export class Reader {
  pos: number;

  constructor(
    readonly buf: Buffer,
    readonly littleEndian: boolean,
    start: number,
    readonly end: number,
    readonly origin = 0,
  ) {
    this.pos = start;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) fail('value runs past the end of the message');
  }

  align(n: number): void {
    const pad = (n - ((this.pos - this.origin) % n)) % n;
    if (pad === 0) return;
    this.need(pad);
    for (let i = 0; i < pad; i++) if (this.buf[this.pos + i] !== 0) fail('non-zero alignment padding');
    this.pos += pad;
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.align(2);
    this.need(2);
    const v = this.littleEndian ? this.buf.readUInt16LE(this.pos) : this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  i16(): number {
    this.align(2);
    this.need(2);
    const v = this.littleEndian ? this.buf.readInt16LE(this.pos) : this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.align(4);
    this.need(4);
    const v = readU32(this.buf, this.pos, this.littleEndian);
    this.pos += 4;
    return v;
  }
  i32(): number {
    this.align(4);
    this.need(4);
    const v = this.littleEndian ? this.buf.readInt32LE(this.pos) : this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.align(8);
    this.need(8);
    const v = this.littleEndian ? this.buf.readBigUInt64LE(this.pos) : this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  i64(): bigint {
    this.align(8);
    this.need(8);
    const v = this.littleEndian ? this.buf.readBigInt64LE(this.pos) : this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  f64(): number {
    this.align(8);
    this.need(8);
    const v = this.littleEndian ? this.buf.readDoubleLE(this.pos) : this.buf.readDoubleBE(this.pos);
    this.pos += 8;
    return v;
  }
  bool(): boolean {
    const v = this.u32();
    if (v > 1) fail(`boolean value ${v} is neither 0 nor 1`);
    return v === 1;
  }
  /** Checks a string of `len` bytes (NUL-terminated, no NUL inside, UTF-8) and steps over it. */
  skipText(len: number): void {
    this.need(len + 1);
    const start = this.pos;
    const end = start + len;
    if (this.buf[end] !== 0) fail('string is not NUL-terminated');
    if (this.buf.indexOf(0, start) !== end) fail('string contains NUL');
    if (!isUtf8(this.buf.subarray(start, end))) fail('string is not valid UTF-8');
    this.pos = end + 1;
  }
  private text(len: number): string {
    this.need(len + 1);
    const start = this.pos;
    const end = start + len;
    const buf = this.buf;
    if (buf[end] !== 0) fail('string is not NUL-terminated');
    if (len <= SHORT_TEXT) {
      // Header names and most strings: plain ASCII, checked and hashed in one pass.
      let i = start;
      let hash = len;
      while (i < end) {
        const c = buf[i]!;
        if (c === 0 || c > 0x7f) break;
        hash = (Math.imul(hash, 31) + c) | 0;
        i++;
      }
      if (i === end) {
        this.pos = end + 1;
        return recentAscii(buf, start, len, hash);
      }
    }
    if (buf.indexOf(0, start) !== end) fail('string contains NUL');
    if (!isUtf8(this.buf.subarray(start, end))) fail('string is not valid UTF-8');
    this.pos = end + 1;
    return this.buf.toString('utf8', start, end);
  }
  string(): string {
    return this.text(this.u32());
  }
  objectPath(): string {
    const s = this.string();
    if (!isValidObjectPath(s)) fail(`invalid object path "${s}"`);
    return s;
  }
  signature(): string {
    const s = this.text(this.u8());
    return s;
  }
}

interface Depth {
  total: number;
}

function readValue(r: Reader, node: TypeNode, depth: Depth): DBusValue {
  switch (node.kind) {
    case 'basic':
      switch (node.code) {
        case 'y': return r.u8();
        case 'b': return r.bool();
        case 'n': return r.i16();
        case 'q': return r.u16();
        case 'i': return r.i32();
        case 'u': case 'h': return r.u32();
        case 'x': return r.i64();
        case 't': return r.u64();
        case 'd': return r.f64();
        case 's': return r.string();
        case 'o': return r.objectPath();
        case 'g': {
          const s = r.signature();
          parseSignature(s);
          return s;
        }
      }
      break;
    case 'variant': {
      const sig = r.signature();
      const inner = parseSingleType(sig);
      if (++depth.total > MAX_TOTAL_DEPTH) fail('values nested too deeply');
      const value = readValue(r, inner, depth);
      depth.total--;
      return new Variant(sig, value);
    }
    case 'array':
    case 'dict': {
      const size = r.u32();
      if (size > MAX_ARRAY_BYTES) fail(`array of ${size} bytes exceeds 64 MiB`);
      const elem = node.kind === 'array' ? node.elem : undefined;
      r.align(elem ? alignmentOf(elem) : 8);
      const end = r.pos + size;
      if (end > r.end) fail('array runs past the end of the message');
      if (++depth.total > MAX_TOTAL_DEPTH) fail('arrays nested too deeply');
      let out: DBusValue;
      if (elem?.kind === 'basic' && elem.code === 'y') {
        out = Buffer.from(r.buf.subarray(r.pos, end));
        r.pos = end;
      } else if (elem) {
        const items: DBusValue[] = [];
        while (r.pos < end) items.push(readValue(r, elem, depth));
        out = items;
      } else {
        const dict = node as Extract<TypeNode, { kind: 'dict' }>;
        const map = new Map<DBusValue, DBusValue>();
        if (++depth.total > MAX_TOTAL_DEPTH) fail('dict entries nested too deeply');
        while (r.pos < end) {
          r.align(8);
          const k = readValue(r, dict.key, depth);
          map.set(k, readValue(r, dict.value, depth));
        }
        depth.total--;
        out = map;
      }
      if (r.pos !== end) fail('array elements do not fill the announced length');
      depth.total--;
      return out;
    }
    case 'struct': {
      r.align(8);
      if (++depth.total > MAX_TOTAL_DEPTH) fail('structs nested too deeply');
      const fields = node.fields.map((f) => readValue(r, f, depth));
      depth.total--;
      return fields;
    }
  }
  return fail('unreachable');
}

export function readTypedValue(r: Reader, node: TypeNode): DBusValue {
  return readValue(r, node, { total: 0 });
}

/**
 * Unmarshals values of `signature` from buf[start, end), alignment relative to `origin`.
 * Unless `partial`, the values must fill the range exactly.
 */
export function unmarshal(
  signature: string,
  buf: Buffer,
  options: { littleEndian?: boolean; start?: number; end?: number; origin?: number; partial?: boolean } = {},
): { values: DBusValue[]; end: number } {
  const start = options.start ?? 0;
  const r = new Reader(buf, options.littleEndian ?? true, start, options.end ?? buf.length, options.origin ?? start);
  const values: DBusValue[] = [];
  for (const node of parseSignature(signature)) values.push(readTypedValue(r, node));
  if (!options.partial && r.pos !== r.end) fail(`${r.end - r.pos} bytes left after the body`);
  return { values, end: r.pos };
}
