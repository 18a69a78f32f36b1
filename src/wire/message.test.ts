import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WireError } from '../util/errors.js';
import { marshal } from './marshal.js';
import {
  FIXED_HEADER_SIZE,
  MAX_MESSAGE_SIZE,
  MessageFlag,
  MessageType,
  encodeMessage,
  parseMessage,
  readBody,
  messageSize,
  stitchSender,
  type Header,
  type NewMessage,
} from './message.js';
import { unmarshal } from './unmarshal.js';
import { Variant, type DBusValue } from './values.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string) => Buffer.from(s, 'latin1').toString('hex');

// ---------------------------------------------------------------------------
// Building messages by a second route: the header is the value `yyyyuua(yv)`,
// written with the generic marshaller rather than encodeMessage.

interface Raw {
  le?: boolean;
  type?: number;
  flags?: number;
  version?: number;
  serial?: number;
  fields: [number, Variant][];
  body?: Buffer;
}

function rawMessage(m: Raw): Buffer {
  const le = m.le ?? true;
  const body = m.body ?? Buffer.alloc(0);
  const header = marshal(
    'yyyyuua(yv)',
    [le ? 0x6c : 0x42, m.type ?? MessageType.MethodCall, m.flags ?? 0, m.version ?? 1, body.length, m.serial ?? 1, m.fields],
    le,
  );
  const padded = Buffer.alloc((header.length + 7) & ~7);
  header.copy(padded);
  return Buffer.concat([padded, body]);
}

const PATH = (p: string) => [1, new Variant('o', p)] as [number, Variant];
const IFACE = (s: string) => [2, new Variant('s', s)] as [number, Variant];
const MEMBER = (s: string) => [3, new Variant('s', s)] as [number, Variant];
const ERROR_NAME = (s: string) => [4, new Variant('s', s)] as [number, Variant];
const REPLY_SERIAL = (n: number) => [5, new Variant('u', n)] as [number, Variant];
const DEST = (s: string) => [6, new Variant('s', s)] as [number, Variant];
const SENDER = (s: string) => [7, new Variant('s', s)] as [number, Variant];
const SIG = (s: string) => [8, new Variant('g', s)] as [number, Variant];
const FDS = (n: number) => [9, new Variant('u', n)] as [number, Variant];

const CALL_FIELDS = [PATH('/a'), MEMBER('M')];

/** The same message in big-endian: header values and body re-marshalled in the other byte order. */
function toBigEndian(le: Buffer): Buffer {
  const { header } = parseMessage(le);
  const [, type, flags, , , serial, fields] = unmarshal('yyyyuua(yv)', le, { partial: true }).values;
  const body = marshal(header.signature, readBody({ bytes: le, header }), false);
  return rawMessage({
    le: false,
    type: type as number,
    flags: flags as number,
    serial: serial as number,
    fields: fields as [number, Variant][],
    body,
  });
}

function wireError(f: () => unknown): WireError {
  try {
    f();
  } catch (e) {
    if (e instanceof WireError) return e;
    throw e;
  }
  throw new Error('no error was thrown');
}

/** The header minus what stitching may change. */
function preserved(h: Header) {
  const { sender: _s, bodyOffset: _o, hasUnknownFields: _u, ...rest } = h;
  return rest;
}

const body = (m: { bytes: Buffer; header: Header }) => m.bytes.subarray(m.header.bodyOffset);

// ---------------------------------------------------------------------------
// Hand-written fixtures.

/** Hello as libdbus sends it: fields in the order path, destination, interface, member. */
const LIBDBUS_HELLO = hex(`
  6c 01 00 01  00000000  01000000  6e000000
  01 01 6f 00  15000000 ${ascii('/org/freedesktop/DBus')} 00  0000
  06 01 73 00  14000000 ${ascii('org.freedesktop.DBus')} 00  000000
  02 01 73 00  14000000 ${ascii('org.freedesktop.DBus')} 00  000000
  03 01 73 00  05000000 ${ascii('Hello')} 00
  0000
`);

/** The same call as encodeMessage writes it: fields in code order. */
const ENCODED_HELLO = hex(`
  6c 01 00 01  00000000  01000000  6d000000
  01 01 6f 00  15000000 ${ascii('/org/freedesktop/DBus')} 00  0000
  02 01 73 00  14000000 ${ascii('org.freedesktop.DBus')} 00  000000
  03 01 73 00  05000000 ${ascii('Hello')} 00  0000
  06 01 73 00  14000000 ${ascii('org.freedesktop.DBus')} 00
  000000
`);

