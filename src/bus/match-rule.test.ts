import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BusError, DBusErrorName } from './errors.js';
import { formatMatchRule, matchRuleMatches, parseMatchRule, shareStrings, type MatchArg, type MatchTarget } from './match-rule.js';

type Arg = string | { o: string } | number;

/** A message as a rule sees it. `owners` maps well-known names to unique names; `recipient` is the addressed peer. */
function msg(m: {
  type?: number;
  sender?: string;
  interface?: string;
  member?: string;
  path?: string;
  destination?: string;
  recipient?: string;
  owners?: Record<string, string>;
  args?: Arg[];
}): MatchTarget {
  const owners = m.owners ?? {};
  const names = (unique: string | undefined, name: string) => unique !== undefined && (name === unique || owners[name] === unique);
  return {
    type: m.type ?? 4,
    sender: m.sender ?? ':1.1',
    interface: 'interface' in m ? m.interface : 'com.example.Iface',
    member: 'member' in m ? m.member : 'Frobated',
    path: 'path' in m ? m.path : '/com/example',
    destination: m.destination,
    senderOwns: (name) => owners[name] === (m.sender ?? ':1.1'),
    addressedTo: (name) => (m.recipient === undefined ? name === m.destination : names(m.recipient, name)),
    textArg(i) {
      const a = m.args?.[i];
      if (typeof a === 'string') return { value: a, code: 's' };
      if (typeof a === 'object') return { value: a.o, code: 'o' };
      return undefined;
    },
  };
}

const matches = (rule: string, m: MatchTarget) => matchRuleMatches(parseMatchRule(rule), m);

function parseError(rule: string): BusError {
  try {
    parseMatchRule(rule);
  } catch (err) {
    if (err instanceof BusError) return err;
    throw err;
  }
  throw new Error(`"${rule}" parsed but should not have`);
}

describe('parseMatchRule: keys', () => {
  it('parses every plain key', () => {
    const r = parseMatchRule(
      "type='signal',sender='org.freedesktop.DBusSender',interface='org.freedesktop.DBusInterface',member='Foo',path='/bar/foo',destination=':452345.34'",
    );
    expect(r).toMatchObject({
      type: 4,
      sender: 'org.freedesktop.DBusSender',
      interface: 'org.freedesktop.DBusInterface',
      member: 'Foo',
      path: '/bar/foo',
      destination: ':452345.34',
      eavesdrop: false,
      args: [],
    });
  });

  it.each([
    ['method_call', 1],
    ['method_return', 2],
    ['error', 3],
    ['signal', 4],
  ])('maps type=%s to message type %i', (name, type) => {
    expect(parseMatchRule(`type='${name}'`).type).toBe(type);
  });

  it('parses path_namespace, arg0..arg63, argNpath, arg0namespace and eavesdrop', () => {
    expect(parseMatchRule("path_namespace='/foo/bar'").pathNamespace).toBe('/foo/bar');
    expect(parseMatchRule("arg0='foo'").args).toEqual([{ index: 0, value: 'foo', path: false }]);
    expect(parseMatchRule("arg40='foo'").args).toEqual([{ index: 40, value: 'foo', path: false }]);
    expect(parseMatchRule("arg63='foo'").args).toEqual([{ index: 63, value: 'foo', path: false }]);
    expect(parseMatchRule("arg7path='/foo'").args).toEqual([{ index: 7, value: '/foo', path: true }]);
    expect(parseMatchRule("arg0namespace='foo'").arg0namespace).toBe('foo');
    expect(parseMatchRule("arg0namespace='foo.bar'").arg0namespace).toBe('foo.bar');
    expect(parseMatchRule("eavesdrop='true'").eavesdrop).toBe(true);
    expect(parseMatchRule("eavesdrop='false'").eavesdrop).toBe(false);
  });

  it('accepts an argNpath value that is no valid object path (a trailing slash is its point)', () => {
    expect(parseMatchRule("arg1path='/aa/bb/'").args).toEqual([{ index: 1, value: '/aa/bb/', path: true }]);
  });

  it('keeps args ordered by index whatever the rule order', () => {
    expect(parseMatchRule("arg3='c',arg1='a',arg2path='/b'").args.map((a) => a.index)).toEqual([1, 2, 3]);
  });

  it('accepts the empty rule and an all-whitespace rule, which match everything', () => {
    for (const text of ['', '    \t']) {
      const r = parseMatchRule(text);
      expect(r.canonical).toBe('');
      expect(matchRuleMatches(r, msg({ type: 1 }))).toBe(true);
    }
  });

  it('lets eavesdrop appear twice, the last one winning (dbus-monitor appends it)', () => {
    expect(parseMatchRule("eavesdrop='true',type='signal',eavesdrop='false'").eavesdrop).toBe(false);
    expect(parseMatchRule("eavesdrop='false',eavesdrop='true'").eavesdrop).toBe(true);
  });
});

