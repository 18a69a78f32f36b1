import { describe, expect, it } from 'vitest';
import { WireError } from '../util/errors.js';
import { MAX_ARRAY_BYTES, marshal } from './marshal.js';
import { MAX_TOTAL_DEPTH, Reader, readTypedValue, unmarshal } from './unmarshal.js';
import { parseSingleType } from './signature.js';
import { Variant, type DBusValue } from './values.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string) => Buffer.from(s, 'latin1').toString('hex');

function rejection(sig: string, bytes: Buffer, littleEndian = true): WireError {
  try {
    unmarshal(sig, bytes, { littleEndian });
  } catch (e) {
    if (e instanceof WireError) return e;
    throw e;
  }
  throw new Error(`"${sig}" ${bytes.toString('hex')} was accepted`);
}

describe('unmarshal: known answers (hand-written fixtures)', () => {
  // [signature, bytes, little-endian?, expected values]
  const fixtures: [string, string, boolean, DBusValue[]][] = [
    ['y', 'ff', true, [255]],
    ['b', '00000001', false, [true]],
    ['b', '01000000', true, [true]],
    ['n', 'fffe', false, [-2]],
    ['n', 'feff', true, [-2]],
    ['q', 'fffe', false, [0xfffe]],
    ['i', '80000000', false, [-0x80000000]],
    ['u', '00000003', false, [3]],
    ['u', 'ffffffff', true, [0xffffffff]],
    ['h', '00000002', false, [2]],
    ['x', '8000000000000000', false, [-(1n << 63n)]],
    ['t', 'ffffffffffffffff', true, [(1n << 64n) - 1n]],
    ['d', 'bff8000000000000', false, [-1.5]],
    ['d', '000000000000f8bf', true, [-1.5]],
    ['s', `00000003 ${ascii('foo')} 00`, false, ['foo']],
    ['s', '00000002 c3a9 00', false, ['é']],
    ['s', '00000000 00', true, ['']],
    ['o', `00000004 ${ascii('/a/b')} 00`, false, ['/a/b']],
    ['g', `05 ${ascii('a{sv}')} 00`, false, ['a{sv}']],
    ['v', '01 75 00 00 00000007', false, [new Variant('u', 7)]],
    ['v', '02 6179 00 00000003 010203', false, [new Variant('ay', Buffer.from([1, 2, 3]))]],
    ['ax', '00000008 00000000 0000000000000005', false, [[5n]]],
    ['ax', '00000000 00000000', false, [[]]],
    ['ay', '00000000', false, [Buffer.alloc(0)]],
    ['ya(i)', '01 000000 0000000c 00000002 00000000 00000003', false, [1, [[2], [3]]]],
    ['(ys)', '07 000000 00000001 78 00', false, [[7, 'x']]],
    [
      'a{sv}',
      '0000000a 00000000 00000001 61 00 01 79 00 09',
      false,
      [new Map<DBusValue, DBusValue>([['a', new Variant('y', 9)]])],
    ],
    ['a{yy}', '0a000000 00000000 01 02 000000000000 03 04', true, [new Map<DBusValue, DBusValue>([[1, 2], [3, 4]])]],
    ['a{xs}', '00000000 00000000', false, [new Map()]],
  ];

  it.each(fixtures.map(([sig, bytes, le, v], i) => [`${sig} #${i}`, le ? 'little' : 'big', sig, bytes, le, v] as const))(
    'reads %s (%s-endian)',
    (_, __, sig, bytes, le, values) => {
      expect(unmarshal(sig, hex(bytes), { littleEndian: le }).values).toEqual(values);
    },
  );

  it('reads little-endian unless told otherwise', () => {
    expect(unmarshal('u', hex('03000000')).values).toEqual([3]);
    expect(unmarshal('u', hex('03000000'), { littleEndian: false }).values).toEqual([0x03000000]);
  });

  it('returns a copy for ay, not a view into the message', () => {
    const bytes = hex('00000002 0102');
    const [out] = unmarshal('ay', bytes, { littleEndian: false }).values as [Buffer];
    bytes[4] = 9;
    expect(out).toEqual(Buffer.from([1, 2]));
  });

  it('counts alignment from the origin, not from the start', () => {
    // A byte at buffer offset 8, then three bytes of padding, then a u32 at offset 12.
    const buf = Buffer.concat([Buffer.alloc(8, 0xee), hex('05 000000 07000000')]);
    expect(unmarshal('yu', buf, { start: 8, origin: 0 }).values).toEqual([5, 7]);
    expect(unmarshal('yu', buf, { start: 8, origin: 4 }).values).toEqual([5, 7]);
    // From origin 7 the u32 would start at buffer offset 11: other values, and a byte left over.
    expect(() => unmarshal('yu', buf, { start: 8, origin: 7 })).toThrow(WireError);
  });

  it('stops where the values end when asked for a partial read', () => {
    const out = unmarshal('y', hex('01 02 03'), { partial: true });
    expect(out).toEqual({ values: [1], end: 1 });
  });

  it('readTypedValue reads one value at the reader position', () => {
    const r = new Reader(hex('ee 01 7a 00 00000005'), false, 1, 8, 0);
    // Position 1, origin 0: a signature (no alignment) then a u32 at offset 4.
    expect(readTypedValue(r, parseSingleType('y'))).toBe(1);
    r.pos = 4;
    expect(readTypedValue(r, parseSingleType('u'))).toBe(5);
    expect(r.pos).toBe(8);
  });
});