/** A big-endian method return, reply serial 1, with the body ("hi"). */
const BE_RETURN = hex(`
  42 02 00 01  00000007  00000002  0000000f
  05 01 75 00  00000001
  08 01 67 00  01 73 00
  00
  00000002 6869 00
`);

const HELLO: NewMessage = {
  type: MessageType.MethodCall,
  serial: 1,
  path: '/org/freedesktop/DBus',
  interface: 'org.freedesktop.DBus',
  member: 'Hello',
  destination: 'org.freedesktop.DBus',
};

describe('encodeMessage', () => {
  it('writes the Hello call byte for byte', () => {
    expect(encodeMessage(HELLO).toString('hex')).toBe(ENCODED_HELLO.toString('hex'));
  });

  it('writes the body after the header padded to 8, with SIGNATURE, and flags as given', () => {
    const bytes = encodeMessage({
      type: MessageType.Signal,
      flags: MessageFlag.NoReplyExpected | MessageFlag.NoAutoStart,
      serial: 0x0a0b0c0d,
      path: '/p',
      interface: 'a.b',
      member: 'S',
      signature: 'u',
      body: marshal('u', [0x01020304]),
    });
    expect(bytes.toString('hex')).toBe(
      hex(`
        6c 04 03 01  04000000  0d0c0b0a  37000000
        01 01 6f 00  02000000 ${ascii('/p')} 00  0000000000
        02 01 73 00  03000000 ${ascii('a.b')} 00  00000000
        03 01 73 00  01000000 ${ascii('S')} 00  000000000000
        08 01 67 00  01 75 00
        00
        04030201
      `).toString('hex'),
    );
  });
});

describe('parseMessage: fixtures', () => {
  it('parses Hello as libdbus writes it', () => {
    const { header } = parseMessage(LIBDBUS_HELLO);
    expect(header).toEqual({
      littleEndian: true,
      type: MessageType.MethodCall,
      flags: 0,
      serial: 1,
      bodyLength: 0,
      bodyOffset: 128,
      path: '/org/freedesktop/DBus',
      interface: 'org.freedesktop.DBus',
      member: 'Hello',
      destination: 'org.freedesktop.DBus',
      signature: '',
      hasUnknownFields: false,
    });
    expect(LIBDBUS_HELLO.length).toBe(128);
  });

  it('parses the encoded Hello to the same header', () => {
    expect(parseMessage(ENCODED_HELLO).header).toEqual(parseMessage(LIBDBUS_HELLO).header);
  });

  it('parses a big-endian method return and its body', () => {
    const msg = parseMessage(BE_RETURN);
    expect(msg.header).toMatchObject({
      littleEndian: false,
      type: MessageType.MethodReturn,
      serial: 2,
      replySerial: 1,
      signature: 's',
      bodyLength: 7,
      bodyOffset: 32,
    });
    expect(readBody(msg)).toEqual(['hi']);
  });

  it('keeps the received bytes as they are', () => {
    expect(parseMessage(LIBDBUS_HELLO).bytes).toBe(LIBDBUS_HELLO);
  });

  it('parses every field of a message built by the generic marshaller, in both byte orders', () => {
    for (const le of [true, false]) {
      const bytes = rawMessage({
        le,
        type: MessageType.Error,
        flags: 0x41,
        serial: 0xfffffffe,
        fields: [
          PATH('/x/y'), IFACE('a.b'), MEMBER('m'), ERROR_NAME('a.Error'), REPLY_SERIAL(9),
          DEST(':1.5'), SENDER('org.example'), SIG('ai'), FDS(2),
        ],
        body: marshal('ai', [[1, -1]], le),
      });
      const msg = parseMessage(bytes);
      expect(msg.header).toMatchObject({
        littleEndian: le,
        type: MessageType.Error,
        flags: 0x41,
        serial: 0xfffffffe,
        path: '/x/y',
        interface: 'a.b',
        member: 'm',
        errorName: 'a.Error',
        replySerial: 9,
        destination: ':1.5',
        sender: 'org.example',
        signature: 'ai',
        unixFds: 2,
        hasUnknownFields: false,
      });
      expect(readBody(msg)).toEqual([[1, -1]]);
    }
  });
});

