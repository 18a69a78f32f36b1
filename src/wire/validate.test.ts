import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WireError } from '../util/errors.js';
import { marshal } from './marshal.js';
import { encodeMessage, MessageType, parseMessage, readBody } from './message.js';
import { signatureAndValues } from './testing-arbitraries.js';
import { validateBody } from './validate.js';

function signal(signature: string, body: Buffer) {
  return encodeMessage({ type: MessageType.Signal, serial: 1, path: '/a', interface: 'a.b', member: 'C', signature, body });
}

/** The verdict of the decoding reader, the reference validateBody must agree with. */
function decodes(bytes: Buffer): boolean {
  try {
    readBody(parseMessage(bytes));
    return true;
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    return false;
  }
}

function validates(bytes: Buffer): boolean {
  try {
    validateBody(parseMessage(bytes));
    return true;
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    return false;
  }
}

describe('validateBody', () => {
  it('accepts every well-formed body of any signature', () => {
    fc.assert(
      fc.property(signatureAndValues, ([sig, values]) => {
        if (sig === '') return;
        const body = marshal(sig, values);
        const msg = parseMessage(signal(sig, body));
        expect(() => validateBody(msg)).not.toThrow();
      }),
      { numRuns: 300 },
    );
  });

  it('agrees with the decoding reader on mutated bodies', () => {
    fc.assert(
      fc.property(signatureAndValues, fc.nat(), fc.nat(255), ([sig, values], at, byte) => {
        if (sig === '') return;
        const body = Buffer.from(marshal(sig, values));
        if (body.length === 0) return;
        body[at % body.length] = byte;
        let bytes: Buffer;
        try {
          bytes = signal(sig, body);
          parseMessage(bytes);
        } catch {
          return; // the header itself is refused: nothing to compare
        }
        expect(validates(bytes)).toBe(decodes(bytes));
      }),
      { numRuns: 600 },
    );
  });

  it('refuses a body that does not match its signature: short, long, bad boolean, bad UTF-8', () => {
    const cases: Array<[string, Buffer]> = [
      ['u', Buffer.from([1, 0])],
      ['u', Buffer.from([1, 0, 0, 0, 9])],
      ['b', Buffer.from([2, 0, 0, 0])],
      ['s', Buffer.from([2, 0, 0, 0, 0xc3, 0x28, 0])],
      ['s', Buffer.from([1, 0, 0, 0, 0x61, 0x62])],
      ['as', Buffer.from([8, 0, 0, 0, 1, 0, 0, 0, 0x61, 0])],
    ];
    for (const [sig, body] of cases) {
      expect(() => validateBody(parseMessage(signal(sig, body))), `${sig} ${body.toString('hex')}`).toThrow(WireError);
    }
  });
});
