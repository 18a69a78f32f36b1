import { Buffer } from 'node:buffer';
import { WireError } from '../util/errors.js';
import { readU32 } from './bytes.js';
import { marshal, Writer } from './marshal.js';
import {
  isValidBusName,
  isValidErrorName,
  isValidInterfaceName,
  isValidMemberName,
  isValidUniqueName,
} from './names.js';
import { parseSignature } from './signature.js';
import { Reader, unmarshal } from './unmarshal.js';
import type { DBusValue } from './values.js';

export const enum MessageType {
  MethodCall = 1,
  MethodReturn = 2,
  Error = 3,
  Signal = 4,
}

export const enum MessageFlag {
  NoReplyExpected = 0x1,
  NoAutoStart = 0x2,
  AllowInteractiveAuthorization = 0x4,
}

const enum Field {
  Path = 1,
  Interface = 2,
  Member = 3,
  ErrorName = 4,
  ReplySerial = 5,
  Destination = 6,
  Sender = 7,
  Signature = 8,
  UnixFds = 9,
}

/** The signature each known header field must carry in its variant. */
const FIELD_SIGNATURE: Record<number, string> = {
  [Field.Path]: 'o',
  [Field.Interface]: 's',
  [Field.Member]: 's',
  [Field.ErrorName]: 's',
  [Field.ReplySerial]: 'u',
  [Field.Destination]: 's',
  [Field.Sender]: 's',
  [Field.Signature]: 'g',
  [Field.UnixFds]: 'u',
};

export const MAX_MESSAGE_SIZE = 128 * 1024 * 1024;
export const FIXED_HEADER_SIZE = 16;

export interface HeaderFields {
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  destination?: string;
  sender?: string;
  /** '' when the message has no body. */
  signature: string;
  unixFds?: number;
}

export interface Header extends HeaderFields {
  littleEndian: boolean;
  type: number;
  flags: number;
  serial: number;
  bodyLength: number;
  /** Offset of the body: the header, padded to 8. */
  bodyOffset: number;
  /** Header fields the specification does not define; they are dropped when forwarding. */
  hasUnknownFields: boolean;
}

/** A message as received: its bytes verbatim, and its header parsed once. */
export interface Message {
  readonly bytes: Buffer;
  readonly header: Header;
}

function invalid(why: string): never {
  throw new WireError('InvalidMessage', why);
}

const align8 = (n: number) => (n + 7) & ~7;

/**
 * The total size the 16 fixed bytes announce: what a framer needs to know before buffering a
 * message (a number, not an object: it runs for every message). Throws on a bad endian mark,
 * protocol version or size.
 */
export function messageSize(buf: Buffer, offset = 0): number {
  if (buf.length - offset < FIXED_HEADER_SIZE) invalid(`message shorter than its ${FIXED_HEADER_SIZE}-byte fixed header`);
  const endian = buf[offset];
  if (endian !== 0x6c && endian !== 0x42) invalid(`bad endianness mark 0x${(endian ?? 0).toString(16)}`);
  const littleEndian = endian === 0x6c;
  if (buf[offset + 3] !== 1) invalid(`unsupported protocol version ${buf[offset + 3]}`);
  const bodyLength = readU32(buf, offset + 4, littleEndian);
  const fieldsLength = readU32(buf, offset + 12, littleEndian);
  // Checked first: align8 works on 32-bit ints and would wrap for a length near 4 GiB.
  if (fieldsLength > MAX_MESSAGE_SIZE) invalid(`header fields of ${fieldsLength} bytes exceed the 128 MiB limit`);
  const totalSize = align8(FIXED_HEADER_SIZE + fieldsLength) + bodyLength;
  if (totalSize > MAX_MESSAGE_SIZE) invalid(`message of ${totalSize} bytes exceeds the 128 MiB limit`);
  return totalSize;
}

/**
 * Parses and validates the header of one complete message. The body is not
 * parsed: the bus forwards it as bytes.
 */