describe('parseMessage: required fields per message type', () => {
  const cases: [string, number, [number, Variant][], boolean][] = [
    ['method call with path and member', MessageType.MethodCall, [PATH('/a'), MEMBER('M')], true],
    ['method call without path', MessageType.MethodCall, [MEMBER('M')], false],
    ['method call without member', MessageType.MethodCall, [PATH('/a')], false],
    ['signal with path, interface, member', MessageType.Signal, [PATH('/a'), IFACE('a.b'), MEMBER('S')], true],
    ['signal without interface', MessageType.Signal, [PATH('/a'), MEMBER('S')], false],
    ['signal without path', MessageType.Signal, [IFACE('a.b'), MEMBER('S')], false],
    ['signal without member', MessageType.Signal, [PATH('/a'), IFACE('a.b')], false],
    ['error with name and reply serial', MessageType.Error, [ERROR_NAME('a.E'), REPLY_SERIAL(1)], true],
    ['error without reply serial', MessageType.Error, [ERROR_NAME('a.E')], false],
    ['error without error name', MessageType.Error, [REPLY_SERIAL(1)], false],
    ['method return with reply serial', MessageType.MethodReturn, [REPLY_SERIAL(1)], true],
    ['method return without reply serial', MessageType.MethodReturn, [], false],
    ['message of an unknown type with no fields (ignored by receivers, not invalid)', 9, [], true],
  ];
  it.each(cases)('%s', (_, type, fields, ok) => {
    for (const le of [true, false]) {
      const bytes = rawMessage({ le, type, fields });
      if (ok) expect(parseMessage(bytes).header.type).toBe(type);
      else expect(wireError(() => parseMessage(bytes)).code).toBe('InvalidMessage');
    }
  });

  it('rejects message type 0', () => {
    expect(() => parseMessage(rawMessage({ type: 0, fields: CALL_FIELDS }))).toThrow(/type 0/);
  });

  it('rejects serial 0 and reply serial 0', () => {
    expect(() => parseMessage(rawMessage({ serial: 0, fields: CALL_FIELDS }))).toThrow(/serial 0/);
    expect(() => parseMessage(rawMessage({ type: MessageType.MethodReturn, fields: [REPLY_SERIAL(0)] }))).toThrow(
      /reply serial 0/,
    );
  });
});

