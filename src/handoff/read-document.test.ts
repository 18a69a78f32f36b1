import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isValidWellKnownName } from '../wire/names.js';
import { partsLength, readParts, SpooledBytes, type QueuedPart } from '../transport/spooled-bytes.js';
import { encodeDocument } from './binary-document.js';
import {
  DOCUMENT_HEADER_BYTES,
  CONNECTION_ROW,
  HANDOFF_FORMAT,
  HANDOFF_FORMAT_JSON,
  HANDOFF_FORMAT_SPOOLED,
  MAX_DOCUMENT_BYTES,
  type HandoffDocument,
} from './document.js';
import { readHandoffFile, writeHandoffFile } from './handoff-file.js';
import { HandoffError, readDocument, type ReadResult } from './read-document.js';

const NONCE = '5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5';
const PID = 4242;

/** A document as JSON text holds it in format 1: every Buffer (and outbound's parts) a base64 string. */
type OnDisk<T> = T extends readonly QueuedPart[] ? string : T extends Buffer ? string : T extends object ? { [K in keyof T]: OnDisk<T[K]> } : T;
type JsonDocument = OnDisk<HandoffDocument>;
type JsonConnection = JsonDocument['connections'][number];

function connection(i: number, extra: Partial<JsonConnection> = {}): JsonConnection {
  return {
    fd: 20 + i,
    peerId: i + 1,
    credentials: { uid: 1000 + i, gid: 1000, pid: 300 + i, groups: [1000, 27] },
    uniqueName: `:1.${i + 1}`,
    inbound: Buffer.from([0x6c, 1, 0, 1]).toString('base64'),
    outbound: '',
    matches: ["type='signal',interface='org.example.Changed'"],
    ...extra,
  };
}

/**
 * A document as an old image writes it (format 1, JSON text): three connections, names with
 * queues, a pending call, services being started.
 */
function validDoc(): JsonDocument {
  return {
    format: HANDOFF_FORMAT_JSON,
    nonce: NONCE,
    pid: PID,
    generation: 3,
    stoppedAtNs: '123456789000',
    writtenAt: '2026-11-27T10:00:00.000Z',
    bus: {
      guid: '0123456789abcdef0123456789abcdef',
      machineId: 'fedcba9876543210fedcba9876543210',
      kind: 'system',
      nextUniqueId: 9,
      nextPeerId: 9,
      driverSerial: 77,
      startedAt: '2026-11-27T09:00:00.000Z',
    },
    settings: { listen: ['unix:path=/run/ferrybus/bus'], kind: 'system', limits: {} },
    listeners: [{ fd: 3, path: '/run/ferrybus/bus', address: 'unix:path=/run/ferrybus/bus,guid=0123456789abcdef0123456789abcdef' }],
    connections: [
      connection(0),
      connection(1, { outbound: Buffer.from('queued').toString('base64'), monitorRules: [] }),
      // Still authenticating: no unique name yet.
      (({ uniqueName: _, ...rest }) => rest)(
        connection(2, { sasl: { phase: 'waiting-for-begin', buffer: '', total: 30, rejections: 0, uid: 1002 }, matches: [] }),
      ),
    ],
    names: [
      { name: 'org.example.Service', queue: [{ peerId: 1, flags: 1 }, { peerId: 2, flags: 0 }] },
      { name: 'org.example.Other', queue: [{ peerId: 2, flags: 4 }] },
    ],
    pendingCalls: [{ caller: 1, serial: 5, callee: 2 }],
    handoffCallers: [{ peerId: 1, serial: 9 }],
    lastHandoff: { at: '2026-11-27T09:30:00.000Z', pauseUs: 250_000, root: '/' },
    activation: {
      environment: [['LANG', 'C.UTF-8']],
      pending: [
        {
          name: 'org.example.Starting', via: 'exec', deadline: 1_800_000_000_000, pid: 777,
          entry: { exec: '/usr/bin/starting', file: '/usr/share/dbus-1/services/org.example.Starting.service' },
          held: [
            { sender: 1, start: false, message: Buffer.from('held call').toString('base64'), fds: [40] },
            { sender: 2, start: true, message: Buffer.from('start request').toString('base64') },
          ],
        },
        { name: 'org.freedesktop.systemd1', via: 'await-systemd', deadline: 1_800_000_000_000, held: [{ sender: 0, start: false, message: 'AAAA' }] },
      ],
    },
  };
}

/** What reading a format-1 document gives: the same, with its bytes decoded. */
function decoded(doc: JsonDocument): HandoffDocument {
  const b = (s: string) => Buffer.from(s, 'base64');
  return {
    ...doc,
    // An older document's missing label means none: read as null (format 3's "known to be none").
    connections: doc.connections.map((c) => ({
      ...c, credentials: { ...c.credentials, securityLabel: c.credentials.securityLabel ?? null }, inbound: b(c.inbound), outbound: c.outbound ? [b(c.outbound)] : [],
    })),
    ...(doc.activation
      ? { activation: { ...doc.activation, pending: doc.activation.pending.map((p) => ({ ...p, held: p.held.map((h) => ({ ...h, message: b(h.message) })) })) } }
      : {}),
  } as HandoffDocument;
}

/** The same state as an image of this version holds it and writes it (format 4). */
const memoryDoc = (): HandoffDocument => ({ ...decoded(validDoc()), format: HANDOFF_FORMAT });
const binary = (doc: HandoffDocument = memoryDoc(), format = HANDOFF_FORMAT): Buffer => Buffer.concat(encodeDocument(doc, format).pieces);

