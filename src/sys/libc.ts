import { Buffer } from 'node:buffer';
// Thin, typed koffi bindings to the few libc calls ferrybus needs and Node does not offer:
// peer credentials of a unix socket, close-on-exec control, chroot/chdir and execve, the
// local name of an inherited socket, dup2.
//
// Ownership and call-once rules:
// - libc is loaded lazily, once, on the first call. The handoff path must call `loadLibc()`
//   BEFORE it chroots: after switch-root the old root is empty, so neither libc.so.6 nor koffi
//   could be opened by path any more. `loadLibc()` resolves every symbol up front.
// - errno is read with `koffi.errno()` immediately after a failing call, before any other
//   native call can overwrite it.
// - This module keeps no state besides the bindings: it never closes, opens or tracks fds.
//
// Only Linux is supported (SO_PEERCRED, SO_PEERGROUPS and SO_PEERSEC are Linux options).

import koffi, { type LibraryHandle } from 'koffi';
import type * as net from 'node:net';
import * as os from 'node:os';

const SOL_SOCKET = 1;
const SO_PEERSEC = 31;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;
const SO_ACCEPTCONN = 30;
const SO_TYPE = 3;
const SO_DOMAIN = 39;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/** Growth is bounded: a kernel that keeps answering ERANGE is a bug, not a reason to loop. */
const MAX_GROW_ATTEMPTS = 8;
const INITIAL_GROUPS = 32;
const INITIAL_LABEL_BYTES = 256;

/** A failed system call: `code` is the errno name ('ENOENT'), `errno` the positive number. */
export class SysError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path: string | undefined;

  constructor(syscall: string, errno: number, path?: string, detail?: string) {
    const code = errnoName(errno);
    const where = path === undefined ? syscall : `${syscall} '${path}'`;
    super(`${code}: ${where} failed${detail === undefined ? '' : ` (${detail})`}`);
    this.name = 'SysError';
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    this.path = path;
  }
}

export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

// Aliases share a number (EWOULDBLOCK = EAGAIN, EOPNOTSUPP = ENOTSUP, EDEADLOCK = EDEADLK);
// the first spelling here wins so the name we report is stable whatever order Node lists them.
const PREFERRED_NAMES = ['EAGAIN', 'ENOTSUP', 'EDEADLK'];

let errnoNames: Map<number, string> | undefined;

function errnoTable(): Map<number, string> {
  if (errnoNames === undefined) {
    // Node's table comes from the platform headers it was built with, so the numbers are
    // right on every Linux architecture (mips and sparc number errno differently).
    const table = new Map<number, string>();
    const constants = os.constants.errno as Record<string, number>;
    for (const name of PREFERRED_NAMES) {
      const value = constants[name];
      if (value !== undefined) table.set(value, name);
    }
    for (const [name, value] of Object.entries(constants)) {
      if (!table.has(value)) table.set(value, name);
    }
    errnoNames = table;
  }
  return errnoNames;
}

/** The symbolic name of a (positive) errno number, e.g. 2 → 'ENOENT'; 'ERRNO_<n>' if unknown. */
export function errnoName(errno: number): string {
  return errnoTable().get(errno) ?? `ERRNO_${errno}`;
}

type NativeFn = (...args: unknown[]) => number;

interface Bindings {
  readonly getsockopt: NativeFn;
  /** fcntl with its third argument declared (0 where the command takes none). */
  readonly fcntl: NativeFn;
  readonly getrandom: NativeFn;
  readonly sigaction: NativeFn;
  /** glibc's; undefined in a C library without it. */
  readonly mallocTrim: NativeFn | undefined;
  readonly execve: NativeFn;
  readonly chroot: NativeFn;
  readonly chdir: NativeFn;
  readonly fchdir: NativeFn;
  readonly socket: NativeFn;
  readonly sendto: NativeFn;
  readonly connect: NativeFn;
  readonly send: NativeFn;
  readonly close: NativeFn;
  readonly getsockname: NativeFn;
  readonly bind: NativeFn;
  readonly listen: NativeFn;
  readonly dup2: NativeFn;
  readonly isatty: NativeFn;
  readonly waitpid: NativeFn;
  /** glibc 2.34 and later; undefined before. */
  readonly closeRange: NativeFn | undefined;
  readonly io: IoBindings;
}

