/**
 * What one wake-up of the bus costs inside node, apart from the work it wakes up for.
 *
 *   npm run bench:wakeup [-- --count=N --reps=N]
 *
 * A peer process (python3) and this one ping-pong one byte over a socketpair, `count` times.
 * This side waits for each byte in one of two ways and answers it with read(2) and write(2):
 *
 * - node: as the daemon waits (src/transport/poller.ts) — the socket in an epoll set, the set's
 *   fd polled by libuv as a pipe handle, a callback into JavaScript per wake-up, then
 *   epoll_wait without waiting to learn which socket is ready;
 * - blocking: epoll_wait on the same set, blocking, in a loop inside one callback — what a C bus
 *   does, and what node's event loop cannot do for long: its timers, signals and child exits
 *   would wait behind it;
 * - nested: the form of that a daemon could use. After a wake-up the callback keeps waiting
 *   itself, on libuv's own epoll fd (which holds the set's fd), for at most libuv's next timeout
 *   (capped at 5 ms), and goes back to libuv when anything but the set is ready, after 256 turns,
 *   or when the wait times out. Two epoll_wait calls per wake-up, as in the daemon, but no trip
 *   through libuv and no callback.
 *
 * Printed: µs of this process's CPU (user, system) per wake-up for each way, median of `reps`
 * alternating runs. The difference is what node's loop adds per wake-up; the bus wakes once per
 * routed message at one call in flight, and about six times per connection.
 */
import { spawn } from 'node:child_process';
import koffi from 'koffi';
import { median } from './stats.js';

interface Libc {
  socketpair(domain: number, type: number, protocol: number, fds: number[]): number;
  epoll_create1(flags: number): number;
  epoll_ctl(epfd: number, op: number, fd: number, event: Buffer): number;
  epoll_wait(epfd: number, events: Buffer, max: number, timeout: number): number;
  read(fd: number, buf: Buffer, n: number): number;
  write(fd: number, buf: Buffer, n: number): number;
  close(fd: number): number;
}