describe('unmarshal: invalid bytes are rejected with WireError', () => {
  const bad: [string, string, string, boolean?][] = [
    ['non-zero padding before a u32', 'yu', '01 010000 02000000'],
    ['non-zero padding before a struct', 'y(y)', '01 00000000000001 02'],
    ['non-zero padding after an array length', 'ax', '08000000 00000001 0500000000000000'],
    ['non-zero padding between dict entries', 'a{yy}', '0a000000 00000000 01 02 000000000001 03 04'],
    ['a boolean of 2', 'b', '02000000'],
    ['a boolean of 0x01000000 read big-endian', 'b', '01000000', false],
    ['a string without its NUL', 's', '01000000 61 01'],
    ['a string with an embedded NUL', 's', '03000000 61 00 62 00'],
    ['a string that is not UTF-8', 's', '01000000 ff 00'],
    ['a string with an overlong UTF-8 encoding', 's', '02000000 c0af 00'],
    ['a string with a UTF-16 surrogate encoded', 's', '03000000 eda080 00'],
    ['a string longer than the data', 's', '10000000 61 00'],
    ['an object path that is not valid', 'o', '01000000 61 00'],
    ['an object path with a trailing slash', 'o', '03000000 2f612f 00'],
    ['a signature that is not valid', 'g', '01 7a 00'],
    ['a signature without its NUL', 'g', '01 69 69'],
    ['a variant holding two types', 'v', '02 6969 00 00000001 00000002'],
    ['a variant with an empty signature', 'v', '00 00'],
    ['a variant with an invalid signature', 'v', '01 61 00'],
    ['a truncated u16', 'q', '01'],
    ['a truncated u32', 'u', '010000'],
    ['a truncated u64', 't', '01000000000000'],
    ['a truncated double', 'd', '00000000'],
    ['truncated padding', 'yu', '01 0000'],
    ['an array longer than 64 MiB', 'ay', '01000004'],
    ['an array running past the data', 'ai', '08000000 01000000'],
    ['array elements overrunning the array length', 'ai', '02000000 01000000'],
    ['dict entries overrunning the array length', 'a{yy}', '01000000 00000000 01 02'],
    ['bytes left after the values', 'y', '01 00'],
    ['no bytes for a value', 'u', ''],
  ];
  it.each(bad)('rejects %s', (_, sig, bytes, le = true) => {
    const e = rejection(sig, hex(bytes), le);
    expect(['InvalidMessage', 'InvalidSignature']).toContain(e.code);
  });

  it('checks the 64 MiB limit from the length alone, before looking for the data', () => {
    expect(rejection('ay', hex('01000004')).message).toMatch(/64 MiB/);
    expect(rejection('ay', hex('00000004')).message).toMatch(/past the end/);
  });

  it('reads an array of exactly 64 MiB', () => {
    const bytes = Buffer.alloc(4 + MAX_ARRAY_BYTES);
    bytes.writeUInt32LE(MAX_ARRAY_BYTES, 0);
    const [out] = unmarshal('ay', bytes).values as [Buffer];
    expect(out.length).toBe(MAX_ARRAY_BYTES);
  });
});

