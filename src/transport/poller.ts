import {
  EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, MAX_EVENTS,
  epollControl, epollCreate, epollWaitInto, isEpollSet,
} from '../sys/socket-io.js';
import { emptyArray } from '../util/empty-array.js';

/** What the poller calls for a ready socket. */
export interface PollHandler {
  /** Bytes (or a client to accept) are waiting, or the peer hung up: the next read tells which. */
  onReadable(): void;
  /** The socket takes bytes again; called only while watched for writing. */
  onWritable(): void;
}

/** The parts of libuv's stream handle (Node's internal `Pipe`) this module uses. */
interface StreamHandle {
  open(fd: number): number;
  useUserBuffer(buffer: Uint8Array): void;
  onread: (...args: unknown[]) => void;
  readStart(): number;
  readStop(): number;
  close(callback?: () => void): void;
}

interface PipeBinding {
  Pipe: new (type: number) => StreamHandle;
  constants: { SOCKET: number };
}

const EMPTY = new Uint8Array(0);
const READABLE = EPOLLIN | EPOLLHUP | EPOLLERR;

/** An epoll set an earlier image handed over (a handoff): its fd and what it watched. */
export interface InheritedPoller {
  fd: number;
  /** Fds registered in it (readable), of those handed over. */
  watched: readonly number[];
  /** Of those, the ones registered for writability too. */
  writable: readonly number[];
}

/**
 * Every socket of the bus in one epoll set, and that set's fd in Node's event loop: listening
 * sockets, client sockets (readable, and writable while a slow reader holds queued bytes).
 *
 * Why not a net.Socket per client: each costs ~1 KiB of heap, tens of microseconds to create
 * (every connect, and 1000 of them in every handoff) and one callback into JavaScript per ready
 * socket. Here a turn of the event loop costs one callback and one epoll_wait for all of them.
 *
 * How it is in the loop: the epoll fd is opened as a libuv pipe handle (Node's internal
 * `pipe_wrap`, the handle net.Socket itself uses) given a zero-length buffer, so libuv polls it
 * and calls back without reading (as net's `onread` option with a user buffer does). Level-
 * triggered throughout: a socket left unread keeps the set readable, and is reported next turn.
 */
export class Poller {
  private readonly epfd: number;
  private readonly handle: StreamHandle;
  private readonly handlers = new Map<number, PollHandler>();
  /** Fds watched for writing as well. */
  private readonly writers = new Set<number>();
  private readonly readyFds = new Int32Array(MAX_EVENTS);
  private readonly readyMasks = new Uint32Array(MAX_EVENTS);
  private closed = false;
  /** True while a turn's ready sockets are being handled. */
  private dispatching = false;
  /** Turns so far: unchanged between two looks means nothing happened on any socket meanwhile. */
  turns = 0;
  /** What runs once the turn's sockets are handled (see atTurnEnd). */
  private turnEnd: (() => void)[] = [];
  private turnEndRunning: (() => void)[] = [];
  /**
   * Registrations an earlier image made in an inherited set and nobody here claimed yet: a
   * handoff's thousand sockets are taken over without an epoll_ctl each.
   */
  private adopted: Set<number> | undefined;

  constructor(inherited?: InheritedPoller) {
    this.epfd = inherited?.fd ?? epollCreate();
    if (inherited) {
      this.adopted = new Set(inherited.watched);
      for (const fd of inherited.writable) if (this.adopted.has(fd)) this.writers.add(fd);
    }
    // process.binding('pipe_wrap') is deprecated for libraries reaching into node, but is the
    // only way to give libuv an fd that is not a socket, pipe or tty (guessHandleType refuses it).
    const { Pipe, constants } = (process as unknown as { binding(name: string): PipeBinding }).binding('pipe_wrap');
    this.handle = new Pipe(constants.SOCKET);
    const err = this.handle.open(this.epfd);
    if (err !== 0) throw new Error(`libuv refused the epoll fd (uv_pipe_open: ${err})`);
    this.handle.useUserBuffer(EMPTY);
    this.handle.onread = () => this.dispatch();
    const started = this.handle.readStart();
    if (started !== 0) throw new Error(`libuv cannot poll the epoll fd (uv_read_start: ${started})`);
  }

