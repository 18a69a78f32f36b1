import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BusConfig,
  ConfigError,
  type ConfigErrorCode,
  type ConfigFs,
  SYSTEM_BUS_ADDRESS,
  type XmlNode,
  checkListenAddresses,
  parseConfig,
  parseXml,
  readConfig,
} from './config.js';
import { BusPolicy } from '../bus/policy.js';
import { sessionConfig, stockConfigFile, systemConfig } from './config-presets.js';
import type { Logger } from './logger.js';
import { loadConfig, settingsFromConfig } from './settings.js';
import { userDatabase } from './user-database.js';

let tmp: string;
let counter = 0;

beforeAll(() => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ferrybus-config-')));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh directory holding the given files (paths relative to it). */
function tree(files: Record<string, string>): string {
  const dir = path.join(tmp, `t${counter++}`);
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
  }
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

const DOCTYPE = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">`;

const bus = (body: string): string => `${DOCTYPE}\n<busconfig>\n${body}\n</busconfig>\n`;

function expectConfigError(fn: () => unknown, code: ConfigErrorCode, file?: string, line?: number): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const config = error as ConfigError;
    expect(config.code).toBe(code);
    if (file !== undefined) expect(config.file).toBe(file);
    if (line !== undefined) {
      expect(config.line).toBe(line);
      expect(config.message).toContain(`${config.file}:${line}: `);
    }
    return config;
  }
  throw new Error(`expected a ConfigError ${code}, nothing was thrown`);
}

const parse = (text: string, options = {}): BusConfig =>
  parseConfig(text, path.join(tmp, 'inline.conf'), { selinuxEnabled: false, ...options });

// A copy of the shape of the stock session.conf (dbus 1.14).
const SESSION_CONF = `<!-- This configuration file controls the per-user-login-session message bus.
     Add a session-local.conf and edit that rather than changing this
     file directly. -->

${DOCTYPE}
<busconfig>
  <!-- Our well-known bus type, don't change this -->
  <type>session</type>

  <keep_umask/>

  <listen>unix:tmpdir=/tmp</listen>

  <auth>EXTERNAL</auth>

  <standard_session_servicedirs />

  <policy context="default">
    <!-- Allow everything to be sent -->
    <allow send_destination="*" eavesdrop="true"/>
    <!-- Allow everything to be received -->
    <allow eavesdrop="true"/>
    <!-- Allow anyone to own anything -->
    <allow own="*"/>
  </policy>

  <include ignore_missing="yes">legacy/session.conf</include>
  <includedir>session.d</includedir>
  <include ignore_missing="yes">session-local.conf</include>
  <include if_selinux_enabled="yes" selinux_root_relative="yes">contexts/dbus_contexts</include>

  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_incoming_unix_fds">250000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_outgoing_unix_fds">250000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="service_start_timeout">120000</limit>  
  <limit name="auth_timeout">240000</limit>
  <limit name="pending_fd_timeout">150000</limit>
  <limit name="max_completed_connections">100000</limit>  
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_pending_service_starts">10000</limit>
  <limit name="max_names_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>

</busconfig>
`;

describe('parseXml', () => {
  it('reads elements, attributes, text, entities, CDATA, comments and the prologue', () => {
    const root = parseXml(
      `\uFEFF<?xml version="1.0" encoding="UTF-8"?>
<!-- leading comment -->
<!DOCTYPE busconfig [ <!-- ] > --> <?pi ]>?> ]>
<busconfig a="1" b='two &amp; &quot;three&quot;' c="&#65;&#x42;">
  <listen>unix:path=/a&lt;b&gt;<![CDATA[<raw & text>]]>&apos;</listen>
  <?pi ignored?>
  <empty/>
</busconfig>
<!-- trailing comment -->`,
      'x.conf',
    );
    expect(root.name).toBe('busconfig');
    expect(root.line).toBe(4);
    expect(root.attributes).toEqual({ a: '1', b: 'two & "three"', c: 'AB' });
    const elements = root.children.filter((child) => child.kind === 'element');
    expect(elements.map((child) => [child.name, child.line])).toEqual([
      ['listen', 5],
      ['empty', 7],
    ]);
    const listen = elements[0]!;
    expect(listen.kind === 'element' && listen.children).toEqual([
      { kind: 'text', text: "unix:path=/a<b><raw & text>'", line: 5 },
    ]);
  });

  it('normalises whitespace in attribute values and counts CRLF lines once', () => {
    const root = parseXml('<a\r\n  x="1\t2\n3">\r\n<b/>\r\n</a>', 'crlf.conf');
    expect(root.attributes.x).toBe('1 2 3');
    expect(root.children.find((child) => child.kind === 'element')!.line).toBe(4);
  });

  it('keeps an attribute named __proto__ as data', () => {
    const root = parseXml('<a __proto__="x"/>', 'p.conf');
    expect(Object.keys(root.attributes)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(root.attributes)).toBe(Object.prototype);
  });

  it.each<[string, string, number, RegExp]>([
    ['mismatched end tag', '<a>\n<b>\n</a>', 3, /<\/a> does not close <b> opened on line 2/],
    ['unclosed element', '<a>\n<b>\n', 3, /element <b> opened on line 2 is not closed/],
    ['unclosed start tag', '<a\n x="1"', 1, /start tag <a is not closed/],
    ['unclosed comment', '<a>\n<!-- x\n</a>', 2, /comment is not closed/],
    ['double hyphen in a comment', '<a>\n<!-- x -- y -->\n</a>', 2, /'--' is not allowed/],
    ['duplicate attribute', '<a\n x="1" x="2"/>', 2, /attribute x appears twice/],
    ['unquoted attribute', '<a x=1/>', 1, /must be quoted/],
    ['attribute without value', '<a x/>', 1, /has no value/],
    ['missing space between attributes', '<a x="1"y="2"/>', 1, /expected whitespace/],
    ['unknown entity', '<a>\n&nbsp;</a>', 2, /unknown entity &nbsp;/],
    ['bare ampersand', '<a>\nfish & chips</a>', 2, /'&' must start an entity reference/],
    ['bad character reference', '<a>&#0;</a>', 1, /not a valid character reference/],
    ['< in an attribute', '<a x="<"/>', 1, /'<' is not allowed in attribute values/],
    ['text after the root', '<a/>\ntrailing', 2, /unexpected content after the root element/],
    ['two roots', '<a/>\n<b/>', 2, /exactly one root element/],
    ['no root', '<!-- only a comment -->', 1, /no root element/],
    ['empty file', '', 1, /no root element/],
    ['text before the root', 'hello <a/>', 1, /expected the root element/],
    ['xml declaration not first', '\n<?xml version="1.0"?><a/>', 2, /<\?xml\?> declaration must be at the very start/],
    ['doctype after the root', '<a/>\n<!DOCTYPE a>', 2, /<!DOCTYPE> must come once/],
    ['control character', '<a>\n\u0001</a>', 2, /U\+0001 is not allowed/],
    [']]> in text', '<a>x ]]> y</a>', 1, /']]>' is not allowed/],
    ['unclosed CDATA', '<a><![CDATA[ x </a>', 1, /CDATA section is not closed/],
    ['declaration inside the root', '<a>\n<!ELEMENT a ANY>\n</a>', 2, /declarations are only allowed before/],
    ['an entity declaration', '<!DOCTYPE a [\n<!ENTITY x "y">]>\n<a/>', 2, /declarations inside <!DOCTYPE \[ ... \]> are not supported/],
    ['a default attribute declaration', '<!DOCTYPE a [ <!ATTLIST allow send_type CDATA "signal"> ]><a/>', 1, /declarations inside <!DOCTYPE/],
    ['a malformed xml declaration', '<?xml encoding="UTF-8" version="1.0"?><a/>', 1, /<\?xml\?> declaration is not well-formed/],
    ['a reserved processing instruction', '<a>\n<?XML x?></a>', 2, /target 'XML' is reserved/],
    ['a bad public identifier', '<!DOCTYPE a PUBLIC "{x}" "y">\n<a/>', 1, /illegal character in the public identifier/],
  ])('rejects %s with file and line', (_what, text, line, message) => {
    const error = expectConfigError(() => parseXml(text, '/etc/x.conf'), 'CONFIG_XML', '/etc/x.conf', line);
    expect(error.message).toMatch(message);
  });
});