describe('parseMessage: header fields', () => {
  const codes: [string, [number, Variant]][] = [
    ['PATH', PATH('/a')], ['INTERFACE', IFACE('a.b')], ['MEMBER', MEMBER('M')], ['ERROR_NAME', ERROR_NAME('a.E')],
    ['REPLY_SERIAL', REPLY_SERIAL(3)], ['DESTINATION', DEST(':1.1')], ['SENDER', SENDER(':1.1')],
    ['SIGNATURE', SIG('')], ['UNIX_FDS', FDS(0)],
  ];

  it.each(codes)('rejects a duplicate %s field', (_, field) => {
    const bytes = rawMessage({ fields: [...CALL_FIELDS, field, field] });
    // PATH and MEMBER are already present once; the others appear twice here.
    const e = wireError(() => parseMessage(bytes));
    expect(e.message).toMatch(/appears twice/);
  });

  const wrongTypes: [string, [number, Variant]][] = [
    ['PATH as a string', [1, new Variant('s', '/a')]],
    ['INTERFACE as an object path', [2, new Variant('o', '/a')]],
    ['MEMBER as a u32', [3, new Variant('u', 1)]],
    ['ERROR_NAME as a signature', [4, new Variant('g', 's')]],
    ['REPLY_SERIAL as an i32', [5, new Variant('i', 1)]],
    ['REPLY_SERIAL as a u64', [5, new Variant('t', 1n)]],
    ['DESTINATION as an array of strings', [6, new Variant('as', [':1.1'])]],
    ['SENDER as a variant', [7, new Variant('v', new Variant('s', ':1.1'))]],
    ['SIGNATURE as a string', [8, new Variant('s', 'i')]],
    ['UNIX_FDS as a handle', [9, new Variant('h', 1)]],
  ];
  it.each(wrongTypes)('rejects %s', (_, field) => {
    const e = wireError(() => parseMessage(rawMessage({ fields: [...CALL_FIELDS, field] })));
    expect(e.message).toMatch(/has type/);
  });

  it('rejects header field code 0', () => {
    expect(() => parseMessage(rawMessage({ fields: [...CALL_FIELDS, [0, new Variant('u', 1)]] }))).toThrow(/code 0/);
  });

  it('skips unknown header fields of any type and flags them, in both byte orders', () => {
    for (const le of [true, false]) {
      const bytes = rawMessage({
        le,
        fields: [
          [10, new Variant('o', '/container')],
          PATH('/a'),
          [200, new Variant('a{sv}', new Map<DBusValue, DBusValue>([['k', new Variant('x', 5n)]]))],
          [255, new Variant('(yv)', [1, new Variant('ay', Buffer.from([1, 2, 3]))])],
          MEMBER('M'),
          [11, new Variant('t', 7n)],
        ],
      });
      const { header } = parseMessage(bytes);
      expect(header).toMatchObject({ path: '/a', member: 'M', hasUnknownFields: true });
    }
  });

  it('reports no unknown fields when there are none', () => {
    expect(parseMessage(rawMessage({ fields: CALL_FIELDS })).header.hasUnknownFields).toBe(false);
  });

  it('rejects an unknown field whose value is itself invalid', () => {
    const bytes = rawMessage({ fields: [...CALL_FIELDS, [10, new Variant('b', true)]] });
    // Turn the boolean 1 into 2.
    const at = bytes.indexOf(hex('0a 01 62 00 01000000'));
    bytes[at + 4] = 2;
    expect(() => parseMessage(bytes)).toThrow(WireError);
  });

  it('rejects an unknown field whose variant signature holds two types', () => {
    const bytes = rawMessage({ fields: [...CALL_FIELDS, [10, new Variant('(yy)', [1, 2])]] });
    const at = bytes.indexOf(hex('0a 04 28797929'));
    // "(yy)" → "yy)(" is not valid; "yyyy" holds four types.
    bytes.write('yyyy', at + 2, 'latin1');
    expect(() => parseMessage(bytes)).toThrow(WireError);
  });

  /** A message whose field `code` carries `value`, with the variant type patched to `sig` (bypassing marshal checks). */
  function withField(code: number, sig: 'o' | 's', value: string): Buffer {
    const bytes = rawMessage({ fields: [PATH('/a'), MEMBER('M'), [code, new Variant('s', value)]] });
    const at = bytes.indexOf(Buffer.from([code, 1, 0x73, 0]), 16);
    bytes[at + 2] = sig.charCodeAt(0);
    return bytes;
  }

  const badValues: [string, number, 'o' | 's', string][] = [
    ['path with a trailing slash', 1, 'o', '/a/'],
    ['relative path', 1, 'o', 'a'],
    ['interface without a dot', 2, 's', 'nodots'],
    ['interface element starting with a digit', 2, 's', 'a.1b'],
    ['member with a dot', 3, 's', 'a.b'],
    ['member starting with a digit', 3, 's', '1m'],
    ['error name without a dot', 4, 's', 'Failed'],
    ['destination with an empty element', 6, 's', 'a..b'],
    ['destination unique name without a dot', 6, 's', ':1'],
    ['sender that is not a bus name', 7, 's', 'sender'],
  ];
  it.each(badValues)('rejects a %s', (_, code, sig, value) => {
    const bytes = code === 1
      ? (() => {
          const b = rawMessage({ fields: [[1, new Variant('s', value)], MEMBER('M')] });
          b[18] = 0x6f;
          return b;
        })()
      : withField(code, sig, value);
    expect(wireError(() => parseMessage(bytes)).code).toBe('InvalidMessage');
  });

  it('rejects a SIGNATURE field holding an invalid signature', () => {
    const bytes = rawMessage({ fields: [...CALL_FIELDS, SIG('ai')] });
    const at = bytes.indexOf(hex('08 01 67 00 02 6169 00'));
    bytes[at + 6] = 0x61; // "aa"
    expect(() => parseMessage(bytes)).toThrow(WireError);
  });
});