export function parseMessage(bytes: Buffer): Message {
  const totalSize = messageSize(bytes);
  const littleEndian = bytes[0] === 0x6c;
  if (totalSize !== bytes.length) invalid(`message is ${bytes.length} bytes, header announces ${totalSize}`);
  const type = bytes[1]!;
  const flags = bytes[2]!;
  const bodyLength = readU32(bytes, 4, littleEndian);
  const serial = readU32(bytes, 8, littleEndian);
  if (type === 0) invalid('message type 0 is invalid');
  if (serial === 0) invalid('serial 0 is invalid');

  const fieldsLength = readU32(bytes, 12, littleEndian);
  const fieldsEnd = FIXED_HEADER_SIZE + fieldsLength;
  // Every field present from the start: one object shape for every header (faster property access).
  const header: Header = {
    littleEndian,
    type,
    flags,
    serial,
    bodyLength,
    bodyOffset: align8(fieldsEnd),
    signature: '',
    hasUnknownFields: false,
    path: undefined,
    interface: undefined,
    member: undefined,
    errorName: undefined,
    replySerial: undefined,
    destination: undefined,
    sender: undefined,
    unixFds: undefined,
  };
  let seen = 0; // bit per known field code
  const fieldReader = new Reader(bytes, littleEndian, FIXED_HEADER_SIZE, fieldsEnd);
  while (fieldReader.pos < fieldsEnd) {
    fieldReader.align(8);
    const code = fieldReader.u8();
    const sig = fieldReader.signature();
    const expected = FIELD_SIGNATURE[code];
    if (expected === undefined || code === 0) {
      if (code === 0) invalid('header field code 0 is invalid');
      header.hasUnknownFields = true;
      skipValue(fieldReader, sig);
      continue;
    }
    if (sig !== expected) invalid(`header field ${code} has type "${sig}", expected "${expected}"`);
    if ((seen & (1 << code)) !== 0) invalid(`header field ${code} appears twice`);
    seen |= 1 << code;
    switch (code) {
      case Field.Path: header.path = fieldReader.objectPath(); break;
      case Field.Interface: header.interface = checked(fieldReader.string(), isValidInterfaceName, 'interface'); break;
      case Field.Member: header.member = checked(fieldReader.string(), isValidMemberName, 'member'); break;
      case Field.ErrorName: header.errorName = checked(fieldReader.string(), isValidErrorName, 'error'); break;
      case Field.ReplySerial:
        header.replySerial = fieldReader.u32();
        if (header.replySerial === 0) invalid('reply serial 0 is invalid');
        break;
      case Field.Destination: header.destination = checked(fieldReader.string(), isValidBusName, 'destination'); break;
      case Field.Sender: header.sender = checked(fieldReader.string(), isValidBusName, 'sender'); break;
      case Field.Signature:
        header.signature = fieldReader.signature();
        parseSignature(header.signature);
        break;
      case Field.UnixFds: header.unixFds = fieldReader.u32(); break;
    }
  }
  if (fieldReader.pos !== fieldsEnd) invalid('header fields overrun their array');
  for (let i = fieldsEnd; i < header.bodyOffset; i++) if (bytes[i] !== 0) invalid('non-zero header padding');
  // An empty SIGNATURE field means no body too (and forwarding drops it: it must not hide a body).
  if (header.signature === '' && bodyLength > 0) invalid('message has a body but no signature');
  requireFields(header);
  return { bytes, header };
}

function checked(value: string, valid: (s: string) => boolean, what: string): string {
  if (!valid(value)) invalid(`invalid ${what} name "${value}"`);
  return value;
}

/** Unknown header fields are validated like any value, then dropped when forwarding. */
function skipValue(r: Reader, sig: string): void {
  if (parseSignature(sig).length !== 1) invalid('header field variant must hold one complete type');
  r.pos = unmarshal(sig, r.buf, { littleEndian: r.littleEndian, start: r.pos, end: r.end, origin: 0, partial: true }).end;
}

function requireFields(h: Header): void {
  switch (h.type) {
    case MessageType.MethodCall:
      if (h.path === undefined || h.member === undefined) invalid('method call without path or member');
      break;
    case MessageType.Signal:
      if (h.path === undefined || h.interface === undefined || h.member === undefined) {
        invalid('signal without path, interface or member');
      }
      break;
    case MessageType.Error:
      if (h.errorName === undefined || h.replySerial === undefined) invalid('error without error name or reply serial');
      break;
    case MessageType.MethodReturn:
      if (h.replySerial === undefined) invalid('method return without reply serial');
      break;
  }
}

/** Unmarshals the body of a message (for the driver and argN match rules). */
export function readBody(msg: Message): DBusValue[] {
  const { header, bytes } = msg;
  return unmarshal(header.signature, bytes, {
    littleEndian: header.littleEndian,
    start: header.bodyOffset,
    end: bytes.length,
    origin: 0,
  }).values;
}

/** A header field's code and variant signature (one type code): 4 bytes at an 8-aligned offset. */
function fieldHead(w: Writer, code: number, type: number): void {
  w.align(8);
  w.u8(code);
  w.u8(1);
  w.u8(type);
  w.u8(0);
}

