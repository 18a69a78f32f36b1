import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AddressError,
  type AddressEntry,
  type AddressErrorCode,
  defaultAddress,
  escapeValue,
  firstListenTarget,
  formatAddress,
  formatAddressEntry,
  listenAddressFor,
  parseAddress,
  unescapeValue,
} from './address.js';

function expectCode(fn: () => unknown, code: AddressErrorCode): AddressError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AddressError);
    expect((error as AddressError).code).toBe(code);
    return error as AddressError;
  }
  throw new Error(`expected AddressError ${code}, nothing was thrown`);
}

const unix = (params: Record<string, string>): AddressEntry => ({ transport: 'unix', params });

describe('escapeValue / unescapeValue', () => {
  // The pairs libdbus's own test suite checks (dbus-address.c).
  const vectors: [escaped: string, unescaped: string][] = [
    ['abcde', 'abcde'],
    ['', ''],
    ['%20%20', '  '],
    ['%24', '$'],
    ['%25', '%'],
    ['abc%24', 'abc$'],
    ['%24abc', '$abc'],
    ['abc%24abc', 'abc$abc'],
    ['/', '/'],
    ['-', '-'],
    ['_', '_'],
    ['A', 'A'],
    ['I', 'I'],
    ['Z', 'Z'],
    ['a', 'a'],
    ['i', 'i'],
    ['z', 'z'],
    ['%c3%b6', 'ö'],
  ];

  it.each(vectors)('escapes %j from %j and back', (escaped, unescaped) => {
    expect(escapeValue(unescaped)).toBe(escaped);
    expect(unescapeValue(escaped)).toBe(unescaped);
  });

  it('leaves exactly [-0-9A-Za-z_/.*\\\\] alone and escapes every other byte in lowercase hex', () => {
    for (let byte = 0; byte < 0x80; byte++) {
      const char = String.fromCharCode(byte);
      const plain = /^[-0-9A-Za-z_/.*\\]$/.test(char);
      expect(escapeValue(char)).toBe(plain ? char : `%${byte.toString(16).padStart(2, '0')}`);
    }
    expect(escapeValue('/run/user/1000/bus')).toBe('/run/user/1000/bus');
    expect(escapeValue('a b=c,d;e:f')).toBe('a%20b%3dc%2cd%3be%3af');
    expect(escapeValue('\0')).toBe('%00');
    expect(escapeValue('€')).toBe('%e2%82%ac');
  });

  it('accepts upper-case hex and escapes of optional bytes when unescaping', () => {
    expect(unescapeValue('%C3%B6')).toBe('ö');
    expect(unescapeValue('%2f%41')).toBe('/A');
  });

  it.each(['%a', '%q', '%az', '%%', '%$$', 'abc%a', '%axyz', '%'])(
    'rejects the bad escape %j',
    (value) => {
      expectCode(() => unescapeValue(value), 'ADDRESS_BAD_ESCAPE');
    },
  );

  it.each(['$', ' ', 'a=b', 'a,b', 'a;b', 'a:b', 'ö', '%24$'])(
    'rejects %j, which has a character that must be escaped',
    (value) => {
      const error = expectCode(() => unescapeValue(value), 'ADDRESS_UNESCAPED_CHAR');
      expect(error.message).toContain('should have been escaped');
    },
  );

  it('rejects escapes that do not decode to UTF-8', () => {
    expectCode(() => unescapeValue('%ff'), 'ADDRESS_BAD_UTF8');
    expectCode(() => unescapeValue('%c3'), 'ADDRESS_BAD_UTF8');
  });

  it('round-trips any string (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (value) => {
        const escaped = escapeValue(value);
        expect(escaped).toMatch(/^(?:[-0-9A-Za-z_/.*\\]|%[0-9a-f]{2})*$/);
        expect(unescapeValue(escaped)).toBe(value);
      }),
      { numRuns: 500 },
    );
  });
});