describe('parseXml (properties)', () => {
  interface Tree {
    name: string;
    attributes: Record<string, string>;
    children: (Tree | string)[];
  }
  const xmlChars = fc
    .string({ unit: 'binary', maxLength: 12 })
    .map((text) => text.replace(/[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/g, ''));
  const name = fc.stringMatching(/^[A-Za-z_][-A-Za-z0-9_.]{0,6}$/);
  const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
    tree: fc.record({
      name,
      attributes: fc.dictionary(name, xmlChars, { maxKeys: 3 }),
      children: fc
        .array(
          fc.oneof(
            { maxDepth: 3, depthIdentifier: 'xml' },
            xmlChars.filter((text) => text.length > 0),
            tie('tree'),
          ),
          { maxLength: 4 },
        )
        // Adjacent text nodes are one node in XML.
        .map((children) => children.filter((child, i) => typeof child !== 'string' || typeof children[i - 1] !== 'string')),
    }),
  }));
  const escapeText = (text: string): string =>
    text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');
  const escapeAttribute = (text: string): string =>
    escapeText(text).replace(/"/g, '&quot;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;');
  const write = (node: Tree): string =>
    `<${node.name}${Object.entries(node.attributes)
      .map(([key, value]) => ` ${key}="${escapeAttribute(value)}"`)
      .join('')}>${node.children.map((child) => (typeof child === 'string' ? escapeText(child) : write(child))).join('')}</${node.name}>`;
  const strip = (node: XmlNode): Tree | string =>
    node.kind === 'text'
      ? node.text
      : { name: node.name, attributes: { ...node.attributes }, children: node.children.map(strip) };

  it('reads back any tree it is given, text and attributes exactly', () => {
    fc.assert(
      fc.property(tree, (root) => {
        expect(strip(parseXml(write(root), 'gen.conf'))).toEqual(root);
      }),
      { numRuns: 300 },
    );
  });

  it('never fails with anything but a ConfigError (fuzz)', () => {
    const seed = SESSION_CONF;
    const mutated = fc
      .tuple(fc.nat({ max: seed.length }), fc.nat({ max: 20 }), fc.string({ maxLength: 8 }))
      .map(([at, cut, insert]) => seed.slice(0, at) + insert + seed.slice(at + cut));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 60 }), mutated), (text) => {
        try {
          parseConfig(text, '/fuzz/x.conf', { fs: { readFile: () => bus(''), readDir: () => [] }, selinuxEnabled: false });
        } catch (error) {
          expect(error).toBeInstanceOf(ConfigError);
          expect((error as ConfigError).line === undefined || (error as ConfigError).line! >= 1).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('readConfig on a session.conf-shaped file', () => {
  it('reads type, listen, auth, policy and limits, and warns about the rest', () => {
    const dir = tree({ 'session.conf': SESSION_CONF });
    const file = path.join(dir, 'session.conf');
    const config = readConfig(file, { selinuxEnabled: false });
    expect(config.type).toBe('session');
    expect(config.listen).toEqual(['unix:tmpdir=/tmp']);
    expect(config.auth).toEqual(['EXTERNAL']);
    expect(Object.keys(config.limits)).toHaveLength(15);
    expect(config.limits.max_message_size).toBe(1_000_000_000);
    expect(config.limits.max_replies_per_connection).toBe(50_000);
    expect(config.policies).toEqual([
      {
        selector: { context: 'default' },
        source: { file, line: 19 },
        rules: [
          { kind: 'allow', attributes: { send_destination: '*', eavesdrop: 'true' }, source: { file, line: 21 }, appliesTo: 'send' },
          { kind: 'allow', attributes: { eavesdrop: 'true' }, source: { file, line: 23 }, appliesTo: 'receive' },
          { kind: 'allow', attributes: { own: '*' }, source: { file, line: 25 }, appliesTo: 'own' },
        ],
      },
    ]);
    expect(config.warnings).toEqual([`element <keep_umask> is not supported yet (${file}:11)`]);
    expect(config.serviceDirs).toEqual([{ kind: 'standard-session', source: { file, line: 17 } }]);
    expect(config.files).toEqual([file]);
    expect(config.directories).toEqual([path.join(dir, 'session.d')]);
  });

  it('with SELinux enabled, says the SELinux include was skipped', () => {
    const dir = tree({ 'session.conf': SESSION_CONF });
    const file = path.join(dir, 'session.conf');
    const config = readConfig(file, { selinuxEnabled: true });
    expect(config.warnings).toContain(
      `<include selinux_root_relative="yes">contexts/dbus_contexts</include> is not supported yet; skipped (${file}:31)`,
    );
  });
});

// Reads the machine's own dbus-daemon configuration: only where the dbus package is installed
// (.ci/run installs it, so CI always runs these).
describe.skipIf(!fs.existsSync('/usr/share/dbus-1/system.conf'))('the stock configuration files on this machine', () => {
  it('reads session.conf without errors', () => {
    const config = readConfig('/usr/share/dbus-1/session.conf', { selinuxEnabled: false });
    expect(config.type).toBe('session');
    expect(config.auth).toContain('EXTERNAL');
    expect(config.listen.length).toBeGreaterThan(0);
    expect(config.warnings.every((warning) => /\(\/.+:\d+\)$/.test(warning))).toBe(true);
  });

  it('reads system.conf and every system.d file it includes', () => {
    const config = readConfig('/usr/share/dbus-1/system.conf', { selinuxEnabled: false });
    expect(config.type).toBe('system');
    expect(config.listen).toEqual([SYSTEM_BUS_ADDRESS]);
    expect(config.auth).toEqual(['EXTERNAL']);
    expect(config.files[0]).toBe('/usr/share/dbus-1/system.conf');
    expect(config.directories).toEqual(['/usr/share/dbus-1/system.d', '/etc/dbus-1/system.d']);
    for (const element of ['user', 'fork', 'pidfile', 'syslog']) {
      expect(config.warnings.some((warning) => warning.startsWith(`element <${element}> is not supported yet (`))).toBe(true);
    }
    // Read and used: the service directories; the launch helper is not needed (ferrybus starts services itself).
    expect(config.serviceDirs?.map((d) => d.kind)).toEqual(['standard-system']);
    expect(config.warnings.some((warning) => /servicedirs|servicehelper/.test(warning))).toBe(false);
    const own = config.policies.filter((policy) => policy.source.file === '/usr/share/dbus-1/system.conf');
    const preset = systemConfig().policies;
    const strip = (policies: typeof own): unknown =>
      policies.map((policy) => ({
        selector: policy.selector,
        rules: policy.rules.map((rule) => ({ kind: rule.kind, attributes: rule.attributes })),
      }));
    // The --system preset carries exactly the stock policy.
    expect(strip(preset)).toEqual(strip(own));
  });
});

describe('merging', () => {
  it('lets the last <type> and <limit> win and keeps every <listen> and <auth> in order', () => {
    const config = parse(
      bus(`<type>session</type>
  <listen>unix:path=/a</listen>
  <listen>unix:abstract=b;unix:path=/c</listen>
  <auth>EXTERNAL</auth>
  <auth>ANONYMOUS</auth>
  <auth>EXTERNAL</auth>
  <limit name="auth_timeout">1</limit>
  <limit name="auth_timeout">  2  </limit>
  <type>
    custom
  </type>`),
    );
    expect(config.type).toBe('custom');
    expect(config.listen).toEqual(['unix:path=/a', 'unix:abstract=b;unix:path=/c']);
    expect(config.auth).toEqual(['EXTERNAL', 'ANONYMOUS']);
    expect(config.limits).toEqual({ auth_timeout: 2 });
  });

  it('leaves type unset and lists empty when the file says nothing', () => {
    const config = parse('<busconfig/>');
    expect(config.type).toBeUndefined();
    expect(config).toMatchObject({ listen: [], auth: [], limits: {}, policies: [], warnings: [] });
  });
});

describe('include and includedir', () => {
  it('resolves relative includes against the including file, at the point of inclusion', () => {
    const dir = tree({
      'main.conf': bus(`<listen>unix:path=/first</listen>
  <include>sub/one.conf</include>
  <listen>unix:path=/last</listen>`),
      'sub/one.conf': bus(`<type>from-one</type>
  <include>two.conf</include>`),
      'sub/two.conf': bus('<listen>unix:path=/two</listen>\n<fork/>'),
    });
    const config = readConfig(path.join(dir, 'main.conf'), { selinuxEnabled: false });
    expect(config.listen).toEqual(['unix:path=/first', 'unix:path=/two', 'unix:path=/last']);
    expect(config.type).toBe('from-one');
    expect(config.files).toEqual(['main.conf', 'sub/one.conf', 'sub/two.conf'].map((name) => path.join(dir, name)));
    expect(config.warnings).toEqual([`element <fork> is not supported yet (${path.join(dir, 'sub/two.conf')}:5)`]);
  });

  it('accepts absolute include paths', () => {
    const other = tree({ 'abs.conf': bus('<auth>EXTERNAL</auth>') });
    const config = parse(bus(`<include>${path.join(other, 'abs.conf')}</include>`));
    expect(config.auth).toEqual(['EXTERNAL']);
  });

  it('honours ignore_missing="yes" and fails on a missing include otherwise', () => {
    const dir = tree({
      'ok.conf': bus('<include ignore_missing="yes">nope.conf</include>'),
      'bad.conf': bus('\n<include ignore_missing="no">nope.conf</include>'),
      'default.conf': bus('<include>nope.conf</include>'),
      'weird.conf': bus('<include ignore_missing="maybe">nope.conf</include>'),
    });
    expect(readConfig(path.join(dir, 'ok.conf')).files).toEqual([path.join(dir, 'ok.conf')]);
    const error = expectConfigError(
      () => readConfig(path.join(dir, 'bad.conf')),
      'CONFIG_READ',
      path.join(dir, 'bad.conf'),
      5,
    );
    expect(error.message).toContain(path.join(dir, 'nope.conf'));
    expectConfigError(() => readConfig(path.join(dir, 'default.conf')), 'CONFIG_READ');
    expectConfigError(() => readConfig(path.join(dir, 'weird.conf')), 'CONFIG_INVALID');
  });

  it('includes the .conf files of a directory in sorted order and skips a missing directory', () => {
    const dir = tree({
      'main.conf': bus('<includedir>conf.d</includedir>\n<includedir>missing.d</includedir>'),
      'conf.d/20-b.conf': bus('<listen>unix:path=/b</listen>'),
      'conf.d/10-a.conf': bus('<listen>unix:path=/a</listen>'),
      'conf.d/30-c.conf.disabled': bus('<listen>unix:path=/c</listen>'),
      'conf.d/README': 'not xml',
    });
    const config = readConfig(path.join(dir, 'main.conf'));
    expect(config.listen).toEqual(['unix:path=/a', 'unix:path=/b']);
    expect(config.directories).toEqual([path.join(dir, 'conf.d'), path.join(dir, 'missing.d')]);
    expect(config.files).toHaveLength(3);
  });

  it('detects include loops, naming the chain', () => {
    const dir = tree({
      'a.conf': bus('<include>b.conf</include>'),
      'b.conf': bus('\n<include>a.conf</include>'),
      'self.conf': bus('<include>self.conf</include>'),
      'dir.conf': bus('<includedir>d</includedir>'),
      'd/loop.conf': bus('<include>../dir.conf</include>'),
    });
    const a = path.join(dir, 'a.conf');
    const b = path.join(dir, 'b.conf');
    const error = expectConfigError(() => readConfig(a), 'CONFIG_INCLUDE_LOOP', b, 5);
    expect(error.message).toContain(`${a} -> ${b} -> ${a}`);
    expectConfigError(() => readConfig(path.join(dir, 'self.conf')), 'CONFIG_INCLUDE_LOOP');
    expectConfigError(() => readConfig(path.join(dir, 'dir.conf')), 'CONFIG_INCLUDE_LOOP');
  });

  it('detects a loop through a symlink', () => {
    const dir = tree({ 'real.conf': bus('<include>link.conf</include>') });
    fs.symlinkSync(path.join(dir, 'real.conf'), path.join(dir, 'link.conf'));
    expectConfigError(() => readConfig(path.join(dir, 'real.conf')), 'CONFIG_INCLUDE_LOOP');
  });

  it('allows the same file twice when it is not a loop', () => {
    const dir = tree({
      'main.conf': bus('<include>common.conf</include>\n<include>common.conf</include>'),
      'common.conf': bus('<auth>EXTERNAL</auth>\n<listen>unix:path=/x</listen>'),
    });
    expect(readConfig(path.join(dir, 'main.conf')).listen).toEqual(['unix:path=/x', 'unix:path=/x']);
  });

  it('reports malformed included files with their own file and line', () => {
    const dir = tree({
      'main.conf': bus('<include>broken.conf</include>'),
      'broken.conf': '<busconfig>\n  <listen>unix:path=/x</listen>\n  <type>oops</typo>\n</busconfig>\n',
      'other-root.conf': bus('<include>not-bus.conf</include>'),
      'not-bus.conf': '<policy context="default"/>',
    });
    expectConfigError(() => readConfig(path.join(dir, 'main.conf')), 'CONFIG_XML', path.join(dir, 'broken.conf'), 3);
    const error = expectConfigError(
      () => readConfig(path.join(dir, 'other-root.conf')),
      'CONFIG_INVALID',
      path.join(dir, 'not-bus.conf'),
      1,
    );
    expect(error.message).toMatch(/root element must be <busconfig>, not <policy>/);
  });

  it('skips if_selinux_enabled includes without SELinux and reads them with it', () => {
    const dir = tree({
      'main.conf': bus('<include if_selinux_enabled="yes">selinux.conf</include>'),
      'selinux.conf': bus('<type>selinux</type>'),
    });
    expect(readConfig(path.join(dir, 'main.conf'), { selinuxEnabled: false }).type).toBeUndefined();
    expect(readConfig(path.join(dir, 'main.conf'), { selinuxEnabled: true }).type).toBe('selinux');
  });

  it('fails to read a missing root file with CONFIG_READ', () => {
    const missing = path.join(tmp, 'does-not-exist.conf');
    const error = expectConfigError(() => readConfig(missing), 'CONFIG_READ', missing);
    expect(error.line).toBeUndefined();
  });

  it('works over an injected file system', () => {
    const files: Record<string, string> = {
      '/cfg/main.conf': bus('<include>extra.conf</include>\n<includedir>/cfg/d</includedir>'),
      '/cfg/extra.conf': bus('<listen>unix:path=/x</listen>'),
      '/cfg/d/a.conf': bus('<auth>EXTERNAL</auth>'),
    };
    const missing = (p: string): Error => Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    const memory: ConfigFs = {
      readFile: (file) => {
        const text = files[file];
        if (text === undefined) throw missing(file);
        return text;
      },
      readDir: (dir) => {
        const names = Object.keys(files)
          .filter((file) => path.dirname(file) === dir)
          .map((file) => path.basename(file));
        if (names.length === 0) throw missing(dir);
        return names;
      },
    };
    const config = readConfig('/cfg/main.conf', { fs: memory, selinuxEnabled: false });
    expect(config).toMatchObject({ listen: ['unix:path=/x'], auth: ['EXTERNAL'], files: Object.keys(files) });
  });
});

describe('service directories', () => {
  it('are read in file order: <servicedir> resolved against the config file, the standard sets by kind', () => {
    const file = path.join(tmp, 'inline.conf');
    const config = parse(`<busconfig>
<servicedir>services</servicedir>
<standard_system_servicedirs/>
<servicedir>/abs/dir</servicedir>
<standard_session_servicedirs/>
<servicehelper>/usr/lib/dbus-1.0/dbus-daemon-launch-helper</servicehelper>
</busconfig>`);
    expect(config.serviceDirs).toEqual([
      { kind: 'dir', path: path.join(tmp, 'services'), source: { file, line: 2 } },
      { kind: 'standard-system', source: { file, line: 3 } },
      { kind: 'dir', path: '/abs/dir', source: { file, line: 4 } },
      { kind: 'standard-session', source: { file, line: 5 } },
    ]);
    expect(config.warnings).toEqual([]);
  });

  it('are checked as dbus-daemon checks them', () => {
    expect(() => parse('<busconfig><servicedir/></busconfig>')).toThrow(ConfigError);
    expect(() => parse('<busconfig><servicedir a="b">/x</servicedir></busconfig>')).toThrow(/Attribute "a" is invalid/);
    expect(() => parse('<busconfig><standard_system_servicedirs>x</standard_system_servicedirs></busconfig>')).toThrow(ConfigError);
  });
});

describe('elements ferrybus does not support yet', () => {
  it('are each reported with file and line, in order', () => {
    const elements = [
      '<user>messagebus</user>',
      '<fork/>',
      '<keep_umask/>',
      '<syslog/>',
      '<pidfile>/run/dbus/pid</pidfile>',
      '<allow_anonymous/>',
      '<selinux><associate own="org.foo" context="foo_t"/></selinux>',
      '<apparmor mode="enabled"/>',
    ];
    const file = path.join(tmp, 'inline.conf');
    const config = parse(`<busconfig>\n${elements.join('\n')}\n</busconfig>`);
    expect(config.warnings).toEqual(
      elements.map((element, index) => {
        const name = /^<(\w+)/.exec(element)![1];
        return `element <${name}> is not supported yet (${file}:${index + 2})`;
      }),
    );
  });

  it('are still checked as dbus-daemon checks them', () => {
    const file = path.join(tmp, 'inline.conf');
    for (const [body, message] of [
      ['<fork>now</fork>', /text is not allowed inside <fork>/],
      ['<user colour="red">messagebus</user>', /Attribute "colour" is invalid on <user> element/],
      ['<pidfile></pidfile>', /<pidfile> must not be empty/],
      ['<apparmor mode="plaintive"/>', /Mode attribute on <apparmor> must have value/],
      ['<selinux><associate own="org.foo"/></selinux>', /<associate> must have attributes own=/],
      ['<selinux><policy context="default"/></selinux>', /Element <policy> not allowed inside <selinux>/],
    ] as const) {
      expect(expectConfigError(() => parse(bus(body)), 'CONFIG_INVALID', file, 4).message).toMatch(message);
    }
  });
});

describe('what dbus-daemon refuses is an error, never a warning', () => {
  const file = (): string => path.join(tmp, 'inline.conf');
  it.each<[string, string, RegExp]>([
    ['an element outside the format', '<frobnicate x="1"><deep/></frobnicate>', /Element <frobnicate> not allowed inside <busconfig>/],
    ['an unknown limit', '<limit name="max_fun">3</limit>', /There is no limit called "max_fun"/],
    ['an unknown attribute of <include>', '<include ignore_missing="yes" colour="red">nothing.conf</include>', /Attribute "colour" is invalid on <include>/],
    ['an unknown attribute of a rule', '<policy context="default"><allow own="*" sparkle="yes"/></policy>', /Attribute "sparkle" is invalid on <allow>/],
    ['an unknown attribute of <policy>', '<policy context="default" hat="top"/>', /Attribute "hat" is invalid on <policy>/],
    ['an attribute of <listen>', '<listen carefully="yes">unix:path=/x</listen>', /Attribute "carefully" is invalid on <listen>/],
    ['a send rule with a receive attribute', '<policy context="default"><allow receive_type="signal" send_destination="a.b"/></policy>', /send and receive attributes cannot be combined/],
    ['own with a message attribute', '<policy context="default"><allow own="a.b" send_type="signal"/></policy>', /cannot be combined/],
    ['a member without interface or path', '<policy context="default"><deny send_member="Reboot"/></policy>', /if you specify a member you must specify an interface or a path/],
    ['a bad message type', '<policy context="default"><deny send_type="call"/></policy>', /Bad message type "call"/],
    ['a bad boolean', '<policy context="default"><allow send_destination="a.b" send_requested_reply="yes"/></policy>', /Bad value "yes" for send_requested_reply/],
    ['a broadcast with a destination', '<policy context="default"><allow send_broadcast="true" send_destination="a.b"/></policy>', /cannot match anything/],
    ['a user rule in a user policy', '<policy user="root"><allow user="*"/></policy>', /cannot be per-user/],
    ['a bad fd count', '<policy context="default"><allow send_destination="a.b" max_fds="-1"/></policy>', /Bad value "-1" for max_fds/],
    ['an unknown auth mechanism', '<auth>KERBEROS</auth>', /Unsupported auth mechanism "KERBEROS"/],
    ['an attribute on <busconfig>', '', /Attribute "a" is invalid on <busconfig>/],
  ])('%s', (what, body, message) => {
    const text = what === 'an attribute on <busconfig>' ? '<busconfig a="b">\n</busconfig>' : bus(body);
    const error = expectConfigError(() => parse(text), 'CONFIG_INVALID', file());
    expect(error.line).toBeGreaterThanOrEqual(1);
    expect(error.message).toMatch(message);
  });

  it('says what each rule applies to, as dbus-daemon classifies it', () => {
    const config = parse(
      bus(`<policy context="default">
  <allow send_destination="a.b" eavesdrop="true"/>
  <allow eavesdrop="true"/>
  <allow receive_sender="a.b" max_fds="0"/>
  <allow own_prefix="a.b"/>
  <allow user="*"/>
  <deny group="wheel"/>
</policy>`),
    );
    expect(config.policies[0]!.rules.map((rule) => rule.appliesTo)).toEqual(['send', 'receive', 'receive', 'own', 'connect', 'connect']);
  });

  it('warns where dbus-daemon accepts a rule that can never match', () => {
    const file = path.join(tmp, 'inline.conf');
    const config = parse(bus('<policy context="default"><allow send_destination="not a name"/><allow own="a.b" log="yes"/></policy>'));
    expect(config.warnings).toEqual([
      `send_destination="not a name" on <allow> is not a bus name, so the rule never matches anything (${file}:4)`,
      `log="yes" on <allow> is read as "false", as dbus-daemon reads anything but "true" (${file}:4)`,
    ]);
  });

  it('reads limits as dbus-daemon does (hexadecimal, octal with a warning) and refuses trailing garbage', () => {
    const file = path.join(tmp, 'inline.conf');
    const config = parse(
      bus(`<limit name="max_names_per_connection">0x10</limit>
<limit name="max_replies_per_connection">010</limit>
<limit name="max_message_size">9223372036854775807</limit>`),
    );
    expect(config.limits).toEqual({ max_names_per_connection: 16, max_replies_per_connection: 8, max_message_size: 2 ** 63 });
    expect(config.warnings).toEqual([
      `<limit name="max_replies_per_connection">010</limit> starts with 0, so it is octal: 8, as dbus-daemon reads it (${file}:5)`,
    ]);
    expect(expectConfigError(() => parse(bus('<limit name="auth_timeout">08</limit>')), 'CONFIG_INVALID').message).toMatch(
      /write the number alone/,
    );
  });

  it('keeps <include> paths as written, spaces and all, and says so', () => {
    const dir = tree({ 'main.conf': bus('<include ignore_missing="yes"> other.conf</include>'), 'other.conf': bus('<type>x</type>') });
    const config = readConfig(path.join(dir, 'main.conf'));
    expect(config.type).toBeUndefined();
    expect(config.warnings).toEqual([
      `<include> path " other.conf" has spaces or line breaks around it, which are part of the path (as in dbus-daemon) (${path.join(dir, 'main.conf')}:4)`,
    ]);
  });

  it('refuses a file that is not UTF-8, naming the line', () => {
    const dir = tree({});
    const file = path.join(dir, 'latin1.conf');
    fs.writeFileSync(file, Buffer.from('<busconfig>\n<type>caf\xe9</type>\n</busconfig>\n', 'latin1'));
    const error = expectConfigError(() => readConfig(file), 'CONFIG_XML', file, 2);
    expect(error.message).toMatch(/byte 0xe9 .* is not valid UTF-8/);
  });
});

describe('policy', () => {
  it('keeps every selector kind and the rules in order', () => {
    const config = parse(
      bus(`<policy context="mandatory"><deny send_interface="a.b" send_destination="c.d"/></policy>
<policy user="root"><allow own_prefix="org.x"/></policy>
<policy group="wheel"><allow send_destination="org.y" send_type="method_call"/></policy>
<policy at_console="true"><allow receive_sender="*" max_fds="0"/></policy>
<policy at_console="false"/>`),
    );
    const file = path.join(tmp, 'inline.conf');
    expect(config.policies.map((policy) => policy.selector)).toEqual([
      { context: 'mandatory' },
      { user: 'root' },
      { group: 'wheel' },
      { atConsole: true },
      { atConsole: false },
    ]);
    expect(config.policies[0]!.rules).toEqual([
      {
        kind: 'deny',
        attributes: { send_interface: 'a.b', send_destination: 'c.d' },
        source: { file, line: 4 },
        appliesTo: 'send',
      },
    ]);
    expect(config.policies[4]!.rules).toEqual([]);
    // dbus-daemon asks logind; ferrybus keeps the policy for the compiler and says it cannot.
    expect(config.warnings).toEqual([
      expect.stringMatching(new RegExp(`^<policy at_console="true"> never matches in ferrybus.*\\(${file}:7\\)$`)),
      expect.stringMatching(new RegExp(`^<policy at_console="false"> never matches in ferrybus.*\\(${file}:8\\)$`)),
    ]);
  });

  it.each<[string, string, RegExp]>([
    ['no selector', '<policy/>', /exactly one of \(context\|user\|group\|at_console\)/],
    ['two selectors', '<policy context="default" user="root"/>', /exactly one of/],
    ['bad context', '<policy context="sometimes"/>', /"default" or "mandatory"/],
    ['bad at_console', '<policy at_console="yes"/>', /"true" or "false"/],
    ['empty user', '<policy user=""/>', /must not be empty/],
    ['foreign child', '<policy context="default"><listen>unix:path=/x</listen></policy>', /<listen> is not allowed inside <policy>/],
    ['rule without attributes', '<policy context="default"><allow/></policy>', /must have one or more attributes/],
    ['rule with content', '<policy context="default"><deny own="*">x</deny></policy>', /text is not allowed inside <deny>/],
    ['text in a policy', '<policy context="default">words</policy>', /text is not allowed inside <policy>/],
    ['rule outside a policy', '<allow own="*"/>', /only allowed inside <policy>/],
  ])('rejects %s with file and line', (_what, element, message) => {
    const error = expectConfigError(() => parse(bus(element)), 'CONFIG_INVALID', path.join(tmp, 'inline.conf'), 4);
    expect(error.message).toMatch(message);
  });
});

describe('invalid content', () => {
  it.each<[string, string, RegExp]>([
    ['an empty listen', '<listen>  </listen>', /<listen> must not be empty/],
    ['an element inside listen', '<listen><b/></listen>', /<b> is not allowed inside <listen>/],
    ['an empty type', '<type/>', /<type> must not be empty/],
    ['a bad auth mechanism', '<auth>EXTERNAL ANONYMOUS</auth>', /Unsupported auth mechanism "EXTERNAL ANONYMOUS"/],
    ['a limit without a name', '<limit>5</limit>', /must have a "name" attribute/],
    ['a negative limit', '<limit name="auth_timeout">-1</limit>', /must be a positive number/],
    ['a fractional limit', '<limit name="auth_timeout">1.5</limit>', /write the number alone/],
    ['a huge limit', '<limit name="auth_timeout">99999999999999999999</limit>', /out of the range of a 64-bit integer/],
    ['a limit too large for an int', '<limit name="auth_timeout">2147483648</limit>', /value is too large/],
    ['an empty include', '<include></include>', /<include> must not be empty/],
    ['text in busconfig', 'stray words', /text is not allowed inside <busconfig>/],
    ['a nested busconfig', '<busconfig/>', /cannot be nested/],
  ])('rejects %s with file and line', (_what, body, message) => {
    const error = expectConfigError(() => parse(bus(body)), 'CONFIG_INVALID', path.join(tmp, 'inline.conf'), 4);
    expect(error.message).toMatch(message);
  });

  it('rejects a root other than <busconfig>', () => {
    expectConfigError(() => parse('<config/>'), 'CONFIG_INVALID', path.join(tmp, 'inline.conf'), 1);
  });
});

describe('presets', () => {
  it('--session listens at the default address with EXTERNAL and allows everything', () => {
    const config = sessionConfig({ uid: 1000, env: { XDG_RUNTIME_DIR: '/run/user/1000' } });
    expect(config.type).toBe('session');
    expect(config.listen).toEqual(['unix:path=/run/user/1000/ferrybus/bus']);
    expect(config.auth).toEqual(['EXTERNAL']);
    expect(config.limits.max_message_size).toBe(1_000_000_000);
    expect(Object.keys(config.limits)).toHaveLength(15);
    expect(config.policies).toHaveLength(1);
    expect(config.policies[0]!.selector).toEqual({ context: 'default' });
    expect(config.policies[0]!.source.file).toBe('<session preset>');
    expect(config.warnings).toEqual([]);
    expect(config.files).toEqual([]);
    expect(config.directories).toEqual([]);
    expect(sessionConfig({ uid: 0, env: {} }).listen).toEqual(['unix:path=/run/ferrybus/bus']);
  });

  it('--session has the same limits and policy as the stock-shaped session.conf', () => {
    const dir = tree({ 'session.conf': SESSION_CONF });
    const stock = readConfig(path.join(dir, 'session.conf'), { selinuxEnabled: false });
    const preset = sessionConfig({ uid: 1000, env: {} });
    expect(preset.limits).toEqual(stock.limits);
    const rules = (config: BusConfig): unknown => config.policies.map((policy) => policy.rules.map((rule) => rule.attributes));
    expect(rules(preset)).toEqual(rules(stock));
  });

  it('--system listens on the system bus socket with EXTERNAL and the default-deny policy', () => {
    const config = systemConfig();
    expect(config.type).toBe('system');
    expect(config.listen).toEqual(['unix:path=/run/dbus/system_bus_socket']);
    expect(config.auth).toEqual(['EXTERNAL']);
    expect(config.limits).toEqual({});
    expect(config.policies.map((policy) => policy.selector)).toEqual([
      { context: 'default' },
      { user: 'root' },
      { user: 'root' },
      { user: 'root' },
    ]);
    expect(config.policies[0]!.rules.slice(0, 3).map((rule) => [rule.kind, rule.attributes])).toEqual([
      ['allow', { user: '*' }],
      ['deny', { own: '*' }],
      ['deny', { send_type: 'method_call' }],
    ]);
    expect(config.warnings).toEqual([]);
  });

  it('returns a fresh object each time', () => {
    const first = systemConfig();
    first.listen.push('unix:path=/tmp/x');
    expect(systemConfig().listen).toEqual([SYSTEM_BUS_ADDRESS]);
  });
});

// dbus's own test data (Debian package dbus-tests; .ci/run installs it). The expectation comes
// from the directory: dbus-daemon refuses every file in invalid-config-files and reads every
// file in valid-config-files*, which is what dbus's test config-parser checks (only the .conf
// files directly inside; the subdirectories hold files they include).
const DBUS_TEST_DATA = ['/usr/lib/dbus-1.0/installed-tests/dbus/data', '/usr/lib/dbus-1.0/debug-build/libexec/installed-tests/dbus/data'].find(
  (dir) => fs.existsSync(path.join(dir, 'invalid-config-files')),
);
const confFiles = (dir: string): string[] =>
  fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => name.endsWith('.conf')).sort() : [];

// The reference's own test configs ship in dbus-tests (.ci/run installs it, so CI runs these).
describe.skipIf(DBUS_TEST_DATA === undefined)('dbus-daemon test data (needs the dbus-tests package)', () => {
  const data = DBUS_TEST_DATA ?? '';
  const invalidDir = path.join(data, 'invalid-config-files');

  describe('invalid-config-files: refused with file, line and reason', () => {
    it.each(confFiles(invalidDir))('%s', (name) => {
      const file = path.join(invalidDir, name);
      let error: unknown;
      try {
        readConfig(file, { selinuxEnabled: false });
      } catch (caught) {
        error = caught;
      }
      expect(error, `${name} was accepted`).toBeInstanceOf(ConfigError);
      const config = error as ConfigError;
      // circular-2.conf includes circular-3.conf, whose <include> closes the loop.
      expect(path.dirname(config.file)).toBe(invalidDir);
      expect(config.line).toBeGreaterThanOrEqual(1);
      expect(config.message).toMatch(new RegExp(`^${config.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: \\S`));
    });
  });

  for (const dirName of ['valid-config-files', 'valid-config-files-system']) {
    const dir = path.join(data, dirName);
    describe(`${dirName}: accepted`, () => {
      it.each(confFiles(dir))('%s', (name) => {
        const config = readConfig(path.join(dir, name), { selinuxEnabled: false });
        expect(config.files[0]).toBe(path.join(dir, name));
        expect(config.warnings.every((warning) => /\(\/.+:\d+\)$/.test(warning))).toBe(true);
      });
    });
  }

  it('valid-config-files/entities.conf has its entities expanded', () => {
    const file = path.join(data, 'valid-config-files', 'entities.conf');
    const config = readConfig(file, { selinuxEnabled: false });
    // dbus-daemon reads this address too and fails only when it listens on it.
    expect(config.listen[0]).toBe('unix:path=/foo/<bar>');
    expect(() => checkListenAddresses(config)).toThrow(/bad <listen> address 'unix:path=\/foo\/<bar>'.*should have been escaped/);
    expect(config.policies[0]!.selector).toEqual({ context: 'default' });
    expect(config.directories[0]).toBe(path.join(data, 'valid-config-files', 'basic.d'));
    expect(config.files).toContain(path.join(data, 'valid-config-files', 'basic.d', 'basic.conf'));
  });

  // What must not change between the files of one equiv-config-files directory.
  const meaning = (config: BusConfig): unknown => ({
    type: config.type,
    listen: config.listen,
    auth: config.auth,
    limits: config.limits,
    directories: config.directories,
    policies: config.policies.map((policy) => ({
      selector: policy.selector,
      rules: policy.rules.map((rule) => ({ kind: rule.kind, attributes: rule.attributes, appliesTo: rule.appliesTo })),
    })),
    warnings: config.warnings.map((warning) => warning.replace(/ \(\/[^)]+\)$/, '')),
  });
  const equivDir = path.join(data, 'equiv-config-files');
  const equivSets = fs.existsSync(equivDir) ? fs.readdirSync(equivDir).sort() : [];
  it.each(equivSets)('equiv-config-files/%s: every file means the same', (set) => {
    const files = confFiles(path.join(equivDir, set));
    expect(files.length).toBeGreaterThan(1);
    const [first, ...rest] = files.map((name) => meaning(readConfig(path.join(equivDir, set, name), { selinuxEnabled: false })));
    for (const other of rest) expect(other).toEqual(first);
    // And the bus compiles them to the same rule lists.
    const [firstPolicy, ...restPolicies] = files.map(
      (name) => BusPolicy.compile(readConfig(path.join(equivDir, set, name), { selinuxEnabled: false }).policies, userDatabase(), 0).fingerprint,
    );
    for (const other of restPolicies) expect(other).toBe(firstPolicy);
  });
});

