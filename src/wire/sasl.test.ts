import { describe, expect, it } from 'vitest';
import { MessageType, encodeMessage } from './message.js';
import { SaslServer, type SaslOptions, type SaslResult } from './sasl.js';

const GUID = '0123456789abcdef0123456789abcdef';
const UID = 1000;
const hexUid = (uid: number | string) => Buffer.from(String(uid), 'latin1').toString('hex');
const bytes = (s: string) => Buffer.from(s, 'latin1');

const server = (opts: Partial<SaslOptions> = {}) => new SaslServer({ peerUid: UID, guid: GUID, ...opts });

/** Feeds each chunk in turn; returns every result. */
function feedAll(s: SaslServer, chunks: (string | Buffer)[]): SaslResult[] {
  return chunks.map((c) => s.feed(typeof c === 'string' ? bytes(c) : c));
}

const replies = (results: SaslResult[]) => results.map((r) => r.reply).join('');
const last = (results: SaslResult[]) => results[results.length - 1]!;

const HELLO = encodeMessage({
  type: MessageType.MethodCall,
  serial: 1,
  path: '/org/freedesktop/DBus',
  interface: 'org.freedesktop.DBus',
  member: 'Hello',
  destination: 'org.freedesktop.DBus',
});

describe('SaslServer: the credentials byte', () => {
  it('requires a NUL first byte', () => {
    const r = server().feed(bytes('AUTH EXTERNAL 31303030\r\n'));
    expect(r).toMatchObject({ state: 'failed', reason: 'first byte is not NUL' });
  });

  it('accepts the NUL byte alone, then the commands in a later chunk', () => {
    const s = server();
    expect(s.feed(Buffer.from([0]))).toEqual({ state: 'continue', reply: '' });
    expect(s.feed(bytes(`AUTH EXTERNAL ${hexUid(UID)}\r\n`))).toEqual({ state: 'continue', reply: `OK ${GUID}\r\n` });
  });

  it('expects the NUL only once', () => {
    const r = feedAll(server(), ['\0', '\0AUTH\r\n']);
    expect(last(r).reply).toBe('ERROR "Unknown command"\r\n');
  });

  it('does nothing with an empty chunk', () => {
    const s = server();
    expect(s.feed(Buffer.alloc(0))).toEqual({ state: 'continue', reply: '' });
    expect(s.feed(bytes('\0AUTH\r\n')).reply).toBe('REJECTED EXTERNAL\r\n');
  });
});