const TYPE_OBJECT_PATH = 0x6f; // 'o'
const TYPE_STRING = 0x73; // 's'
const TYPE_UINT32 = 0x75; // 'u'
const TYPE_SIGNATURE = 0x67; // 'g'

// Written out field by field, without a closure per field: every bus reply and signal is built here.
function writeFields(w: Writer, f: Partial<HeaderFields>): void {
  if (f.path !== undefined) { fieldHead(w, Field.Path, TYPE_OBJECT_PATH); w.string(f.path); }
  if (f.interface !== undefined) { fieldHead(w, Field.Interface, TYPE_STRING); w.string(f.interface); }
  if (f.member !== undefined) { fieldHead(w, Field.Member, TYPE_STRING); w.string(f.member); }
  if (f.errorName !== undefined) { fieldHead(w, Field.ErrorName, TYPE_STRING); w.string(f.errorName); }
  if (f.replySerial !== undefined) { fieldHead(w, Field.ReplySerial, TYPE_UINT32); w.u32(f.replySerial); }
  if (f.destination !== undefined) { fieldHead(w, Field.Destination, TYPE_STRING); w.string(f.destination); }
  if (f.sender !== undefined) { fieldHead(w, Field.Sender, TYPE_STRING); w.string(f.sender); }
  if (f.signature) { fieldHead(w, Field.Signature, TYPE_SIGNATURE); w.signature(f.signature); }
  if (f.unixFds !== undefined) { fieldHead(w, Field.UnixFds, TYPE_UINT32); w.u32(f.unixFds); }
}

/**
 * Room for a header's fields and the padding after them (the writer grows past it if ever
 * needed): each field at most 7 bytes of padding and 4 of code and type, then its value — a
 * string 4 + up to 3 bytes per UTF-16 unit + 1, a u32 4, a signature 1 + length + 1.
 */
function fieldsRoom(f: Partial<HeaderFields>): number {
  let room = 7 + 2 * 15 + (f.signature === undefined ? 0 : 13 + f.signature.length);
  if (f.path !== undefined) room += 16 + 3 * f.path.length;
  if (f.interface !== undefined) room += 16 + 3 * f.interface.length;
  if (f.member !== undefined) room += 16 + 3 * f.member.length;
  if (f.errorName !== undefined) room += 16 + 3 * f.errorName.length;
  if (f.destination !== undefined) room += 16 + 3 * f.destination.length;
  if (f.sender !== undefined) room += 16 + 3 * f.sender.length;
  return room;
}

/**
 * Fixed header and fields into `w` (empty, at offset 0), padded to the body's 8-aligned
 * start; `extra`: what the writer should have room for after them (a body written next).
 */
function encodeHeader(
  littleEndian: boolean,
  type: number,
  flags: number,
  serial: number,
  bodyLength: number,
  fields: Partial<HeaderFields>,
  extra = 0,
): Writer {
  const w = new Writer(FIXED_HEADER_SIZE + fieldsRoom(fields) + extra, 0, littleEndian);
  w.u8(littleEndian ? 0x6c : 0x42);
  w.u8(type);
  w.u8(flags);
  w.u8(1);
  w.u32(bodyLength);
  w.u32(serial);
  const lengthAt = w.placeholder32();
  writeFields(w, fields);
  w.patch32(lengthAt, w.length - FIXED_HEADER_SIZE);
  w.align(8);
  return w;
}

export interface NewMessage extends Partial<HeaderFields> {
  type: MessageType;
  flags?: number;
  serial: number;
  /** Already marshalled body (little-endian), or empty. */
  body?: Buffer;
}

/** Builds a new message whose body is `args` marshalled with `m.signature` (clients' calls). */
export function encodeWithArgs(m: Omit<NewMessage, 'body'>, args: readonly DBusValue[]): Buffer {
  const signature = m.signature ?? '';
  return encodeMessage({ ...m, signature, body: signature ? marshal(signature, args) : undefined });
}

/** Builds a new message and its header without parsing it back (the driver's hot path). */
export function buildMessage(m: NewMessage): Message {
  const bytes = encodeMessage(m);
  const bodyLength = m.body?.length ?? 0;
  const header: Header = {
    littleEndian: true,
    type: m.type,
    flags: m.flags ?? 0,
    serial: m.serial,
    bodyLength,
    bodyOffset: bytes.length - bodyLength,
    signature: m.signature ?? '',
    hasUnknownFields: false,
    path: m.path,
    interface: m.interface,
    member: m.member,
    errorName: m.errorName,
    replySerial: m.replySerial,
    destination: m.destination,
    sender: m.sender,
    unixFds: m.unixFds,
  };
  return { bytes, header };
}

