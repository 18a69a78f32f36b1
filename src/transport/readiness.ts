import {
  EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, MAX_EVENTS,
  READY_SIGNAL, epollControl, epollCreate, epollPoll, readyEvents, readyFd, setSignalOnReady,
} from '../sys/socket-io.js';

/** A socket the readiness loop serves. */
export interface ReadyHandler {
  /** Reads once; true when more may be waiting (a full read, or fds that end a read early). */
  onReadable(): boolean;
  onWritable(): void;
}

/**
 * Tells the transport which client sockets are ready without reading them, inside Node's own
 * event loop: every socket sits in one epoll set, and the kernel raises a signal (SIGURG, via
 * O_ASYNC) when one becomes ready, whereupon one epoll_wait(0) names them.
 *
 * Each socket gets one read per pass; a socket that may have more waits for the next pass
 * (setImmediate), so one busy client cannot keep the others waiting.
 */
export class Readiness {
  private readonly epfd: number;
  private readonly handlers = new Map<number, ReadyHandler>();
  private readonly writeWanted = new Set<number>();
  private passScheduled = false;

  constructor() {
    this.epfd = epollCreate();
    process.on(READY_SIGNAL, () => this.pass());
  }

  /** Serves `fd` from now on; data that is already waiting is read on the next pass. */
  watch(fd: number, handler: ReadyHandler): void {
    this.handlers.set(fd, handler);
    epollControl(this.epfd, fd, EPOLLIN, 'add');
    setSignalOnReady(fd, true);
    this.schedulePass();
  }

  /** Stops serving `fd`; call before it is closed. */
  unwatch(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    this.writeWanted.delete(fd);
    epollControl(this.epfd, fd, 0, 'delete');
  }

  /** Asks to be told when `fd` takes bytes again (after a write that would block), or not. */
  wantWritable(fd: number, on: boolean): void {
    if (on === this.writeWanted.has(fd) || !this.handlers.has(fd)) return;
    if (on) this.writeWanted.add(fd);
    else this.writeWanted.delete(fd);
    epollControl(this.epfd, fd, on ? EPOLLIN | EPOLLOUT : EPOLLIN, 'modify');
  }

  /** Number of sockets served (for tests and status). */
  get size(): number {
    return this.handlers.size;
  }

  private schedulePass(): void {
    if (this.passScheduled) return;
    this.passScheduled = true;
    setImmediate(() => {
      this.passScheduled = false;
      this.pass();
    });
  }

  private pass(): void {
    const n = epollPoll(this.epfd);
    // The event list is shared memory that the next poll overwrites: copy it out first.
    const fds = new Array<number>(n);
    const events = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      fds[i] = readyFd(i);
      events[i] = readyEvents(i);
    }
    let again = n === MAX_EVENTS;
    for (let i = 0; i < n; i++) {
      const fd = fds[i]!;
      const ev = events[i]!;
      if ((ev & EPOLLOUT) !== 0) this.handlers.get(fd)?.onWritable();
      if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) !== 0) {
        const handler = this.handlers.get(fd);
        if (handler?.onReadable()) again = true;
      }
    }
    if (again) this.schedulePass();
  }
}

let shared: Readiness | undefined;

/** The process's one readiness loop (one signal handler, one epoll set). */
export function readiness(): Readiness {
  shared ??= new Readiness();
  return shared;
}
