// Raw I/O on unix stream sockets, for what Node cannot do: read and write with SCM_RIGHTS fds
// (recvmsg/sendmsg), and learn that a socket is readable without reading it (epoll and a signal).
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
import { ioBindings, SysError } from './libc.js';

const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const F_SETFL = 4;
const F_SETOWN = 8;
const F_SETSIG = 10;
/** The signal the kernel raises for a ready socket (see setSignalOnReady). */
export const READY_SIGNAL = 'SIGURG';
const O_NONBLOCK = 0o4000;
const O_ASYNC = 0o20000;
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
/** Ready sockets learnt per epoll_wait. */
export const MAX_EVENTS = 256;

const { EAGAIN, EINTR } = os.constants.errno;
const P = 8; // sizeof(size_t) and of a pointer: 64-bit Linux only (checked below)
// x86-64 packs struct epoll_event (12 bytes); every other architecture aligns it (16 bytes).
const EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
const EVENT_DATA = process.arch === 'x64' ? 4 : 8;
const CMSG_HEADER = P + 8; // cmsg_len (size_t), cmsg_level (int), cmsg_type (int)
const CONTROL_BYTES = CMSG_HEADER + align(MAX_FDS_PER_SEND * 4);
const MSGHDR_BYTES = 7 * P;
const IOVEC_BYTES = 2 * P;

function align(n: number): number {
  return (n + P - 1) & ~(P - 1);
}

interface Region {
  readonly bytes: Buffer;
  readonly address: bigint;
}

interface Memory {
  readonly receive: Buffer;
  readonly send: Buffer;
  readonly receiveHeader: Buffer;
  readonly sendHeader: Buffer;
  readonly receiveControl: Buffer;
  readonly sendControl: Buffer;
  readonly events: Buffer;
  readonly sendControlAddress: bigint;
}

let memory: Memory | undefined;

/** Lays out the shared buffers once and points each msghdr at its iovec and control buffer. */
function shared(): Memory {
  if (memory) return memory;
  if (koffi.sizeof('size_t') !== P || koffi.sizeof('void *') !== P) {
    throw new SysError('socket-io', os.constants.errno.ENOTSUP, undefined, 'raw socket I/O supports 64-bit Linux only');
  }
  const sizes = [RECEIVE_CHUNK, SEND_CHUNK, MSGHDR_BYTES, MSGHDR_BYTES, IOVEC_BYTES, IOVEC_BYTES, CONTROL_BYTES, CONTROL_BYTES, MAX_EVENTS * EVENT_SIZE];
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
  receiveIov.bytes.writeBigUInt64LE(receive.address, 0);
  receiveIov.bytes.writeBigUInt64LE(BigInt(RECEIVE_CHUNK), P);
  sendIov.bytes.writeBigUInt64LE(send.address, 0);
  for (const [header, iov] of [[receiveHeader, receiveIov], [sendHeader, sendIov]] as const) {
    header.bytes.fill(0);
    header.bytes.writeBigUInt64LE(iov.address, 2 * P); // msg_iov
    header.bytes.writeBigUInt64LE(1n, 3 * P); // msg_iovlen
  }
  receiveHeader.bytes.writeBigUInt64LE(receiveControl.address, 4 * P); // msg_control
  memory = {
    receive: receive.bytes,
    send: send.bytes,
    receiveHeader: receiveHeader.bytes,
    sendHeader: sendHeader.bytes,
    receiveControl: receiveControl.bytes,
    sendControl: sendControl.bytes,
    events: events.bytes,
    sendControlAddress: sendControl.address,
  };
  // The send iovec's length is written per call (low 32 bits: SEND_CHUNK fits).
  sendIovLength = sendIov.bytes;
  return memory;
}

let sendIovLength: Buffer | undefined;

/** What one recvmsg brought: `length` bytes in `receiveBuffer()`, and the fds that came with them. */
export type ReceiveResult =
  | { kind: 'data'; length: number; fds: number[] | undefined; truncated: boolean }
  | { kind: 'eof' }
  | { kind: 'again' }
  | { kind: 'error'; error: SysError };

/** The bytes of the last successful receive live here until the next one. */
export function receiveBuffer(): Buffer {
  return shared().receive;
}

/** The staging buffer sendFrom() writes from: copy up to SEND_CHUNK bytes into it first. */
export function sendBuffer(): Buffer {
  return shared().send;
}

/**
 * One non-blocking recvmsg of up to RECEIVE_CHUNK bytes. Received fds are close-on-exec from
 * the moment they exist (MSG_CMSG_CLOEXEC); `truncated` means the kernel dropped some (MSG_CTRUNC).
 */