/** A document read from a file, its spooled outbound bytes read into memory (one Buffer per connection). */
const inMemory = (doc: HandoffDocument): HandoffDocument => ({
  ...doc,
  connections: doc.connections.map((c) => ({ ...c, outbound: c.outbound.length ? [readParts(c.outbound)] : [] })),
});

const read = (doc: unknown, expect_: { nonce?: string; pid?: number } = { nonce: NONCE, pid: PID }): ReadResult =>
  readDocument(typeof doc === 'string' || Buffer.isBuffer(doc) ? doc : JSON.stringify(doc), expect_);

function refusal(fn: () => unknown): HandoffError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HandoffError);
    return err as HandoffError;
  }
  throw new Error('the document was accepted');
}

/**
 * What restore() relies on, whatever the input: every record that comes out is well-formed and
 * the records agree with each other (no fd or peer used twice, names owned by surviving
 * connections, unique names never handed out again).
 */
function expectConsistent({ doc }: ReadResult): void {
  const fds = new Set<number>();
  for (const l of doc.listeners) {
    expect(Number.isInteger(l.fd)).toBe(true);
    expect(typeof l.path).toBe('string');
    expect(typeof l.address).toBe('string');
    expect(fds.has(l.fd)).toBe(false);
    fds.add(l.fd);
  }
  const peers = new Set<number>();
  const uniqueNames = new Set<string>();
  for (const c of doc.connections) {
    expect(Number.isInteger(c.fd) && c.fd >= 0).toBe(true);
    expect(fds.has(c.fd), `fd ${c.fd} used twice`).toBe(false);
    fds.add(c.fd);
    expect(Number.isInteger(c.peerId) && c.peerId >= 1).toBe(true);
    expect(peers.has(c.peerId), `peer ${c.peerId} used twice`).toBe(false);
    peers.add(c.peerId);
    expect(typeof c.credentials.uid).toBe('number');
    // Formats 3 and 4 leave out groups not read yet (the new image reads them from the socket).
    expect(Array.isArray(c.credentials.groups) || (doc.format >= HANDOFF_FORMAT_SPOOLED && c.credentials.groups === undefined)).toBe(true);
    expect(c.credentials.securityLabel === undefined || c.credentials.securityLabel === null || typeof c.credentials.securityLabel === 'string').toBe(true);
    expect(Buffer.isBuffer(c.inbound)).toBe(true);
    expect(c.outbound.every((p) => Buffer.isBuffer(p) || p instanceof SpooledBytes)).toBe(true);
    for (const m of c.outboundFds ?? []) expect(m.at).toBeLessThan(partsLength(c.outbound));
    expect(c.matches.every((m) => typeof m === 'string')).toBe(true);
    if (c.uniqueName !== undefined) {
      expect(c.uniqueName).toMatch(/^:1\.[0-9]+$/);
      expect(uniqueNames.has(c.uniqueName), `${c.uniqueName} used twice`).toBe(false);
      uniqueNames.add(c.uniqueName);
      expect(Number(c.uniqueName.slice(3)), `${c.uniqueName} would be handed out again`).toBeLessThan(doc.bus.nextUniqueId);
    }
  }
  const names = new Set<string>();
  for (const n of doc.names) {
    expect(isValidWellKnownName(n.name), `name ${JSON.stringify(n.name)}`).toBe(true);
    expect(names.has(n.name), `${n.name} listed twice`).toBe(false);
    names.add(n.name);
    expect(n.queue.length).toBeGreaterThan(0);
    const owners = n.queue.map((o) => o.peerId);
    expect(new Set(owners).size, `${n.name} queues one peer twice`).toBe(owners.length);
    for (const o of n.queue) {
      expect(peers.has(o.peerId)).toBe(true);
      expect(Number.isInteger(o.flags) && o.flags >= 0 && o.flags <= 7).toBe(true);
    }
  }
  for (const p of doc.pendingCalls) expect(peers.has(p.caller) && peers.has(p.callee)).toBe(true);
  for (const h of doc.handoffCallers) expect(Number.isInteger(h.peerId) && Number.isInteger(h.serial)).toBe(true);
  expect(doc.bus.guid).toMatch(/^[0-9a-f]{32}$/);
  expect(typeof doc.stoppedAtNs).toBe('string');
  expect(() => BigInt(doc.stoppedAtNs)).not.toThrow();
  for (const p of doc.activation?.pending ?? []) {
    expect(['exec', 'systemd', 'await-systemd']).toContain(p.via);
    expect(Number.isFinite(p.deadline)).toBe(true);
    for (const h of p.held) {
      expect(h.sender === 0 || peers.has(h.sender), `held message from unknown peer ${h.sender}`).toBe(true);
      expect(Buffer.isBuffer(h.message) && h.message.length > 0).toBe(true);
      for (const fd of h.fds ?? []) {
        expect(fds.has(fd), `fd ${fd} used twice`).toBe(false);
        fds.add(fd);
      }
    }
  }
  if (doc.lastHandoff !== undefined) {
    expect(typeof doc.lastHandoff.at).toBe('string');
    expect(Number.isInteger(doc.lastHandoff.pauseUs) && doc.lastHandoff.pauseUs >= 0).toBe(true);
    expect(typeof doc.lastHandoff.root).toBe('string');
  }
}