/** The calls of the raw socket path (src/sys/socket-io.ts); the hot ones take addresses as integers. */
export interface IoBindings {
  readonly recvmsg: NativeFn;
  readonly sendmsg: NativeFn;
  readonly close: NativeFn;
  readonly epoll_create1: NativeFn;
  readonly epoll_ctl: NativeFn;
  readonly epoll_wait: NativeFn;
  readonly accept4: NativeFn;
  /** getsockopt with the value and its length at integer addresses (SO_PEERCRED on every accept and restore). */
  readonly getsockoptAt: NativeFn;
  /** Queued bytes a handoff left in a file go to the socket from there (src/transport/spooled-bytes.ts). */
  readonly sendfile: NativeFn;
  /** The address of a buffer's first byte (memmove(p, p, 0) returns p). */
  readonly addressOf: (buffer: Buffer) => bigint;
}

let bindings: Bindings | undefined;

function libc(): Bindings {
  if (bindings === undefined) {
    const lib = koffi.load('libc.so.6');
    // Declaring a function resolves its symbol now, so every binding is usable after chroot.
    bindings = {
      getsockopt: lib.func(
        'int getsockopt(int fd, int level, int name, _Inout_ void *value, _Inout_ uint32_t *length)',
      ) as NativeFn,
      // fcntl is variadic in C; koffi builds a variadic call anew each time (~3 µs, against ~1
      // for a fixed one). The x86-64 and AArch64 Linux calling conventions pass a variadic int
      // where a fixed one goes, so it is declared with its third argument.
      fcntl: lib.func('int fcntl(int fd, int cmd, int arg)') as NativeFn,
      getrandom: lib.func('intptr_t getrandom(void *buf, size_t length, unsigned int flags)') as NativeFn,
      sigaction: lib.func('int sigaction(int sig, const void *act, void *oldact)') as NativeFn,
      mallocTrim: optionalFunc(lib, 'int malloc_trim(size_t pad)'),
      execve: lib.func(
        'int execve(const char *path, const char **argv, const char **envp)',
      ) as NativeFn,
      chroot: lib.func('int chroot(const char *path)') as NativeFn,
      chdir: lib.func('int chdir(const char *path)') as NativeFn,
      fchdir: lib.func('int fchdir(int fd)') as NativeFn,
      socket: lib.func('int socket(int domain, int type, int protocol)') as NativeFn,
      sendto: lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)') as NativeFn,
      close: lib.func('int close(int fd)') as NativeFn,
      connect: lib.func('int connect(int fd, const void *addr, uint32_t addrlen)') as NativeFn,
      send: lib.func('intptr_t send(int fd, const void *buf, size_t len, int flags)') as NativeFn,
      getsockname: lib.func('int getsockname(int fd, _Inout_ void *addr, _Inout_ uint32_t *addrlen)') as NativeFn,
      bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)') as NativeFn,
      listen: lib.func('int listen(int fd, int backlog)') as NativeFn,
      dup2: lib.func('int dup2(int oldfd, int newfd)') as NativeFn,
      isatty: lib.func('int isatty(int fd)') as NativeFn,
      waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)') as NativeFn,
      closeRange: optionalFunc(lib, 'int close_range(unsigned int first, unsigned int last, int flags)'),
      io: ioFunctions(lib),
    };
  }
  return bindings;
}

/** A binding to a symbol the C library may lack (koffi throws when it does). */
function optionalFunc(lib: LibraryHandle, declaration: string): NativeFn | undefined {
  try {
    return lib.func(declaration) as NativeFn;
  } catch {
    return undefined;
  }
}