describe('parseMessage: framing and padding', () => {
  it('rejects a body without a SIGNATURE field', () => {
    const bytes = rawMessage({ fields: CALL_FIELDS, body: marshal('u', [1]) });
    expect(() => parseMessage(bytes)).toThrow(/no signature/);
  });

  it('rejects a body with an empty SIGNATURE field', () => {
    const bytes = rawMessage({ fields: [...CALL_FIELDS, SIG('')], body: marshal('u', [1]) });
    expect(() => parseMessage(bytes)).toThrow(WireError);
  });

  it('accepts an empty SIGNATURE field with no body', () => {
    expect(parseMessage(rawMessage({ fields: [...CALL_FIELDS, SIG('')] })).header.signature).toBe('');
  });

  it('rejects non-zero padding between the header and the body', () => {
    const bytes = rawMessage({ fields: [PATH('/a'), MEMBER('M')] });
    // PATH takes 16..27, padding to 32, MEMBER 32..42; bytes 42 to 47 are padding.
    expect(bytes.readUInt32LE(12)).toBe(26);
    expect(bytes.length).toBe(48);
    bytes[47] = 1;
    expect(() => parseMessage(bytes)).toThrow(/padding/);
  });

  it('rejects non-zero padding between header fields', () => {
    const bytes = rawMessage({ fields: [PATH('/a'), MEMBER('M')] });
    // PATH ends at 16 + 4 + 4 + 3 = 27; 27..31 is padding before MEMBER.
    bytes[30] = 1;
    expect(() => parseMessage(bytes)).toThrow(/padding/);
  });

  it('rejects a message one byte longer or shorter than announced', () => {
    const bytes = encodeMessage({ ...HELLO, signature: 'y', body: Buffer.from([7]) });
    expect(() => parseMessage(Buffer.concat([bytes, Buffer.from([0])]))).toThrow(/announces/);
    expect(() => parseMessage(bytes.subarray(0, bytes.length - 1))).toThrow(/announces/);
  });

  it('rejects a header field array whose length cuts a field in half', () => {
    const bytes = Buffer.from(ENCODED_HELLO);
    // Shorten the array by 8 (so the padded header end stays put) and keep the total consistent.
    bytes.writeUInt32LE(0x6d - 8, 12);
    expect(() => parseMessage(bytes.subarray(0, 120))).toThrow(WireError);
  });

  it('rejects a bad endianness mark and other protocol versions', () => {
    const badEndian = Buffer.from(ENCODED_HELLO);
    badEndian[0] = 0x4c; // 'L'
    expect(() => parseMessage(badEndian)).toThrow(/endianness/);
    for (const version of [0, 2, 255]) {
      const v = Buffer.from(ENCODED_HELLO);
      v[3] = version;
      expect(() => parseMessage(v)).toThrow(/version/);
    }
  });

  it('rejects input shorter than the fixed header with a WireError', () => {
    for (let n = 0; n < FIXED_HEADER_SIZE; n++) {
      expect(wireError(() => parseMessage(ENCODED_HELLO.subarray(0, n))).code).toBe('InvalidMessage');
    }
  });
});

describe('messageSize', () => {
  const fixed = (le: boolean, bodyLength: number, fieldsLength: number) => {
    const b = Buffer.alloc(16);
    b[0] = le ? 0x6c : 0x42;
    b[1] = 1;
    b[3] = 1;
    if (le) {
      b.writeUInt32LE(bodyLength, 4);
      b.writeUInt32LE(fieldsLength, 12);
    } else {
      b.writeUInt32BE(bodyLength, 4);
      b.writeUInt32BE(fieldsLength, 12);
    }
    return b;
  };

  it('computes the total size: fields padded to 8, plus the body', () => {
    expect(messageSize(fixed(true, 7, 15))).toBe(16 + 16 + 7);
    expect(messageSize(fixed(false, 7, 15))).toBe(39);
    expect(messageSize(fixed(true, 0, 0))).toBe(16);
    expect(messageSize(BE_RETURN)).toBe(BE_RETURN.length);
  });

  it('reads at an offset', () => {
    const buf = Buffer.concat([Buffer.alloc(5, 0xff), fixed(false, 8, 8)]);
    expect(messageSize(buf, 5)).toBe(32);
  });

  it('accepts a message of exactly 128 MiB', () => {
    expect(messageSize(fixed(true, MAX_MESSAGE_SIZE - 24, 8))).toBe(MAX_MESSAGE_SIZE);
  });

  it('rejects more than 128 MiB from the body length, the fields length, or both', () => {
    for (const le of [true, false]) {
      expect(() => messageSize(fixed(le, MAX_MESSAGE_SIZE - 23, 8))).toThrow(/128 MiB/);
      expect(() => messageSize(fixed(le, 0xffffffff, 0))).toThrow(/128 MiB/);
      expect(() => messageSize(fixed(le, 0, 0xffffffff))).toThrow(/128 MiB/);
      expect(() => messageSize(fixed(le, 0, 0xfffffff8))).toThrow(/128 MiB/);
      expect(() => messageSize(fixed(le, 0x80000000, 0x80000000))).toThrow(/128 MiB/);
    }
  });

  it('rejects fewer than 16 bytes', () => {
    expect(wireError(() => messageSize(fixed(true, 0, 0).subarray(0, 15))).code).toBe('InvalidMessage');
    expect(() => messageSize(fixed(true, 0, 0), 1)).toThrow(WireError);
  });
});

