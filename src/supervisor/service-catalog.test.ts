import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectoryServiceCatalog, prepareTransientDir, resolveServiceDirs, STANDARD_SYSTEM_SERVICE_DIRS } from './service-catalog.js';
import { createLogger } from './logger.js';

const log = createLogger({ level: 'error' });
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrybus-services-'));
  dirs.push(d);
  return d;
}

function service(dir: string, file: string, name: string, exec = '/bin/true'): void {
  fs.writeFileSync(path.join(dir, file), `[D-BUS Service]\nName=${name}\nExec=${exec}\n`);
}

const source = { file: '/c.conf', line: 1 };

describe('the service catalog', () => {
  it('reads every directory; the first file naming a service wins', () => {
    const a = tempDir();
    const b = tempDir();
    service(a, 'com.example.One.service', 'com.example.One', '/bin/one-from-a');
    service(b, 'com.example.One.service', 'com.example.One', '/bin/one-from-b');
    service(b, 'com.example.Two.service', 'com.example.Two');
    fs.writeFileSync(path.join(b, 'broken.service'), 'not a service file');
    fs.writeFileSync(path.join(b, 'README'), 'ignored: not a .service file');
    const catalog = new DirectoryServiceCatalog([{ path: a, strictNaming: false, transient: false }, { path: b, strictNaming: false, transient: false }], log);
    expect([...catalog.names()].sort()).toEqual(['com.example.One', 'com.example.Two']);
    expect(catalog.lookup('com.example.One')?.exec).toBe('/bin/one-from-a');
  });

  it('finds a file dropped in after the scan, and forgets one removed, at the next lookup', () => {
    const a = tempDir();
    const catalog = new DirectoryServiceCatalog([{ path: a, strictNaming: false, transient: false }], log);
    expect(catalog.lookup('com.example.Late')).toBeUndefined();
    service(a, 'com.example.Late.service', 'com.example.Late');
    expect(catalog.lookup('com.example.Late')?.name).toBe('com.example.Late');
    fs.rmSync(path.join(a, 'com.example.Late.service'));
    expect(catalog.lookup('com.example.Late')).toBeUndefined();
  });

  it('reads a rewritten file again', () => {
    const a = tempDir();
    service(a, 'com.example.A.service', 'com.example.A', '/bin/old');
    const catalog = new DirectoryServiceCatalog([{ path: a, strictNaming: false, transient: false }], log);
    expect(catalog.lookup('com.example.A')?.exec).toBe('/bin/old');
    service(a, 'com.example.A.service', 'com.example.A', '/bin/new');
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(path.join(a, 'com.example.A.service'), later, later);
    expect(catalog.lookup('com.example.A')?.exec).toBe('/bin/new');
  });

  it('treats a missing directory as empty', () => {
    const catalog = new DirectoryServiceCatalog([{ path: '/nonexistent/ferrybus/services', strictNaming: false, transient: false }], log);
    expect(catalog.names()).toEqual([]);
  });
});

describe('service directories', () => {
  it('expand the standard sets as dbus-daemon does, without duplicates', () => {
    const env = { XDG_RUNTIME_DIR: '/run/user/1000', HOME: '/home/u', XDG_DATA_DIRS: '/usr/local/share:/usr/share' };
    const resolved = resolveServiceDirs([
      { kind: 'dir', path: '/usr/share/dbus-1/services', source },
      { kind: 'standard-session', source },
      { kind: 'standard-system', source },
    ], env);
    expect(resolved.map((d) => [d.path, d.transient])).toEqual([
      ['/usr/share/dbus-1/services', false],
      ['/run/user/1000/dbus-1/services', true],
      ['/home/u/.local/share/dbus-1/services', false],
      ['/usr/local/share/dbus-1/services', false],
      ...STANDARD_SYSTEM_SERVICE_DIRS.map((d) => [d, false]),
    ]);
    expect(resolved.find((d) => d.transient)?.strictNaming).toBe(true);
  });

  it('make the transient directory at start, private to the bus', () => {
    const runtime = tempDir();
    const dir = { path: path.join(runtime, 'dbus-1', 'services'), strictNaming: true, transient: true };
    expect(prepareTransientDir(dir, log)).toBe(true);
    expect(fs.statSync(dir.path).mode & 0o777).toBe(0o700);
  });
});