function ioFunctions(lib: LibraryHandle): IoBindings {
  const memmove = lib.func('void *memmove(void *dst, void *src, size_t n)') as (...args: unknown[]) => unknown;
  return {
    // Addresses as integers: a Buffer argument costs koffi a lookup of its memory on every call.
    recvmsg: lib.func('intptr_t recvmsg(int fd, intptr_t msg, int flags)') as NativeFn,
    sendmsg: lib.func('intptr_t sendmsg(int fd, intptr_t msg, int flags)') as NativeFn,
    close: lib.func('int close(int fd)') as NativeFn,
    epoll_create1: lib.func('int epoll_create1(int flags)') as NativeFn,
    epoll_ctl: lib.func('int epoll_ctl(int epfd, int op, int fd, intptr_t event)') as NativeFn,
    epoll_wait: lib.func('int epoll_wait(int epfd, intptr_t events, int max, int timeout)') as NativeFn,
    accept4: lib.func('int accept4(int fd, void *addr, void *addrlen, int flags)') as NativeFn,
    getsockoptAt: lib.func('int getsockopt(int fd, int level, int name, intptr_t value, intptr_t length)') as NativeFn,
    sendfile: lib.func('intptr_t sendfile(int out_fd, int in_fd, _Inout_ int64_t *offset, size_t count)') as NativeFn,
    addressOf: (buffer) => BigInt(koffi.address(memmove(buffer, buffer, 0)) as bigint),
  };
}

/** The raw socket path's bindings (loaded with the rest, so they work after chroot too). */
export function ioBindings(): IoBindings {
  return libc().io;
}

/**
 * Loads libc and resolves every binding now (idempotent). Call before chroot: afterwards
 * nothing can be loaded by path from the old root.
 */
export function loadLibc(): void {
  libc();
  errnoTable();
}

function checkFd(syscall: string, fd: number): void {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new SysError(syscall, os.constants.errno.EBADF, undefined, `invalid fd ${String(fd)}`);
  }
}

function checkString(syscall: string, value: string, what: string): void {
  // A C string ends at the first NUL: passing one through would silently truncate.
  if (value.includes('\0')) {
    throw new SysError(syscall, os.constants.errno.EINVAL, undefined, `${what} contains a NUL byte`);
  }
}

function fail(syscall: string, path?: string): never {
  throw new SysError(syscall, koffi.errno(), path);
}

/**
 * Calls getsockopt(SOL_SOCKET, name) into a buffer that grows while the kernel answers ERANGE
 * (it then reports the size it needs in `length`). Returns the filled bytes, or the errno.
 */
function getsockoptGrowing(
  fd: number,
  name: number,
  initialBytes: number,
  alloc: (bytes: number) => Uint8Array | Uint32Array,
): { value: Uint8Array | Uint32Array; length: number } | { errno: number } {
  const { getsockopt } = libc();
  let bytes = initialBytes;
  for (let attempt = 0; attempt < MAX_GROW_ATTEMPTS; attempt++) {
    const value = alloc(bytes);
    const length = [value.byteLength];
    if (getsockopt(fd, SOL_SOCKET, name, value, length) === 0) {
      return { value, length: length[0]! };
    }
    const errno = koffi.errno();
    if (errno !== os.constants.errno.ERANGE) return { errno };
    bytes = Math.max(length[0]!, bytes * 2);
  }
  return { errno: os.constants.errno.ERANGE };
}

/** Memory that never moves (off the V8 heap) and its address, for calls that take addresses as integers. */
export function fixedMemory(bytes: number): { bytes: Buffer; address: number } {
  const buffer = Buffer.from(new ArrayBuffer(bytes));
  return { bytes: buffer, address: Number(libc().io.addressOf(buffer)) };
}

/**
 * struct ucred (pid, uid, gid: 12 bytes), then its length (4): marshalled by nobody. Read as
 * 32-bit words, addresses taken once: Buffer's read methods and an address sum per call made
 * ~300 bytes of boxed numbers per connection in a handoff's restore, which runs uncompiled.
 */
let credentialsScratch: { signed: Int32Array; unsigned: Uint32Array; address: number; lengthAddress: number } | undefined;