describe('readBody', () => {
  it('reads little- and big-endian bodies to the same values', () => {
    const values: DBusValue[] = ['s', new Map<DBusValue, DBusValue>([['k', new Variant('t', 1n)]]), [[1, true]]];
    const le = encodeMessage({ ...HELLO, signature: 'sa{sv}a(ub)', body: marshal('sa{sv}a(ub)', values) });
    expect(readBody(parseMessage(le))).toEqual(values);
    expect(readBody(parseMessage(toBigEndian(le)))).toEqual(values);
  });

  it('reads an empty body as no values', () => {
    expect(readBody(parseMessage(LIBDBUS_HELLO))).toEqual([]);
  });

  it('rejects a body that does not match the signature', () => {
    const msg = parseMessage(encodeMessage({ ...HELLO, signature: 'u', body: Buffer.from([1, 0]) }));
    expect(() => readBody(msg)).toThrow(WireError);
    const extra = parseMessage(encodeMessage({ ...HELLO, signature: 'y', body: Buffer.from([1, 0]) }));
    expect(() => readBody(extra)).toThrow(/left after the body/);
  });
});

// ---------------------------------------------------------------------------

describe('stitchSender', () => {
  const SIGNAL: NewMessage = {
    type: MessageType.Signal,
    serial: 7,
    flags: MessageFlag.NoReplyExpected,
    path: '/org/example/Obj',
    interface: 'org.example.Iface',
    member: 'Changed',
    destination: ':1.9',
    signature: 'sa{sv}ay',
    unixFds: 0,
    body: marshal('sa{sv}ay', [
      'org.example',
      new Map<DBusValue, DBusValue>([['Count', new Variant('x', -5n)]]),
      Buffer.from([1, 2, 3]),
    ]),
  };

  /** Checks a stitched message: sender replaced, everything else and the body bytes kept. */
  function expectStitched(original: Buffer, stitched: Buffer, sender: string) {
    const before = parseMessage(original);
    const after = parseMessage(stitched);
    expect(after.header.sender).toBe(sender);
    expect(after.header.hasUnknownFields).toBe(false);
    expect(preserved(after.header)).toEqual(preserved(before.header));
    expect(body(after).equals(body(before))).toBe(true);
    expect(readBody(after)).toEqual(readBody(before));
  }

  for (const [order, make] of [
    ['little-endian', (b: Buffer) => b],
    ['big-endian', toBigEndian],
  ] as const) {
    describe(order, () => {
      it('appends SENDER to a message without one, keeping the original fields byte for byte (fast path)', () => {
        const original = make(encodeMessage(SIGNAL));
        const copy = Buffer.from(original);
        const msg = parseMessage(original);
        const stitched = stitchSender(msg, ':1.42');
        expectStitched(original, stitched, ':1.42');
        const fieldsLength = msg.header.littleEndian ? original.readUInt32LE(12) : original.readUInt32BE(12);
        expect(stitched.subarray(1, 12)).toEqual(original.subarray(1, 12));
        expect(stitched.subarray(16, 16 + fieldsLength)).toEqual(original.subarray(16, 16 + fieldsLength));
        expect(original).toEqual(copy);
      });

      it('stitches messages with and without a body, and header ends at every alignment', () => {
        for (let n = 1; n <= 9; n++) {
          const original = make(
            encodeMessage({ type: MessageType.MethodCall, serial: n, path: `/${'p'.repeat(n)}`, member: 'M' }),
          );
          expectStitched(original, stitchSender(parseMessage(original), ':1.1'), ':1.1');
          const withBody = make(encodeMessage({ ...SIGNAL, member: 'M'.repeat(n) }));
          expectStitched(withBody, stitchSender(parseMessage(withBody), ':1.123456'), ':1.123456');
        }
      });

      it('replaces a forged SENDER (re-encode path)', () => {
        const original = make(encodeMessage({ ...SIGNAL, sender: 'org.freedesktop.DBus' }));
        expect(parseMessage(original).header.sender).toBe('org.freedesktop.DBus');
        const stitched = stitchSender(parseMessage(original), ':1.42');
        expectStitched(original, stitched, ':1.42');
        expect(stitched.includes(Buffer.from('org.freedesktop.DBus'))).toBe(false);
      });

      it('drops unknown header fields (re-encode path)', () => {
        const le = rawMessage({
          type: MessageType.Signal,
          fields: [
            [42, new Variant('s', 'secret')],
            PATH('/a'), IFACE('a.b'), MEMBER('S'), SIG('as'),
            [200, new Variant('a{sv}', new Map<DBusValue, DBusValue>([['x', new Variant('d', 1.5)]]))],
          ],
          body: marshal('as', [['one', 'two']]),
        });
        const original = make(le);
        expect(parseMessage(original).header.hasUnknownFields).toBe(true);
        const stitched = stitchSender(parseMessage(original), ':1.42');
        expectStitched(original, stitched, ':1.42');
        expect(stitched.includes(Buffer.from('secret'))).toBe(false);
      });

      it('replaces the sender of an already stitched message', () => {
        const once = stitchSender(parseMessage(make(encodeMessage(SIGNAL))), ':1.1');
        const twice = stitchSender(parseMessage(once), ':1.2');
        expectStitched(once, twice, ':1.2');
      });
    });
  }
});