describe('readDocument: the format before (JSON text, bytes in base64), as an older image writes it', () => {
  it('accepts a document as written, its bytes decoded, without a warning', () => {
    const result = read(validDoc());
    expect(result.warnings).toEqual([]);
    expect(result.doc).toEqual(decoded(validDoc()));
    expectConsistent(result);
  });

  it('reads it from bytes too (inspect and the daemon read files)', () => {
    expect(read(Buffer.from(JSON.stringify(validDoc()))).doc).toEqual(decoded(validDoc()));
  });

  it('accepts it without expectations too (inspect reads documents of other processes)', () => {
    expect(read(validDoc(), {}).doc.pid).toBe(PID);
  });
});

describe('readDocument: keys a newer writer added are logged and ignored', () => {
  it('at every level, each named in its own warning', () => {
    const doc = validDoc() as unknown as Record<string, any>;
    doc.compression = 'none';
    doc.bus.epoch = 2;
    doc.listeners[0].backlog = 4096;
    doc.connections[1].features = ['fd-passing'];
    const result = read(doc);
    expect(result.warnings).toEqual([
      'bus: unknown key "epoch" ignored',
      'document: unknown key "compression" ignored',
      'listeners[0]: unknown key "backlog" ignored',
      'connections[1]: unknown key "features" ignored',
    ]);
    // Ignored: restore reads only the keys it knows (the records may still carry the others).
    expect(result.doc).toMatchObject(decoded(validDoc()));
  });
});

describe('readDocument: refusals (the whole document)', () => {
  it('an unknown format is HandoffFormatUnsupported, newer or older', () => {
    for (const format of [HANDOFF_FORMAT + 1, HANDOFF_FORMAT_JSON - 1, 99]) {
      const err = refusal(() => read({ ...validDoc(), format }));
      expect(err.code).toBe('HandoffFormatUnsupported');
      expect(err.message).toContain(`document format ${format} is not readable by this image`);
    }
  });

  it('a nonce from another handoff is refused: a stale file never matches', () => {
    const err = refusal(() => read(validDoc(), { nonce: 'ffffffffffffffffffffffffffffffff', pid: PID }));
    expect(err.code).toBe('HandoffDocumentInvalid');
    expect(err.message).toMatch(/nonce does not match/);
  });

  it('a document written by another process is refused', () => {
    const err = refusal(() => read(validDoc(), { nonce: NONCE, pid: PID + 1 }));
    expect(err.code).toBe('HandoffDocumentInvalid');
    expect(err.message).toBe(`document was written by pid ${PID}, not this process (${PID + 1})`);
  });

  it.each([
    ['not JSON', 'generation: 3'],
    ['empty', ''],
    ['an array', '[]'],
    ['null', 'null'],
    ['no format', JSON.stringify({ ...validDoc(), format: undefined })],
    ['a format that is a string', JSON.stringify({ ...validDoc(), format: '1' })],
    ['no nonce', JSON.stringify({ ...validDoc(), nonce: 7 })],
    ['no bus', JSON.stringify({ ...validDoc(), bus: undefined })],
    ['a bad guid', JSON.stringify({ ...validDoc(), bus: { ...validDoc().bus, guid: 'XYZ' } })],
    ['bad counters', JSON.stringify({ ...validDoc(), bus: { ...validDoc().bus, nextUniqueId: -1 } })],
    ['"__proto__" as its only key', '{"__proto__":{"format":1}}'],
    ['nesting a million deep', '['.repeat(1_000_000)],
  ])('%s is HandoffDocumentInvalid', (_what, text) => {
    expect(refusal(() => read(text)).code).toBe('HandoffDocumentInvalid');
  });
});