describe('parseAddress', () => {
  it('parses a list of entries with unescaped values, in order', () => {
    expect(
      parseAddress('unix:path=/run/x%20y,guid=0123456789abcdef0123456789abcdef;unix:abstract=/tmp/dbus-Zz'),
    ).toEqual([
      unix({ path: '/run/x y', guid: '0123456789abcdef0123456789abcdef' }),
      unix({ abstract: '/tmp/dbus-Zz' }),
    ]);
  });

  it('accepts what libdbus accepts: trailing separators, entries without keys', () => {
    expect(parseAddress('unix:path=/tmp/foo;debug:name=test,sliff=sloff;')).toEqual([
      unix({ path: '/tmp/foo' }),
      { transport: 'debug', params: { name: 'test', sliff: 'sloff' } },
    ]);
    expect(parseAddress('unix:path=/a,')).toEqual([unix({ path: '/a' })]);
    expect(parseAddress('autolaunch:')).toEqual([{ transport: 'autolaunch', params: {} }]);
  });

  it('keeps key order for formatting', () => {
    const [entry] = parseAddress('tcp:port=1,host=localhost,family=ipv4');
    expect(Object.keys(entry!.params)).toEqual(['port', 'host', 'family']);
  });

  it('does not let a __proto__ key touch any prototype', () => {
    const [entry] = parseAddress('x:__proto__=y');
    expect(Object.getPrototypeOf(entry!.params)).toBe(Object.prototype);
    expect(Object.keys(entry!.params)).toEqual(['__proto__']);
  });

  it.each<[string, AddressErrorCode]>([
    ['', 'ADDRESS_EMPTY'],
    ['foo', 'ADDRESS_NO_COLON'],
    ['foo:bar=foo;baz', 'ADDRESS_NO_COLON'],
    [';', 'ADDRESS_NO_COLON'],
    ['unix:path=/a;;unix:path=/b', 'ADDRESS_NO_COLON'],
    [':path=/a', 'ADDRESS_EMPTY_TRANSPORT'],
    ['foo:bar', 'ADDRESS_BAD_PAIR'],
    ['foo:bar,baz', 'ADDRESS_BAD_PAIR'],
    ['foo:bar=foo,baz', 'ADDRESS_BAD_PAIR'],
    ['foo:=foo', 'ADDRESS_BAD_PAIR'],
    ['foo:foo=', 'ADDRESS_BAD_PAIR'],
    ['foo:foo,bar=baz', 'ADDRESS_BAD_PAIR'],
    ['foo:,', 'ADDRESS_BAD_PAIR'],
    ['unix:path=/a,,guid=1', 'ADDRESS_BAD_PAIR'],
    ['unix:path=/a,path=/b', 'ADDRESS_DUPLICATE_KEY'],
    ['unix:path=/a%2', 'ADDRESS_BAD_ESCAPE'],
    ['unix:path=/a%zz', 'ADDRESS_BAD_ESCAPE'],
    ['unix:path=/a b', 'ADDRESS_UNESCAPED_CHAR'],
    ['unix:path=a=b', 'ADDRESS_UNESCAPED_CHAR'],
    ['tcp:host=::1', 'ADDRESS_UNESCAPED_CHAR'],
    ['unix:path=/%80', 'ADDRESS_BAD_UTF8'],
  ])('rejects %j with %s', (address, code) => {
    const error = expectCode(() => parseAddress(address), code);
    expect(error.message.length).toBeGreaterThan(10);
  });
});

describe('formatAddress', () => {
  it('formats entries, escaping values', () => {
    expect(
      formatAddress([unix({ path: '/run/a b', guid: 'ab' }), { transport: 'tcp', params: { host: '::1' } }]),
    ).toBe('unix:path=/run/a%20b,guid=ab;tcp:host=%3a%3a1');
    expect(formatAddressEntry({ transport: 'autolaunch', params: {} })).toBe('autolaunch:');
  });

  it('refuses what could not be parsed back', () => {
    expectCode(() => formatAddress([]), 'ADDRESS_EMPTY');
    expectCode(() => formatAddressEntry({ transport: '', params: {} }), 'ADDRESS_BAD_NAME');
    expectCode(() => formatAddressEntry({ transport: 'a:b', params: {} }), 'ADDRESS_BAD_NAME');
    expectCode(() => formatAddressEntry(unix({ 'a=b': 'x' })), 'ADDRESS_BAD_NAME');
    expectCode(() => formatAddressEntry(unix({ '': 'x' })), 'ADDRESS_BAD_NAME');
    expectCode(() => formatAddressEntry(unix({ path: '' })), 'ADDRESS_BAD_VALUE');
  });

  it('round-trips parse(format(entries)) (property)', () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9_-]{0,8}$/);
    const entry = fc.record({
      transport: name,
      params: fc.dictionary(name, fc.string({ unit: 'binary', minLength: 1 }), { maxKeys: 4 }),
    });
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 4 }), (entries) => {
        const text = formatAddress(entries);
        expect(parseAddress(text)).toEqual(entries);
        expect(formatAddress(parseAddress(text))).toBe(text);
      }),
      { numRuns: 300 },
    );
  });
});