export function receiveFrom(fd: number): ReceiveResult {
  const m = shared();
  const { recvmsg } = ioBindings();
  m.receiveHeader.writeUInt32LE(CONTROL_BYTES, 5 * P); // msg_controllen, overwritten by the kernel
  let n: number;
  do n = Number(recvmsg(fd, m.receiveHeader, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  while (n < 0 && koffi.errno() === EINTR);
  if (n < 0) {
    const errno = koffi.errno();
    return errno === EAGAIN ? { kind: 'again' } : { kind: 'error', error: new SysError('recvmsg', errno) };
  }
  if (n === 0) return { kind: 'eof' };
  const controlLength = m.receiveHeader.readUInt32LE(5 * P);
  const truncated = (m.receiveHeader.readInt32LE(6 * P) & MSG_CTRUNC) !== 0;
  return { kind: 'data', length: n, fds: controlLength > 0 ? parseRights(m.receiveControl, controlLength) : undefined, truncated };
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
 * One non-blocking sendmsg of the first `length` bytes of sendBuffer(), with `fds` attached to
 * the first byte. Returns the bytes the kernel took, or -1 when it would block (nothing sent,
 * the fds neither). Throws a SysError for a broken connection (EPIPE, ECONNRESET, …).
 */
export function sendFrom(fd: number, length: number, fds?: readonly number[]): number {
  const m = shared();
  sendIovLength!.writeUInt32LE(length, P);
  if (fds && fds.length > 0) {
    const control = m.sendControl;
    control.writeUInt32LE(CMSG_HEADER + fds.length * 4, 0);
    control.writeInt32LE(SOL_SOCKET, P);
    control.writeInt32LE(SCM_RIGHTS, P + 4);
    for (let i = 0; i < fds.length; i++) control.writeInt32LE(fds[i]!, CMSG_HEADER + i * 4);
    m.sendHeader.writeBigUInt64LE(m.sendControlAddress, 4 * P);
    m.sendHeader.writeUInt32LE(CMSG_HEADER + align(fds.length * 4), 5 * P);
  } else {
    m.sendHeader.writeBigUInt64LE(0n, 4 * P);
    m.sendHeader.writeUInt32LE(0, 5 * P);
  }
  const { sendmsg } = ioBindings();
  let n: number;
  do n = Number(sendmsg(fd, m.sendHeader, MSG_DONTWAIT | MSG_NOSIGNAL));
  while (n < 0 && koffi.errno() === EINTR);
  if (n >= 0) return n;
  const errno = koffi.errno();
  if (errno === EAGAIN) return -1;
  throw new SysError('sendmsg', errno);
}

/** close(2) for an fd ferrybus owns and tracks itself (received with a message). */
export function closeFd(fd: number): void {
  ioBindings().close(fd);
}

/**
 * Asks the kernel to raise SIGURG in this process whenever `fd` becomes readable (or writable
 * after a write would have blocked): O_ASYNC with this process as owner, and F_SETSIG.
 * SIGURG rather than SIGIO: its default action is to be ignored, so a socket that becomes ready
 * while no handler is installed (an image starting after execve) harms nothing, and libraries
 * that treat SIGIO as fatal (signal-exit, under execa) leave it alone.
 */
export function setSignalOnReady(fd: number, on: boolean): void {
  const { fcntl } = ioBindings();
  if (on && fcntl(fd, F_SETOWN, 'int', process.pid) < 0) throw new SysError('fcntl(F_SETOWN)', koffi.errno());
  if (on && fcntl(fd, F_SETSIG, 'int', os.constants.signals[READY_SIGNAL]) < 0) throw new SysError('fcntl(F_SETSIG)', koffi.errno());
  if (fcntl(fd, F_SETFL, 'int', O_NONBLOCK | (on ? O_ASYNC : 0)) < 0) throw new SysError('fcntl(F_SETFL)', koffi.errno());
}

export function epollCreate(): number {
  const fd = ioBindings().epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw new SysError('epoll_create1', koffi.errno());
  return fd;
}

const eventScratch = Buffer.from(new ArrayBuffer(16));

/** Adds, changes or removes (events = 0) the interest in `fd`; ENOENT on removal is not an error. */
export function epollControl(epfd: number, fd: number, events: number, op: 'add' | 'modify' | 'delete'): void {
  eventScratch.fill(0);
  eventScratch.writeUInt32LE(events, 0);
  eventScratch.writeInt32LE(fd, EVENT_DATA);
  const code = op === 'add' ? EPOLL_CTL_ADD : op === 'modify' ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
  if (ioBindings().epoll_ctl(epfd, code, fd, eventScratch) < 0) {
    const errno = koffi.errno();
    if (op === 'delete' && (errno === os.constants.errno.ENOENT || errno === os.constants.errno.EBADF)) return;
    throw new SysError(`epoll_ctl(${op})`, errno);
  }
}

/** epoll_wait without waiting: the number of ready sockets, read with readyFd/readyEvents. */
export function epollPoll(epfd: number): number {
  const m = shared();
  let n: number;
  do n = ioBindings().epoll_wait(epfd, m.events, MAX_EVENTS, 0);
  while (n < 0 && koffi.errno() === EINTR);
  if (n < 0) throw new SysError('epoll_wait', koffi.errno());
  return n;
}

export function readyFd(index: number): number {
  return shared().events.readInt32LE(index * EVENT_SIZE + EVENT_DATA);
}

export function readyEvents(index: number): number {
  return shared().events.readUInt32LE(index * EVENT_SIZE);
}
