import { describe, expect, it } from 'vitest';
import { marshal } from '../wire/marshal.js';
import { encodeMessage, MessageType, parseMessage } from '../wire/message.js';
import { Variant, type DBusValue } from '../wire/values.js';
import { Peer } from './peer.js';
import { RoutedMessage } from './routed-message.js';
import { USER } from './testing.js';

function routed(signature: string, args: DBusValue[], owners: Record<string, string> = {}): RoutedMessage {
  const bytes = encodeMessage({
    type: MessageType.Signal, serial: 1, path: '/a', interface: 'com.example.I', member: 'S', destination: 'com.example.Dest',
    signature, body: signature ? marshal(signature, args) : undefined,
  });
  return new RoutedMessage(parseMessage(bytes), ':1.1', [bytes], (sender, name) => owners[name] === sender);
}

describe('RoutedMessage', () => {
  it('finds string and object-path arguments behind containers in the signature', () => {
    const m = routed('a{sv}(is)sayo', [new Map([['k', new Variant('s', 'v')]]), [1, 'x'], 'third', Buffer.from([1]), '/p']);
    expect(m.textArg(0)).toBeUndefined();
    expect(m.textArg(1)).toBeUndefined();
    expect(m.textArg(2)).toEqual({ value: 'third', code: 's' });
    expect(m.textArg(3)).toBeUndefined();
    expect(m.textArg(4)).toEqual({ value: '/p', code: 'o' });
    expect(m.textArg(5)).toBeUndefined();
  });

  it('treats a signature string argument as no text argument', () => {
    expect(routed('gs', ['s', 'x']).textArg(0)).toBeUndefined();
  });

  it('matches no argument when the body does not parse', () => {
    const bytes = encodeMessage({
      type: MessageType.Signal, serial: 1, path: '/a', interface: 'com.example.I', member: 'S', signature: 's',
      body: Buffer.from([9, 0, 0, 0, 0x61, 0]),
    });
    const m = new RoutedMessage(parseMessage(bytes), ':1.1', [bytes], () => false);
    expect(m.textArg(0)).toBeUndefined();
  });

  it('is addressed to its destination as written until a recipient is known, then to any of its names', () => {
    const m = routed('', [], { 'com.example.Dest': ':1.4', 'com.example.Alias': ':1.4' });
    expect(m.addressedTo('com.example.Dest')).toBe(true);
    expect(m.addressedTo(':1.4')).toBe(false);
    const recipient = new Peer(4, USER);
    recipient.uniqueName = ':1.4';
    m.recipient = recipient;
    expect(['com.example.Dest', ':1.4', 'com.example.Alias', ':1.5'].map((n) => m.addressedTo(n))).toEqual([true, true, true, false]);
    expect(m.senderOwns('com.example.Dest')).toBe(false);
  });
});