/** The credentials the kernel recorded for the peer of a connected unix socket (SO_PEERCRED). */
export function peerCredentials(fd: number): PeerCredentials {
  checkFd('getsockopt(SO_PEERCRED)', fd);
  const scratch = (credentialsScratch ??= credentialsMemory());
  scratch.unsigned[3] = 12;
  if (libc().io.getsockoptAt(fd, SOL_SOCKET, SO_PEERCRED, scratch.address, scratch.lengthAddress) !== 0) {
    fail('getsockopt(SO_PEERCRED)');
  }
  // pid is signed, uid and gid are not.
  return { pid: scratch.signed[0]!, uid: scratch.unsigned[1]!, gid: scratch.unsigned[2]! };
}

function credentialsMemory(): NonNullable<typeof credentialsScratch> {
  const { bytes, address } = fixedMemory(16);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, 4);
  return { signed: new Int32Array(words.buffer, words.byteOffset, 4), unsigned: words, address, lengthAddress: address + 12 };
}

/** The peer's supplementary group ids (SO_PEERGROUPS), as the kernel lists them (sorted). */
export function peerGroups(fd: number): number[] {
  checkFd('getsockopt(SO_PEERGROUPS)', fd);
  const result = getsockoptGrowing(fd, SO_PEERGROUPS, INITIAL_GROUPS * 4, (bytes) => {
    return new Uint32Array(Math.ceil(bytes / 4));
  });
  if ('errno' in result) throw new SysError('getsockopt(SO_PEERGROUPS)', result.errno);
  return Array.from(result.value.subarray(0, Math.floor(result.length / 4)));
}

/**
 * The peer's LSM security label (SO_PEERSEC), e.g. an SELinux context or AppArmor profile;
 * undefined when no LSM provides one (ENOPROTOOPT, ENOTSUP) or the label is empty.
 */
export function peerSecurityLabel(fd: number): string | undefined {
  checkFd('getsockopt(SO_PEERSEC)', fd);
  const result = getsockoptGrowing(fd, SO_PEERSEC, INITIAL_LABEL_BYTES, (bytes) => {
    return new Uint8Array(bytes);
  });
  if ('errno' in result) {
    const { ENOPROTOOPT, ENOTSUP, EOPNOTSUPP } = os.constants.errno;
    if (result.errno === ENOPROTOOPT || result.errno === ENOTSUP || result.errno === EOPNOTSUPP) {
      return undefined;
    }
    throw new SysError('getsockopt(SO_PEERSEC)', result.errno);
  }
  let end = Math.min(result.length, result.value.byteLength);
  // Some LSMs count the terminating NUL in the length, some do not.
  while (end > 0 && result.value[end - 1] === 0) end--;
  if (end === 0) return undefined;
  return Buffer.from(result.value.buffer, result.value.byteOffset, end).toString('utf8');
}

/** Whether FD_CLOEXEC is set on fd (libuv sets it on every fd it opens). */
export function getCloexec(fd: number): boolean {
  checkFd('fcntl(F_GETFD)', fd);
  const flags = libc().fcntl(fd, F_GETFD, 0);
  if (flags < 0) fail('fcntl(F_GETFD)');
  return (flags & FD_CLOEXEC) !== 0;
}

/**
 * Sets or clears FD_CLOEXEC on fd. It is the only fd flag Linux defines, so nothing else needs
 * reading first: one system call (a handoff makes this call for every fd it keeps, twice,
 * inside its pause).
 */
export function setCloexec(fd: number, on: boolean): void {
  checkFd('fcntl(F_SETFD)', fd);
  if (libc().fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0) < 0) fail('fcntl(F_SETFD)');
}

/**
 * Gives the C library's free memory back to the system (malloc_trim(0)): the pages of free
 * chunks in every arena. True when some was released; false too where the call is missing.
 */
export function releaseFreeMemory(): boolean {
  const trim = libc().mallocTrim;
  return trim !== undefined && trim(0) === 1;
}

const EINTR = 4;

/**
 * `length` bytes from the kernel's random source (getrandom(2), blocking only until it is
 * seeded at boot). The bus needs a few for GUIDs, nonces and file names: node:crypto would
 * cost every start and handoff ~3 ms to load for them.
 */
