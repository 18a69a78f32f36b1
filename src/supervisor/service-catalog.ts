// The activatable services: every `.service` file in the configured service directories, read
// as dbus-daemon reads them (bus/activation.c). Files are scanned at start and on reload; a
// lookup that misses, or finds a file that changed or vanished, looks again (one directory
// listing each), so a service file dropped in is usable at once, as with dbus-daemon.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ServiceCatalog, ServiceEntry } from '../bus/activation.js';
import type { ServiceDirConfig } from './config-types.js';
import type { Logger } from './logger.js';
import { parseServiceFile } from './service-file.js';

/** One directory to read, resolved. */
export interface ServiceDirectory {
  readonly path: string;
  /** Files must be named `<Name>.service` (dbus-daemon: the transient session directory). */
  readonly strictNaming: boolean;
  /** $XDG_RUNTIME_DIR/dbus-1/services: made by the bus at start, for services written at run time. */
  readonly transient: boolean;
}

/** dbus-daemon's <standard_system_servicedirs/> (its DBUS_DATADIR is /usr/share on Debian). */
export const STANDARD_SYSTEM_SERVICE_DIRS = [
  '/usr/local/share/dbus-1/system-services',
  '/usr/share/dbus-1/system-services',
  '/lib/dbus-1/system-services',
];

/**
 * Resolves the configured service directories, in order, without duplicates:
 * <standard_session_servicedirs/> is the transient $XDG_RUNTIME_DIR/dbus-1/services, then
 * $XDG_DATA_HOME (~/.local/share) and each of $XDG_DATA_DIRS (/usr/local/share:/usr/share)
 * with /dbus-1/services, then /usr/share/dbus-1/services.
 */
export function resolveServiceDirs(dirs: readonly ServiceDirConfig[], env: Readonly<Record<string, string | undefined>>): ServiceDirectory[] {
  const out: ServiceDirectory[] = [];
  const add = (dir: string, transient = false) => {
    if (!out.some((d) => d.path === dir)) out.push({ path: dir, strictNaming: transient, transient });
  };
  for (const d of dirs) {
    if (d.kind === 'dir') {
      add(d.path);
    } else if (d.kind === 'standard-system') {
      for (const dir of STANDARD_SYSTEM_SERVICE_DIRS) add(dir);
    } else {
      if (env.XDG_RUNTIME_DIR) add(path.join(env.XDG_RUNTIME_DIR, 'dbus-1', 'services'), true);
      const home = env.XDG_DATA_HOME ?? (env.HOME ? path.join(env.HOME, '.local', 'share') : undefined);
      if (home) add(path.join(home, 'dbus-1', 'services'));
      for (const dir of (env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share').split(':')) {
        if (dir !== '') add(path.join(dir, 'dbus-1', 'services'));
      }
      add('/usr/share/dbus-1/services');
    }
  }
  return out;
}

/**
 * Makes the transient service directory (and its parent) as dbus-daemon does, owned by the bus's
 * user and not writable by others; a directory that exists with other owners is not used.
 */
export function prepareTransientDir(dir: ServiceDirectory, log: Logger): boolean {
  try {
    fs.mkdirSync(dir.path, { recursive: true, mode: 0o700 });
    const parent = fs.statSync(path.dirname(dir.path));
    const st = fs.statSync(dir.path);
    const uid = process.getuid!();
    for (const s of [parent, st]) {
      if (s.uid !== uid || (s.mode & 0o022) !== 0) {
        log.warning('service-dir-unsafe', 'the transient service directory is not ours alone; not reading it', { dir: dir.path });
        return false;
      }
    }
    return true;
  } catch (err) {
    log.warning('service-dir-unusable', 'cannot make the transient service directory', { dir: dir.path, error: (err as Error).message });
    return false;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

interface Loaded {
  readonly entry: ServiceEntry;
  readonly mtimeMs: number;
}

export class DirectoryServiceCatalog implements ServiceCatalog {
  private byName = new Map<string, Loaded>();
  /** Each directory's .service files when last read: a lookup that misses reads again only if they changed. */
  private listings = new Map<string, string>();

  constructor(
    private readonly dirs: readonly ServiceDirectory[],
    private readonly log: Logger,
  ) {
    this.rescan();
  }

  get directories(): readonly string[] {
    return this.dirs.map((d) => d.path);
  }

  names(): readonly string[] {
    return [...this.byName.keys()];
  }

  lookup(name: string): ServiceEntry | undefined {
    const found = this.byName.get(name);
    if (found) {
      // The file was removed or rewritten since it was read: read the directories again.
      const mtime = mtimeOf(found.entry.file);
      if (mtime === found.mtimeMs) return found.entry;
      this.rescan();
      return this.byName.get(name)?.entry;
    }
    // Timestamps are too coarse to tell a file written a moment after the scan: compare listings.
    if (this.dirs.some((d) => listing(d.path).join('/') !== this.listings.get(d.path))) {
      this.rescan();
      return this.byName.get(name)?.entry;
    }
    return undefined;
  }

  /** Reads every directory again; returns whether the set of activatable names changed. */
  rescan(): boolean {
    const before = [...this.byName.keys()].sort().join('\n');
    const byName = new Map<string, Loaded>();
    for (const dir of this.dirs) {
      const files = listing(dir.path);
      this.listings.set(dir.path, files.join('/'));
      for (const fileName of files) {
        const file = path.join(dir.path, fileName);
        const loaded = this.load(file, fileName, dir);
        if (!loaded) continue;
        const already = byName.get(loaded.entry.name);
        if (already) {
          this.log.warning('service-file-duplicate', `service ${loaded.entry.name} is already provided by ${already.entry.file}; ${file} is ignored`);
          continue;
        }
        byName.set(loaded.entry.name, loaded);
      }
    }
    this.byName = byName;
    return before !== [...byName.keys()].sort().join('\n');
  }

  private load(file: string, fileName: string, dir: ServiceDirectory): Loaded | undefined {
    try {
      const st = fs.statSync(file);
      if (!st.isFile()) return undefined;
      const text = utf8.decode(fs.readFileSync(file));
      const parsed = parseServiceFile(text, file, fileName, dir.strictNaming);
      if (parsed.ignored.length > 0) {
        this.log.debug('service-file-keys-ignored', `${file}: keys not used by ferrybus: ${parsed.ignored.join(', ')}`);
      }
      return { entry: parsed.entry, mtimeMs: st.mtimeMs };
    } catch (err) {
      const reason = err instanceof TypeError ? 'invalid UTF-8' : (err as Error).message;
      this.log.warning('service-file-invalid', `${file} is not loaded: ${reason}`);
      return undefined;
    }
  }
}

/** The .service files of a directory, sorted (dbus-daemon leaves the order undefined); a missing directory is empty. */
function listing(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith('.service')).sort();
  } catch {
    return [];
  }
}

function mtimeOf(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}