describe('SaslServer: EXTERNAL', () => {
  it('authenticates when the claimed uid matches the peer uid, then BEGIN', () => {
    const s = server();
    expect(s.feed(bytes(`\0AUTH EXTERNAL ${hexUid(UID)}\r\n`))).toEqual({ state: 'continue', reply: `OK ${GUID}\r\n` });
    expect(s.feed(bytes('BEGIN\r\n'))).toEqual({ state: 'authenticated', reply: '', uid: UID, rest: Buffer.alloc(0) });
  });

  it('accepts upper-case hex', () => {
    const r = server().feed(bytes(`\0AUTH EXTERNAL ${hexUid(UID).toUpperCase()}\r\n`));
    expect(r.reply).toBe(`OK ${GUID}\r\n`);
  });

  it('accepts uid 0 for a root peer', () => {
    const r = server({ peerUid: 0 }).feed(bytes('\0AUTH EXTERNAL 30\r\n'));
    expect(r.reply).toBe(`OK ${GUID}\r\n`);
  });

  it.each([
    ['another uid', hexUid(0)],
    ['the uid plus one', hexUid(UID + 1)],
    ['a user name', hexUid('root')],
    ['a negative uid', hexUid(-UID)],
    ['odd-length hex', '3130303'],
    ['non-hex characters', 'zz'],
    ['hex with a space inside', '3130 3030'],
  ])('rejects %s', (_, claim) => {
    const s = server();
    expect(s.feed(bytes(`\0AUTH EXTERNAL ${claim}\r\n`))).toEqual({ state: 'continue', reply: 'REJECTED EXTERNAL\r\n' });
    // A rejected client may try again.
    expect(s.feed(bytes(`AUTH EXTERNAL ${hexUid(UID)}\r\n`)).reply).toBe(`OK ${GUID}\r\n`);
  });

  it('asks for DATA after AUTH EXTERNAL without an initial response, and accepts an empty DATA', () => {
    const r = feedAll(server(), ['\0AUTH EXTERNAL\r\n', 'DATA\r\n', 'BEGIN\r\n']);
    expect(r.map((x) => x.reply)).toEqual(['DATA\r\n', `OK ${GUID}\r\n`, '']);
    expect(last(r)).toMatchObject({ state: 'authenticated', uid: UID });
  });

  it('accepts DATA carrying the matching uid', () => {
    const r = feedAll(server(), ['\0AUTH EXTERNAL\r\n', `DATA ${hexUid(UID)}\r\n`]);
    expect(replies(r)).toBe(`DATA\r\nOK ${GUID}\r\n`);
  });

  it('rejects DATA carrying another uid', () => {
    const r = feedAll(server(), ['\0AUTH EXTERNAL\r\n', `DATA ${hexUid(0)}\r\n`]);
    expect(last(r).reply).toBe('REJECTED EXTERNAL\r\n');
  });

  it('answers AUTH without a mechanism with the list of mechanisms', () => {
    expect(server().feed(bytes('\0AUTH\r\n')).reply).toBe('REJECTED EXTERNAL\r\n');
  });

  it.each(['DBUS_COOKIE_SHA1 31303030', 'ANONYMOUS', 'external 31303030', 'EXTERNALX 31303030'])(
    'rejects the mechanism in AUTH %s',
    (arg) => {
      expect(server().feed(bytes(`\0AUTH ${arg}\r\n`))).toEqual({ state: 'continue', reply: 'REJECTED EXTERNAL\r\n' });
    },
  );

  it('lists the configured mechanisms, and refuses EXTERNAL when it is not among them', () => {
    const s = server({ mechanisms: ['ANONYMOUS'] });
    expect(s.feed(bytes(`\0AUTH EXTERNAL ${hexUid(UID)}\r\n`)).reply).toBe('REJECTED ANONYMOUS\r\n');
    expect(server({ mechanisms: ['EXTERNAL', 'ANONYMOUS'] }).feed(bytes('\0AUTH\r\n')).reply).toBe(
      'REJECTED EXTERNAL ANONYMOUS\r\n',
    );
  });
});

