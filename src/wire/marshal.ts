import { Buffer } from 'node:buffer';
import { WireError } from '../util/errors.js';
import { isValidObjectPath } from './names.js';
import { alignmentOf, isValidSignature, parseSignature, parseSingleType, type TypeNode } from './signature.js';
import { Variant, type DBusValue } from './values.js';

export const MAX_ARRAY_BYTES = 64 * 1024 * 1024;
/** Strings up to this many UTF-16 units are tried as ASCII first (Writer.string). */
const SHORT_STRING = 64;

/**
 * Growable little-endian writer. Offsets (and so alignment) count from `base`,
 * the position of this buffer's first byte inside the message.
 */
export class Writer {
  private buf: Buffer;
  length = 0;

  constructor(
    initialSize = 256,
    private readonly base = 0,
    readonly littleEndian = true,
  ) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = Math.max(this.buf.length * 2, 64);
    while (size < this.length + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  align(n: number): void {
    const pad = (n - ((this.base + this.length) % n)) % n;
    if (pad === 0) return;
    this.reserve(pad);
    this.buf.fill(0, this.length, this.length + pad);
    this.length += pad;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.length++] = v;
  }
  u16(v: number): void {
    this.align(2);
    this.reserve(2);
    if (this.littleEndian) this.buf.writeUInt16LE(v, this.length);
    else this.buf.writeUInt16BE(v, this.length);
    this.length += 2;
  }
  i16(v: number): void {
    this.align(2);
    this.reserve(2);
    if (this.littleEndian) this.buf.writeInt16LE(v, this.length);
    else this.buf.writeInt16BE(v, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.align(4);
    this.reserve(4);
    if (this.littleEndian) this.buf.writeUInt32LE(v, this.length);
    else this.buf.writeUInt32BE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.align(4);
    this.reserve(4);
    if (this.littleEndian) this.buf.writeInt32LE(v, this.length);
    else this.buf.writeInt32BE(v, this.length);
    this.length += 4;
  }
  u64(v: bigint): void {
    this.align(8);
    this.reserve(8);
    if (this.littleEndian) this.buf.writeBigUInt64LE(v, this.length);
    else this.buf.writeBigUInt64BE(v, this.length);
    this.length += 8;
  }
  i64(v: bigint): void {
    this.align(8);
    this.reserve(8);
    if (this.littleEndian) this.buf.writeBigInt64LE(v, this.length);
    else this.buf.writeBigInt64BE(v, this.length);
    this.length += 8;
  }
  f64(v: number): void {
    this.align(8);
    this.reserve(8);
    if (this.littleEndian) this.buf.writeDoubleLE(v, this.length);
    else this.buf.writeDoubleBE(v, this.length);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  /** Writes a u32 placeholder and returns its offset, for lengths known later. */
  placeholder32(): number {
    this.u32(0);
    return this.length - 4;
  }
  patch32(offset: number, v: number): void {
    if (this.littleEndian) this.buf.writeUInt32LE(v, offset);
    else this.buf.writeUInt32BE(v, offset);
  }
  string(s: string): void {
    const n = s.length;
    if (n <= SHORT_STRING) {
      // Names and paths are short and ASCII: copied here, without two calls into node's
      // UTF-8 code. The first unit that is not ASCII sends the string the general way.
      this.u32(n);
      this.reserve(n + 1);
      const buf = this.buf;
      const at = this.length;
      let i = 0;
      for (; i < n; i++) {
        const unit = s.charCodeAt(i);
        if (unit >= 0x80) break;
        buf[at + i] = unit;
      }
      if (i === n) {
        buf[at + n] = 0;
        this.length = at + n + 1;
        return;
      }
      this.length = at - 4;
    }
    const len = Buffer.byteLength(s);
    this.u32(len);
    this.reserve(len + 1);
    this.buf.write(s, this.length, 'utf8');
    this.length += len;
    this.buf[this.length++] = 0;
  }
  signature(s: string): void {
    const len = Buffer.byteLength(s);
    this.reserve(len + 2);
    this.buf[this.length++] = len;
    this.buf.write(s, this.length, 'latin1');
    this.length += len;
    this.buf[this.length++] = 0;
  }
  /** The written bytes (a view; copy if the writer is reused). */
  finish(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function fail(why: string): never {
  throw new WireError('InvalidValue', why);
}

function integer(v: DBusValue, min: number, max: number, code: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`value ${String(v)} does not fit type "${code}"`);
  }
  return v;
}

function big(v: DBusValue, signed: boolean): bigint {
  const b = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : fail(`value ${String(v)} is not a 64-bit integer`);
  const min = signed ? -(1n << 63n) : 0n;
  const max = signed ? (1n << 63n) - 1n : (1n << 64n) - 1n;
  if (b < min || b > max) fail(`value ${b} out of range`);
  return b;
}

function str(v: DBusValue): string {
  if (typeof v !== 'string') fail(`expected a string, got ${typeof v}`);
  if (v.includes('\0')) fail('strings may not contain NUL');
  return v;
}

export function writeValue(w: Writer, node: TypeNode, v: DBusValue): void {
  switch (node.kind) {
    case 'basic':
      switch (node.code) {
        case 'y': w.u8(integer(v, 0, 0xff, 'y')); return;
        case 'b':
          if (typeof v !== 'boolean') fail('expected a boolean');
          w.u32(v ? 1 : 0);
          return;
        case 'n': w.i16(integer(v, -0x8000, 0x7fff, 'n')); return;
        case 'q': w.u16(integer(v, 0, 0xffff, 'q')); return;
        case 'i': w.i32(integer(v, -0x80000000, 0x7fffffff, 'i')); return;
        case 'u': case 'h': w.u32(integer(v, 0, 0xffffffff, node.code)); return;
        case 'x': w.i64(big(v, true)); return;
        case 't': w.u64(big(v, false)); return;
        case 'd':
          if (typeof v !== 'number') fail('expected a number');
          w.f64(v);
          return;
        case 's': w.string(str(v)); return;
        case 'o': {
          const s = str(v);
          if (!isValidObjectPath(s)) fail(`invalid object path "${s}"`);
          w.string(s);
          return;
        }
        case 'g': {
          const s = str(v);
          if (!isValidSignature(s)) fail(`invalid signature "${s}"`);
          w.signature(s);
          return;
        }
      }
      return;
    case 'variant': {
      if (!(v instanceof Variant)) fail('expected a Variant');
      const inner = parseSingleType(v.signature);
      w.signature(v.signature);
      writeValue(w, inner, v.value);
      return;
    }
    case 'array': {
      const lengthAt = w.placeholder32();
      w.align(alignmentOf(node.elem));
      const start = w.length;
      if (node.elem.kind === 'basic' && node.elem.code === 'y' && v instanceof Uint8Array) {
        w.bytes(v);
      } else {
        if (!Array.isArray(v)) fail(`expected an array for "${node.sig}"`);
        for (const item of v) writeValue(w, node.elem, item);
      }
      const size = w.length - start;
      if (size > MAX_ARRAY_BYTES) fail('array longer than 64 MiB');
      w.patch32(lengthAt, size);
      return;
    }
    case 'dict': {
      const lengthAt = w.placeholder32();
      w.align(8);
      const start = w.length;
      const entries = v instanceof Map ? v.entries() : fail(`expected a Map for "${node.sig}"`);
      for (const [k, val] of entries) {
        w.align(8);
        writeValue(w, node.key, k);
        writeValue(w, node.value, val);
      }
      const size = w.length - start;
      if (size > MAX_ARRAY_BYTES) fail('array longer than 64 MiB');
      w.patch32(lengthAt, size);
      return;
    }
    case 'struct': {
      if (!Array.isArray(v) || v.length !== node.fields.length) {
        fail(`expected a ${node.fields.length}-field struct for "${node.sig}"`);
      }
      w.align(8);
      for (let i = 0; i < node.fields.length; i++) writeValue(w, node.fields[i]!, v[i]!);
      return;
    }
  }
}

/** Marshals values of a signature, starting at an 8-aligned offset. */
export function marshal(signature: string, values: readonly DBusValue[], littleEndian = true): Buffer {
  const nodes = parseSignature(signature);
  if (nodes.length !== values.length) {
    fail(`signature "${signature}" takes ${nodes.length} values, got ${values.length}`);
  }
  const w = new Writer(256, 0, littleEndian);
  for (let i = 0; i < nodes.length; i++) writeValue(w, nodes[i]!, values[i]!);
  return Buffer.from(w.finish());
}