export function randomBytes(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let got = 0; got < length; ) {
    const n = libc().getrandom(got === 0 ? bytes : bytes.subarray(got), length - got, 0);
    if (n < 0) {
      if (koffi.errno() === EINTR) continue;
      fail('getrandom');
    }
    got += n;
  }
  return bytes;
}

const CLOSE_RANGE_CLOEXEC = 1 << 2;

/**
 * Sets FD_CLOEXEC on every fd from `first` up, in one system call (close_range(2) with
 * CLOSE_RANGE_CLOEXEC, Linux 5.11): a new image's thousand inherited sockets, not one fcntl
 * each. False when the kernel or the C library lacks it (the caller then sets them one by one).
 */
export function setCloexecFrom(first: number): boolean {
  const closeRange = libc().closeRange;
  return closeRange !== undefined && closeRange(first, 0xffffffff, CLOSE_RANGE_CLOEXEC) === 0;
}

/** Sets O_NONBLOCK on fd, keeping its other file status flags (an inherited socket may lack it). */
export function setNonBlocking(fd: number): void {
  checkFd('fcntl(F_SETFL)', fd);
  const { fcntl } = libc();
  const flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0) fail('fcntl(F_GETFL)');
  if ((flags & O_NONBLOCK) !== 0) return;
  if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) fail('fcntl(F_SETFL)');
}

/**
 * Replaces the process image (same PID). Never returns: on success the new image runs, on
 * failure a SysError is thrown and this process continues unchanged (fds, CLOEXEC flags and
 * all), so the caller can restore what it changed and keep serving.
 */
export function execve(path: string, argv: readonly string[], envp: readonly string[]): never {
  checkString('execve', path, 'path');
  for (const arg of argv) checkString('execve', arg, 'an argument');
  for (const entry of envp) checkString('execve', entry, 'an environment entry');
  const profilerSignal = ignoreSignal(SIGPROF);
  libc().execve(path, [...argv, null], [...envp, null]);
  // execve only returns on failure.
  const errno = koffi.errno();
  profilerSignal.restore();
  throw new SysError('execve', errno, path);
}

const SIGPROF = 27;
const SIG_IGN = 1;
/** struct sigaction of glibc on x86-64 and AArch64: handler, 1024-bit mask, flags, restorer. */
const SIGACTION_BYTES = 152;

/**
 * V8's sampling profiler (node --cpu-prof) interrupts the main thread with SIGPROF. One that is
 * pending at exec, or sent by the profiler's thread until then, would reach the new image before
 * it has a handler, and SIGPROF's default action ends the process: the bus, handoff and all.
 * Ignoring it discards those (node sets it back to the default in the new image).
 */
function ignoreSignal(signal: number): { restore(): void } {
  const previous = Buffer.alloc(SIGACTION_BYTES);
  const ignore = Buffer.alloc(SIGACTION_BYTES);
  ignore.writeBigUInt64LE(BigInt(SIG_IGN), 0);
  const changed = libc().sigaction(signal, ignore, previous) === 0;
  return { restore: () => void (changed && libc().sigaction(signal, previous, null)) };
}

/** chroot(2). Requires CAP_SYS_CHROOT. Does not change the working directory: chdir after. */
export function chroot(path: string): void {
  checkString('chroot', path, 'path');
  if (libc().chroot(path) !== 0) fail('chroot', path);
}

/**
 * chdir(2) for the whole process. Unlike process.chdir this also works from worker threads
 * and after a chroot, and it does not touch Node's cached cwd.
 */
export function chdir(path: string): void {
  checkString('chdir', path, 'path');
  if (libc().chdir(path) !== 0) fail('chdir', path);
}

/** fchdir(2): make the directory open on fd the working directory (a way back after chroot). */
export function fchdir(fd: number): void {
  checkFd('fchdir', fd);
  if (libc().fchdir(fd) !== 0) fail('fchdir');
}

function unixAddress(socketPath: string, syscall = 'connect'): Buffer {
  const abstract = socketPath.startsWith('@');
  const name = Buffer.from(abstract ? '\0' + socketPath.slice(1) : socketPath, 'utf8');
  if (name.length > 107) throw new SysError(syscall, os.constants.errno.ENAMETOOLONG, socketPath);
  const addr = Buffer.alloc(2 + name.length + (abstract ? 0 : 1));
  addr.writeUInt16LE(1 /* AF_UNIX */, 0);
  name.copy(addr, 2);
  return addr;
}