describe('parseMatchRule: quoting', () => {
  it('ignores whitespace around pairs and empty quoted runs', () => {
    const a = parseMatchRule(
      "    type='signal',  \tsender='org.freedes''ktop.DBusSender',   interface='org.freedesktop.DBusInterface''''', \tmember='Foo',path='/bar/foo',destination=':452345.34'''''",
    );
    expect(a).toMatchObject({ sender: 'org.freedesktop.DBusSender', interface: 'org.freedesktop.DBusInterface', destination: ':452345.34' });
  });

  // Pairs the reference implementation considers equal (dbus bus/signals.c).
  it.each([
    ["type='signal'", "type='signal'"],
    ["type='signal',interface='foo.bar'", "interface='foo.bar',type='signal'"],
    ["type='method_call',sender=':1.0'", "sender=':1.0',type='method_call'"],
    ["type='method_call',destination=':1.0'", "destination=':1.0',type='method_call'"],
    ["type='method_call',arg0='blah',arg1='baz'", "arg0='blah',arg1='baz',type='method_call'"],
    ["arg0namespace='fool'", "arg0namespace='fool'"],
    ['member=escape', "member='escape'"],
    ['member=icecream', "member=ice'cream'"],
    ["arg0='comma,type=comma',type=signal", "type=signal,arg0='comma,type=comma'"],
    ['arg0=escap\\e', "arg0='escap\\e'"],
    ["arg0=Time: 8 o\\'clock", "arg0='Time: 8 o'\\''clock'"],
  ])('%s equals %s', (a, b) => {
    expect(parseMatchRule(a).canonical).toBe(parseMatchRule(b).canonical);
    // The canonical form parses back to itself.
    const canon = parseMatchRule(a).canonical;
    expect(parseMatchRule(canon).canonical).toBe(canon);
  });

  it("unescapes \\' outside quotes only; inside quotes a backslash is literal", () => {
    expect(parseMatchRule("arg0=it\\'s").args[0]!.value).toBe("it's");
    expect(parseMatchRule("arg0='a\\b'").args[0]!.value).toBe('a\\b');
    expect(parseMatchRule("arg0='a\\'b").args[0]!.value).toBe('a\\b');
    expect(parseError("arg0='a\\'b'").dbusName).toBe(DBusErrorName.MatchRuleInvalid);
    expect(parseMatchRule("arg0='x',arg1=y\\").args[1]!.value).toBe('y\\');
  });

  it('keeps commas inside quotes and allows empty values', () => {
    expect(parseMatchRule("arg0='a,b',arg1=''").args.map((a) => a.value)).toEqual(['a,b', '']);
  });

  it('accepts a trailing comma, as dbus-daemon does', () => {
    expect(parseMatchRule("type='signal',").type).toBe(4);
  });

  it('takes values from the rule text whole or pieced together around quotes and escapes', () => {
    expect(parseMatchRule("interface='com.example.Interface',member=Changed").interface).toBe('com.example.Interface');
    expect(parseMatchRule("arg0='it'\\''s a value, quoted',arg1=x'y z'\\'w").args.map((a) => a.value)).toEqual(["it's a value, quoted", "xy z'w"]);
    expect(parseMatchRule("arg0='',arg1=''''").args.map((a) => a.value)).toEqual(['', '']);
  });

  it('gives back any value written in canonical quoting, alone or among other keys (property)', () => {
    const value = fc.string({ unit: fc.constantFrom('a', 'Z', '0', ' ', ',', '=', "'", '\\', '/', '.', 'é'), maxLength: 40 });
    fc.assert(
      fc.property(value, value, (a, b) => {
        const q = (v: string) => `'${v.replace(/'/g, "'\\''")}'`;
        const rule = parseMatchRule(`type='signal',arg0=${q(a)},arg3path=${q(b)}`);
        expect(rule.args).toEqual([{ index: 0, value: a, path: false }, { index: 3, value: b, path: true }]);
        expect(parseMatchRule(rule.canonical).canonical).toBe(rule.canonical);
      }),
      { numRuns: 300 },
    );
  });
});