// ---------------------------------------------------------------------------
// Properties over random valid messages.

const text = fc.string({ maxLength: 6 }).map((s) => s.replace(/\0/g, ''));
const element = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,5}$/);
const dotted = fc.array(element, { minLength: 2, maxLength: 3 }).map((p) => p.join('.'));
const objectPath = fc.array(fc.stringMatching(/^[A-Za-z0-9_]{1,4}$/), { maxLength: 3 }).map((p) => `/${p.join('/')}`);
const uniqueName = fc.nat(99999).map((n) => `:1.${n}`);
const busName = fc.oneof(uniqueName, dotted);
const u32 = fc.integer({ min: 1, max: 0xffffffff });

const variantValue: fc.Arbitrary<Variant> = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }).map((n) => new Variant('u', n)),
  text.map((s) => new Variant('s', s)),
  fc.uint8Array({ maxLength: 6 }).map((a) => new Variant('ay', Buffer.from(a))),
  fc.array(text, { maxLength: 3 }).map((a) => new Variant('as', a)),
  fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }).map((x) => new Variant('x', x)),
  fc.double().map((d) => new Variant('d', d)),
  fc.boolean().map((b) => new Variant('v', new Variant('b', b))),
);

/** [signature, values] bodies; '' for none. */
const bodyArb: fc.Arbitrary<[string, DBusValue[]]> = fc.oneof(
  fc.constant<[string, DBusValue[]]>(['', []]),
  text.map((s): [string, DBusValue[]] => ['s', [s]]),
  fc
    .array(fc.tuple(text, variantValue), { maxLength: 3 })
    .map((e): [string, DBusValue[]] => ['a{sv}', [new Map<DBusValue, DBusValue>(e)]]),
  fc
    .tuple(fc.integer({ min: -1000, max: 1000 }), fc.bigInt({ min: 0n, max: 1000n }), fc.uint8Array({ maxLength: 5 }))
    .map(([i, t, a]): [string, DBusValue[]] => ['(it)ay', [[i, t], Buffer.from(a)]]),
  fc.tuple(objectPath, variantValue, fc.boolean()).map(([o, v, b]): [string, DBusValue[]] => ['ovb', [o, v, b]]),
  fc.array(fc.tuple(fc.nat(255), text), { maxLength: 3 }).map((a): [string, DBusValue[]] => ['a(ys)', [a]]),
);

const newMessage: fc.Arbitrary<NewMessage> = fc
  .record({
    type: fc.constantFrom(MessageType.MethodCall, MessageType.MethodReturn, MessageType.Error, MessageType.Signal),
    flags: fc.nat(7),
    serial: u32,
    path: objectPath,
    interface: dotted,
    member: element,
    errorName: dotted,
    replySerial: u32,
    destination: fc.option(busName, { nil: undefined }),
    sender: fc.option(busName, { freq: 4, nil: undefined }),
    unixFds: fc.option(fc.nat(4), { freq: 4, nil: undefined }),
    body: bodyArb,
  })
  .map(({ body: [sig, values], ...m }) => {
    const msg: NewMessage = { ...m, signature: sig, body: marshal(sig, values) };
    // Keep only the fields the type allows or needs, plus some optional ones.
    if (m.type !== MessageType.Error) delete msg.errorName;
    if (m.type === MessageType.MethodCall || m.type === MessageType.Signal) delete msg.replySerial;
    if (m.type === MessageType.MethodReturn || m.type === MessageType.Error) {
      delete msg.path;
      delete msg.member;
      delete msg.interface;
    }
    return msg;
  });