describe('SaslServer: CANCEL, ERROR and unknown commands', () => {
  it('rejects on CANCEL while waiting for DATA', () => {
    const r = feedAll(server(), ['\0AUTH EXTERNAL\r\n', 'CANCEL\r\n']);
    expect(last(r)).toEqual({ state: 'continue', reply: 'REJECTED EXTERNAL\r\n' });
  });

  it('rejects on CANCEL after OK, so BEGIN no longer authenticates', () => {
    const r = feedAll(server(), [`\0AUTH EXTERNAL ${hexUid(UID)}\r\n`, 'CANCEL\r\n', 'BEGIN\r\n']);
    expect(r[1]!.reply).toBe('REJECTED EXTERNAL\r\n');
    expect(last(r)).toMatchObject({ state: 'failed', reason: 'BEGIN before authentication' });
  });

  it('answers CANCEL outside an authentication exchange with ERROR', () => {
    const s = server();
    expect(s.feed(bytes('\0CANCEL\r\n')).reply).toMatch(/^ERROR/);
    expect(s.feed(bytes(`AUTH EXTERNAL ${hexUid(UID)}\r\n`)).reply).toBe(`OK ${GUID}\r\n`);
  });

  it.each([
    ['before AUTH', ['\0ERROR\r\n']],
    ['while waiting for DATA', ['\0AUTH EXTERNAL\r\n', 'ERROR "client gave up"\r\n']],
    ['after OK', [`\0AUTH EXTERNAL ${hexUid(UID)}\r\n`, 'ERROR\r\n']],
  ])('rejects on ERROR %s', (_, chunks) => {
    expect(last(feedAll(server(), chunks))).toEqual({ state: 'continue', reply: 'REJECTED EXTERNAL\r\n' });
  });

  it('answers an unknown command with ERROR and keeps its state', () => {
    const s = server();
    expect(s.feed(bytes('\0HELLO\r\n')).reply).toBe('ERROR "Unknown command"\r\n');
    expect(s.feed(bytes('DATA 30\r\n')).reply).toBe('ERROR "Unknown command"\r\n');
    expect(s.feed(bytes(`AUTH EXTERNAL ${hexUid(UID)}\r\n`)).reply).toBe(`OK ${GUID}\r\n`);
    expect(s.feed(bytes('AUTH EXTERNAL 30\r\n')).reply).toBe('ERROR "Unknown command"\r\n');
    expect(s.feed(bytes('BEGIN\r\n')).state).toBe('authenticated');
  });

  it('answers an unknown command or a second AUTH with ERROR while waiting for DATA, and keeps waiting', () => {
    const r = feedAll(server(), ['\0AUTH EXTERNAL\r\n', 'HELLO\r\n', `AUTH EXTERNAL ${hexUid(UID)}\r\n`, 'DATA\r\n']);
    expect(r.map((x) => x.reply)).toEqual(['DATA\r\n', 'ERROR "Unknown command"\r\n', 'ERROR "Unknown command"\r\n', `OK ${GUID}\r\n`]);
  });
});

describe('SaslServer: NEGOTIATE_UNIX_FD', () => {
  it('answers ERROR when fd passing is not offered', () => {
    const r = feedAll(server(), [`\0AUTH EXTERNAL ${hexUid(UID)}\r\n`, 'NEGOTIATE_UNIX_FD\r\n', 'BEGIN\r\n']);
    expect(r[1]!.reply).toMatch(/^ERROR "[^"\r\n]*"\r\n$/);
    expect(last(r).state).toBe('authenticated');
  });

  it('agrees when fd passing is offered', () => {
    const s = server({ unixFds: true });
    const r = feedAll(s, [`\0AUTH EXTERNAL ${hexUid(UID)}\r\n`, 'NEGOTIATE_UNIX_FD\r\n']);
    expect(r[1]!.reply).toBe('AGREE_UNIX_FD\r\n');
    expect(s.unixFdsNegotiated).toBe(true);
  });

  it('does not negotiate before authentication', () => {
    const s = server({ unixFds: true });
    expect(s.feed(bytes('\0NEGOTIATE_UNIX_FD\r\n')).reply).toMatch(/^ERROR/);
    expect(s.unixFdsNegotiated).toBe(false);
  });
});