describe('parseMatchRule: values against a character-by-character reading', () => {
  /** The specification's quoting, one character at a time: the value of a lone `arg0=…` pair, or why not. */
  function reference(value: string): string | 'unterminated' | 'more pairs' {
    let v = '';
    let quoted = false;
    for (let i = 0; i < value.length; i++) {
      const c = value[i]!;
      if (quoted) {
        if (c === "'") quoted = false;
        else v += c;
      } else if (c === "'") quoted = true;
      else if (c === '\\' && value[i + 1] === "'") {
        v += "'";
        i++;
      } else if (c === ',') return i === value.length - 1 ? v : 'more pairs';
      else v += c;
    }
    return quoted ? 'unterminated' : v;
  }

  it('reads every value as the reference does (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', 'b', ' ', ',', "'", '\\', '='), maxLength: 24 }), (value) => {
        const expected = reference(value);
        fc.pre(expected !== 'more pairs');
        if (expected === 'unterminated') expect(parseError(`arg0=${value}`).message).toMatch(/unterminated quote/);
        else expect(parseMatchRule(`arg0=${value}`).args).toEqual([{ index: 0, value: expected, path: false }]);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseMatchRule: representation', () => {
  it('gives every rule the same keys in the same order, whichever keys it names', () => {
    const keys = (text: string) => Object.keys(parseMatchRule(text));
    const all = keys(
      "type='signal',sender=':1.1',interface='a.b',member='M',path='/p',destination=':1.2',arg0namespace='a',arg1='x',eavesdrop='true'",
    );
    expect(keys('')).toEqual(all);
    expect(keys("path_namespace='/q',arg0path='/r/'")).toEqual(all);
  });

  it('lets rules without args share one frozen empty array that stays empty', () => {
    const a = parseMatchRule("type='signal'");
    const b = parseMatchRule("interface='a.b',member='M'");
    expect(a.args).toBe(b.args);
    expect(Object.isFrozen(a.args)).toBe(true);
    expect(() => (a.args as MatchArg[]).push({ index: 0, value: 'x', path: false })).toThrow(TypeError);
    const withArgs = parseMatchRule("arg0='x',arg2='y'");
    expect(withArgs.args).not.toBe(a.args);
    expect(withArgs.args).toHaveLength(2);
    expect(parseMatchRule('').args).toEqual([]);
    expect(matchRuleMatches(a, msg({}))).toBe(true);
  });

  it('shareStrings changes no value, form or text of a rule', () => {
    const texts = [
      "type='signal',sender='org.example',interface='a.b',member='M',path='/p'",
      "member='M',interface='a.b',type='signal',sender='org.example',path='/q'",
      "type='signal',interface='a.c',member='M',arg0='a.b'",
      "path_namespace='/p',destination=':1.4',arg0namespace='a'",
      '',
    ];
    for (const t of texts) {
      for (const u of texts) {
        const rule = parseMatchRule(t);
        shareStrings(rule, parseMatchRule(u));
        const fresh = parseMatchRule(t);
        expect({ ...rule }).toEqual({ ...fresh });
        expect(formatMatchRule(rule)).toBe(formatMatchRule(fresh));
      }
    }
  });
});