describe('listen addresses are checked before listening, not while reading', () => {
  it.each<[string, RegExp]>([
    ['unix path=/x', /colon/],
    ['unix:path=/a b', /should have been escaped/],
  ])('%s is a start-up error naming file and line', (address, message) => {
    const file = path.join(tmp, 'inline.conf');
    const config = parse(bus(`<listen>unix:path=/fine</listen>\n<listen>${address}</listen>`));
    const error = expectConfigError(() => checkListenAddresses(config), 'CONFIG_INVALID', file, 5);
    expect(error.message).toMatch(message);
    expect(error.message).toContain(`bad <listen> address '${address}'`);
  });

  it('accepts the stock session address unix:tmpdir=/tmp', () => {
    expect(() => checkListenAddresses(parse(bus('<listen>unix:tmpdir=/tmp</listen>')))).not.toThrow();
  });
});

describe('--system and --session', () => {
  const logs: string[] = [];
  const log: Logger = {
    debug: () => {},
    info: () => {},
    notice: () => {},
    warning: (event, message) => logs.push(`${event}: ${message}`),
    error: () => {},
  };

  it('take the stock file in /usr/share/dbus-1, else the one in /etc/dbus-1', () => {
    expect(stockConfigFile('system', () => true)).toBe('/usr/share/dbus-1/system.conf');
    expect(stockConfigFile('session', (file) => file.startsWith('/etc/'))).toBe('/etc/dbus-1/session.conf');
    expect(stockConfigFile('system', () => false)).toBeUndefined();
  });

  it('read the stock file with everything it includes', () => {
    const files: Record<string, string> = {
      '/usr/share/dbus-1/system.conf': bus('<type>system</type>\n<listen>unix:path=/run/x</listen>\n<includedir>system.d</includedir>\n<include ignore_missing="yes">/etc/dbus-1/system.conf</include>'),
      '/usr/share/dbus-1/system.d/a.conf': bus('<policy user="root"><allow own="org.a"/></policy>'),
      '/etc/dbus-1/system.conf': bus('<policy context="default"><allow own="org.local"/></policy>'),
    };
    const missing = (p: string): Error => Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    const memory: ConfigFs = {
      readFile: (file) => files[file] ?? (() => { throw missing(file); })(),
      readDir: (dir) => {
        const names = Object.keys(files).filter((file) => path.dirname(file) === dir).map((file) => path.basename(file));
        if (names.length === 0) throw missing(dir);
        return names;
      },
    };
    const config = loadConfig({ system: true }, log, { exists: (file) => file in files, read: { fs: memory, selinuxEnabled: false } })!;
    expect(config.files).toEqual(['/usr/share/dbus-1/system.conf', '/usr/share/dbus-1/system.d/a.conf', '/etc/dbus-1/system.conf']);
    expect(config.policies.map((policy) => policy.rules[0]!.attributes.own)).toEqual(['org.a', 'org.local']);
    const settings = settingsFromConfig({ system: true }, log, { exists: (file) => file in files, read: { fs: memory, selinuxEnabled: false } });
    expect(settings).toMatchObject({ kind: 'system', listen: ['unix:path=/run/x'] });
  });

  it('fall back to the built-in preset, with a warning, where dbus is not installed', () => {
    logs.length = 0;
    const config = loadConfig({ system: true }, log, { exists: () => false })!;
    expect(config.policies).toEqual(systemConfig().policies);
    expect(logs).toEqual([expect.stringMatching(/^config-stock-missing: --system: neither \/usr\/share\/dbus-1\/system.conf nor \/etc\/dbus-1\/system.conf exists.*built-in system preset/)]);
    logs.length = 0;
    expect(loadConfig({ session: true }, log, { exists: () => false })!.type).toBe('session');
    expect(logs).toHaveLength(1);
  });

  it('refuse, when read again (reload, handoff), stock files that are gone instead of falling back to the preset', () => {
    // After switch-root systemd empties the initramfs the bus still runs from: its files vanish.
    logs.length = 0;
    expect(() => loadConfig({ system: true }, log, { exists: () => false }, 'reread')).toThrow(
      /^--system: neither \/usr\/share\/dbus-1\/system.conf nor \/etc\/dbus-1\/system.conf exists any more \(is the root being emptied\?\)$/,
    );
    expect(logs).toEqual([]);
  });

  it('stop at start-up on a missing include', () => {
    const dir = tree({ 'system.conf': bus('<listen>unix:path=/x</listen>\n<include>gone.conf</include>') });
    const file = path.join(dir, 'system.conf');
    expectConfigError(() => loadConfig({ system: true }, log, { exists: (f) => f === '/usr/share/dbus-1/system.conf', read: { fs: { readFile: (f) => fs.readFileSync(f === '/usr/share/dbus-1/system.conf' ? file : f, 'utf8'), readDir: (d) => fs.readdirSync(d) } } }), 'CONFIG_READ', '/usr/share/dbus-1/system.conf', 5);
  });
});
