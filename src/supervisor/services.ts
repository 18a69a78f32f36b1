// The supervisor's side of service activation: which directories hold the service files, the
// catalog read from them, the launcher that runs Exec= lines, and the watch that rescans the
// directories when they change. The decisions are the bus core's (src/bus/activation.ts).

import type { FSWatcher } from 'chokidar';
import { watchFiles } from './file-watch.js';
import type { Bus } from '../bus/bus.js';
import type { ServiceDirConfig } from './config-types.js';
import type { Logger } from './logger.js';
import { DirectoryServiceCatalog, prepareTransientDir, resolveServiceDirs } from './service-catalog.js';
import { ProcessLauncher } from './service-launcher.js';

export class Services {
  private catalog: DirectoryServiceCatalog;
  readonly launcher: ProcessLauncher;
  private watcher: FSWatcher | undefined;
  /** The address activated programs are given (set once the bus listens). */
  address = '';

  constructor(
    private readonly bus: Bus,
    dirs: readonly ServiceDirConfig[],
    systemdActivation: boolean,
    private readonly log: Logger,
  ) {
    this.launcher = new ProcessLauncher(() => this.address, (pid, status) => bus.activator.childExited(pid, status), log);
    this.catalog = this.read(dirs);
    bus.activator.catalog = this.catalog;
    bus.activator.launcher = this.launcher;
    bus.activator.systemdActivation = systemdActivation;
  }

  private read(dirs: readonly ServiceDirConfig[]): DirectoryServiceCatalog {
    const resolved = resolveServiceDirs(dirs, process.env);
    const usable = resolved.filter((d) => !d.transient || prepareTransientDir(d, this.log));
    const catalog = new DirectoryServiceCatalog(usable, this.log);
    if (usable.length > 0) {
      this.log.info('services-loaded', 'activatable services read', { services: catalog.names().length, directories: usable.map((d) => d.path).join(' ') });
    }
    return catalog;
  }

  /** A reload: the directories may have changed; read them all again. */
  reload(dirs: readonly ServiceDirConfig[]): void {
    const before = [...this.catalog.names()].sort().join(' ');
    this.catalog = this.read(dirs);
    this.bus.activator.catalog = this.catalog;
    if ([...this.catalog.names()].sort().join(' ') !== before) {
      this.log.notice('services-changed', 'the set of activatable services changed', { services: this.catalog.names().length });
    }
    this.watch();
  }

  /** Rescans when a file in a service directory is added, changed or removed (bursts become one rescan). */
  watch(): FSWatcher | undefined {
    void this.watcher?.close();
    this.watcher = undefined;
    const dirs = this.catalog.directories;
    if (dirs.length === 0) return undefined;
    const watcher = watchFiles([...dirs], { ignoreInitial: true, depth: 0 });
    if (!watcher) return undefined; // not loaded yet: the daemon watches once it is
    let timer: NodeJS.Timeout | undefined;
    watcher.on('all', () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = undefined;
        if (this.catalog.rescan()) this.log.notice('services-changed', 'the set of activatable services changed', { services: this.catalog.names().length });
      }, 200);
    });
    watcher.on('error', (err) => this.log.warning('service-watch-failed', 'cannot watch the service directories', { error: String(err) }));
    this.watcher = watcher;
    return watcher;
  }
}