describe('parseMatchRule: invalid rules', () => {
  it.each([
    ['unknown key', "blah='signal'"],
    ['pre-spec key', "service='youpi'"],
    ['bad type', "type='chouin'"],
    ['inherited property name as type', "type='constructor'"],
    ['inherited property name as type', "type='toString'"],
    ['bad interface', "interface='abc@def++'"],
    ['single-element interface', "interface='abc'"],
    ['bad member', "member='a.b'"],
    ['bad path', "path='foo'"],
    ['trailing slash in path', "path='/foo/'"],
    ['trailing slash in path_namespace', "path_namespace='/foo/'"],
    ['bad sender', "sender='1abc.def'"],
    ['bad destination', "destination='no'"],
    ['bad eavesdrop', "eavesdrop='yes'"],
    ['duplicate key', "type='signal',type='method_call'"],
    ['duplicate member', "member='A',member='B'"],
    ['duplicate arg', "arg0='foo',arg0='bar'"],
    ['duplicate arg30', "arg30='foo',arg30='bar'"],
    ['argN and argNpath', "arg3='foo',arg3path='/bar'"],
    ['arg0 and arg0namespace', "arg0='foo',arg0namespace='foo'"],
    ['path and path_namespace', "path='/foo',path_namespace='/foo'"],
    ['arg64', "arg64='foo'"],
    ['arg300', "arg300='foo'"],
    ['arg without number', "arg='foo'"],
    ['argv', "argv='foo'"],
    ['junk after arg number', "arg3junk='foo'"],
    ['argument', "argument='foo'"],
    ['arg1namespace', "arg1namespace='foo'"],
    ['empty arg0namespace', "arg0namespace=''"],
    ['trailing dot in arg0namespace', "arg0namespace='foo.'"],
    ['double dot in arg0namespace', "arg0namespace='foo..'"],
    ['digit-led arg0namespace', "arg0namespace='1foo'"],
    ['unbalanced quote', "type='signal"],
    ['key without =', 'type'],
  ])('rejects %s: %s', (_why, rule) => {
    expect(parseError(rule).dbusName).toBe(DBusErrorName.MatchRuleInvalid);
  });

  it('rejects a rule over 1024 bytes with LimitsExceeded, as dbus-daemon does', () => {
    expect(parseError(`arg0='${'x'.repeat(1020)}'`).dbusName).toBe(DBusErrorName.LimitsExceeded);
    expect(() => parseMatchRule(`arg0='${'x'.repeat(1016)}'`)).not.toThrow();
    // Bytes, not UTF-16 units.
    expect(parseError(`arg0='${'é'.repeat(510)}'`).dbusName).toBe(DBusErrorName.LimitsExceeded);
  });
});

describe('matchRuleMatches: header keys', () => {
  it('compares type, interface, member and path exactly', () => {
    const m = msg({});
    expect(matches("type='signal',interface='com.example.Iface',member='Frobated',path='/com/example'", m)).toBe(true);
    expect(matches("type='method_call'", m)).toBe(false);
    expect(matches("interface='com.example.Other'", m)).toBe(false);
    expect(matches("member='Oopsed'", m)).toBe(false);
    expect(matches("path='/com'", m)).toBe(false);
  });

  it('does not match a key the message lacks', () => {
    const reply = msg({ type: 2, interface: undefined, member: undefined, path: undefined });
    expect(matches("interface='com.example.Iface'", reply)).toBe(false);
    expect(matches("member='Frobated'", reply)).toBe(false);
    expect(matches("path='/com/example'", reply)).toBe(false);
    expect(matches("path_namespace='/'", reply)).toBe(false);
    expect(matches("type='method_return'", reply)).toBe(true);
  });

  it('matches path_namespace on whole path elements', () => {
    const at = (path: string) => msg({ path });
    expect(matches("path_namespace='/com/example'", at('/com/example'))).toBe(true);
    expect(matches("path_namespace='/com/example'", at('/com/example/a/b'))).toBe(true);
    expect(matches("path_namespace='/com/example'", at('/com/examples'))).toBe(false);
    expect(matches("path_namespace='/com/example'", at('/com'))).toBe(false);
  });

  it("matches every path with path_namespace='/'", () => {
    for (const path of ['/', '/a', '/a/b/c']) expect(matches("path_namespace='/'", msg({ path }))).toBe(true);
  });

  it('matches sender by unique name, by the well-known name the sender owns, and the bus itself', () => {
    const m = msg({ sender: ':1.7', owners: { 'com.example.Service': ':1.7', 'com.example.Other': ':1.8' } });
    expect(matches("sender=':1.7'", m)).toBe(true);
    expect(matches("sender=':1.8'", m)).toBe(false);
    expect(matches("sender='com.example.Service'", m)).toBe(true);
    expect(matches("sender='com.example.Other'", m)).toBe(false);
    expect(matches("sender='com.example.Nobody'", m)).toBe(false);
    expect(matches("sender='org.freedesktop.DBus'", msg({ sender: 'org.freedesktop.DBus' }))).toBe(true);
  });

  it('never matches a destination rule against a broadcast', () => {
    expect(matches("destination=':1.3'", msg({}))).toBe(false);
  });

  it('matches destination against the addressed recipient and the names it owns', () => {
    const m = msg({ destination: 'com.example.Service', recipient: ':1.3', owners: { 'com.example.Service': ':1.3', 'com.example.Alias': ':1.3' } });
    expect(matches("destination='com.example.Service'", m)).toBe(true);
    expect(matches("destination=':1.3'", m)).toBe(true);
    expect(matches("destination='com.example.Alias'", m)).toBe(true);
    expect(matches("destination=':1.4'", m)).toBe(false);
    // Without a resolved recipient (the driver), the destination is compared as written.
    expect(matches("destination='org.freedesktop.DBus'", msg({ destination: 'org.freedesktop.DBus' }))).toBe(true);
  });
});

