import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WireError } from '../util/errors.js';
import { MAX_ARRAY_BYTES, Writer, marshal } from './marshal.js';
import { unmarshal } from './unmarshal.js';
import { signatureAndValues } from './testing-arbitraries.js';
import { Variant, type DBusValue } from './values.js';

/** Bytes from a spaced hex string: hex('01 00 00 00'). */
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string) => Buffer.from(s, 'latin1').toString('hex');

describe('marshal: known answers (hand-written fixtures)', () => {
  // [signature, values, little-endian bytes, big-endian bytes]
  const fixtures: [string, DBusValue[], string, string][] = [
    ['y', [0x12], '12', '12'],
    ['b', [true], '01000000', '00000001'],
    ['b', [false], '00000000', '00000000'],
    ['n', [-2], 'feff', 'fffe'],
    ['q', [0x1234], '3412', '1234'],
    ['i', [0x01020304], '04030201', '01020304'],
    ['i', [-1], 'ffffffff', 'ffffffff'],
    ['u', [3], '03000000', '00000003'],
    ['h', [1], '01000000', '00000001'],
    ['x', [-2n], 'feffffffffffffff', 'fffffffffffffffe'],
    ['t', [0x0102030405060708n], '0807060504030201', '0102030405060708'],
    ['d', [1.0], '000000000000f03f', '3ff0000000000000'],
    ['s', ['foo'], `03000000 ${ascii('foo')} 00`, `00000003 ${ascii('foo')} 00`],
    ['s', [''], '00000000 00', '00000000 00'],
    ['s', ['é'], '02000000 c3a9 00', '00000002 c3a9 00'],
    ['o', ['/a'], `02000000 ${ascii('/a')} 00`, `00000002 ${ascii('/a')} 00`],
    ['g', ['a{sv}'], `05 ${ascii('a{sv}')} 00`, `05 ${ascii('a{sv}')} 00`],
    ['g', [''], '00 00', '00 00'],
    // Variant: signature, then the value aligned as its own type.
    ['v', [new Variant('u', 7)], '01 75 00 00 07000000', '01 75 00 00 00000007'],
    ['v', [new Variant('y', 7)], '01 79 00 07', '01 79 00 07'],
    // Padding between values is counted from the start of the body, and is zero.
    ['yu', [1, 2], '01 000000 02000000', '01 000000 00000002'],
    ['yt', [1, 2n], '01 00000000000000 0200000000000000', '01 00000000000000 0000000000000002'],
    ['yq', [1, 2], '01 00 0200', '01 00 0002'],
    ['yg', [1, 'i'], '01 01 69 00', '01 01 69 00'],
    // The specification's example: an array of one INT64; the length (8) excludes the padding after it.
    ['ax', [[5n]], '08000000 00000000 0500000000000000', '00000008 00000000 0000000000000005'],
    // An empty array still carries the padding to its element alignment.
    ['ax', [[]], '00000000 00000000', '00000000 00000000'],
    ['ai', [[]], '00000000', '00000000'],
    ['ay', [Buffer.from([1, 2, 3])], '03000000 010203', '00000003 010203'],
    ['ay', [[1, 2, 3]], '03000000 010203', '00000003 010203'],
    ['as', [['a', 'bc']], '0f000000 01000000 61 00 0000 02000000 6263 00', '0000000f 00000001 61 00 0000 00000002 6263 00'],
    // Structs start 8-aligned.
    ['(yi)', [[1, 2]], '01 000000 02000000', '01 000000 00000002'],
    ['y(y)', [1, [2]], '01 00000000000000 02', '01 00000000000000 02'],
    // The array length counts the padding between elements, but not the padding before the first.
    ['ya(i)', [1, [[2], [3]]], '01 000000 0c000000 02000000 00000000 03000000', '01 000000 0000000c 00000002 00000000 00000003'],
    ['a(ii)', [[[1, 2], [3, 4]]], '10000000 00000000 01000000 02000000 03000000 04000000', '00000010 00000000 00000001 00000002 00000003 00000004'],
    // Dict entries are 8-aligned structs of key and value.
    [
      'a{sv}',
      [new Map<DBusValue, DBusValue>([['a', new Variant('y', 9)]])],
      '0a000000 00000000 01000000 61 00 01 79 00 09',
      '0000000a 00000000 00000001 61 00 01 79 00 09',
    ],
    [
      'a{yy}',
      [new Map<DBusValue, DBusValue>([[1, 2], [3, 4]])],
      '0a000000 00000000 01 02 000000000000 03 04',
      '0000000a 00000000 01 02 000000000000 03 04',
    ],
  ];

  it.each(fixtures.map(([sig, v, le, be], i) => [`${sig} #${i}`, sig, v, le, be] as const))(
    'writes %s in both byte orders',
    (_, sig, values, le, be) => {
      expect(marshal(sig, values).toString('hex')).toBe(hex(le).toString('hex'));
      expect(marshal(sig, values, true).toString('hex')).toBe(hex(le).toString('hex'));
      expect(marshal(sig, values, false).toString('hex')).toBe(hex(be).toString('hex'));
    },
  );

  it('writes the empty signature as no bytes', () => {
    expect(marshal('', [])).toHaveLength(0);
  });

  it('accepts plain numbers for 64-bit types', () => {
    expect(marshal('x', [-2])).toEqual(marshal('x', [-2n]));
    expect(marshal('t', [7])).toEqual(marshal('t', [7n]));
  });
});

