import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SysError,
  chdir,
  chroot,
  errnoName,
  execve,
  getCloexec,
  isTerminal,
  loadLibc,
  peerCredentials,
  peerGroups,
  peerSecurityLabel,
  randomBytes,
  releaseFreeMemory,
  setCloexec,
  setCloexecFrom,
  socketFd,
  socketKind,
} from './libc.js';

// Two tests need root (setgroups for a peer in many groups; chroot). CI runs as root, so they run
// there; a developer running the suite as a normal user skips just those two.
const isRoot = process.getuid?.() === 0;
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrybus-libc-'));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function expectSysError(fn: () => unknown, code: string): SysError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SysError);
    const sys = error as SysError;
    expect(sys.code).toBe(code);
    expect(sys.errno).toBe((os.constants.errno as Record<string, number>)[code]);
    expect(sys.message).toContain(code);
    return sys;
  }
  throw new Error(`expected a SysError ${code}, nothing was thrown`);
}

/** A listening server on a fresh unix path, plus a helper accepting the next connection. */
async function listen(): Promise<{ server: net.Server; path: string; accepted: () => Promise<net.Socket> }> {
  const socketPath = path.join(tmp, `s${Math.random().toString(36).slice(2, 10)}`);
  const server = net.createServer();
  const queue: net.Socket[] = [];
  const waiters: ((socket: net.Socket) => void)[] = [];
  server.on('connection', (socket) => {
    const waiter = waiters.shift();
    if (waiter) waiter(socket);
    else queue.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const accepted = (): Promise<net.Socket> => {
    const ready = queue.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => waiters.push(resolve));
  };
  return { server, path: socketPath, accepted };
}

async function connectedPair(): Promise<{ server: net.Server; client: net.Socket; accepted: net.Socket }> {
  const { server, path: socketPath, accepted } = await listen();
  const client = net.connect(socketPath);
  await new Promise<void>((resolve) => client.once('connect', resolve));
  return { server, client, accepted: await accepted() };
}

function closeAll(...things: (net.Socket | net.Server)[]): Promise<void> {
  return Promise.all(
    things.map(
      (thing) =>
        new Promise<void>((resolve) => {
          if (thing instanceof net.Server) thing.close(() => resolve());
          else {
            thing.destroy();
            resolve();
          }
        }),
    ),
  ).then(() => undefined);
}

/**
 * A child process cannot import the TypeScript source, so the module is transpiled to a
 * temporary .mjs whose koffi import points at the installed package. The children then test
 * the real code, including the parts that cannot run inside the test process (a successful
 * execve, a chroot).
 */
function childModule(): string {
  const target = path.join(tmp, 'libc.mjs');
  if (!fs.existsSync(target)) {
    const source = fs.readFileSync(fileURLToPath(new URL('./libc.ts', import.meta.url)), 'utf8');
    const output = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const koffiUrl = pathToFileURL(createRequire(import.meta.url).resolve('koffi')).href;
    const rewritten = output.replace(/from 'koffi'/, `from '${koffiUrl}'`);
    expect(rewritten).not.toBe(output);
    fs.writeFileSync(target, rewritten);
  }
  return target;
}

function runChild(body: string, args: string[] = []): { status: number | null; stdout: string; stderr: string; pid: number } {
  const script = path.join(tmp, `child-${Math.random().toString(36).slice(2, 10)}.mjs`);
  fs.writeFileSync(
    script,
    `import * as libc from ${JSON.stringify(pathToFileURL(childModule()).href)};\n` +
      `import * as fs from 'node:fs';\nimport * as net from 'node:net';\n` +
      `const keepStdio = () => { for (const fd of [1, 2]) libc.setCloexec(fd, false); };\n${body}\n`,
  );
  const result = spawnSync(process.execPath, [script, ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, pid: result.pid ?? -1 };
}

describe('errnoName', () => {
  it('names the common errno numbers', () => {
    const { errno } = os.constants;
    for (const name of [
      'ENOENT', 'EACCES', 'EPERM', 'EBADF', 'EINVAL', 'ENOTSOCK', 'ENOPROTOOPT', 'ERANGE',
      'ENOEXEC', 'ENOTDIR', 'EINTR', 'ENOMEM', 'EMFILE', 'ELOOP', 'ENAMETOOLONG', 'E2BIG',
    ]) {
      expect(errnoName((errno as Record<string, number>)[name]!)).toBe(name);
    }
    expect(errnoName(2)).toBe('ENOENT');
  });

  it('prefers one stable spelling for aliased numbers', () => {
    expect(errnoName(os.constants.errno.EWOULDBLOCK)).toBe('EAGAIN');
    expect(errnoName(os.constants.errno.EOPNOTSUPP)).toBe('ENOTSUP');
  });

  it('gives unknown numbers a recognisable code', () => {
    expect(errnoName(99999)).toBe('ERRNO_99999');
  });
});

describe('loadLibc', () => {
  it('loads every binding and can be called again', () => {
    expect(() => loadLibc()).not.toThrow();
    expect(() => loadLibc()).not.toThrow();
  });
});

describe('isTerminal', () => {
  it('is true for a pseudo-terminal and false for a pipe, a socket and a regular file', async () => {
    // The master side of a new pseudo-terminal is a terminal to isatty(3).
    const pty = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    const file = fs.openSync(path.join(tmp, 'not-a-terminal'), 'w');
    const server = net.createServer().listen(path.join(tmp, 'tty-test.sock'));
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      expect(isTerminal(pty)).toBe(true);
      expect(isTerminal(file)).toBe(false);
      expect(isTerminal(socketFd(server))).toBe(false);
      // A pipe: a FIFO opened for reading and writing (Linux allows it, and it never blocks).
      const fifo = path.join(tmp, 'tty-test.fifo');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      const pipe = fs.openSync(fifo, fs.constants.O_RDWR);
      expect(isTerminal(pipe)).toBe(false);
      fs.closeSync(pipe);
    } finally {
      server.close();
      fs.closeSync(file);
      fs.closeSync(pty);
    }
  });

  it('fails with EBADF for an invalid fd', () => {
    expect(() => isTerminal(-1)).toThrow(/EBADF/);
  });
});

describe('socketFd', () => {
  it('returns the fd of a listening server and of both ends of a connection', async () => {
    const { server, client, accepted } = await connectedPair();
    const fds = [socketFd(server), socketFd(client), socketFd(accepted)];
    for (const fd of fds) {
      expect(Number.isInteger(fd)).toBe(true);
      expect(fd).toBeGreaterThan(2);
      expect(fs.fstatSync(fd).isSocket()).toBe(true);
    }
    expect(new Set(fds).size).toBe(3);
    await closeAll(client, accepted, server);
  });

  it('throws a clear EBADF error for a socket that has no fd yet or any more', async () => {
    const unconnected = new net.Socket();
    const error = expectSysError(() => socketFd(unconnected), 'EBADF');
    expect(error.message).toMatch(/socket has no handle/);

    const server = net.createServer();
    expect(() => socketFd(server)).toThrow(/server has no handle/);

    const { server: listening, client, accepted } = await connectedPair();
    await closeAll(client, accepted, listening);
    expectSysError(() => socketFd(client), 'EBADF');
    expectSysError(() => socketFd(listening), 'EBADF');
  });
});

describe('socketKind', () => {
  it('tells a listening unix stream socket from a connected one and from a TCP listener', async () => {
    const { server, client, accepted } = await connectedPair();
    const tcp = net.createServer();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    try {
      expect(socketKind(socketFd(server))).toEqual({ domain: 1, type: 1, listening: true });
      expect(socketKind(socketFd(client))).toEqual({ domain: 1, type: 1, listening: false });
      expect(socketKind(socketFd(accepted))).toEqual({ domain: 1, type: 1, listening: false });
      expect(socketKind(socketFd(tcp))).toEqual({ domain: 2, type: 1, listening: true });
    } finally {
      await closeAll(client, accepted, server, tcp);
    }
  });

  it('fails with ENOTSOCK on a regular file and EBADF on a closed fd', () => {
    const file = path.join(tmp, 'not-a-socket');
    fs.writeFileSync(file, '');
    const fd = fs.openSync(file, 'r');
    try {
      expectSysError(() => socketKind(fd), 'ENOTSOCK');
    } finally {
      fs.closeSync(fd);
    }
    expectSysError(() => socketKind(fd), 'EBADF');
  });
});

describe('peerCredentials', () => {
  it('reports this process for a connection within this process', async () => {
    const { server, client, accepted } = await connectedPair();
    const expected = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
    expect(peerCredentials(socketFd(accepted))).toEqual(expected);
    expect(peerCredentials(socketFd(client))).toEqual(expected);
    await closeAll(client, accepted, server);
  });

  it("reports a child process's pid, uid and gid", async () => {
    const { server, path: socketPath, accepted } = await listen();
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('net').connect(process.argv[1]);
         s.on('connect', () => process.stdout.write('connected\\n'));
         process.stdin.on('end', () => s.end()); process.stdin.resume();`,
        socketPath,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      const socket = await accepted();
      expect(peerCredentials(socketFd(socket))).toEqual({
        pid: child.pid,
        uid: process.getuid!(),
        gid: process.getgid!(),
      });
      socket.destroy();
    } finally {
      child.stdin!.end();
      await new Promise((resolve) => child.once('exit', resolve));
      await closeAll(server);
    }
  });

  it('fails with ENOTSOCK on a regular file and EBADF on a closed or invalid fd', () => {
    const file = path.join(tmp, 'plain');
    fs.writeFileSync(file, 'x');
    const fd = fs.openSync(file, 'r');
    expectSysError(() => peerCredentials(fd), 'ENOTSOCK');
    fs.closeSync(fd);
    expectSysError(() => peerCredentials(fd), 'EBADF');
    expectSysError(() => peerCredentials(-1), 'EBADF');
    const error = expectSysError(() => peerCredentials(1.5), 'EBADF');
    expect(error.message).toContain('invalid fd 1.5');
    expect(error.syscall).toBe('getsockopt(SO_PEERCRED)');
  });

  it('reports the process that called listen() for a listening socket', async () => {
    // Linux records the listener's own credentials at listen(); a caller must only ask
    // accepted sockets, never the listener, for a client's identity.
    const { server, client, accepted } = await connectedPair();
    expect(peerCredentials(socketFd(server)).pid).toBe(process.pid);
    await closeAll(client, accepted, server);
  });
});

describe('peerGroups', () => {
  it("lists this process's supplementary groups for an in-process connection", async () => {
    const { server, client, accepted } = await connectedPair();
    const groups = peerGroups(socketFd(accepted));
    expect(groups.every((gid) => Number.isInteger(gid) && gid >= 0)).toBe(true);
    // Node's getgroups() always adds the effective gid; the kernel lists exactly the
    // supplementary groups.
    const expected = new Set(process.getgroups!());
    const actual = new Set([...groups, process.getegid!()]);
    expect([...actual].sort()).toEqual([...expected].sort());
    await closeAll(client, accepted, server);
  });

  // setgroups() with many groups needs root (CI runs as root).
  it.skipIf(!isRoot)('grows its buffer for a peer in many groups', async () => {
    const { server, path: socketPath, accepted } = await listen();
    const wanted = Array.from({ length: 300 }, (_, i) => 40_000 + i * 7);
    const child = spawn(
      process.execPath,
      [
        '-e',
        `process.setgroups(${JSON.stringify(wanted)});
         const s = require('net').connect(process.argv[1]);
         process.stdin.on('end', () => s.end()); process.stdin.resume();`,
        socketPath,
      ],
      { stdio: ['pipe', 'inherit', 'inherit'] },
    );
    try {
      const socket = await accepted();
      const groups = peerGroups(socketFd(socket));
      expect(groups.length).toBe(300);
      expect([...groups].sort((a, b) => a - b)).toEqual(wanted);
      socket.destroy();
    } finally {
      child.stdin!.end();
      await new Promise((resolve) => child.once('exit', resolve));
      await closeAll(server);
    }
  });

  it('fails with ENOTSOCK on a regular file', () => {
    const fd = fs.openSync(path.join(tmp, 'plain-groups'), 'w');
    expectSysError(() => peerGroups(fd), 'ENOTSOCK');
    fs.closeSync(fd);
  });
});

describe('peerSecurityLabel', () => {
  it('returns a label without NUL bytes, or undefined when no LSM provides one', async () => {
    const { server, client, accepted } = await connectedPair();
    const label = peerSecurityLabel(socketFd(accepted));
    if (label !== undefined) {
      expect(label.length).toBeGreaterThan(0);
      expect(label).not.toContain('\0');
    }
    await closeAll(client, accepted, server);
  });

  it('still reports real errors', () => {
    const fd = fs.openSync(path.join(tmp, 'plain-label'), 'w');
    expectSysError(() => peerSecurityLabel(fd), 'ENOTSOCK');
    fs.closeSync(fd);
    expectSysError(() => peerSecurityLabel(fd), 'EBADF');
  });
});

describe('getCloexec / setCloexec', () => {
  it('sees the close-on-exec flag libuv sets on sockets and files', async () => {
    const { server, client, accepted } = await connectedPair();
    expect(getCloexec(socketFd(server))).toBe(true);
    expect(getCloexec(socketFd(accepted))).toBe(true);
    const fd = fs.openSync(path.join(tmp, 'cloexec'), 'w');
    expect(getCloexec(fd)).toBe(true);
    fs.closeSync(fd);
    await closeAll(client, accepted, server);
  });

  it('clears and sets the flag, idempotently, observable through F_GETFD', async () => {
    const { server, client, accepted } = await connectedPair();
    for (const fd of [socketFd(server), socketFd(accepted)]) {
      setCloexec(fd, false);
      expect(getCloexec(fd)).toBe(false);
      setCloexec(fd, false);
      expect(getCloexec(fd)).toBe(false);
      setCloexec(fd, true);
      expect(getCloexec(fd)).toBe(true);
      setCloexec(fd, true);
      expect(getCloexec(fd)).toBe(true);
    }
    // The socket still works after being toggled.
    const echoed = new Promise<string>((resolve) => client.once('data', (data) => resolve(String(data))));
    accepted.write('ping');
    expect(await echoed).toBe('ping');
    await closeAll(client, accepted, server);
  });

  it('sets the flag on every fd from a number up in one call, and leaves those below alone', () => {
    const fds = [0, 1, 2].map((i) => fs.openSync(path.join(tmp, `cloexec-range-${i}`), 'w')).sort((a, b) => a - b);
    for (const fd of fds) setCloexec(fd, false);
    expect(setCloexecFrom(fds[1]!)).toBe(true); // this kernel (>= 5.11) and C library (>= 2.34) have close_range
    expect(fds.map(getCloexec)).toEqual([false, true, true]);
    for (const fd of fds) fs.closeSync(fd);
  });

  it('reports EBADF for closed and invalid fds', () => {
    const fd = fs.openSync(path.join(tmp, 'cloexec-closed'), 'w');
    fs.closeSync(fd);
    expectSysError(() => getCloexec(fd), 'EBADF');
    expectSysError(() => setCloexec(fd, false), 'EBADF');
    expectSysError(() => setCloexec(-3, true), 'EBADF');
    expectSysError(() => getCloexec(Number.NaN), 'EBADF');
  });
});

describe('execve failures (in process: they return)', () => {
  it('throws ENOENT for a missing program', () => {
    const error = expectSysError(
      () => execve(path.join(tmp, 'no-such-program'), ['x'], []),
      'ENOENT',
    );
    expect(error.syscall).toBe('execve');
    expect(error.path).toBe(path.join(tmp, 'no-such-program'));
    expect(error.message).toContain('no-such-program');
  });

  it('throws ENOTDIR, EACCES and ENOEXEC for the other classic mistakes', () => {
    const file = path.join(tmp, 'not-a-dir');
    fs.writeFileSync(file, '');
    expectSysError(() => execve(path.join(file, 'child'), ['x'], []), 'ENOTDIR');

    const notExecutable = path.join(tmp, 'not-executable');
    fs.writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o644 });
    // Even root needs at least one execute bit.
    expectSysError(() => execve(notExecutable, ['x'], []), 'EACCES');

    const garbage = path.join(tmp, 'garbage');
    fs.writeFileSync(garbage, 'this is not a program\n', { mode: 0o755 });
    expectSysError(() => execve(garbage, ['garbage'], []), 'ENOEXEC');

    expectSysError(() => execve(tmp, ['dir'], []), 'EACCES');
  });

  it('refuses strings with NUL bytes before calling the kernel', () => {
    expectSysError(() => execve('/bin/true\0x', ['true'], []), 'EINVAL');
    expectSysError(() => execve('/bin/true', ['tr\0ue'], []), 'EINVAL');
    expect(() => execve('/bin/true', ['true'], ['A=\0'])).toThrow(/environment entry/);
  });

  it('leaves close-on-exec flags as they were after a failure', async () => {
    const { server, client, accepted } = await connectedPair();
    const fd = socketFd(accepted);
    setCloexec(fd, false);
    expectSysError(() => execve(path.join(tmp, 'missing'), ['x'], []), 'ENOENT');
    expect(getCloexec(fd)).toBe(false);
    setCloexec(fd, true);
    await closeAll(client, accepted, server);
  });

  it('leaves SIGPROF handled as it was after a failure (it is ignored only for the exec)', () => {
    const before = ignoredSignals();
    expectSysError(() => execve(path.join(tmp, 'missing'), ['x'], []), 'ENOENT');
    expect(ignoredSignals()).toBe(before);
    expect(before & SIGPROF_BIT).toBe(0n);
  });
});

const SIGPROF_BIT = 1n << 26n;
/** This process's ignored signals, as the kernel reports them (bit n-1 for signal n). */
function ignoredSignals(): bigint {
  return BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]}`);
}

describe('releaseFreeMemory', () => {
  it('gives the pages of freed heap chunks back to the system', () => {
    // 64 MiB in 16 KiB pieces (below mmap's threshold: they come from the heap), every other one
    // freed: holes between live chunks, which free() itself keeps, as a bus's heap after a burst.
    const result = runChild(`
      import * as v8 from 'node:v8';
      import * as vm from 'node:vm';
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc');
      const pieces = Array.from({ length: 4096 }, () => Buffer.allocUnsafeSlow(16 * 1024).fill(1));
      const kept = pieces.filter((_, i) => i % 2 === 1);
      pieces.length = 0;
      gc(); gc();
      const freed = process.memoryUsage.rss();
      const released = libc.releaseFreeMemory();
      const after = process.memoryUsage.rss();
      console.log(JSON.stringify({ released, freed, after, kept: kept.length }));
    `);
    expect(result.status, result.stderr).toBe(0);
    const r = JSON.parse(result.stdout) as { released: boolean; freed: number; after: number };
    expect(r.released).toBe(true);
    expect(r.freed - r.after).toBeGreaterThan(16 * 1024 * 1024);
  });
});

describe('randomBytes', () => {
  it('returns as many bytes as asked, different each time', () => {
    expect(randomBytes(0)).toHaveLength(0);
    const a = randomBytes(16);
    const b = randomBytes(16);
    expect(a).toHaveLength(16);
    expect(a.equals(b)).toBe(false);
    // 4 KiB of zeros from a working source: never.
    expect(randomBytes(4096).some((byte) => byte !== 0)).toBe(true);
  });
});

describe('execve success (in a child process)', () => {
  it('replaces the image with the same pid, passing argv and exactly envp', () => {
    const result = runChild(
      `keepStdio(); libc.execve('/bin/sh', ['sh', '-c', 'echo "$$ $0 [$FERRY] [$HOME]"', 'argzero'], ['FERRY=boat']);`,
    );
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`${result.pid} argzero [boat] []\n`);
  });

  it('loses stdout unless its close-on-exec flag is cleared: Node marks stdio CLOEXEC', () => {
    // libuv sets FD_CLOEXEC on fds 0-2 at startup (libuv issue #2062): a handoff must clear it
    // on the stdio it means to keep (journal streams), or the new image starts without them.
    const lost = runChild(
      `const flags = [0, 1, 2].map((fd) => libc.getCloexec(fd));
       fs.writeSync(2, JSON.stringify(flags));
       libc.execve('/bin/echo', ['echo', 'lost'], []);`,
    );
    expect(lost.stderr).toBe('[true,true,true]');
    expect(lost.stdout).toBe('');
    expect(lost.status).not.toBe(0);

    const kept = runChild(`keepStdio(); libc.execve('/bin/echo', ['echo', 'kept'], []);`);
    expect(kept.stdout).toBe('kept\n');
    expect(kept.status).toBe(0);
  });

  it('keeps exactly the fds whose close-on-exec flag was cleared', () => {
    const result = runChild(`
      const server = net.createServer();
      server.listen(${JSON.stringify(path.join(tmp, 'exec-kept.sock'))}, () => {
        const kept = libc.socketFd(server);
        const closed = fs.openSync(${JSON.stringify(path.join(tmp, 'exec-closed'))}, 'w');
        libc.setCloexec(kept, false);
        keepStdio();
        libc.execve('/bin/sh', ['sh', '-c',
          'for fd in "$@"; do if [ -e /proc/self/fd/$fd ]; then echo "$fd open"; else echo "$fd closed"; fi; done',
          'sh', String(kept), String(closed)], []);
      });`);
    expect(result.stderr).toBe('');
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d+ open$/);
    expect(lines[1]).toMatch(/^\d+ closed$/);
  });

  // chroot() needs root (CI runs as root).
  it.skipIf(!isRoot)('keeps working after chroot into an empty root, once loaded', () => {
    const emptyRoot = fs.mkdtempSync(path.join(tmp, 'root-'));
    const result = runChild(`
      libc.loadLibc();
      const fd = fs.openSync('/dev/null', 'r');
      libc.chroot(${JSON.stringify(emptyRoot)});
      libc.chdir('/');
      const out = { entries: fs.readdirSync('/'), cwd: fs.realpathSync.native('.') };
      libc.setCloexec(fd, false);
      out.cloexec = libc.getCloexec(fd);
      try { libc.execve('/bin/echo', ['echo'], []); } catch (e) { out.exec = e.code; }
      try { libc.chdir('/missing'); } catch (e) { out.chdir = e.code; }
      process.stdout.write(JSON.stringify(out));`);
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({
      entries: [],
      cwd: '/',
      cloexec: false,
      exec: 'ENOENT',
      chdir: 'ENOENT',
    });
  });
});

describe('chroot / chdir failures', () => {
  it('chroot reports ENOENT, ENOTDIR, and EPERM for the unprivileged', () => {
    expectSysError(() => chroot(path.join(tmp, 'missing-root')), 'ENOENT');
    const file = path.join(tmp, 'root-file');
    fs.writeFileSync(file, '');
    expectSysError(() => chroot(file), 'ENOTDIR');
    if (!isRoot) expectSysError(() => chroot(tmp), 'EPERM');
    expectSysError(() => chroot('/\0'), 'EINVAL');
  });

  it('chdir reports ENOENT and ENOTDIR without moving', () => {
    const before = process.cwd();
    expectSysError(() => chdir(path.join(tmp, 'missing-dir')), 'ENOENT');
    const file = path.join(tmp, 'cwd-file');
    fs.writeFileSync(file, '');
    const error = expectSysError(() => chdir(file), 'ENOTDIR');
    expect(error.path).toBe(file);
    expect(process.cwd()).toBe(before);
  });

  it('chdir changes the working directory of the process (in a child)', () => {
    // Node caches process.cwd() and only refreshes it in process.chdir, so ask the kernel.
    const result = runChild(
      `libc.chdir(${JSON.stringify(tmp)}); process.stdout.write(fs.realpathSync.native('.'));`,
    );
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(fs.realpathSync(tmp));
  });
});
