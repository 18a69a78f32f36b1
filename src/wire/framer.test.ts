import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WireError } from '../util/errors.js';
import { Framer, OWN_BUFFER_SIZE } from './framer.js';
import { marshal } from './marshal.js';
import { MAX_MESSAGE_SIZE, MessageType, encodeMessage, messageSize } from './message.js';
import { Variant, type DBusValue } from './values.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** A big-endian method return with body "hi" (hand-written). */
const BE_RETURN = hex(`
  42 02 00 01  00000007  00000002  0000000f
  05 01 75 00  00000001
  08 01 67 00  01 73 00
  00
  00000002 6869 00
`);

const FIXTURES: Buffer[] = [
  encodeMessage({
    type: MessageType.MethodCall,
    serial: 1,
    path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus',
    member: 'Hello',
    destination: 'org.freedesktop.DBus',
  }),
  BE_RETURN,
  encodeMessage({
    type: MessageType.Signal,
    serial: 2,
    path: '/a',
    interface: 'a.b',
    member: 'S',
    signature: 'sa{sv}',
    body: marshal('sa{sv}', ['x', new Map<DBusValue, DBusValue>([['k', new Variant('ay', Buffer.alloc(300, 7))]])]),
  }),
  encodeMessage({ type: MessageType.MethodReturn, serial: 3, replySerial: 1 }),
];

/** Messages as hex strings: quick to compare, readable in a failure. */
const hexes = (messages: Buffer[]) => messages.map((m) => m.toString('hex'));

/** Pushes the chunks; returns every message handed out. */
function feed(framer: Framer, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...framer.push(c));
  return out;
}

function fixedHeader(opts: { endian?: number; version?: number; bodyLength: number; fieldsLength: number }): Buffer {
  const b = Buffer.alloc(16);
  b[0] = opts.endian ?? 0x6c;
  b[1] = MessageType.MethodCall;
  b[3] = opts.version ?? 1;
  b.writeUInt32LE(opts.bodyLength, 4);
  b.writeUInt32LE(1, 8);
  b.writeUInt32LE(opts.fieldsLength, 12);
  return b;
}

