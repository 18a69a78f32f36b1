import {
  EPOLLERR, EPOLLHUP, EPOLLOUT, MAX_EVENTS, READY_SIGNAL,
  epollControl, epollCreate, epollPoll, readyEvents, readyFd, setSignalOnReady,
} from '../sys/socket-io.js';

/** A socket waiting until it takes bytes again. */
export interface WritableHandler {
  onWritable(): void;
}

/**
 * Tells the transport when a socket whose write would have blocked takes bytes again (a slow
 * reader caught up). Node offers no writability notice for a socket it does not write itself,
 * so: the waiting sockets sit in one epoll set, the kernel raises a signal (SIGURG, via O_ASYNC)
 * when one of them becomes ready, and one epoll_wait(0) names which.
 *
 * Only blocked sockets are here (rare, and only until the reader catches up): readability of
 * every socket comes from libuv itself (readable-signal.ts), which costs no system call.
 */
export class Readiness {
  private readonly epfd: number;
  private readonly handlers = new Map<number, WritableHandler>();

  constructor() {
    this.epfd = epollCreate();
    process.on(READY_SIGNAL, () => this.pass());
  }

  /**
   * Calls `handler.onWritable()` once `fd` takes bytes again; then `unwatch` it. The caller must
   * try its write once more after this: room that appeared before arming raises no signal.
   */
  watchWritable(fd: number, handler: WritableHandler): void {
    if (this.handlers.has(fd)) return;
    this.handlers.set(fd, handler);
    epollControl(this.epfd, fd, EPOLLOUT, 'add');
    setSignalOnReady(fd, true);
  }

  /** Stops watching `fd`; call before it is closed, and once it is writable. */
  unwatch(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    epollControl(this.epfd, fd, 0, 'delete');
    try {
      setSignalOnReady(fd, false);
    } catch {
      // closed already: nothing to turn off
    }
  }

  /** Sockets waiting to be writable (for tests and status). */
  get size(): number {
    return this.handlers.size;
  }

  private pass(): void {
    if (this.handlers.size === 0) return;
    const n = epollPoll(this.epfd);
    // The event list is shared memory that the next poll overwrites: copy it out first.
    const ready: number[] = [];
    for (let i = 0; i < n; i++) if ((readyEvents(i) & (EPOLLOUT | EPOLLERR | EPOLLHUP)) !== 0) ready.push(readyFd(i));
    for (const fd of ready) this.handlers.get(fd)?.onWritable();
    if (n === MAX_EVENTS) setImmediate(() => this.pass());
  }
}

let shared: Readiness | undefined;

/** The process's one writability watcher (one signal handler, one epoll set). */
export function readiness(): Readiness {
  shared ??= new Readiness();
  return shared;
}