/**
 * Builds a new little-endian message (the bus driver's own messages): header and body written
 * into one buffer sized for them, which is the message.
 */
export function encodeMessage(m: NewMessage): Buffer {
  const body = m.body;
  const bodyLength = body === undefined ? 0 : body.length;
  const w = encodeHeader(true, m.type, m.flags ?? 0, m.serial, bodyLength, m, bodyLength);
  if (body !== undefined) w.bytes(body);
  return w.finish();
}

/**
 * Each sender's encoded SENDER field, made once per name and endianness. A name leaves with its
 * connection (forgetSender): a bus that sees many short-lived clients must not keep them all.
 */
const senderFieldLE = new Map<string, Buffer>();
const senderFieldBE = new Map<string, Buffer>();

/** The encoded SENDER header field (code, signature, string) for appending at an 8-aligned offset. */
function senderField(sender: string, littleEndian: boolean): Buffer {
  const cache = littleEndian ? senderFieldLE : senderFieldBE;
  let hit = cache.get(sender);
  if (!hit) {
    const w = new Writer(64, 0, littleEndian);
    w.u8(Field.Sender);
    w.signature('s');
    w.string(sender);
    const field = w.finish();
    // A memory of its own: a slice of Node's shared 8 KiB pool would keep the whole slab alive
    // for as long as the sender is connected.
    hit = Buffer.allocUnsafeSlow(field.length);
    field.copy(hit);
    if (cache.size > 65536) cache.clear();
    cache.set(sender, hit);
  }
  return hit;
}

/** Drops what was cached for `sender` (a unique name whose connection is gone). */
export function forgetSender(sender: string): void {
  senderFieldLE.delete(sender);
  senderFieldBE.delete(sender);
}

/** Zeroes padding (at most 7 bytes): a loop is cheaper than Buffer#fill's checks. */
function zero(buf: Buffer, from: number, to: number): void {
  for (let i = from; i < to; i++) buf[i] = 0;
}

/** Bodies up to this size are copied next to the new header: one piece is cheaper than two. */
const SMALL_BODY = 4096;

/**
 * The bytes to forward, as pieces to write in order: the message with SENDER set
 * to `sender`. A client-supplied SENDER is never trusted, and unknown header
 * fields are dropped. A large body is not copied at all: its piece is a view of
 * the received bytes, never re-marshalled.
 */
export function stitchSenderPieces(msg: Message, sender: string): Buffer[] {
  const { header, bytes } = msg;
  const bodyLength = bytes.length - header.bodyOffset;
  const inline = bodyLength <= SMALL_BODY;
  if (header.sender === undefined && !header.hasUnknownFields) {
    // Fast path: append one field to the end of the header array (fields start 8-aligned).
    const fieldsLength = readU32(bytes, 12, header.littleEndian);
    const field = senderField(sender, header.littleEndian);
    const oldEnd = header.bodyOffset; // fields padded to 8
    const newFieldsLength = (oldEnd - FIXED_HEADER_SIZE) + field.length;
    const newBodyOffset = align8(FIXED_HEADER_SIZE + newFieldsLength);
    const out = Buffer.allocUnsafe(newBodyOffset + (inline ? bodyLength : 0));
    bytes.copy(out, 0, 0, FIXED_HEADER_SIZE + fieldsLength);
    zero(out, FIXED_HEADER_SIZE + fieldsLength, oldEnd);
    if (header.littleEndian) out.writeUInt32LE(newFieldsLength, 12);
    else out.writeUInt32BE(newFieldsLength, 12);
    field.copy(out, oldEnd);
    zero(out, oldEnd + field.length, newBodyOffset);
    // A small body is copied from the message as it is (no view of it made: one per message).
    if (inline) {
      bytes.copy(out, newBodyOffset, header.bodyOffset);
      return [out];
    }
    return [out, bytes.subarray(header.bodyOffset)];
  }
  const body = bytes.subarray(header.bodyOffset);
  const w = encodeHeader(header.littleEndian, header.type, header.flags, header.serial, header.bodyLength, {
    ...header,
    sender,
  }, inline ? body.length : 0);
  if (!inline) return [w.finish(), body];
  w.bytes(body);
  return [w.finish()];
}

/** stitchSenderPieces as one buffer. */
export function stitchSender(msg: Message, sender: string): Buffer {
  const pieces = stitchSenderPieces(msg, sender);
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}