describe('Framer', () => {
  it('hands out each fixture message split at every offset into two chunks', () => {
    for (const msg of FIXTURES) {
      for (let at = 0; at <= msg.length; at++) {
        const framer = new Framer();
        const first = framer.push(msg.subarray(0, at));
        expect(first).toHaveLength(at === msg.length ? 1 : 0);
        const second = framer.push(msg.subarray(at));
        expect(hexes([...first, ...second])).toEqual(hexes([msg]));
        expect(framer.pendingLength).toBe(0);
      }
    }
  });

  it('hands out a message only with its last byte when fed byte by byte', () => {
    for (const msg of FIXTURES) {
      const framer = new Framer();
      for (let i = 0; i < msg.length - 1; i++) {
        expect(framer.push(msg.subarray(i, i + 1))).toEqual([]);
        expect(framer.pendingLength).toBe(i + 1);
      }
      expect(framer.push(msg.subarray(msg.length - 1))).toEqual([msg]);
    }
  });

  it('hands out several messages from one chunk, in order', () => {
    const framer = new Framer();
    expect(framer.push(Buffer.concat(FIXTURES))).toEqual(FIXTURES);
    expect(framer.pendingLength).toBe(0);
  });

  it('hands out several messages split at every offset of their concatenation', () => {
    const stream = Buffer.concat(FIXTURES);
    for (let at = 0; at <= stream.length; at++) {
      const framer = new Framer();
      expect(hexes(feed(framer, [stream.subarray(0, at), stream.subarray(at)]))).toEqual(hexes(FIXTURES));
    }
  });

  it('hands out the same messages for any chunking of a stream (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...FIXTURES), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (messages, cuts) => {
          const stream = Buffer.concat(messages);
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const chunks: Buffer[] = [];
          let prev = 0;
          for (const p of [...points, stream.length]) {
            chunks.push(stream.subarray(prev, p));
            prev = p;
          }
          const framer = new Framer();
          expect(hexes(feed(framer, chunks))).toEqual(hexes(messages));
          expect(framer.pendingLength).toBe(0);
          expect(framer.pending()).toHaveLength(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('ignores empty chunks', () => {
    const framer = new Framer();
    expect(framer.push(Buffer.alloc(0))).toEqual([]);
    expect(framer.pendingLength).toBe(0);
    expect(framer.push(FIXTURES[0]!)).toEqual([FIXTURES[0]]);
  });

  it('slices messages out of a chunk that holds them whole, without copying', () => {
    const chunk = Buffer.concat(FIXTURES);
    const out = new Framer().push(chunk);
    for (const m of out) expect(m.buffer).toBe(chunk.buffer);
  });

  describe('pending()', () => {
    it('is empty before anything arrives', () => {
      const framer = new Framer();
      expect(framer.pending()).toEqual(Buffer.alloc(0));
      expect(framer.pendingLength).toBe(0);
    });

    it('returns the bytes of an incomplete message, across several chunks', () => {
      const msg = FIXTURES[2]!;
      for (const cut of [6, 15, 16, 17, 100, msg.length - 1]) {
        const framer = new Framer();
        expect(feed(framer, [msg.subarray(0, 5), msg.subarray(5, cut)])).toEqual([]);
        expect(framer.pending()).toEqual(msg.subarray(0, cut));
        expect(framer.pendingLength).toBe(cut);
      }
    });

    it('returns only the partial message after complete ones were handed out', () => {
      const [a, b] = [FIXTURES[0]!, FIXTURES[1]!];
      const framer = new Framer();
      expect(framer.push(Buffer.concat([a, b.subarray(0, 20)]))).toEqual([a]);
      expect(framer.pending()).toEqual(b.subarray(0, 20));
      expect(framer.push(b.subarray(20))).toEqual([b]);
      expect(framer.pending()).toHaveLength(0);
    });

    it('lets another framer carry on from the pending bytes (handoff)', () => {
      const stream = Buffer.concat(FIXTURES);
      const first = new Framer();
      const handedOut = first.push(stream.subarray(0, 200));
      const second = new Framer();
      const rest = second.push(Buffer.concat([first.pending(), stream.subarray(200)]));
      expect([...handedOut, ...rest]).toEqual(FIXTURES);
    });
  });

  describe('errors', () => {
    it('rejects a bad endianness mark', () => {
      for (const endian of [0, 0x4c, 0x62, 0xff]) {
        expect(() => new Framer().push(fixedHeader({ endian, bodyLength: 0, fieldsLength: 0 }))).toThrow(WireError);
      }
    });

    it('rejects protocol versions other than 1', () => {
      for (const version of [0, 2, 0x7f]) {
        expect(() => new Framer().push(fixedHeader({ version, bodyLength: 0, fieldsLength: 0 }))).toThrow(/version/);
      }
    });

    it('waits for all 16 fixed-header bytes before judging them', () => {
      const framer = new Framer();
      const bad = fixedHeader({ endian: 0x58, bodyLength: 0, fieldsLength: 0 });
      expect(framer.push(bad.subarray(0, 15))).toEqual([]);
      expect(() => framer.push(bad.subarray(15))).toThrow(WireError);
    });

    it('rejects a message over 128 MiB from its 16-byte fixed header alone', () => {
      for (const [bodyLength, fieldsLength] of [
        [MAX_MESSAGE_SIZE, 0],
        [MAX_MESSAGE_SIZE - 16 + 1, 0],
        [0xffffffff, 0xffffffff],
        [0, MAX_MESSAGE_SIZE + 1],
      ] as const) {
        const framer = new Framer();
        const header = fixedHeader({ bodyLength, fieldsLength });
        expect(() => framer.push(header)).toThrow(/128 MiB/);
        // Also when the fixed header arrives in pieces.
        const split = new Framer();
        split.push(header.subarray(0, 7));
        expect(() => split.push(header.subarray(7))).toThrow(/128 MiB/);
      }
    });

    it('waits (without buffering more than it got) for a message of exactly 128 MiB', () => {
      const framer = new Framer();
      expect(framer.push(fixedHeader({ bodyLength: MAX_MESSAGE_SIZE - 16, fieldsLength: 0 }))).toEqual([]);
      expect(framer.pendingLength).toBe(16);
    });

    it('rejects a bad fixed header that follows good messages', () => {
      const framer = new Framer();
      const good = FIXTURES[0]!;
      expect(framer.push(good)).toEqual([good]);
      expect(() => framer.push(fixedHeader({ endian: 0, bodyLength: 0, fieldsLength: 0 }))).toThrow(WireError);
    });
  });

  it('fails only with WireError on corrupted streams, and every message it hands out has its announced size (property)', () => {
    const corruption = fc.record({ at: fc.nat(), value: fc.nat(255) });
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...FIXTURES), { minLength: 1, maxLength: 5 }),
        fc.array(corruption, { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }),
        (messages, corruptions, sizes) => {
          const stream = Buffer.concat(messages);
          for (const { at, value } of corruptions) stream[at % stream.length] = value;
          const framer = new Framer();
          let offset = 0;
          let i = 0;
          try {
            while (offset < stream.length) {
              const size = sizes[i++ % sizes.length]!;
              for (const m of framer.push(stream.subarray(offset, offset + size))) {
                expect(messageSize(m)).toBe(m.length);
              }
              offset += size;
            }
          } catch (e) {
            if (!(e instanceof WireError)) throw e;
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('Framer with bad bytes after good messages', () => {
  it('hands out the complete messages first, then reports the bad framing', () => {
    const framer = new Framer();
    const garbage = Buffer.alloc(16, 0x99);
    const out = framer.push(Buffer.concat([FIXTURES[0]!, FIXTURES[3]!, garbage]));
    expect(hexes(out)).toEqual(hexes([FIXTURES[0]!, FIXTURES[3]!]));
    expect(() => framer.throwIfFailed()).toThrow(WireError);
    expect(() => framer.push(Buffer.alloc(0))).toThrow(WireError);
  });
});

/** A large message: one that gets a buffer of its own while it arrives. */
const large = (bytes: number, serial: number) =>
  encodeMessage({ type: MessageType.Signal, serial, path: '/a', interface: 'a.b', member: 'L', signature: 'ay', body: marshal('ay', [Buffer.alloc(bytes, serial)]) });

describe('Framer reading from a shared buffer (pushCopy, room, filled)', () => {
  const MIXED = [...FIXTURES, large(5000, 11), large(70_000, 12), large(OWN_BUFFER_SIZE - 64, 13)];

  /**
   * Reads `stream` as the connection does: the rest of a large message straight into its room,
   * what follows through one shared buffer that is scribbled over after every read, so a
   * message still pointing into it would come out corrupted. The framer gets the whole shared
   * buffer and the read's length, as from the connection: a byte read past the length is garbage.
   */
  function readLikeTheConnection(stream: Buffer, sizes: number[]): { out: Buffer[]; pendingSeen: Buffer[] } {
    const framer = new Framer();
    const shared = Buffer.alloc(80_000, 0xee);
    const out: Buffer[] = [];
    const pendingSeen: Buffer[] = [];
    let offset = 0;
    for (let i = 0; offset < stream.length; i++) {
      const size = Math.max(1, sizes[i % sizes.length]!);
      const room = framer.room;
      const direct = room ? Math.min(room.length, size, stream.length - offset) : 0;
      if (room) stream.copy(room, 0, offset, offset + direct);
      offset += direct;
      const rest = Math.min(size - direct, stream.length - offset);
      stream.copy(shared, 0, offset, offset + rest);
      offset += rest;
      if (direct > 0) {
        const done = framer.filled(direct);
        if (done) out.push(done);
      }
      out.push(...framer.pushCopy(shared, rest));
      shared.fill(0xee, 0, rest);
      pendingSeen.push(Buffer.from(framer.pending()));
    }
    expect(framer.pendingLength).toBe(0);
    return { out, pendingSeen };
  }

  it('hands out the same messages as push for any read sizes, none pointing into the shared buffer (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...MIXED), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 80_000 }), { minLength: 1, maxLength: 8 }),
        (messages, sizes) => {
          const { out } = readLikeTheConnection(Buffer.concat(messages), sizes);
          expect(hexes(out)).toEqual(hexes(messages));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('receives the rest of a large message into its own buffer, which becomes the message', () => {
    const msg = large(70_000, 12);
    const framer = new Framer();
    expect(framer.pushCopy(msg.subarray(0, 1000))).toEqual([]);
    const room = framer.room!;
    expect(room.length).toBe(msg.length - 1000);
    msg.copy(room, 0, 1000);
    const done = framer.filled(room.length)!;
    expect(done.equals(msg)).toBe(true);
    expect(done.buffer).toBe(room.buffer);
    expect(framer.room).toBeUndefined();
  });

  it('gives a small unfinished message no room of its own', () => {
    const framer = new Framer();
    framer.pushCopy(FIXTURES[2]!.subarray(0, 40));
    expect(framer.room).toBeUndefined();
    expect(framer.pending().equals(FIXTURES[2]!.subarray(0, 40))).toBe(true);
  });

  it('carries a half-received large message over to another framer (handoff)', () => {
    const msg = large(5000, 11);
    const first = new Framer();
    first.pushCopy(msg.subarray(0, 3000));
    expect(first.pendingLength).toBe(3000);
    const second = new Framer();
    expect(second.push(Buffer.from(first.pending()))).toEqual([]);
    const [done] = second.push(msg.subarray(3000));
    expect(done!.equals(msg)).toBe(true);
  });

  it('hands out complete messages before bad framing in the same read, then reports it', () => {
    const framer = new Framer();
    const out = framer.pushCopy(Buffer.concat([FIXTURES[0]!, FIXTURES[3]!, Buffer.alloc(16, 0x99)]));
    expect(hexes(out)).toEqual(hexes([FIXTURES[0]!, FIXTURES[3]!]));
    expect(() => framer.throwIfFailed()).toThrow(WireError);
  });

  it('refuses a message over max_message_size from its fixed header, in a shared read', () => {
    const framer = new Framer(1024);
    expect(() => framer.pushCopy(large(5000, 11).subarray(0, 100))).toThrow(/max_message_size/);
  });
});