describe('readDocument: a damaged record is dropped with a warning, the others survive', () => {
  it('a connection with bad credentials goes, and with it its place in queues and its pending calls', () => {
    const doc = validDoc() as unknown as Record<string, any>;
    doc.connections[1].credentials.uid = -1;
    const result = read(doc);
    expect(result.warnings).toEqual([
      'connections[1]: bad credentials; connection dropped',
      'names[0] (org.example.Service): 1 unknown owners dropped',
      'names[1] (org.example.Other): 1 unknown owners dropped',
      'pendingCalls: a malformed or orphaned entry dropped',
      'activation.pending[0].held[1]: malformed or orphaned, dropped',
    ]);
    expect(result.doc.connections.map((c) => c.peerId)).toEqual([1, 3]);
    expect(result.doc.names).toEqual([{ name: 'org.example.Service', queue: [{ peerId: 1, flags: 1 }] }]);
    expect(result.doc.pendingCalls).toEqual([]);
    expectConsistent(result);
  });

  it.each([
    ['an fd that is not a number', (c: any) => (c.fd = '21'), 'bad fd'],
    ['bytes that are not base64', (c: any) => (c.inbound = 'not base64!'), 'bad byte fields'],
    ['a match rule that is not a string', (c: any) => (c.matches = [1]), 'bad match rules'],
    ['a unique name that is not one', (c: any) => (c.uniqueName = 'org.example.Service'), 'bad unique name'],
    ['groups that are not numbers', (c: any) => (c.credentials.groups = ['wheel']), 'bad groups'],
    ['a broken authentication state', (c: any) => (c.sasl = { phase: 1 }), 'bad authentication state'],
  ])('%s', (_what, damage, why) => {
    const doc = validDoc() as unknown as Record<string, any>;
    damage(doc.connections[0]);
    const result = read(doc);
    expect(result.warnings[0]).toBe(`connections[0]: ${why}; connection dropped`);
    expect(result.doc.connections.map((c) => c.peerId)).toEqual([2, 3]);
    expectConsistent(result);
  });

  it('an fd, a peer id or a unique name used twice keeps the first record only', () => {
    for (const [key, value] of [['fd', 20], ['peerId', 1], ['uniqueName', ':1.1']] as const) {
      const doc = validDoc() as unknown as Record<string, any>;
      doc.connections[1][key] = value;
      const result = read(doc);
      expect(result.warnings[0]).toMatch(/^connections\[1\]: .* used twice; dropped$/);
      expect(result.doc.connections.map((c) => c.peerId)).toEqual([1, 3]);
      expectConsistent(result);
    }
  });

  it('a listener record that is malformed goes, the other listener stays', () => {
    const doc = validDoc() as unknown as Record<string, any>;
    doc.listeners.push({ fd: 'four', path: '/run/dbus/system_bus_socket' }, { fd: 5, path: '/run/dbus/system_bus_socket', address: 'unix:path=/run/dbus/system_bus_socket' });
    const result = read(doc);
    expect(result.warnings).toEqual(['listeners[1]: malformed, dropped']);
    expect(result.doc.listeners.map((l) => l.fd)).toEqual([3, 5]);
  });

  it('a name that is not a valid well-known name, or listed twice, goes; a peer queued twice is queued once', () => {
    const doc = validDoc() as unknown as Record<string, any>;
    doc.names.push({ name: 'not a name', queue: [{ peerId: 1, flags: 0 }] });
    doc.names.push({ name: 'org.example.Other', queue: [{ peerId: 1, flags: 0 }] });
    doc.names[0].queue.push({ peerId: 1, flags: 0 });
    const result = read(doc);
    expect(result.doc.names).toEqual(validDoc().names);
    expect(result.warnings).toEqual([
      'names[0] (org.example.Service): peer 1 queued twice; the later entry dropped',
      'names[2]: "not a name" is not a valid well-known name; dropped',
      'names[3] (org.example.Other): listed twice; dropped',
    ]);
    expectConsistent(result);
  });

  it('a unique name the counter would hand out again raises the counter', () => {
    const doc = validDoc();
    doc.bus.nextUniqueId = 2;
    const result = read(doc);
    expect(result.doc.bus.nextUniqueId).toBe(3);
    expect(result.warnings).toEqual(['bus: nextUniqueId 2 is not above :1.2 (a connection\'s unique name); raised to 3']);
    expectConsistent(result);
  });

  it('a malformed handoff history is dropped', () => {
    const result = read({ ...validDoc(), lastHandoff: { at: 5, pauseUs: 'long', root: {} } });
    expect(result.doc.lastHandoff).toBeUndefined();
    expect(result.warnings).toEqual(['lastHandoff: malformed, dropped']);
  });

  it('a held message whose sender was not taken over, or whose fd is used twice, goes; its activation stays', () => {
    const doc = validDoc();
    doc.activation!.pending[0]!.held.push({ sender: 42, start: false, message: 'AAAA' }, { sender: 1, start: false, message: 'AAAA', fds: [21] });
    const { doc: out, warnings } = read(doc);
    expect(out.activation!.pending[0]!.held).toHaveLength(2);
    expect(warnings).toEqual([
      'activation.pending[0].held[2]: malformed or orphaned, dropped',
      'activation.pending[0].held[3]: fd 21 used twice, dropped',
    ]);
  });

  it('an activation that is not a valid one goes with what it held', () => {
    const doc = validDoc();
    (doc.activation!.pending[1] as unknown as Record<string, unknown>).via = 'teleport';
    const { doc: out, warnings } = read(doc);
    expect(out.activation!.pending.map((p) => p.name)).toEqual(['org.example.Starting']);
    expect(warnings).toEqual(['activation.pending[1]: malformed, dropped with what it held']);
  });

  it('lists that are not lists are ignored with a warning', () => {
    const result = read({ ...validDoc(), names: {}, pendingCalls: 'none' });
    expect(result.warnings).toEqual(['names: not a list, ignored', 'pendingCalls: not a list, ignored']);
    expect(result.doc.names).toEqual([]);
  });
});

/** A format-2 file around `json` (a document or its text) and `section`, its header as given. */
function container(json: unknown, section: Buffer, format = HANDOFF_FORMAT): Buffer {
  const text = Buffer.from(typeof json === 'string' ? json : JSON.stringify(json));
  const header = Buffer.alloc(DOCUMENT_HEADER_BYTES);
  binary().copy(header, 0, 0, 8);
  header.writeUInt32LE(format, 8);
  header.writeUInt32LE(text.length, 12);
  header.writeBigUInt64LE(BigInt(section.length), 16);
  return Buffer.concat([header, text, section]);
}

/** The JSON part of a format-2 file, parsed, and its binary section. */
function parts(file: Buffer): { json: Record<string, any>; section: Buffer } {
  const end = DOCUMENT_HEADER_BYTES + file.readUInt32LE(12);
  return { json: JSON.parse(file.toString('utf8', DOCUMENT_HEADER_BYTES, end)), section: file.subarray(end) };
}

