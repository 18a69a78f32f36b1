import * as fs from 'node:fs';
import type * as Net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { listenUnixStream, setCloexec, setNonBlocking, SysError } from '../sys/libc.js';
import { acceptFrom, closeFd } from '../sys/socket-io.js';
import { FerryError } from '../util/errors.js';
import type { ListenTarget } from './address.js';
import { poller, type PollHandler } from './poller.js';
import { lazyBuiltin } from '../util/lazy-builtin.js';

/** Only to ask a socket file left behind whether a bus still answers there (see lazy-builtin.ts). */
const net = lazyBuiltin<typeof Net>('node:net');

/** Clients taken per turn of the event loop: a connect storm must not starve the connected. */
const ACCEPTS_PER_TURN = 64;
/** Out of fds (EMFILE and kin): stop accepting this long, rather than spin on a socket that stays ready. */
const FD_SHORTAGE_PAUSE_MS = 100;
const { EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, EPROTO, EPERM } = os.constants.errno;
/** Out of fds or kernel memory: the next try may succeed once some are released. */
const FD_SHORTAGE: ReadonlySet<number> = new Set([EMFILE, ENFILE, ENOBUFS, ENOMEM]);

export type AcceptedClient = (fd: number) => void;
export type ListenerLog = (event: string, message: string, fields?: Record<string, unknown>) => void;

/**
 * A listening unix stream socket, accepted from with accept4 (no net.Socket per client: see
 * poller.ts). Each client's fd goes to `onClient`, which owns it from then on.
 */
export class Listener implements PollHandler {
  private paused: NodeJS.Timeout | undefined;
  /** Since when accepting fails for want of fds (one line when it starts, one when it ends). */
  private shortSince: number | undefined;
  private closed = false;

  constructor(
    readonly fd: number,
    private readonly onClient: AcceptedClient,
    private readonly log: ListenerLog,
  ) {
    // A socket inherited (a handoff, systemd) may lack either: accept4 must not block, and the
    // listening socket is not for the programs the bus starts.
    setNonBlocking(fd);
    setCloexec(fd, true);
    poller().watch(fd, this);
  }

  onReadable(): void {
    for (let i = 0; i < ACCEPTS_PER_TURN && !this.closed && !this.paused; i++) {
      const r = acceptFrom(this.fd);
      // accept4 takes an fd before it looks for a client: any answer but EMFILE and kin ends a shortage.
      if (this.shortSince !== undefined && (typeof r !== 'object' || !FD_SHORTAGE.has(r.errno))) this.shortageEnded();
      if (r === 'again') return;
      if (typeof r === 'number') {
        this.onClient(r);
        continue;
      }
      // The client gave up while waiting, or a security module refused it: the next one may be fine.
      if (r.errno === ECONNABORTED || r.errno === EPROTO || r.errno === EPERM) continue;
      if (FD_SHORTAGE.has(r.errno)) {
        if (this.shortSince === undefined) {
          this.shortSince = Date.now();
          this.log('accept-paused', `cannot accept clients for now: ${r.message}; trying again every ${FD_SHORTAGE_PAUSE_MS} ms (clients that connect meanwhile wait in the backlog)`, { fd: this.fd });
        }
        this.pause();
        return;
      }
      this.log('accept-failed', `listening socket unusable: ${r.message}; no longer accepting on it`, { fd: this.fd });
      poller().unwatch(this.fd);
      return;
    }
  }

  onWritable(): void {
    // never watched for writing
  }

  private shortageEnded(): void {
    this.log('accept-resumed', `accepting clients again after ${Date.now() - this.shortSince!} ms without fds`, { fd: this.fd });
    this.shortSince = undefined;
  }

  private pause(): void {
    poller().unwatch(this.fd);
    this.paused = setTimeout(() => {
      this.paused = undefined;
      if (!this.closed) poller().watch(this.fd, this);
    }, FD_SHORTAGE_PAUSE_MS);
    this.paused.unref();
  }

  /** Stops accepting and closes the socket (its path, if any, is the caller's to remove). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.paused);
    poller().unwatch(this.fd);
    closeFd(this.fd);
  }
}

/**
 * Opens a listening unix socket. A socket file left by a dead bus is replaced;
 * one that still answers belongs to a live bus and is never stolen.
 */
export async function listen(target: ListenTarget, onClient: AcceptedClient, log: ListenerLog): Promise<Listener> {
  if (!target.abstract) await prepareSocketPath(target.path);
  let fd: number;
  try {
    fd = listenUnixStream(target.path, 4096);
  } catch (err) {
    if (err instanceof SysError && err.code === 'EADDRINUSE') {
      throw new FerryError('AddressInUse', `another bus is already listening on ${describe(target)}`);
    }
    throw new FerryError('ListenFailed', `cannot listen on ${describe(target)}: ${(err as Error).message}`);
  }
  // Who may talk is decided by bus policy, not file mode (as dbus-daemon does).
  if (!target.abstract) fs.chmodSync(target.path, 0o777);
  return new Listener(fd, onClient, log);
}

function describe(target: ListenTarget): string {
  return target.abstract ? `abstract socket @${target.path.slice(1)}` : target.path;
}

async function prepareSocketPath(socketPath: string): Promise<void> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch {
    return; // nothing there
  }
  if (!stat.isSocket()) {
    throw new FerryError('ListenPathTaken', `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  if (await answers(socketPath)) {
    throw new FerryError('AddressInUse', `another bus is already listening on ${socketPath}`);
  }
  fs.unlinkSync(socketPath);
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net().connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