describe('SaslServer: BEGIN pipelined with the first message', () => {
  const transcript = bytes(`\0AUTH EXTERNAL ${hexUid(UID)}\r\nBEGIN\r\n`);
  const stream = Buffer.concat([transcript, HELLO]);

  it('returns the message bytes that follow BEGIN in the same chunk', () => {
    const r = server().feed(stream);
    expect(r).toMatchObject({ state: 'authenticated', reply: `OK ${GUID}\r\n`, uid: UID });
    expect(r.state === 'authenticated' && r.rest.equals(HELLO)).toBe(true);
  });

  it('gives the same replies and rest for the stream split at every offset', () => {
    for (let at = 0; at <= stream.length; at++) {
      const s = server();
      const chunks = [stream.subarray(0, at), stream.subarray(at)];
      let reply = '';
      let rest = Buffer.alloc(0);
      let done = false;
      for (const c of chunks) {
        if (done) {
          rest = Buffer.concat([rest, c]); // after BEGIN the bytes belong to the message framer
          continue;
        }
        const r = s.feed(c);
        reply += r.reply;
        expect(r.state).not.toBe('failed');
        if (r.state === 'authenticated') {
          done = true;
          rest = Buffer.from(r.rest);
        }
      }
      expect(done).toBe(true);
      expect(reply).toBe(`OK ${GUID}\r\n`);
      expect(rest.equals(HELLO)).toBe(true);
    }
  });

  it('authenticates when fed byte by byte', () => {
    const s = server();
    let result: SaslResult | undefined;
    for (let i = 0; i < transcript.length; i++) {
      result = s.feed(transcript.subarray(i, i + 1));
      if (i < transcript.length - 1) expect(result.state).toBe('continue');
    }
    expect(result).toMatchObject({ state: 'authenticated', uid: UID });
  });

  it('takes the libdbus/sd-bus pipeline in one chunk: AUTH EXTERNAL, NEGOTIATE_UNIX_FD, BEGIN', () => {
    const s = server({ peerUid: 0 });
    const r = s.feed(Buffer.concat([bytes('\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n'), HELLO]));
    expect(r.state).toBe('authenticated');
    if (r.state !== 'authenticated') return;
    expect(r.uid).toBe(0);
    expect(r.reply).toMatch(new RegExp(`^OK ${GUID}\\r\\nERROR "[^"]*"\\r\\n$`));
    expect(r.rest.equals(HELLO)).toBe(true);
  });

  it('takes the same pipeline with fd passing offered', () => {
    const s = server({ peerUid: 0, unixFds: true });
    const r = s.feed(bytes('\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n'));
    expect(r).toMatchObject({ state: 'authenticated', reply: `OK ${GUID}\r\nAGREE_UNIX_FD\r\n`, uid: 0 });
    expect(s.unixFdsNegotiated).toBe(true);
  });

  it('takes the sd-bus pipeline with an empty DATA: AUTH EXTERNAL, DATA, NEGOTIATE_UNIX_FD, BEGIN', () => {
    const r = server().feed(bytes('\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n'));
    expect(r.state).toBe('authenticated');
    expect(r.reply).toMatch(new RegExp(`^DATA\\r\\nOK ${GUID}\\r\\nERROR "[^"]*"\\r\\n$`));
  });
});

describe('SaslServer: failures', () => {
  it('fails on BEGIN before authentication', () => {
    expect(server().feed(bytes('\0BEGIN\r\n'))).toMatchObject({ state: 'failed', reason: 'BEGIN before authentication' });
  });

  it('fails on BEGIN while waiting for DATA', () => {
    const r = feedAll(server(), ['\0AUTH EXTERNAL\r\n', 'BEGIN\r\n']);
    expect(last(r)).toMatchObject({ state: 'failed', reason: 'BEGIN before authentication' });
  });

  it('fails after too many rejections, still sending the last REJECTED', () => {
    const s = server();
    for (let i = 1; i < 8; i++) expect(s.feed(bytes(i === 1 ? '\0AUTH\r\n' : 'AUTH\r\n')).state).toBe('continue');
    expect(s.feed(bytes('AUTH\r\n'))).toEqual({
      state: 'failed',
      reply: 'REJECTED EXTERNAL\r\n',
      reason: 'too many rejected attempts',
    });
  });

  it('honours maxRejections, also when the rejections arrive in one chunk', () => {
    const r = server({ maxRejections: 2 }).feed(bytes('\0AUTH\r\nAUTH\r\nAUTH\r\n'));
    expect(r).toEqual({
      state: 'failed',
      reply: 'REJECTED EXTERNAL\r\nREJECTED EXTERNAL\r\n',
      reason: 'too many rejected attempts',
    });
  });

  it('fails on a line longer than 16 KiB, without waiting for its end', () => {
    const s = server();
    expect(s.feed(bytes(`\0AUTH EXTERNAL ${'3'.repeat(16 * 1024 - 20)}`)).state).toBe('continue');
    expect(s.feed(bytes('3'.repeat(100)))).toMatchObject({ state: 'failed', reason: 'authentication line too long' });
  });

  it('fails when the whole exchange exceeds 64 KiB, even in short lines', () => {
    const s = server();
    let r = s.feed(bytes('\0'));
    for (let i = 0; i < 20000 && r.state === 'continue'; i++) r = s.feed(bytes('NOOP\r\n'));
    expect(r).toMatchObject({ state: 'failed', reason: 'authentication line too long' });
  });

  it('fails on a line ended by LF alone', () => {
    expect(server().feed(bytes('\0AUTH\n'))).toMatchObject({ state: 'failed', reason: 'line not terminated by CRLF' });
  });

  it('keeps the replies of earlier lines in a failing chunk', () => {
    const r = server().feed(bytes('\0HELLO\r\nBEGIN\r\n'));
    expect(r).toEqual({ state: 'failed', reply: 'ERROR "Unknown command"\r\n', reason: 'BEGIN before authentication' });
  });

  it('refuses further commands once authenticated', () => {
    const s = server();
    expect(s.feed(bytes(`\0AUTH EXTERNAL ${hexUid(UID)}\r\nBEGIN\r\n`)).state).toBe('authenticated');
    expect(s.feed(bytes('BEGIN\r\n'))).toMatchObject({ state: 'failed', reason: 'authentication already finished' });
  });
});