describe('readDocument: the binary format (header, JSON, binary section)', () => {
  it('accepts a document as written, unchanged, without a warning; its bytes are views of the file, not copies', () => {
    const file = binary();
    const result = read(file);
    expect(result.warnings).toEqual([]);
    expect(result.doc).toEqual(memoryDoc());
    expect((result.doc.connections[1]!.outbound[0] as Buffer).buffer).toBe(file.buffer);
    expectConsistent(result);
  });

  it('holds the bytes in the section, ranges in the JSON: nothing in base64', () => {
    for (const format of [HANDOFF_FORMAT, HANDOFF_FORMAT_SPOOLED]) {
      const { json, section } = parts(binary(memoryDoc(), format));
      expect(record(json, 1).outbound).toEqual({ offset: expect.any(Number), length: 6 });
      expect(json.activation.pending[0].held[0].message).toEqual({ offset: expect.any(Number), length: 9 });
      expect(section.toString('latin1')).toContain('queued');
    }
  });

  it('accepts, unchanged, what an image writes for a target that reads no format 4 (format 3)', () => {
    const doc = memoryDoc();
    const result = read(binary(doc, HANDOFF_FORMAT_SPOOLED));
    expect(result.warnings).toEqual([]);
    expect(result.doc).toEqual({ ...memoryDoc(), format: HANDOFF_FORMAT_SPOOLED });
    expect(parts(binary(memoryDoc(), HANDOFF_FORMAT_SPOOLED)).json.connections).toHaveLength(3);
  });

  it('a file with a bad magic is refused as such', () => {
    const file = binary();
    file[3] ^= 0xff;
    const err = refusal(() => read(file));
    expect(err.code).toBe('HandoffDocumentInvalid');
    expect(err.message).toBe('bad magic: not a ferrybus handoff document');
  });

  it('a file cut anywhere in its binary section, in its JSON or its header is refused as truncated', () => {
    const file = binary();
    for (const n of [file.length - 1, file.length - parts(file).section.length, DOCUMENT_HEADER_BYTES + 5, DOCUMENT_HEADER_BYTES, 5]) {
      const err = refusal(() => read(file.subarray(0, n)));
      expect(err.code).toBe('HandoffDocumentInvalid');
      expect(err.message).toMatch(/^truncated: /);
    }
  });

  it('a format this image does not read is HandoffFormatUnsupported; a header and JSON that disagree, or JSON text claiming the binary format, are invalid', () => {
    const { json, section } = parts(binary());
    const future = refusal(() => read(container({ ...json, format: HANDOFF_FORMAT + 1 }, section, HANDOFF_FORMAT + 1)));
    expect(future.code).toBe('HandoffFormatUnsupported');
    expect(future.message).toContain(`document format ${HANDOFF_FORMAT + 1} is not readable by this image`);
    expect(refusal(() => read(container(json, section, HANDOFF_FORMAT_JSON))).message).toBe(
      'format 1 is JSON text, but this file has a binary header',
    );
    expect(refusal(() => read(container({ ...json, format: HANDOFF_FORMAT_JSON }, section))).message).toBe(
      `the header says format ${HANDOFF_FORMAT}, the JSON format 1`,
    );
    expect(refusal(() => read(JSON.stringify(json))).message).toBe(`a format-${HANDOFF_FORMAT} document is a binary file; this is JSON text alone`);
  });

  it('a byte range outside the section drops its record alone, with a warning that says so', () => {
    for (const format of [HANDOFF_FORMAT, HANDOFF_FORMAT_SPOOLED]) {
      const { json, section } = parts(binary(memoryDoc(), format));
      record(json, 0).inbound = { offset: section.length - 2, length: 3 };
      json.activation.pending[0].held[1].message = { offset: section.length, length: 1 };
      record(json, 2).outbound = { offset: -1, length: 0 };
      const result = read(container(json, section, format));
      const list = format === HANDOFF_FORMAT ? 'connectionTable' : 'connections';
      expect(result.warnings).toEqual([
        `${list}[0]: bytes at ${section.length - 2} (3 of them) lie outside the ${section.length}-byte binary section; connection dropped`,
        `${list}[2]: bad byte fields; connection dropped`,
        'names[0] (org.example.Service): 1 unknown owners dropped',
        'pendingCalls: a malformed or orphaned entry dropped',
        'activation.pending[0].held[0]: malformed or orphaned, dropped',
        `activation.pending[0].held[1]: bytes at ${section.length} (1 of them) lie outside the ${section.length}-byte binary section, dropped`,
      ]);
      expect(result.doc.connections.map((c) => c.peerId)).toEqual([2]);
      expectConsistent(result);
    }
  });

  it('fds marked past the end of the queued bytes drop the connection', () => {
    const doc = memoryDoc();
    doc.connections[1]!.outboundFds = [{ at: 6, fds: [50] }];
    expect(read(binary(doc)).warnings[0]).toBe('connectionTable[1]: bad outbound fds; connection dropped');
    expect(read(binary(doc, HANDOFF_FORMAT_SPOOLED)).warnings[0]).toBe('connections[1]: bad outbound fds; connection dropped');
  });
});

/** Connection `i` as the JSON of a binary file holds it: its record (format 3) or its details (format 4). */
function record(json: Record<string, any>, i: number): Record<string, any> {
  return json.connectionTable ? json.connectionDetails.find((d: { at: number }) => d.at === i) : json.connections[i];
}

