import { Buffer } from 'node:buffer';
// Raw I/O on unix stream sockets, for what Node cannot do: read and write with SCM_RIGHTS fds
// (recvmsg/sendmsg), accept without a net.Socket per client (accept4), and learn which sockets
// are ready from one epoll set (src/transport/poller.ts).
//
// Why raw: Node reads sockets with read(), and the kernel closes SCM_RIGHTS fds that arrive
// that way. Every real client negotiates fd passing, so this is the path every message takes.
//
// Cost model: the bindings pass fixed, preallocated memory to the kernel. The msghdr, iovec and
// control buffers are built once with absolute addresses into one off-heap ArrayBuffer, so a
// call marshals nothing: one koffi call, one system call.
//
// Single-threaded by design: the shared buffers belong to the main thread.

import koffi from 'koffi';
import * as os from 'node:os';
import { fixedMemory, ioBindings, SysError } from './libc.js';

const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EPOLL_CLOEXEC = 0o2000000;
export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;

/** The kernel's SCM_MAX_FD: at most this many fds travel with one sendmsg. */
export const MAX_FDS_PER_SEND = 253;
/** Bytes read by one recvmsg. */
export const RECEIVE_CHUNK = 64 * 1024;
/** Bytes handed to one sendmsg; more than a unix socket's send buffer takes at once. */
export const SEND_CHUNK = 256 * 1024;
/** Pieces at least this large are sent from where they are (an iovec of their own), not copied. */
export const SEND_IN_PLACE = 8 * 1024;
/** iovecs per sendmsg: the copied runs and the pieces sent in place. */
const MAX_SEND_IOV = 64;
/** Ready sockets learnt per epoll_wait. */
export const MAX_EVENTS = 256;

const { EAGAIN, EINTR } = os.constants.errno;
const P = 8; // sizeof(size_t) and of a pointer: 64-bit Linux only (checked below)
// x86-64 packs struct epoll_event (12 bytes); every other architecture aligns it (16 bytes).
const EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
const EVENT_DATA = process.arch === 'x64' ? 4 : 8;
const EVENT_WORDS = EVENT_SIZE / 4;
const DATA_WORD = EVENT_DATA / 4;
const CMSG_HEADER = P + 8; // cmsg_len (size_t), cmsg_level (int), cmsg_type (int)
const CONTROL_BYTES = CMSG_HEADER + align(MAX_FDS_PER_SEND * 4);
const MSGHDR_BYTES = 7 * P;
const IOVEC_BYTES = 2 * P;
// Receive: [a message's own buffer, the shared chunk] (the first only while a large message is due).
const RECEIVE_IOV_BYTES = 2 * IOVEC_BYTES;
const SEND_IOV_BYTES = MAX_SEND_IOV * IOVEC_BYTES;

function align(n: number): number {
  return (n + P - 1) & ~(P - 1);
}

/**
 * A 32-bit word view of `bytes` (4-byte aligned). Native byte order, which is little-endian on
 * the 64-bit Linux targets this module supports (x86-64, AArch64): a 64-bit field is its low
 * word, then its high word.
 */
function words(bytes: Buffer): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
}

/** struct msghdr fields, as word indexes: msg_iovlen, msg_controllen (low halves), msg_flags. */
const IOVLEN_WORD = (3 * P) / 4;
const CONTROLLEN_WORD = (5 * P) / 4;
const FLAGS_WORD = (6 * P) / 4;

interface Region {
  readonly bytes: Buffer;
  readonly address: bigint;
}

interface Memory {
  readonly receive: Buffer;
  readonly receiveAddress: number;
  readonly send: Buffer;
  readonly sendAddress: number;
  readonly sendHeader: Buffer;
  /** Where the msghdrs and the event list are, for the system calls (plain numbers: see writeIovec). */
  readonly receiveHeaderAddress: number;
  readonly sendHeaderAddress: number;
  readonly eventsAddress: number;
  readonly receiveControl: Buffer;
  readonly sendControl: Buffer;
  readonly sendControlAddress: bigint;
  /**
   * The msghdrs, iovecs and event list as 32-bit words, in the machine's byte order (as the
   * kernel reads and writes them): the per-message fields are set and read through these. Buffer's read and write
   * methods each validate their offset, and would run several times for every message.
   */
  readonly eventWords: Uint32Array;
  readonly receiveHeaderWords: Uint32Array;
  readonly sendHeaderWords: Uint32Array;
  readonly receiveIovWords: Uint32Array;
  readonly sendIovWords: Uint32Array;
}

let memory: Memory | undefined;

