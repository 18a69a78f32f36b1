import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readU32 } from './bytes.js';

describe('readU32', () => {
  it('reads what Buffer writes, in both byte orders and at any offset', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 12 }), (value, at) => {
        const buf = Buffer.alloc(16);
        buf.writeUInt32LE(value, at);
        expect(readU32(buf, at, true)).toBe(value);
        buf.writeUInt32BE(value, at);
        expect(readU32(buf, at, false)).toBe(value);
      }),
    );
  });
});