describe('matchRuleMatches: arguments', () => {
  it('compares argN with string arguments only', () => {
    expect(matches("arg0='foobar'", msg({ args: ['foobar'] }))).toBe(true);
    expect(matches("arg0='foobar'", msg({ args: ['foobaz'] }))).toBe(false);
    expect(matches("arg0='/foo'", msg({ args: [{ o: '/foo' }] }))).toBe(false);
    expect(matches("arg0='1'", msg({ args: [1] }))).toBe(false);
    expect(matches("arg1='x'", msg({ args: ['x'] }))).toBe(false);
    expect(matches("arg0='a',arg2='c'", msg({ args: ['a', 7, 'c'] }))).toBe(true);
    expect(matches("arg0=''", msg({ args: [''] }))).toBe(true);
  });

  // The specification's example for arg0path='/aa/bb/'.
  it.each([
    ['/', true],
    ['/aa/', true],
    ['/aa/bb/', true],
    ['/aa/bb/cc/', true],
    ['/aa/bb/cc', true],
    ['/aa/b', false],
    ['/aa', false],
    ['/aa/bb', false],
  ])("arg0path='/aa/bb/' against %s → %s", (arg, expected) => {
    expect(matches("arg0path='/aa/bb/'", msg({ args: [arg] }))).toBe(expected);
    expect(matches("arg0path='/aa/bb/'", msg({ args: [{ o: arg }] }))).toBe(expected);
  });

  it('matches argNpath exactly equal arguments even when they are not paths', () => {
    expect(matches("arg0path='foobar'", msg({ args: ['foobar'] }))).toBe(true);
    expect(matches("arg0path='/aa/bb'", msg({ args: ['/aa/bb/cc'] }))).toBe(false);
    expect(matches("arg0path='/aa/bb'", msg({ args: ['/aa/'] }))).toBe(true);
    expect(matches("arg0path='/aa/bb'", msg({ args: [5] }))).toBe(false);
  });

  it('matches arg0namespace on whole dotted elements of a string argument', () => {
    const ns = "arg0namespace='com.example.Foo'";
    expect(matches(ns, msg({ args: ['com.example.Foo'] }))).toBe(true);
    expect(matches(ns, msg({ args: ['com.example.Foo.Bar'] }))).toBe(true);
    expect(matches(ns, msg({ args: ['com.example.Foo.Bar.Baz'] }))).toBe(true);
    expect(matches(ns, msg({ args: ['com.example.Foobar'] }))).toBe(false);
    expect(matches(ns, msg({ args: ['com.example'] }))).toBe(false);
    expect(matches(ns, msg({ args: [{ o: '/com/example/Foo' }] }))).toBe(false);
    expect(matches(ns, msg({ args: [] }))).toBe(false);
    expect(matches("arg0namespace='com'", msg({ args: ['com.example'] }))).toBe(true);
  });
});

describe('formatMatchRule', () => {
  it('prints keys in dbus-daemon\'s order with its quoting', () => {
    const rule = parseMatchRule("arg2path='/p/',eavesdrop=true,destination=':1.5',sender='org.freedesktop.DBus',path='/a',member='M',interface='a.b',type='signal',arg0='it'\\''s'");
    expect(formatMatchRule(rule)).toBe(
      "type='signal',interface='a.b',member='M',path='/a',sender='org.freedesktop.DBus',destination=':1.5',eavesdrop='true',arg0='it'\\''s',arg2path='/p/'");
    expect(formatMatchRule(parseMatchRule("arg0namespace='com.x',path_namespace='/q'"))).toBe("path_namespace='/q',arg0namespace='com.x'");
    expect(formatMatchRule(parseMatchRule('eavesdrop=false'))).toBe('');
  });
});
