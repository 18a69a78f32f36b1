import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseServiceFile, ServiceFileError, splitExec } from './service-file.js';

const parse = (text: string, fileName = 'com.example.A.service', strict = false) => parseServiceFile(text, `/s/${fileName}`, fileName, strict);

describe('service files', () => {
  it('reads Name, Exec, User and SystemdService of the [D-BUS Service] section', () => {
    const { entry, ignored } = parse(`# a comment
[D-BUS Service]
Name=com.example.A
Exec=/usr/bin/a --flag
User = root
SystemdService=dbus-com.example.A.service
X-Custom=1

[Other]
Name=ignored
`);
    expect(entry).toEqual({
      name: 'com.example.A', exec: '/usr/bin/a --flag', user: 'root', systemdService: 'dbus-com.example.A.service', file: '/s/com.example.A.service',
    });
    expect(ignored).toEqual(['X-Custom']);
  });

  it('unescapes values as dbus-daemon does and ignores localized keys', () => {
    const { entry } = parse('[D-BUS Service]\nName=com.example.A\nName[de]=nope\nExec=/bin/echo a\\sb\\\\c\n');
    expect(entry.name).toBe('com.example.A');
    expect(entry.exec).toBe('/bin/echo a b\\c');
  });

  it.each([
    ['no service section', '[Desktop Entry]\nName=com.example.A\nExec=/bin/true\n', /no \[D-BUS Service\] section/],
    ['no Name', '[D-BUS Service]\nExec=/bin/true\n', /no Name=/],
    ['no Exec', '[D-BUS Service]\nName=com.example.A\n', /no Exec=/],
    ['a key before any section', 'Name=com.example.A\n', /key=value before \[Section\]/],
    ['a line without =', '[D-BUS Service]\nName com.example.A\n', /invalid characters in key name/],
    ['an unknown escape', '[D-BUS Service]\nName=com.example.A\nExec=/bin/\\q\n', /invalid escape sequence/],
    ['a broken section header', '[D-BUS Service\nName=com.example.A\n', /section header/],
  ])('refuses a file with %s', (_what, text, why) => {
    expect(() => parse(text)).toThrow(why);
  });

  it('insists on <Name>.service where names are strict (the transient directory)', () => {
    const text = '[D-BUS Service]\nName=com.example.A\nExec=/bin/true\n';
    expect(parse(text, 'other.service', false).entry.name).toBe('com.example.A');
    expect(() => parse(text, 'other.service', true)).toThrow(/should have been named "com.example.A.service"/);
  });
});

describe('Exec= lines', () => {
  it.each([
    ['/bin/a b  c', ['/bin/a', 'b', 'c']],
    [`/bin/a -test "that" 'we get' back --what "we put in"`, ['/bin/a', '-test', 'that', 'we get', 'back', '--what', 'we put in']],
    [`/bin/a "x\\"y" 'a\\b' c\\ d`, ['/bin/a', 'x"y', 'a\\b', 'c d']],
    [`/bin/sh -c 'exec foo "$X"'`, ['/bin/sh', '-c', 'exec foo "$X"']],
    ['/bin/a ""', ['/bin/a', '']],
  ])('splits %s as a shell would, without expansions', (line, argv) => {
    expect(splitExec(line)).toEqual(argv);
  });

  it('refuses an unterminated quote (dbus-daemon\'s TestSuiteShellEchoServiceFail)', () => {
    expect(() => splitExec(`/bin/a "this should 'fail' because of an unterminated quote`)).toThrow(ServiceFileError);
    expect(() => splitExec('')).toThrow(/names no program/);
  });
});

// libdbus's own test data (Debian package dbus-tests): what dbus-daemon loads, ferrybus loads.
const DATA = '/usr/lib/dbus-1.0/installed-tests/dbus/data';
describe.skipIf(!fs.existsSync(DATA))('libdbus\'s service file test data (needs dbus-tests)', () => {
  const read = (dir: string) => fs.readdirSync(path.join(DATA, dir)).filter((f) => f.endsWith('.service'))
    .map((f) => [f, fs.readFileSync(path.join(DATA, dir, f), 'utf8')] as const);

  it('loads every file of valid-service-files, named after its service', () => {
    for (const [f, text] of read('valid-service-files')) {
      expect(parse(text, f, true).entry.name, f).toBe(f.replace(/\.service$/, ''));
    }
  });

  it('refuses the files of invalid-service-files-system that lack Name or Exec', () => {
    const verdicts = Object.fromEntries(read('invalid-service-files-system').map(([f, text]) => {
      try {
        parse(text, f);
        return [f, 'loaded'];
      } catch (err) {
        return [f, (err as Error).message];
      }
    }));
    expect(verdicts['org.freedesktop.DBus.TestSuiteNoExec.service']).toMatch(/no Exec=/);
    expect(verdicts['org.freedesktop.DBus.TestSuiteNoService.service']).toMatch(/no Name=/);
    // Without User= it loads; a system bus refuses to run it (Spawn.FileInvalid, see activation.test.ts).
    expect(verdicts['org.freedesktop.DBus.TestSuiteNoUser.service']).toBe('loaded');
  });
});