  /** Calls `handler` whenever `fd` is readable (or hung up), until `unwatch`. */
  watch(fd: number, handler: PollHandler): void {
    if (this.handlers.has(fd)) throw new Error(`fd ${fd} is already watched`);
    // Registered by the earlier image (for writing too when it is in `writers`: the first
    // EPOLLOUT calls onWritable, which puts the registration back to readable).
    if (!this.adopted?.delete(fd)) epollControl(this.epfd, fd, EPOLLIN, 'add');
    this.handlers.set(fd, handler);
  }

  /** What a handoff passes on with the set's fd: every registration as it stands. */
  inheritance(): InheritedPoller {
    return { fd: this.epfd, watched: [...this.handlers.keys()], writable: [...this.writers] };
  }

  /** Drops the inherited registrations nobody claimed (connections the new image could not take over). */
  settleInherited(): void {
    for (const fd of this.adopted ?? []) {
      this.writers.delete(fd);
      epollControl(this.epfd, fd, 0, 'delete');
    }
    this.adopted = undefined;
  }

  /**
   * Also calls `onWritable` while `fd` takes bytes (on), or stops (off). Level-triggered: room
   * that appeared before this call is reported too, so nothing needs a second try.
   */
  watchWritable(fd: number, on: boolean): void {
    if (!this.handlers.has(fd) || on === this.writers.has(fd)) return;
    if (on) this.writers.add(fd);
    else this.writers.delete(fd);
    epollControl(this.epfd, fd, on ? EPOLLIN | EPOLLOUT : EPOLLIN, 'modify');
  }

  /** Forgets `fd`; call before closing it (a closed fd leaves the set by itself, a dup'd one would not). */
  unwatch(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    this.writers.delete(fd);
    epollControl(this.epfd, fd, 0, 'delete');
  }

  /** Leaves the event loop (the process can then exit); the watched fds stay open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handle.readStop();
    this.handle.close();
  }

  /**
   * One turn: every ready socket once. A handler may close its own or another socket (a fd
   * number seen later in the same turn then finds no handler, or the new socket that took the
   * number, for which a spurious wake-up is harmless: its read finds nothing).
   */
  private dispatch(): void {
    const n = epollWaitInto(this.epfd, this.readyFds, this.readyMasks);
    this.turns++;
    this.dispatching = true;
    try {
      for (let i = 0; i < n; i++) {
        const fd = this.readyFds[i]!;
        const mask = this.readyMasks[i]!;
        let handler = this.handlers.get(fd);
        if (handler && (mask & READABLE) !== 0) {
          handler.onReadable();
          handler = this.handlers.get(fd);
        }
        if (handler && (mask & EPOLLOUT) !== 0 && this.writers.has(fd)) handler.onWritable();
      }
    } finally {
      this.dispatching = false;
      this.runTurnEnd();
    }
  }

  /**
   * Runs `fn` once, after every socket ready in this turn is handled, when called during a turn
   * (true); false otherwise. The write side coalesces a turn's messages here: in the same
   * callback from the event loop, not in a later `setImmediate` (a second callback into
   * JavaScript per routed message when messages come one at a time).
   */
  atTurnEnd(fn: () => void): boolean {
    if (!this.dispatching) return false;
    this.turnEnd.push(fn);
    return true;
  }

  private runTurnEnd(): void {
    if (this.turnEnd.length === 0) return;
    // Swapped first: what a callback schedules runs in the next turn (or by setImmediate).
    const batch = this.turnEnd;
    this.turnEnd = this.turnEndRunning;
    this.turnEndRunning = batch;
    try {
      for (let i = 0; i < batch.length; i++) batch[i]!();
    } finally {
      emptyArray(batch);
    }
  }
}

let shared: Poller | undefined;

/** The process's one poller. */
export function poller(): Poller {
  shared ??= new Poller();
  return shared;
}

/**
 * Makes an epoll set handed over by the earlier image the process's poller, before anything
 * watches a socket. False (and a poller of its own) when `fd` is not an epoll set.
 */
export function inheritPoller(inherited: InheritedPoller): boolean {
  if (shared) throw new Error('the poller exists already: inherit it before anything watches a socket');
  if (!isEpollSet(inherited.fd)) return false;
  shared = new Poller(inherited);
  return true;
}

/** `Poller.atTurnEnd` of the process's poller; false when there is none (nothing is dispatching). */
export function atTurnEnd(fn: () => void): boolean {
  return shared?.atTurnEnd(fn) ?? false;
}

/** Closes the process's poller, if there is one (a stopping daemon lets the event loop end). */
export function closePoller(): void {
  shared?.close();
  shared = undefined;
}