describe('unmarshal: nesting depth', () => {
  const nestVariants = (n: number): DBusValue => {
    let v: DBusValue = 1;
    for (let i = 0; i < n; i++) v = new Variant(i === 0 ? 'y' : 'v', v);
    return v;
  };
  const nestArrays = (n: number, inner: DBusValue): DBusValue => {
    let v = inner;
    for (let i = 0; i < n; i++) v = [v];
    return v;
  };

  it(`accepts ${MAX_TOTAL_DEPTH} nested variants and rejects ${MAX_TOTAL_DEPTH + 1}`, () => {
    const ok = marshal('v', [nestVariants(MAX_TOTAL_DEPTH)]);
    expect(unmarshal('v', ok).values).toEqual([nestVariants(MAX_TOTAL_DEPTH)]);
    const tooDeep = marshal('v', [nestVariants(MAX_TOTAL_DEPTH + 1)]);
    expect(rejection('v', tooDeep).message).toMatch(/too deeply/);
  });

  it('accepts 32 arrays inside 32 structs, the deepest single signature', () => {
    const sig = `${'a'.repeat(32)}${'('.repeat(32)}y${')'.repeat(32)}`;
    let inner: DBusValue = 7;
    for (let i = 0; i < 32; i++) inner = [inner];
    const value = nestArrays(32, inner);
    expect(unmarshal(sig, marshal(sig, [value])).values).toEqual([value]);
  });

  it('limits arrays per signature, not across variants: 31 arrays, a variant, 32 more arrays are 64 containers', () => {
    const innerSig = `${'a'.repeat(32)}y`;
    const variant = new Variant(innerSig, nestArrays(31, Buffer.from([1])));
    const sig = `${'a'.repeat(31)}v`;
    const value = nestArrays(31, variant);
    expect(unmarshal(sig, marshal(sig, [value])).values).toEqual([value]);
  });

  it('rejects 65 containers made of arrays split across a variant', () => {
    const innerSig = `${'a'.repeat(32)}y`;
    const variant = new Variant(innerSig, nestArrays(31, Buffer.from([1])));
    const sig = `${'a'.repeat(32)}v`;
    const body = marshal(sig, [nestArrays(32, variant)]);
    expect(rejection(sig, body).message).toMatch(/too deeply/);
  });

  it('limits structs per signature, not across variants', () => {
    const nestStructs = (n: number, inner: DBusValue): DBusValue => {
      let v = inner;
      for (let i = 0; i < n; i++) v = [v];
      return v;
    };
    const innerSig = `${'('.repeat(20)}y${')'.repeat(20)}`;
    const sig = `${'('.repeat(20)}v${')'.repeat(20)}`;
    const value = nestStructs(20, new Variant(innerSig, nestStructs(20, 3)));
    expect(unmarshal(sig, marshal(sig, [value])).values).toEqual([value]);
  });

  it('counts a dict entry as a level: a{sv} chains are three levels each', () => {
    const chain = (levels: number): DBusValue => {
      let v: DBusValue = new Variant('y', 1);
      for (let i = 0; i < levels; i++) {
        const map: Map<DBusValue, DBusValue> = new Map([['k', v]]);
        v = i === levels - 1 ? map : new Variant('a{sv}', map);
      }
      return v;
    };
    // 21 levels: 21 × (array, dict entry, variant) = 63 containers.
    const ok = marshal('a{sv}', [chain(21)]);
    expect(unmarshal('a{sv}', ok).values).toEqual([chain(21)]);
    // 22 levels: 66 containers.
    const tooDeep = marshal('a{sv}', [chain(22)]);
    expect(rejection('a{sv}', tooDeep).message).toMatch(/too deeply/);
  });
});

describe('unmarshal: short ASCII strings (decoded once, then reused while recent)', () => {
  it('gives each string its own value when thousands of them share a few hundred slots', () => {
    // Same lengths and alphabets throughout, so many strings land in the same slot.
    const names = Array.from({ length: 5000 }, (_, i) => `n${(i * 7919).toString(36).padStart(6, '0')}`);
    for (let round = 0; round < 2; round++) {
      for (const name of names) expect(unmarshal('s', marshal('s', [name])).values).toEqual([name]);
    }
  });

  it('tells apart strings that differ in one byte, and in length only', () => {
    const cases = ['org.example.Aa', 'org.example.Ab', 'org.example.A', 'org.example.Aaa', '', 'a'];
    for (let round = 0; round < 3; round++) {
      for (const s of cases) expect(unmarshal('as', marshal('as', [[s, s]])).values).toEqual([[s, s]]);
    }
  });
});