describe('readDocument: format 4, the connections as a table', () => {
  /** n connections between messages: no bytes, no rules, credentials as accepted (nothing read since). */
  const idleDoc = (n: number): HandoffDocument => ({
    ...memoryDoc(),
    connections: Array.from({ length: n }, (_, i) => ({
      fd: 20 + i, peerId: i + 1, credentials: { uid: 1000 + i, gid: 100, pid: 300 + i },
      ...(i % 3 === 2 ? {} : { uniqueName: `:1.${i + 1}` }), // authenticated, no Hello yet
      ...(i % 2 === 0 ? { unixFds: true } : {}),
      inbound: Buffer.alloc(0), outbound: [], matches: [],
    })),
    names: [], pendingCalls: [], handoffCallers: [], activation: undefined,
  });
  const cell = (json: Record<string, any>, row: number, column: number, value: unknown) =>
    (json.connectionTable[row * CONNECTION_ROW + column] = value);

  it('writes an idle connection as its row alone and reads it back as it was', () => {
    const doc = idleDoc(5);
    const file = binary(doc);
    const { json } = parts(file);
    expect(json.connections).toBeUndefined();
    expect(json.connectionDetails).toEqual([]);
    expect(json.connectionTable.slice(0, CONNECTION_ROW)).toEqual([20, 1, 300, 1000, 100, 1, 1]);
    expect(json.connectionTable.slice(2 * CONNECTION_ROW, 3 * CONNECTION_ROW)).toEqual([22, 3, 302, 1002, 100, 0, 1]);
    expect(json.connectionTable).toHaveLength(5 * CONNECTION_ROW);
    const result = read(file);
    expect(result.warnings).toEqual([]);
    expect(result.doc.connections).toEqual(doc.connections);
    expectConsistent(result);
  });

  it('a damaged row drops its connection alone, and says why; a table cut inside a row loses that row only', () => {
    const { json, section } = parts(binary(idleDoc(8)));
    cell(json, 0, 0, -1);
    cell(json, 1, 1, 0);
    cell(json, 2, 3, 'root');
    cell(json, 3, 5, 1.5);
    cell(json, 4, 6, 2);
    json.connectionTable.push(99, 99);
    const result = read(container(json, section));
    expect(result.warnings).toEqual([
      `connectionTable: ${8 * CONNECTION_ROW + 2} numbers, not rows of ${CONNECTION_ROW}; the last 2 ignored`,
      'connectionTable[0]: bad fd; connection dropped',
      'connectionTable[1]: bad peer id; connection dropped',
      'connectionTable[2]: bad credentials; connection dropped',
      'connectionTable[3]: bad unique name; connection dropped',
      'connectionTable[4]: bad flags; connection dropped',
    ]);
    expect(result.doc.connections.map((c) => c.peerId)).toEqual([6, 7, 8]);
    expectConsistent(result);
  });

  it('details that name no row are dropped; a row described twice, or given two unique names, is dropped', () => {
    const { json, section } = parts(binary(idleDoc(4)));
    json.connectionDetails = [
      { at: 9, matches: ['type=signal'] },
      { at: 'one' },
      { at: 1, matches: ["type='signal'"] },
      { at: 1, matches: [] },
      { at: 0, uniqueName: ':1.77' },
      { at: 2, uniqueName: ':1.50', future: true },
    ];
    const result = read(container(json, section));
    expect(result.warnings).toEqual([
      'connectionDetails[0]: names no connection row; dropped',
      'connectionDetails[1]: names no connection row; dropped',
      'connectionDetails[3]: row 1 described twice; its connection dropped',
      'connectionTable[0]: two unique names; connection dropped',
      'connectionTable[1]: described twice; connection dropped',
      'connectionTable[2]: unknown key "future" ignored',
      "bus: nextUniqueId 9 is not above :1.50 (a connection's unique name); raised to 51",
    ]);
    expect(result.doc.connections.map((c) => [c.peerId, c.uniqueName])).toEqual([[3, ':1.50'], [4, ':1.4']]);
    expectConsistent(result);
  });

  it('details cannot change what their row says', () => {
    const { json, section } = parts(binary(idleDoc(2)));
    json.connectionDetails = [{ at: 1, fd: 20, peerId: 1, credentials: { uid: 0, gid: 0, pid: 1 }, unixFds: true, matches: ["type='signal'"] }];
    const result = read(container(json, section));
    expect(result.warnings).toEqual([]);
    expect(result.doc.connections[1]).toMatchObject({ fd: 21, peerId: 2, credentials: { uid: 1001, gid: 100, pid: 301 }, matches: ["type='signal'"] });
    expect(result.doc.connections[1]!.unixFds).toBeUndefined();
  });

  it('two rows claiming one fd, peer id or unique name: the later one is dropped', () => {
    const { json, section } = parts(binary(idleDoc(4)));
    cell(json, 1, 0, 20);
    cell(json, 2, 1, 1);
    cell(json, 3, 5, 1);
    const result = read(container(json, section));
    expect(result.warnings).toEqual([
      'connectionTable[1]: fd 20 used twice; dropped',
      'connectionTable[2]: peer id 1 used twice; dropped',
      'connectionTable[3]: unique name :1.1 used twice; dropped',
    ]);
    expect(result.doc.connections.map((c) => c.peerId)).toEqual([1]);
  });
});