/**
 * A unix datagram socket connected to a path ('@' prefix = abstract), e.g. systemd's
 * NOTIFY_SOCKET. Connected once, it keeps working after the process changes root,
 * where the path may no longer resolve. Node has no unix datagram sockets, hence this.
 */
export function connectUnixDatagram(socketPath: string): number {
  const { socket, connect, close } = libc();
  const addr = unixAddress(socketPath);
  const fd = socket(1 /* AF_UNIX */, 2 /* SOCK_DGRAM */ | 0o2000000 /* SOCK_CLOEXEC */, 0);
  if (fd < 0) fail('socket');
  if (connect(fd, addr, addr.length) !== 0) {
    const errno = koffi.errno();
    close(fd);
    throw new SysError('connect', errno, socketPath);
  }
  return fd;
}

/**
 * A listening unix stream socket bound to `socketPath` ('\0' prefix: an abstract name), non-blocking
 * and close-on-exec. The path must be free (see src/transport/listener.ts).
 */
export function listenUnixStream(socketPath: string, backlog: number): number {
  const { socket, bind, listen, close } = libc();
  const addr = unixAddress(socketPath.startsWith('\0') ? '@' + socketPath.slice(1) : socketPath, 'bind');
  const fd = socket(AF_UNIX, SOCK_STREAM | 0o4000 /* SOCK_NONBLOCK */ | 0o2000000 /* SOCK_CLOEXEC */, 0);
  if (fd < 0) fail('socket');
  for (const [call, run] of [['bind', () => bind(fd, addr, addr.length)], ['listen', () => listen(fd, backlog)]] as const) {
    if (run() === 0) continue;
    const errno = koffi.errno();
    close(fd);
    throw new SysError(call, errno, socketPath.startsWith('\0') ? `@${socketPath.slice(1)}` : socketPath);
  }
  return fd;
}

/** Sends one datagram on a connected socket. */
export function sendDatagram(fd: number, payload: Buffer): void {
  checkFd('send', fd);
  if (Number(libc().send(fd, payload, payload.length, 0x4000 /* MSG_NOSIGNAL */)) < 0) fail('send');
}

/** What a socket is, as the kernel says: its address family, its type, whether it listens. */
export interface SocketKind {
  /** SO_DOMAIN: AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10, ... */
  readonly domain: number;
  /** SO_TYPE: SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5, ... */
  readonly type: number;
  /** SO_ACCEPTCONN: listen() was called on it. */
  readonly listening: boolean;
}

/** Names for the families and types a start-up error may have to mention. */
export const SOCKET_DOMAIN_NAMES: Readonly<Record<number, string>> = { 1: 'AF_UNIX', 2: 'AF_INET', 10: 'AF_INET6', 16: 'AF_NETLINK', 40: 'AF_VSOCK' };
export const SOCKET_TYPE_NAMES: Readonly<Record<number, string>> = { 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 3: 'SOCK_RAW', 5: 'SOCK_SEQPACKET' };
export const AF_UNIX_DOMAIN = AF_UNIX;
export const SOCK_STREAM_TYPE = SOCK_STREAM;

/**
 * getsockopt SO_DOMAIN, SO_TYPE and SO_ACCEPTCONN: enough to tell whether an inherited fd is
 * a listening unix stream socket before serving it. ENOTSOCK for anything but a socket.
 */
export function socketKind(fd: number): SocketKind {
  checkFd('getsockopt(SO_DOMAIN)', fd);
  const { getsockopt } = libc();
  const read = (name: number, what: string): number => {
    const value = new Int32Array(1);
    if (getsockopt(fd, SOL_SOCKET, name, value, [4]) !== 0) fail(`getsockopt(${what})`);
    return value[0]!;
  };
  return {
    domain: read(SO_DOMAIN, 'SO_DOMAIN'),
    type: read(SO_TYPE, 'SO_TYPE'),
    listening: read(SO_ACCEPTCONN, 'SO_ACCEPTCONN') === 1,
  };
}