/** Lays out the shared buffers once and points each msghdr at its iovec and control buffer. */
function shared(): Memory {
  if (memory) return memory;
  if (koffi.sizeof('size_t') !== P || koffi.sizeof('void *') !== P || os.endianness() !== 'LE') {
    throw new SysError('socket-io', os.constants.errno.ENOTSUP, undefined, 'raw socket I/O supports 64-bit little-endian Linux only');
  }
  const sizes = [RECEIVE_CHUNK, SEND_CHUNK, MSGHDR_BYTES, MSGHDR_BYTES, RECEIVE_IOV_BYTES, SEND_IOV_BYTES, CONTROL_BYTES, CONTROL_BYTES, MAX_EVENTS * EVENT_SIZE];
  const total = sizes.reduce((sum, n) => sum + align(n), 0);
  // One large ArrayBuffer lives off the V8 heap and never moves, so addresses taken once stay valid.
  const arena = Buffer.from(new ArrayBuffer(total));
  const base = ioBindings().addressOf(arena);
  let offset = 0;
  const regions: Region[] = sizes.map((n) => {
    const region = { bytes: arena.subarray(offset, offset + n), address: base + BigInt(offset) };
    offset += align(n);
    return region;
  });
  const [receive, send, receiveHeader, sendHeader, receiveIov, sendIov, receiveControl, sendControl, events] = regions as [Region, Region, Region, Region, Region, Region, Region, Region, Region];
  writeIovec(words(receiveIov.bytes), 0, Number(receive.address), RECEIVE_CHUNK);
  for (const [header, iov] of [[receiveHeader, receiveIov], [sendHeader, sendIov]] as const) {
    header.bytes.fill(0);
    header.bytes.writeBigUInt64LE(iov.address, 2 * P); // msg_iov
    header.bytes.writeBigUInt64LE(1n, 3 * P); // msg_iovlen
  }
  receiveHeader.bytes.writeBigUInt64LE(receiveControl.address, 4 * P); // msg_control
  memory = {
    receive: receive.bytes,
    receiveAddress: Number(receive.address),
    send: send.bytes,
    sendAddress: Number(send.address),
    sendHeader: sendHeader.bytes,
    receiveHeaderAddress: Number(receiveHeader.address),
    sendHeaderAddress: Number(sendHeader.address),
    eventsAddress: Number(events.address),
    receiveControl: receiveControl.bytes,
    sendControl: sendControl.bytes,
    sendControlAddress: sendControl.address,
    eventWords: words(events.bytes),
    receiveHeaderWords: words(receiveHeader.bytes),
    sendHeaderWords: words(sendHeader.bytes),
    receiveIovWords: words(receiveIov.bytes),
    sendIovWords: words(sendIov.bytes),
  };
  return memory;
}

/** What one recvmsg brought: `length` bytes (in the room given, then in `receiveBuffer()`), and the fds that came with them. */
export type ReceiveResult =
  | { kind: 'data'; length: number; fds: number[] | undefined; truncated: boolean }
  | { kind: 'eof' }
  | { kind: 'again' }
  | { kind: 'error'; error: SysError };

/** The bytes of the last successful receive live here until the next one. */
export function receiveBuffer(): Buffer {
  return shared().receive;
}

/**
 * One non-blocking recvmsg of up to RECEIVE_CHUNK bytes. Received fds are close-on-exec from
 * the moment they exist (MSG_CMSG_CLOEXEC); `truncated` means the kernel dropped some (MSG_CTRUNC).
 *
 * `room`: the unfilled rest of a large message's own buffer (a Buffer of 4 KiB or more, so
 * its memory is off the V8 heap and cannot move). The kernel fills it first and only then receiveBuffer(), so the
 * message's bytes are copied once, by the kernel. The result's `length` counts both.
 */