describe('readHandoffFile', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrybus-read-document-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads a document file, in either format', () => {
    const file = path.join(dir, 'generation-4.json');
    fs.writeFileSync(file, JSON.stringify(validDoc()), { mode: 0o600 });
    expect(readHandoffFile(file, { nonce: NONCE, pid: PID }).doc).toEqual(decoded(validDoc()));
    fs.writeFileSync(file, binary(), { mode: 0o600 });
    const { doc, warnings, spools } = readHandoffFile(file, { nonce: NONCE, pid: PID });
    expect({ doc: inMemory(doc), warnings }).toEqual({ doc: memoryDoc(), warnings: [] });
    for (const spool of spools) spool.release();
  });

  it('reads back what it wrote: queued outbound bytes stay in the file until the last reference lets go, the rest in Buffers of their own', () => {
    const doc = memoryDoc();
    doc.connections[0]!.outbound = [Buffer.alloc(200_000, 7), Buffer.alloc(100_000, 8)];
    doc.connections[0]!.outboundFds = [{ at: 299_999, fds: [41] }];
    const written = writeHandoffFile(path.join(dir, 'own-write'), doc).file;
    const { doc: back, warnings, spools } = readHandoffFile(written, { nonce: NONCE, pid: PID });
    expect(warnings).toEqual([]);
    const queued = back.connections[0]!.outbound;
    expect(queued).toHaveLength(1);
    expect(queued[0]).toBeInstanceOf(SpooledBytes);
    expect(readParts(queued).equals(Buffer.concat(doc.connections[0]!.outbound as Buffer[]))).toBe(true);
    expect(inMemory(back)).toEqual({ ...doc, connections: doc.connections.map((c) => ({ ...c, outbound: c.outbound.length ? [readParts(c.outbound)] : [] })) });
    // The document's file is the one spool: open while referenced, closed with its last reference.
    expect(spools).toHaveLength(1);
    const fd = spools[0]!.fd;
    (queued[0] as SpooledBytes).file.retain();
    spools[0]!.release();
    expect(fs.fstatSync(fd).size).toBe(fs.statSync(written).size);
    (queued[0] as SpooledBytes).file.release();
    expect(() => fs.fstatSync(fd)).toThrow(/EBADF/);
  });

  it('refuses a binary file cut short, or with bytes after its end, and says which', () => {
    const file = path.join(dir, 'generation-7.json');
    const whole = binary();
    fs.writeFileSync(file, whole.subarray(0, whole.length - 3), { mode: 0o600 });
    expect(refusal(() => readHandoffFile(file, {})).message).toMatch(/^truncated: the header announces \d+ bytes .* the file has \d+$/);
    fs.writeFileSync(file, whole.subarray(0, 10), { mode: 0o600 });
    expect(refusal(() => readHandoffFile(file, {})).message).toBe(`truncated: 10 bytes, shorter than the ${DOCUMENT_HEADER_BYTES}-byte header`);
    fs.writeFileSync(file, Buffer.concat([whole, Buffer.from('xx')]), { mode: 0o600 });
    expect(refusal(() => readHandoffFile(file, {})).message).toMatch(/^2 bytes after the end the header announces/);
  });

  it('refuses a document other users can read or write, a symlink, and one another uid owns', () => {
    const open = path.join(dir, 'generation-5.json');
    fs.writeFileSync(open, JSON.stringify(validDoc()), { mode: 0o600 });
    fs.chmodSync(open, 0o644);
    expect(refusal(() => readHandoffFile(open, { nonce: NONCE, pid: PID })).message).toBe(
      `${open} is accessible to other users (mode 644); a document is written 0600`,
    );
    const link = path.join(dir, 'generation-6.json');
    fs.chmodSync(open, 0o600);
    fs.symlinkSync(open, link);
    expect(() => readHandoffFile(link, { nonce: NONCE, pid: PID })).toThrow(/ELOOP/);
    if (process.getuid!() === 0) {
      fs.chownSync(open, 65534, 65534);
      expect(refusal(() => readHandoffFile(open, { nonce: NONCE, pid: PID })).message).toBe(
        `${open} belongs to uid 65534, not to the bus's uid 0`,
      );
    }
  });

  it.runIf(process.getuid!() === 0)('writes only into a directory of its own uid, never through a symlink', () => {
    const foreign = path.join(dir, 'foreign');
    fs.mkdirSync(foreign, { mode: 0o777 });
    fs.chownSync(foreign, 65534, 65534);
    expect(() => writeHandoffFile(foreign, memoryDoc())).toThrow(`${foreign} belongs to uid 65534, not to the bus's uid 0; refusing to write the handoff document there`);
    expect(fs.readdirSync(foreign)).toEqual([]);
    const link = path.join(dir, 'link');
    fs.symlinkSync(foreign, link);
    expect(() => writeHandoffFile(link, memoryDoc())).toThrow(/is not a directory \(a symlink\?\)/);
    const loose = path.join(dir, 'loose');
    fs.mkdirSync(path.join(loose, 'handoff'), { recursive: true });
    fs.chmodSync(loose, 0o777); // anyone may rename entries here: 'handoff' could be swapped
    expect(() => writeHandoffFile(path.join(loose, 'handoff'), memoryDoc())).toThrow(`${loose} (above ${path.join(loose, 'handoff')}) can be changed by another user (owner uid 0, mode 777)`);
    const own = path.join(dir, 'own');
    const written = writeHandoffFile(own, memoryDoc()).file;
    expect(fs.statSync(own).mode & 0o777).toBe(0o700);
    expect(fs.statSync(written).mode & 0o777).toBe(0o600);
  });

  it('refuses a file larger than the limit by its size, without reading it', () => {
    const file = path.join(dir, 'giant.json');
    fs.writeFileSync(file, binary());
    fs.chmodSync(file, 0o600);
    fs.truncateSync(file, MAX_DOCUMENT_BYTES + 1); // sparse
    const err = refusal(() => readHandoffFile(file, {}));
    expect(err.message).toBe(`document of ${MAX_DOCUMENT_BYTES + 1} bytes exceeds ${MAX_DOCUMENT_BYTES}`);
  });
});