/** Whether fd is a socket in the listening state (SO_ACCEPTCONN). */
export function isListeningSocket(fd: number): boolean {
  checkFd('getsockopt(SO_ACCEPTCONN)', fd);
  const value = new Int32Array(1);
  const length = [4];
  if (libc().getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, value, length) !== 0) return false;
  return value[0] === 1;
}

/**
 * The OS file descriptor behind a connected net.Socket or a listening net.Server (libuv's
 * handle keeps it in `_handle.fd`, an internal but long-stable field).
 */
export function socketFd(socket: net.Socket | net.Server): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    const what = 'listen' in socket && typeof socket.listen === 'function' ? 'server' : 'socket';
    throw new SysError(
      'socketFd',
      os.constants.errno.EBADF,
      undefined,
      handle == null
        ? `the ${what} has no handle: not yet connected or listening, or already closed`
        : `the ${what}'s handle exposes no file descriptor`,
    );
  }
  return fd;
}

/**
 * Where a unix stream socket is bound (getsockname): its path, an abstract name ('\0'-prefixed,
 * as `net.Server#listen({ path })` takes it), or '' when unnamed. Throws for a socket that is not
 * AF_UNIX/SOCK_STREAM (e.g. a TCP socket from systemd): ferrybus serves unix sockets only.
 * Node offers no getsockname for a pipe server opened on an fd, hence this.
 */
export function unixStreamSocketName(fd: number): string {
  checkFd('getsockname', fd);
  const { getsockname, getsockopt } = libc();
  const type = new Int32Array(1);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, type, [4]) !== 0) fail('getsockopt(SO_TYPE)');
  // sockaddr_un: sa_family_t (2 bytes) + sun_path[108].
  const addr = Buffer.alloc(110);
  const length = [addr.length];
  if (getsockname(fd, addr, length) !== 0) fail('getsockname');
  const family = addr.readUInt16LE(0);
  if (family !== AF_UNIX || type[0] !== SOCK_STREAM) {
    throw new SysError('getsockname', os.constants.errno.EAFNOSUPPORT, undefined,
      `fd ${fd} is not a unix stream socket (family ${family}, type ${type[0]})`);
  }
  const name = addr.subarray(2, Math.min(length[0]!, addr.length));
  if (name.length === 0) return '';
  if (name[0] === 0) return '\0' + name.subarray(1).toString('utf8');
  const end = name.indexOf(0);
  return name.subarray(0, end < 0 ? name.length : end).toString('utf8');
}

/** dup2(2): makes `newFd` refer to what `oldFd` refers to (closing what newFd was first). */
/**
 * Whether fd is a terminal: isatty(3). node:tty's isatty would load node:tty, which loads
 * node:net (its streams are sockets), ~1 ms of every start and handoff for one ioctl.
 */
export function isTerminal(fd: number): boolean {
  checkFd('isatty', fd);
  return libc().isatty(fd) === 1;
}

export function dup2(oldFd: number, newFd: number): void {
  checkFd('dup2', oldFd);
  checkFd('dup2', newFd);
  if (libc().dup2(oldFd, newFd) < 0) fail('dup2');
}

/** How a child ended, as waitpid(2) reports it. */
export type ChildStatus = { readonly code: number; readonly signal?: undefined } | { readonly code?: undefined; readonly signal: number };

const WNOHANG = 1;

/**
 * waitpid(pid, WNOHANG): reaps the child if it has ended. For children an earlier image started
 * (a handoff keeps the process, so they are still ours): libuv only reaps the ones it spawned.
 * Returns undefined while it runs; 'gone' when it is not (or no longer) our child.
 */
export function reapChild(pid: number): ChildStatus | 'gone' | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return 'gone';
  const status = [0];
  const r = libc().waitpid(pid, status, WNOHANG) as number;
  if (r === 0) return undefined;
  if (r < 0) return 'gone';
  const raw = status[0]!;
  const signal = raw & 0x7f;
  return signal === 0 ? { code: (raw >> 8) & 0xff } : { signal };
}