describe('listenAddressFor', () => {
  it('listens on unix:path= as given', () => {
    expect(listenAddressFor(unix({ path: '/run/ferrybus/bus' }))).toEqual({
      path: '/run/ferrybus/bus',
      abstract: false,
      address: unix({ path: '/run/ferrybus/bus' }),
    });
  });

  it('maps unix:abstract= to a leading NUL, as Node expects', () => {
    const target = listenAddressFor(parseAddress('unix:abstract=/tmp/dbus-%20x')[0]!);
    expect(target).toEqual({ path: '\0/tmp/dbus- x', abstract: true, address: unix({ abstract: '/tmp/dbus- x' }) });
    expect(formatAddressEntry(target.address)).toBe('unix:abstract=/tmp/dbus-%20x');
  });

  it.each(['dir', 'tmpdir'])('creates a fresh socket name in unix:%s=', (key) => {
    const fixed = listenAddressFor(unix({ [key]: '/tmp/' }), { randomName: () => 'dbus-fixed' });
    expect(fixed).toEqual({ path: '/tmp/dbus-fixed', abstract: false, address: unix({ path: '/tmp/dbus-fixed' }) });

    const first = listenAddressFor(unix({ [key]: '/run/user/1000' }));
    const second = listenAddressFor(unix({ [key]: '/run/user/1000' }));
    expect(first.path).toMatch(/^\/run\/user\/1000\/dbus-[A-Za-z0-9]{10}$/);
    expect(first.abstract).toBe(false);
    expect(first.path).not.toBe(second.path);
  });

  it('puts unix:runtime=yes at $XDG_RUNTIME_DIR/bus', () => {
    const target = listenAddressFor(unix({ runtime: 'yes' }), { env: { XDG_RUNTIME_DIR: '/run/user/1000' } });
    expect(target.path).toBe('/run/user/1000/bus');
    expectCode(() => listenAddressFor(unix({ runtime: 'yes' }), { env: {} }), 'ADDRESS_NO_RUNTIME_DIR');
    expectCode(
      () => listenAddressFor(unix({ runtime: 'yes' }), { env: { XDG_RUNTIME_DIR: 'relative' } }),
      'ADDRESS_NO_RUNTIME_DIR',
    );
    expectCode(() => listenAddressFor(unix({ runtime: 'no' }), { env: {} }), 'ADDRESS_BAD_VALUE');
  });

  it.each(['tcp', 'nonce-tcp', 'launchd', 'autolaunch', 'carrier-pigeon'])(
    'refuses transport %s, naming it',
    (transport) => {
      const error = expectCode(
        () => listenAddressFor({ transport, params: { host: 'localhost' } }),
        'ADDRESS_UNSUPPORTED_TRANSPORT',
      );
      expect(error.message).toContain(`'${transport}'`);
    },
  );

  it('takes systemd: only when systemd passed sockets, saying why not otherwise; a list falls back', () => {
    const systemd = { transport: 'systemd', params: {} };
    expect(listenAddressFor(systemd, { systemd: { passed: 2 } })).toMatchObject({ systemd: true, path: '' });
    const none = expectCode(() => listenAddressFor(systemd), 'ADDRESS_NO_SYSTEMD_SOCKETS');
    expect(none.message).toBe('systemd: but no sockets were passed (LISTEN_FDS unset)');
    const zero = expectCode(() => listenAddressFor(systemd, { systemd: { passed: 0, missing: 'LISTEN_FDS=0' } }), 'ADDRESS_NO_SYSTEMD_SOCKETS');
    expect(zero.message).toBe('systemd: but no sockets were passed (LISTEN_FDS=0)');
    expectCode(() => listenAddressFor({ transport: 'systemd', params: { path: '/x' } }, { systemd: { passed: 1 } }), 'ADDRESS_UNKNOWN_PARAM');
    expect(firstListenTarget('systemd:;unix:path=/run/x').path).toBe('/run/x');
  });

  it('wants exactly one known location key', () => {
    expectCode(() => listenAddressFor(unix({})), 'ADDRESS_MISSING_PARAM');
    expectCode(() => listenAddressFor(unix({ path: '/a', abstract: 'b' })), 'ADDRESS_CONFLICTING_PARAMS');
    expectCode(() => listenAddressFor(unix({ path: '/a', guid: '00' })), 'ADDRESS_UNKNOWN_PARAM');
  });

  it('refuses relative paths and names the kernel cannot hold', () => {
    expectCode(() => listenAddressFor(unix({ path: 'bus' })), 'ADDRESS_BAD_VALUE');
    expectCode(() => listenAddressFor(unix({ dir: './run' })), 'ADDRESS_BAD_VALUE');
    expect(listenAddressFor(unix({ path: `/${'a'.repeat(106)}` })).path).toHaveLength(107);
    expectCode(() => listenAddressFor(unix({ path: `/${'a'.repeat(107)}` })), 'ADDRESS_BAD_VALUE');
    expect(listenAddressFor(unix({ abstract: 'a'.repeat(107) })).path).toHaveLength(108);
    expectCode(() => listenAddressFor(unix({ abstract: 'a'.repeat(108) })), 'ADDRESS_BAD_VALUE');
    // Length is counted in bytes, not UTF-16 units.
    expectCode(() => listenAddressFor(unix({ path: `/${'é'.repeat(54)}` })), 'ADDRESS_BAD_VALUE');
  });
});