describe('SaslServer: handoff of a conversation in progress', () => {
  /** Feeds `before` to one server, hands its state to a second, and feeds `after` there. */
  function handOff(before: string[], after: string[], opts: Partial<SaslOptions> = {}): SaslResult[] {
    const first = server(opts);
    feedAll(first, before);
    const state = JSON.parse(JSON.stringify(first.exportState()));
    return feedAll(SaslServer.fromState({ peerUid: UID, guid: GUID, ...opts }, state), after);
  }

  it('continues at every point of the exchange, byte by byte', () => {
    const transcript = `\0AUTH EXTERNAL\r\nDATA ${hexUid(UID)}\r\nBEGIN\r\n`;
    for (let at = 0; at < transcript.length; at++) {
      const r = handOff([transcript.slice(0, at)], [transcript.slice(at)]);
      expect(last(r)).toMatchObject({ state: 'authenticated', uid: UID });
    }
  });

  it('keeps the count of rejections', () => {
    const r = handOff(['\0AUTH\r\nAUTH\r\n'], ['AUTH\r\n'], { maxRejections: 3 });
    expect(last(r)).toMatchObject({ state: 'failed', reason: 'too many rejected attempts' });
  });

  it('keeps the bytes counted towards the 64 KiB limit', () => {
    const first = server();
    feedAll(first, ['\0', ...Array.from({ length: 10000 }, () => 'NOOP\r\n')]);
    const second = SaslServer.fromState({ peerUid: UID, guid: GUID }, first.exportState());
    let r: SaslResult = { state: 'continue', reply: '' };
    for (let i = 0; i < 1000 && r.state === 'continue'; i++) r = second.feed(bytes('NOOP\r\n'));
    expect(r).toMatchObject({ state: 'failed' });
  });

  it('starts over, expecting the NUL byte, from an unknown or finished phase', () => {
    for (const phase of ['done', 'failed', 'bogus', '']) {
      const s = SaslServer.fromState({ peerUid: UID, guid: GUID }, { phase, buffer: '', total: 0, rejections: 0, uid: -1 });
      expect(s.feed(bytes('AUTH\r\n')).state).toBe('failed');
      const again = SaslServer.fromState({ peerUid: UID, guid: GUID }, { phase, buffer: '', total: 0, rejections: 0, uid: -1 });
      expect(again.feed(bytes('\0AUTH\r\n')).reply).toBe('REJECTED EXTERNAL\r\n');
    }
  });

  it('bounds a partial line taken from the document to the line limit', () => {
    const s = SaslServer.fromState(
      { peerUid: UID, guid: GUID },
      { phase: 'auth', buffer: 'X'.repeat(100_000), total: 0, rejections: 0, uid: -1 },
    );
    expect(s.exportState().buffer.length).toBeLessThanOrEqual(16 * 1024);
  });
});