describe('marshal: values that do not fit their type', () => {
  const bad: [string, DBusValue][] = [
    ['y', 256], ['y', -1], ['y', 1.5], ['y', '1'], ['y', true],
    ['b', 1], ['b', 'true'],
    ['n', 0x8000], ['n', -0x8001],
    ['q', 0x10000], ['q', -1],
    ['i', 0x80000000], ['i', -0x80000001], ['i', 1.5], ['i', 1n],
    ['u', 0x100000000], ['u', -1], ['h', -1], ['h', 0x100000000],
    ['x', 1n << 63n], ['x', -(1n << 63n) - 1n], ['x', 1.5], ['x', '1'],
    ['t', 1n << 64n], ['t', -1n], ['t', -1],
    ['d', 1n], ['d', '1.0'],
    ['s', 1], ['s', 'a\0b'],
    ['o', 'not/a/path'], ['o', '/trailing/'], ['o', ''],
    ['g', 'a'], ['g', '(i'], ['g', 'y'.repeat(256)], ['g', 1],
    ['v', 1], ['v', new Variant('u', -1)], ['v', new Variant('s', 1)],
    ['ai', 5], ['ai', [1, 'x']], ['ay', 'bytes'], ['ay', [256]],
    ['a{sv}', [['a', new Variant('y', 1)]]], ['a{sv}', new Map<DBusValue, DBusValue>([[1, new Variant('y', 1)]])],
    ['(ii)', [1]], ['(ii)', [1, 2, 3]], ['(ii)', 1],
  ];
  it.each(bad.map(([sig, v]) => [sig, String(v instanceof Variant ? `Variant(${v.signature})` : v).slice(0, 20), v] as const))(
    'rejects a "%s" value %s with InvalidValue',
    (sig, _, v) => {
      let error: unknown;
      try {
        marshal(sig, [v]);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(WireError);
      expect((error as WireError).code).toBe('InvalidValue');
    },
  );

  it('accepts the extreme values of each integer type', () => {
    const extremes: [string, DBusValue[]][] = [
      ['y', [0, 255]], ['n', [-0x8000, 0x7fff]], ['q', [0, 0xffff]], ['i', [-0x80000000, 0x7fffffff]],
      ['u', [0, 0xffffffff]], ['x', [-(1n << 63n), (1n << 63n) - 1n]], ['t', [0n, (1n << 64n) - 1n]],
    ];
    for (const [code, values] of extremes) {
      const bytes = marshal(code + code, values, false);
      expect(unmarshal(code + code, bytes, { littleEndian: false }).values).toEqual(values);
    }
  });

  it('rejects a variant whose signature is not one complete type', () => {
    for (const sig of ['ii', '', 'a', 'z']) {
      expect(() => marshal('v', [new Variant(sig, 1)])).toThrow(expect.objectContaining({ code: 'InvalidSignature' }));
    }
  });

  it('rejects a value count that does not match the signature', () => {
    expect(() => marshal('ii', [1])).toThrow(WireError);
    expect(() => marshal('i', [1, 2])).toThrow(WireError);
    expect(() => marshal('', [1])).toThrow(WireError);
  });

  it('rejects an invalid signature', () => {
    expect(() => marshal('a', [[]])).toThrow(WireError);
  });

  it('rejects an array longer than 64 MiB, and accepts one of exactly 64 MiB', () => {
    const max = Buffer.alloc(MAX_ARRAY_BYTES);
    expect(marshal('ay', [max])).toHaveLength(4 + MAX_ARRAY_BYTES);
    expect(() => marshal('ay', [Buffer.alloc(MAX_ARRAY_BYTES + 1)])).toThrow(/64 MiB/);
  });
});

describe('Writer', () => {
  it('grows from any initial size, including zero', () => {
    for (const size of [0, 1, 3]) {
      const w = new Writer(size);
      for (let i = 0; i < 100; i++) w.u32(i);
      expect(w.length).toBe(400);
      expect(w.finish().readUInt32LE(396)).toBe(99);
    }
  });

  it('aligns relative to its base offset in the message', () => {
    const w = new Writer(16, 4);
    w.u64(1n);
    // base 4: the first 8-aligned message offset is 8, four bytes in.
    expect(w.finish().toString('hex')).toBe('00000000' + '0100000000000000');
  });

  it('pads with zero bytes even when its memory was not zeroed', () => {
    // Writer memory comes from Buffer.allocUnsafe; padding must be written, not assumed.
    for (let round = 0; round < 50; round++) {
      Buffer.allocUnsafe(64).fill(0xff);
      const w = new Writer(64);
      w.u8(1);
      w.u64(2n);
      w.u8(3);
      w.u32(4);
      expect(w.finish().toString('hex')).toBe('01' + '00'.repeat(7) + '0200000000000000' + '03' + '000000' + '04000000');
    }
  });

  it('patches a placeholder length in its byte order', () => {
    for (const le of [true, false]) {
      const w = new Writer(8, 0, le);
      const at = w.placeholder32();
      w.u8(9);
      w.patch32(at, 0x01020304);
      expect(w.finish().toString('hex')).toBe(le ? '0403020109' : '0102030409');
    }
  });

  it('writes a string as length, UTF-8 bytes and nul whether it is ASCII, short or long, or neither', () => {
    const strings = [
      '', 'a', ':1.42', 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(300),
      'é', 'abcé', 'x'.repeat(63) + 'é', 'é'.repeat(64), '\u{1F600}', 'a\u{1F600}b', '\u007f\u0080',
    ];
    for (const le of [true, false]) {
      for (const s of strings) {
        // A byte first: the length is 4-aligned after padding; a tiny initial size: the writer grows.
        const w = new Writer(2, 0, le);
        w.u8(7);
        w.string(s);
        w.u8(9);
        const utf8 = Buffer.from(s, 'utf8');
        const len = Buffer.alloc(4);
        if (le) len.writeUInt32LE(utf8.length);
        else len.writeUInt32BE(utf8.length);
        expect(w.finish().toString('hex'), JSON.stringify(s)).toBe(`07000000${len.toString('hex')}${utf8.toString('hex')}0009`);
      }
    }
  });
});

// ---------------------------------------------------------------------------
// Property: random values of random signatures survive marshal → unmarshal.

describe('marshal → unmarshal round trip (property)', () => {
  it('gives back the values of any signature, in either byte order', () => {
    fc.assert(
      fc.property(signatureAndValues, fc.boolean(), ([sig, values], littleEndian) => {
        const bytes = marshal(sig, values, littleEndian);
        expect(unmarshal(sig, bytes, { littleEndian }).values).toEqual(values);
      }),
      { numRuns: 400 },
    );
  });

  it('lays out both byte orders identically apart from the byte order of numbers', () => {
    fc.assert(
      fc.property(signatureAndValues, ([sig, values]) => {
        expect(marshal(sig, values, false).length).toBe(marshal(sig, values, true).length);
      }),
      { numRuns: 150 },
    );
  });

  it('reads values placed at an 8-aligned offset inside a larger buffer', () => {
    fc.assert(
      fc.property(signatureAndValues, fc.boolean(), fc.integer({ min: 0, max: 3 }), ([sig, values], le, words) => {
        const body = marshal(sig, values, le);
        const start = words * 8;
        const buf = Buffer.concat([Buffer.alloc(start, 0xee), body, Buffer.from([0xee])]);
        const out = unmarshal(sig, buf, { littleEndian: le, start, end: start + body.length, origin: 0 });
        expect(out.values).toEqual(values);
        expect(out.end).toBe(start + body.length);
      }),
      { numRuns: 100 },
    );
  });

  it('generates only valid signatures and values the marshaller accepts', () => {
    fc.assert(
      fc.property(signatureAndValues, fc.boolean(), ([sig, values], le) => {
        expect(() => marshal(sig, values, le)).not.toThrow();
      }),
      { numRuns: 100 },
    );
  });
});