describe('firstListenTarget', () => {
  it('takes the first entry ferrybus can listen on, like libdbus', () => {
    expect(firstListenTarget('tcp:host=localhost,port=0;unix:path=/run/b;unix:path=/run/c').path).toBe('/run/b');
  });

  it('reports every reason when no entry is usable', () => {
    const error = expectCode(
      () => firstListenTarget('tcp:host=localhost;unix:runtime=yes', { env: {} }),
      'ADDRESS_UNSUPPORTED_TRANSPORT',
    );
    expect(error.message).toContain("'tcp'");
    expect(error.message).toContain('XDG_RUNTIME_DIR');
    expectCode(() => firstListenTarget('launchd:env=X'), 'ADDRESS_UNSUPPORTED_TRANSPORT');
    expectCode(() => firstListenTarget('nonsense'), 'ADDRESS_NO_COLON');
  });
});

describe('defaultAddress', () => {
  it('puts root at /run/ferrybus/bus whatever the environment says', () => {
    expect(defaultAddress({ uid: 0, env: { XDG_RUNTIME_DIR: '/run/user/0' } })).toBe('unix:path=/run/ferrybus/bus');
  });

  it('puts users under $XDG_RUNTIME_DIR/ferrybus/bus', () => {
    expect(defaultAddress({ uid: 1000, env: { XDG_RUNTIME_DIR: '/run/user/1000' } })).toBe(
      'unix:path=/run/user/1000/ferrybus/bus',
    );
    expect(defaultAddress({ uid: 1000, env: { XDG_RUNTIME_DIR: '/run/user/my dir/' } })).toBe(
      'unix:path=/run/user/my%20dir/ferrybus/bus',
    );
  });

  it('falls back to /tmp/ferrybus-<uid>/bus without a usable XDG_RUNTIME_DIR', () => {
    for (const env of [{}, { XDG_RUNTIME_DIR: '' }, { XDG_RUNTIME_DIR: 'run/user' }]) {
      expect(defaultAddress({ uid: 1234, env })).toBe('unix:path=/tmp/ferrybus-1234/bus');
    }
  });

  it('gives an address ferrybus can listen on', () => {
    const address = defaultAddress({ uid: 1000, env: { XDG_RUNTIME_DIR: '/run/user/1000' } });
    expect(firstListenTarget(address).path).toBe('/run/user/1000/ferrybus/bus');
  });
});