// ---- fuzzing ---------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path to a value inside a JSON tree (objects and arrays), the root excluded. */
function paths(v: Json, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (v === null || typeof v !== 'object') return [];
  const keys: Array<string | number> = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return keys.flatMap((k) => [[...prefix, k], ...paths((v as Record<string | number, Json>)[k]!, [...prefix, k])]);
}

/** Replaces (or, with `undefined`, deletes) the value at `at`. */
function mutate(root: Json, at: Array<string | number>, value: Json | undefined): Json {
  const copy = structuredClone(root) as Record<string | number, Json>;
  let parent = copy;
  for (const k of at.slice(0, -1)) parent = parent[k] as Record<string | number, Json>;
  const last = at.at(-1)!;
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else {
    parent[last] = value;
  }
  return copy;
}

const valid = JSON.parse(JSON.stringify(validDoc())) as Json;
const validText = JSON.stringify(validDoc());
const validPaths = paths(valid);

/** Reads `text`: a result that restore can trust, or a HandoffError; nothing else. */
function readsSafely(text: string | Buffer): void {
  let result: ReadResult | undefined;
  try {
    result = readDocument(text, { nonce: NONCE, pid: PID });
  } catch (err) {
    if (!(err instanceof HandoffError)) throw err;
  }
  if (result) expectConsistent(result);
}

/** A replacement value: any JSON, or one of the values a real document holds elsewhere. */
const replacement = fc.oneof(
  fc.jsonValue() as fc.Arbitrary<Json>,
  fc.constantFrom<Json>(-1, 0, 1, 2, 3, 9, 2 ** 31, 2 ** 53, 1.5, '', ':1.1', ':1.9', 'org.example.Service', NONCE, [], {}, null, true),
);

describe('readDocument never throws anything but HandoffError, never hangs, never returns an inconsistent document', () => {
  it('values replaced or deleted anywhere in a valid document (up to 4 at once)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(), value: fc.option(replacement, { nil: undefined }) }), { minLength: 1, maxLength: 4 }),
        (edits) => {
          let doc = valid;
          for (const { at, value } of edits) {
            const all = paths(doc);
            if (all.length === 0) break;
            doc = mutate(doc, all[at % all.length]!, value);
          }
          readsSafely(JSON.stringify(doc));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('a record of one list copied into another (plausible but wrong shapes)', () => {
    fc.assert(
      fc.property(fc.nat(), fc.nat(), (from, to) => {
        const source = validPaths[from % validPaths.length]!;
        const target = validPaths[to % validPaths.length]!;
        let v: Json = valid;
        for (const k of source) v = (v as Record<string | number, Json>)[k]!;
        readsSafely(JSON.stringify(mutate(valid, target, v)));
      }),
      { numRuns: 2000 },
    );
  });

  it('truncated at any length', () => {
    for (let n = 0; n <= validText.length; n++) readsSafely(validText.slice(0, n));
  });

  it('bytes of the text overwritten at random places', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 3 })), { minLength: 1, maxLength: 6 }), (edits) => {
        let text = validText;
        for (const [at, s] of edits) {
          const i = at % text.length;
          text = text.slice(0, i) + s + text.slice(i + s.length);
        }
        readsSafely(text);
      }),
      { numRuns: 3000 },
    );
  });

  it('random JSON and random text', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => readsSafely(JSON.stringify(v))), { numRuns: 2000 });
    fc.assert(fc.property(fc.string({ maxLength: 200 }), readsSafely), { numRuns: 2000 });
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...Object.keys(validDoc()), '__proto__', 'constructor'), fc.jsonValue()), (o) =>
        readsSafely(JSON.stringify({ ...o, format: HANDOFF_FORMAT, nonce: NONCE, pid: PID })),
      ),
      { numRuns: 2000 },
    );
  });
});

describe.each([HANDOFF_FORMAT, HANDOFF_FORMAT_SPOOLED])('readDocument on binary format %i never throws anything but HandoffError, never hangs, never returns an inconsistent document', (format) => {
  const file = binary(memoryDoc(), format);
  const { json, section } = parts(file);
  const jsonValue = JSON.parse(JSON.stringify(json)) as Json;

  it('truncated at any length', () => {
    for (let n = 0; n <= file.length; n++) readsSafely(file.subarray(0, n));
  });

  it('bytes overwritten at random places (header, JSON, section)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
        const copy = Buffer.from(file);
        for (const [at, byte] of edits) copy[at % copy.length] = byte;
        readsSafely(copy);
      }),
      { numRuns: 3000 },
    );
  });

  it('values of the JSON replaced or deleted anywhere (ranges included), the section unchanged', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(), value: fc.option(replacement, { nil: undefined }) }), { minLength: 1, maxLength: 4 }),
        (edits) => {
          let doc = jsonValue;
          for (const { at, value } of edits) {
            const all = paths(doc);
            if (all.length === 0) break;
            doc = mutate(doc, all[at % all.length]!, value);
          }
          readsSafely(container(doc, section, format));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