export function receiveFrom(fd: number, room?: Buffer): ReceiveResult {
  const m = shared();
  const { recvmsg, addressOf } = ioBindings();
  const header = m.receiveHeaderWords;
  header[CONTROLLEN_WORD] = CONTROL_BYTES; // overwritten by the kernel
  if (room) {
    writeIovec(m.receiveIovWords, 0, Number(addressOf(room)), room.length);
    writeIovec(m.receiveIovWords, 1, m.receiveAddress, RECEIVE_CHUNK);
    header[IOVLEN_WORD] = 2;
  }
  let n: number;
  do n = Number(recvmsg(fd, m.receiveHeaderAddress, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  while (n < 0 && koffi.errno() === EINTR);
  if (room) {
    writeIovec(m.receiveIovWords, 0, m.receiveAddress, RECEIVE_CHUNK);
    header[IOVLEN_WORD] = 1;
  }
  if (n < 0) {
    const errno = koffi.errno();
    return errno === EAGAIN ? { kind: 'again' } : { kind: 'error', error: new SysError('recvmsg', errno) };
  }
  if (n === 0) return { kind: 'eof' };
  const controlLength = header[CONTROLLEN_WORD]!;
  const truncated = (header[FLAGS_WORD]! & MSG_CTRUNC) !== 0;
  return { kind: 'data', length: n, fds: controlLength > 0 ? parseRights(m.receiveControl, controlLength) : undefined, truncated };
}

const TWO_32 = 2 ** 32;

/**
 * One struct iovec. Addresses are plain numbers: user-space addresses on 64-bit Linux stay below
 * 2^57, so a double holds them exactly, and no BigInt is made per send.
 */
function writeIovec(iov: Uint32Array, index: number, address: number, length: number): void {
  const at = index * (IOVEC_BYTES / 4);
  iov[at] = address % TWO_32; // iov_base, low and high half (little-endian: see words())
  iov[at + 1] = Math.floor(address / TWO_32);
  iov[at + 2] = length; // iov_len
  iov[at + 3] = 0;
}

function parseRights(control: Buffer, length: number): number[] | undefined {
  let fds: number[] | undefined;
  for (let at = 0; at + CMSG_HEADER <= length;) {
    const cmsgLength = control.readUInt32LE(at);
    if (cmsgLength < CMSG_HEADER || at + cmsgLength > length) break;
    if (control.readInt32LE(at + P) === SOL_SOCKET && control.readInt32LE(at + P + 4) === SCM_RIGHTS) {
      fds ??= [];
      for (let i = at + CMSG_HEADER; i + 4 <= at + cmsgLength; i += 4) fds.push(control.readInt32LE(i));
    }
    at += align(cmsgLength);
  }
  return fds;
}

/**
 * The next sendmsg's bytes, gathered from queued pieces: small ones are copied into one shared
 * buffer (one iovec per run of copies), large ones (SEND_IN_PLACE and up) are sent from where
 * they are (an iovec each). At most SEND_CHUNK bytes and MAX_SEND_IOV iovecs per send.
 */
/** The send msghdr points at the control buffer (the last send carried fds). */
let controlAttached = false;

export class SendGather {
  private iovs = 0;
  private total = 0;
  /** Bytes used of the shared send buffer. */
  private copied = 0;
  /** Where in the shared send buffer the open run of copies starts; -1: none is open. */
  private runStart = -1;

  /** Starts an empty send. */
  reset(): this {
    this.iovs = 0;
    this.total = 0;
    this.copied = 0;
    this.runStart = -1;
    return this;
  }

  get length(): number {
    return this.total;
  }

  /** Takes bytes of `piece` from `from` on; returns how many it took (fewer once the send is full). */
  add(piece: Buffer, from: number): number {
    const m = shared();
    const want = Math.min(piece.length - from, SEND_CHUNK - this.total);
    if (want <= 0) return 0;
    if (want >= SEND_IN_PLACE) {
      this.closeRun();
      if (this.iovs === MAX_SEND_IOV) return 0;
      writeIovec(m.sendIovWords, this.iovs++, Number(ioBindings().addressOf(piece)) + from, want);
      this.total += want;
      return want;
    }
    if (this.runStart < 0) {
      if (this.iovs === MAX_SEND_IOV) return 0;
      this.runStart = this.copied;
      this.iovs++;
    }
    const n = piece.copy(m.send, this.copied, from, from + want);
    this.copied += n;
    this.total += n;
    return n;
  }

  /** Points the open run's iovec at the bytes copied since it started. */
  private closeRun(): void {
    if (this.runStart < 0) return;
    const m = shared();
    writeIovec(m.sendIovWords, this.iovs - 1, m.sendAddress + this.runStart, this.copied - this.runStart);
    this.runStart = -1;
  }

  /**
   * One non-blocking sendmsg of the gathered bytes, with `fds` attached to the first byte.
   * Returns the bytes the kernel took, or -1 when it would block (nothing sent, the fds
   * neither). Throws a SysError for a broken connection (EPIPE, ECONNRESET, …).
   */
  sendTo(fd: number, fds?: readonly number[]): number {
    this.closeRun();
    const m = shared();
    m.sendHeaderWords[IOVLEN_WORD] = this.iovs;
    if (fds && fds.length > 0) {
      const control = m.sendControl;
      control.writeUInt32LE(CMSG_HEADER + fds.length * 4, 0);
      control.writeInt32LE(SOL_SOCKET, P);
      control.writeInt32LE(SCM_RIGHTS, P + 4);
      for (let i = 0; i < fds.length; i++) control.writeInt32LE(fds[i]!, CMSG_HEADER + i * 4);
      m.sendHeader.writeBigUInt64LE(m.sendControlAddress, 4 * P);
      m.sendHeader.writeUInt32LE(CMSG_HEADER + align(fds.length * 4), 5 * P);
      controlAttached = true;
    } else if (controlAttached) {
      m.sendHeader.writeBigUInt64LE(0n, 4 * P);
      m.sendHeader.writeUInt32LE(0, 5 * P);
      controlAttached = false;
    }
    const { sendmsg } = ioBindings();
    let n: number;
    do n = Number(sendmsg(fd, m.sendHeaderAddress, MSG_DONTWAIT | MSG_NOSIGNAL));
    while (n < 0 && koffi.errno() === EINTR);
    if (n >= 0) return n;
    const errno = koffi.errno();
    if (errno === EAGAIN) return -1;
    throw new SysError('sendmsg', errno);
  }
}

/** Bytes handed to one sendfile: a socket takes far fewer at once, and the kernel caps a call below 2 GiB. */
const SENDFILE_CHUNK = 1024 * 1024;

/**
 * Sends up to `length` bytes at `position` of file `fileFd` to socket `fd` (sendfile(2): page
 * cache to socket, never through user memory). Returns how many the socket took, or -1 when
 * it is full. The socket must be non-blocking: sendfile has no MSG_DONTWAIT.
 */
export function sendFileTo(fd: number, fileFd: number, position: number, length: number): number {
  const { sendfile } = ioBindings();
  const offset = [position];
  let n: number;
  do n = Number(sendfile(fd, fileFd, offset, Math.min(length, SENDFILE_CHUNK)));
  while (n < 0 && koffi.errno() === EINTR);
  if (n > 0) return n;
  if (n === 0) throw new SysError('sendfile', os.constants.errno.EIO, undefined, `the file ended at ${position}, inside bytes still queued`);
  const errno = koffi.errno();
  if (errno === EAGAIN) return -1;
  throw new SysError('sendfile', errno);
}

/** close(2) for an fd ferrybus owns and tracks itself (received with a message). */
export function closeFd(fd: number): void {
  ioBindings().close(fd);
}

export function epollCreate(): number {
  const fd = ioBindings().epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw new SysError('epoll_create1', koffi.errno());
  return fd;
}

/** One struct epoll_event, at an address passed as an integer (every connect and disconnect). */
let eventScratch: { bytes: Buffer; address: number } | undefined;

/** Adds, changes or removes (events = 0) the interest in `fd`; ENOENT on removal is not an error. */
export function epollControl(epfd: number, fd: number, events: number, op: 'add' | 'modify' | 'delete'): void {
  const event = (eventScratch ??= fixedMemory(16));
  event.bytes.writeUInt32LE(events, 0);
  event.bytes.writeInt32LE(fd, EVENT_DATA);
  const code = op === 'add' ? EPOLL_CTL_ADD : op === 'modify' ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
  if (ioBindings().epoll_ctl(epfd, code, fd, event.address) < 0) {
    const errno = koffi.errno();
    if (op === 'delete' && (errno === os.constants.errno.ENOENT || errno === os.constants.errno.EBADF)) return;
    throw new SysError(`epoll_ctl(${op})`, errno);
  }
}

/** Is `fd` an epoll set? (epoll_wait on anything else fails with EINVAL or EBADF; level-triggered events it reports come again.) */
export function isEpollSet(fd: number): boolean {
  const m = shared();
  let n: number;
  do n = ioBindings().epoll_wait(fd, m.eventsAddress, 1, 0);
  while (n < 0 && koffi.errno() === EINTR);
  return n >= 0;
}

/**
 * epoll_wait without waiting: copies up to `fds.length` (at most MAX_EVENTS) ready fds and
 * their event masks out of the shared event buffer, and returns how many.
 */
export function epollWaitInto(epfd: number, fds: Int32Array, masks: Uint32Array): number {
  const m = shared();
  const max = Math.min(fds.length, masks.length, MAX_EVENTS);
  let n: number;
  do n = ioBindings().epoll_wait(epfd, m.eventsAddress, max, 0);
  while (n < 0 && koffi.errno() === EINTR);
  if (n < 0) throw new SysError('epoll_wait', koffi.errno());
  // Every field of an epoll_event is 4-byte aligned, also where the struct is packed (x86-64).
  const words = m.eventWords;
  for (let i = 0, at = 0; i < n; i++, at += EVENT_WORDS) {
    masks[i] = words[at]!;
    fds[i] = words[at + DATA_WORD]! | 0;
  }
  return n;
}

/** What one accept4 on a listening socket gave: a client socket, nothing waiting, or an error. */
export type AcceptResult = number | 'again' | SysError;

/**
 * One non-blocking accept4: the client's socket (non-blocking and close-on-exec from the start),
 * 'again' when no client waits, or the error (EMFILE, ECONNABORTED, …) for the caller to judge.
 */
export function acceptFrom(listenFd: number): AcceptResult {
  const { accept4 } = ioBindings();
  let fd: number;
  do fd = accept4(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (fd < 0 && koffi.errno() === EINTR);
  if (fd >= 0) return fd;
  const errno = koffi.errno();
  return errno === EAGAIN ? 'again' : new SysError('accept4', errno);
}