/** A valid message in either byte order, sometimes with unknown header fields. */
const validMessage: fc.Arbitrary<Buffer> = fc
  .tuple(newMessage, fc.boolean(), fc.option(fc.tuple(fc.integer({ min: 10, max: 255 }), variantValue), { freq: 4 }))
  .map(([m, le, unknown]) => {
    let bytes = encodeMessage(m);
    if (unknown) {
      const [, type, flags, , , serial, fields] = unmarshal('yyyyuua(yv)', bytes, { partial: true }).values;
      const header = parseMessage(bytes).header;
      bytes = rawMessage({
        type: type as number,
        flags: flags as number,
        serial: serial as number,
        fields: [...(fields as [number, Variant][]), unknown],
        body: bytes.subarray(header.bodyOffset),
      });
    }
    return le ? bytes : toBigEndian(bytes);
  });

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'remove'; at: number; count: number };

/** Positions favour the header, where most of the parsing happens. */
const position = fc.oneof(fc.nat(40), fc.nat(4096));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat(7) }),
  fc.record({ kind: fc.constant('set' as const), at: position, value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x6c, 0x42) }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('remove' as const), at: position, count: fc.integer({ min: 1, max: 8 }) }),
);

/**
 * Applies mutations. With `fixLength`, the body length is then rewritten so the total size
 * matches again: the mutation gets past the framing checks into the fields.
 */
function mutate(input: Buffer, mutations: Mutation[], fixLength = false): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    switch (m.kind) {
      case 'flip': if (b.length > 0) b[at]! ^= 1 << m.bit; break;
      case 'set': if (b.length > 0) b[at] = m.value; break;
      case 'truncate': b = b.subarray(0, at); break;
      case 'insert': b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]); break;
      case 'remove': b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]); break;
    }
  }
  if (fixLength && b.length >= 16) {
    const le = b[0] !== 0x42;
    const fields = le ? b.readUInt32LE(12) : b.readUInt32BE(12);
    const bodyLength = b.length - ((16 + fields + 7) & ~7);
    if (bodyLength >= 0) {
      if (le) b.writeUInt32LE(bodyLength, 4);
      else b.writeUInt32BE(bodyLength, 4);
    }
  }
  return b;
}

function onlyWireErrors(f: () => void): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
  }
}

describe('messages (property)', () => {
  it('parse, read their body and stitch for any valid message in either byte order', () => {
    fc.assert(
      fc.property(validMessage, busName, (bytes, sender) => {
        const msg = parseMessage(bytes);
        readBody(msg);
        const stitched = parseMessage(stitchSender(msg, sender));
        expect(stitched.header.sender).toBe(sender);
        expect(preserved(stitched.header)).toEqual(preserved(msg.header));
        expect(body(stitched).equals(body(msg))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('big-endian copies parse to the same header and body values as the little-endian original', () => {
    fc.assert(
      fc.property(newMessage, (m) => {
        const le = parseMessage(encodeMessage(m));
        const be = parseMessage(toBigEndian(le.bytes));
        expect({ ...be.header, littleEndian: true }).toEqual(le.header);
        expect(readBody(be)).toEqual(readBody(le));
      }),
      { numRuns: 150 },
    );
  });

  it('mutated messages fail only with WireError, and whatever still parses can be stitched', () => {
    fc.assert(
      fc.property(validMessage, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.boolean(), (bytes, mutations, fix) => {
        const input = mutate(bytes, mutations, fix);
        onlyWireErrors(() => {
          const msg = parseMessage(input);
          onlyWireErrors(() => readBody(msg));
          const stitched = parseMessage(stitchSender(msg, ':1.7'));
          expect(stitched.header.sender).toBe(':1.7');
          expect(body(stitched).equals(body(msg))).toBe(true);
        });
      }),
      { numRuns: 1500 },
    );
  });

  it('random bytes fail only with WireError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), fc.boolean(), (raw, fixHead) => {
        const b = Buffer.from(raw);
        if (fixHead && b.length >= 16) {
          b[0] = 0x6c;
          b[3] = 1;
          b.writeUInt32LE(b.length - 16 - ((b.length - 16) % 8), 12);
          b.writeUInt32LE(0, 4);
        }
        onlyWireErrors(() => readBody(parseMessage(b)));
      }),
      { numRuns: 500 },
    );
  });
});
