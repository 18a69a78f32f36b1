import { WireError } from '../util/errors.js';
import { MAX_ARRAY_BYTES } from './marshal.js';
import type { Message } from './message.js';
import { alignmentOf, parseSignature, parseSingleType, type TypeNode } from './signature.js';
import { MAX_TOTAL_DEPTH, Reader } from './unmarshal.js';

function fail(why: string): never {
  throw new WireError('InvalidMessage', why);
}

/** Steps over one value, checking it as unmarshal would, without building it. */
function skipValue(r: Reader, node: TypeNode, depth: number): void {
  switch (node.kind) {
    case 'basic':
      switch (node.code) {
        case 'y': r.u8(); return;
        case 'b': r.bool(); return;
        case 'n': case 'q': r.u16(); return;
        case 'i': case 'u': case 'h': r.u32(); return;
        case 'x': case 't': case 'd': r.u64(); return;
        case 's': r.skipText(r.u32()); return;
        case 'o': r.objectPath(); return;
        case 'g': parseSignature(r.signature()); return;
      }
      return;
    case 'variant': {
      const inner = parseSingleType(r.signature());
      if (depth + 1 > MAX_TOTAL_DEPTH) fail('values nested too deeply');
      skipValue(r, inner, depth + 1);
      return;
    }
    case 'array':
    case 'dict': {
      const size = r.u32();
      if (size > MAX_ARRAY_BYTES) fail(`array of ${size} bytes exceeds 64 MiB`);
      const elem = node.kind === 'array' ? node.elem : undefined;
      r.align(elem ? alignmentOf(elem) : 8);
      const end = r.pos + size;
      if (end > r.end) fail('array runs past the end of the message');
      if (depth + 1 > MAX_TOTAL_DEPTH) fail('arrays nested too deeply');
      if (elem?.kind === 'basic' && elem.code === 'y') {
        r.pos = end; // bytes: nothing to check inside
      } else if (elem) {
        while (r.pos < end) skipValue(r, elem, depth + 1);
      } else {
        const dict = node as Extract<TypeNode, { kind: 'dict' }>;
        if (depth + 2 > MAX_TOTAL_DEPTH) fail('dict entries nested too deeply');
        while (r.pos < end) {
          r.align(8);
          skipValue(r, dict.key, depth + 2);
          skipValue(r, dict.value, depth + 2);
        }
      }
      if (r.pos !== end) fail('array elements do not fill the announced length');
      return;
    }
    case 'struct':
      r.align(8);
      if (depth + 1 > MAX_TOTAL_DEPTH) fail('structs nested too deeply');
      for (const f of node.fields) skipValue(r, f, depth + 1);
      return;
  }
}

/**
 * Checks that a message's body is exactly what its signature says, without
 * decoding it. The bus forwards bodies as bytes; checking them first means a
 * client can never hand another client a body its library cannot parse (as
 * dbus-daemon, which validates every message, guarantees too).
 */
export function validateBody(msg: Message): void {
  const { header, bytes } = msg;
  if (header.bodyLength === 0) {
    if (header.signature !== '') fail(`empty body for signature "${header.signature}"`);
    return;
  }
  const r = new Reader(bytes, header.littleEndian, header.bodyOffset, bytes.length, 0);
  for (const node of parseSignature(header.signature)) skipValue(r, node, 0);
  if (r.pos !== r.end) fail(`${r.end - r.pos} bytes left after the body`);
}