function libc(): Libc {
  const lib = koffi.load('libc.so.6');
  return {
    socketpair: lib.func('int socketpair(int, int, int, _Out_ int *sv)'),
    epoll_create1: lib.func('int epoll_create1(int)'),
    epoll_ctl: lib.func('int epoll_ctl(int, int, int, void *)'),
    epoll_wait: lib.func('int epoll_wait(int, void *, int, int)'),
    read: lib.func('long read(int, void *, unsigned long)'),
    write: lib.func('long write(int, void *, unsigned long)'),
    close: lib.func('int close(int)'),
  } as unknown as Libc;
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const EPOLL_CLOEXEC = 0x80000;
const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;
/** Wake-ups before measuring: the JIT compiles the handler first. */
const WARMUP = 2000;

interface StreamHandle {
  open(fd: number): number;
  useUserBuffer(buffer: Uint8Array): void;
  onread: () => void;
  readStart(): number;
  close(): void;
}

type Mode = 'node' | 'blocking' | 'nested';
const MODES: readonly Mode[] = ['node', 'blocking', 'nested'];

interface Uv {
  loop: unknown;
  backendFd(loop: unknown): number;
  backendTimeout(loop: unknown): number;
  updateTime(loop: unknown): void;
}

function uv(): Uv {
  const self = koffi.load(null as unknown as string);
  return {
    loop: self.func('void *uv_default_loop(void)')(),
    backendFd: self.func('int uv_backend_fd(void *)'),
    backendTimeout: self.func('int uv_backend_timeout(void *)'),
    updateTime: self.func('void uv_update_time(void *)'),
  } as unknown as Uv;
}

/** One run: µs of CPU per wake-up, user and system. */
function run(c: Libc, u: Uv, mode: Mode, count: number): Promise<{ user: number; system: number }> {
  const pair = [0, 0];
  if (c.socketpair(AF_UNIX, SOCK_STREAM, 0, pair) !== 0) throw new Error('socketpair failed');
  const [mine, theirs] = pair as [number, number];
  const epfd = c.epoll_create1(EPOLL_CLOEXEC);
  const event = Buffer.alloc(16);
  event.writeUInt32LE(EPOLLIN, 0);
  event.writeUInt32LE(mine, 4);
  if (epfd < 0 || c.epoll_ctl(epfd, EPOLL_CTL_ADD, mine, event) !== 0) throw new Error('epoll set-up failed');
  const peer = spawn('python3', ['-c', `import os\nfor _ in range(${count + WARMUP}):\n    os.write(3, b'x'); os.read(3, 64)\n`], {
    stdio: ['ignore', 'inherit', 'inherit', theirs],
  });
  c.close(theirs);
  const events = Buffer.alloc(16 * 64);
  const buf = Buffer.alloc(64);
  let served = 0;
  let start: NodeJS.CpuUsage | undefined;
  const serve = (timeout: number): void => {
    const n = c.epoll_wait(epfd, events, 64, timeout);
    for (let i = 0; i < n; i++) {
      const got = c.read(mine, buf, buf.length);
      if (got <= 0) continue;
      if (++served === WARMUP) start = process.cpuUsage();
      c.write(mine, buf, got);
    }
  };
  return new Promise((resolve, reject) => {
    const finish = (handle?: StreamHandle): void => {
      const used = process.cpuUsage(start);
      handle?.close();
      c.close(mine);
      c.close(epfd);
      const n = served - WARMUP;
      peer.once('exit', () => resolve({ user: used.user / n, system: used.system / n }));
    };
    peer.once('error', reject);
    if (mode === 'blocking') {
      setImmediate(() => {
        while (served < count + WARMUP) serve(-1);
        finish();
      });
      return;
    }
    const { Pipe, constants } = (process as unknown as {
      binding(name: 'pipe_wrap'): { Pipe: new (type: number) => StreamHandle; constants: { SOCKET: number } };
    }).binding('pipe_wrap');
    const handle = new Pipe(constants.SOCKET);
    if (handle.open(epfd) !== 0) throw new Error('uv_pipe_open failed');
    handle.useUserBuffer(new Uint8Array(0));
    const uvFd = u.backendFd(u.loop);
    const uvEvents = Buffer.alloc(16 * 8);
    // A timer keeps the loop alive, so libuv's timeout is that of a daemon (never 0 for "exit").
    const alive = setInterval(() => {}, 3_600_000);
    handle.onread = () => {
      serve(0);
      for (let turn = 0; mode === 'nested' && turn < 256 && served < count + WARMUP; turn++) {
        (process as unknown as { _tickCallback(): void })._tickCallback();
        u.updateTime(u.loop);
        let timeout = u.backendTimeout(u.loop);
        if (timeout === 0) break;
        if (timeout < 0 || timeout > 5) timeout = 5;
        const n = c.epoll_wait(uvFd, uvEvents, 8, timeout);
        if (n <= 0) break;
        let onlySet = true;
        for (let i = 0; i < n; i++) if (uvEvents.readInt32LE(i * 12 + 4) !== epfd) onlySet = false;
        if (!onlySet) break;
        serve(0);
      }
      if (served >= count + WARMUP) {
        clearInterval(alive);
        finish(handle);
      }
    };
    handle.readStart();
  });
}

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
}

async function main(): Promise<void> {
  const count = option('count', 50_000);
  const reps = option('reps', 5);
  const c = libc();
  const u = uv();
  const results = Object.fromEntries(MODES.map((m) => [m, { user: [] as number[], system: [] as number[] }])) as Record<Mode, { user: number[]; system: number[] }>;
  for (let r = 0; r < reps; r++) {
    for (const mode of MODES) {
      const { user, system } = await run(c, u, mode, count);
      results[mode].user.push(user);
      results[mode].system.push(system);
      console.log(`  rep ${r + 1} ${mode.padEnd(8)} user ${user.toFixed(2)} system ${system.toFixed(2)} µs per wake-up`);
    }
  }
  console.log(`\n${count} wake-ups per run, median of ${reps} (µs of CPU per wake-up):`);
  console.log('| wait | user | system | total |\n|---|---:|---:|---:|');
  const label: Record<Mode, string> = {
    node: 'node: libuv poll + callback + epoll_wait(0) (the daemon)',
    blocking: 'blocking: epoll_wait in a loop (a C bus)',
    nested: 'nested: the callback waits on libuv\'s epoll fd, then epoll_wait(0)',
  };
  for (const mode of MODES) {
    const user = median(results[mode].user);
    const system = median(results[mode].system);
    console.log(`| ${label[mode]} | ${user.toFixed(2)} | ${system.toFixed(2)} | ${(user + system).toFixed(2)} |`);
  }
}

void main();
