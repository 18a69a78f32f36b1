// Socket activation as systemd does it for dbus.service: LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES.
// Real sockets, passed the way systemd passes them: by systemd-socket-activate (from the
// systemd package) where it can, and by a small python launcher that binds what systemd never
// would (a TCP or datagram socket, one not listening) and execs the bus with the same pid.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixPathAddress } from '../harness/address.js';
import { SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning } from '../harness/long-running.js';
import { describeResult, runClient } from '../harness/run-client.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { useCleanup } from '../harness/use-bus.js';
import { CLI } from '../cli/support/cli.js';

const SOCKET_ACTIVATE = '/usr/bin/systemd-socket-activate';

/**
 * argv[1]: JSON list of sockets to pass ({family: unix|inet, type: stream|dgram, path, listen});
 * argv[2]: LISTEN_FDNAMES or "-" for none; the rest: the command to exec with them at fd 3...
 */
const LAUNCHER = `
import fcntl, json, os, socket, sys
spec, names, argv = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
high = []
for s in spec:
    family = socket.AF_UNIX if s["family"] == "unix" else socket.AF_INET
    kind = socket.SOCK_STREAM if s["type"] == "stream" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    sock.bind(s["path"] if family == socket.AF_UNIX else ("127.0.0.1", 0))
    if s.get("listen"):
        sock.listen(16)
    high.append(fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100))
    sock.close()
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
env = dict(os.environ, LISTEN_FDS=str(len(spec)), LISTEN_PID=str(os.getpid()))
if names != "-":
    env["LISTEN_FDNAMES"] = names
os.execve(argv[0], argv, env)
`;

interface SocketSpec {
  family: 'unix' | 'inet';
  type: 'stream' | 'dgram';
  path?: string;
  listen?: boolean;
}

const DAEMON = [process.execPath, CLI, 'daemon', '--address=systemd:', '--print-address'];

function launcherArgs(spec: SocketSpec[], names: string | undefined): string[] {
  return ['-c', LAUNCHER, JSON.stringify(spec), names ?? '-', ...DAEMON];
}

function listNames(address: string) {
  return runClient('dbus-send', [`--bus=${address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.ListNames']);
}

describe('--address=systemd: with the sockets systemd passes', () => {
  let dir = '';
  let n = 0;
  const defer = useCleanup();
  const socketPath = () => path.join(dir, `s${++n}`);

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-socket-activation');
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it.runIf(existsSync(SOCKET_ACTIVATE))('serves the socket named dbus.socket (--fdname) and leaves the other passed socket alone, saying so', async () => {
    const bus = socketPath();
    const other = socketPath();
    const activator = startLongRunning(SOCKET_ACTIVATE, ['-l', bus, '-l', other, '--fdname=dbus.socket:other.socket', '--', ...DAEMON]);
    defer(() => activator.stop());
    await activator.waitFor(`Listening on ${other}`, { stream: 'stderr' });
    const first = await listNames(unixPathAddress(bus));
    expect(first.exitCode, describeResult(first)).toBe(0);
    const printed = (await activator.waitFor(/^(unix:\S+)\n/m))[1]!;
    expect(printed).toMatch(new RegExp(`^${unixPathAddress(bus)},guid=[0-9a-f]{32}$`));
    expect(activator.stderr).toMatch(/systemd-socket-ignored: not serving socket fd 4 \("other\.socket"\): only the sockets named "dbus\.socket" are the bus's/);
    expect(activator.stderr.match(/listening: bus is listening/g)).toHaveLength(1);
  });

  it('serves every passed socket when none is named dbus.socket', async () => {
    const a = socketPath();
    const b = socketPath();
    const bus = startLongRunning(SYSTEM_PYTHON, launcherArgs([{ family: 'unix', type: 'stream', path: a, listen: true }, { family: 'unix', type: 'stream', path: b, listen: true }], 'mybus.socket:mybus.socket'));
    defer(() => bus.stop());
    await bus.waitFor(new RegExp(`listening: bus is listening address="unix:path=${b},`), { stream: 'stderr' });
    expect(bus.stderr).toContain(`listening: bus is listening address="unix:path=${a},`);
    for (const p of [a, b]) {
      const r = await listNames(unixPathAddress(p));
      expect(r.exitCode, describeResult(r)).toBe(0);
    }
    expect(bus.stderr).not.toContain('systemd-socket-ignored');
  });

  it.each<[string, SocketSpec, RegExp]>([
    ['a TCP listener', { family: 'inet', type: 'stream', listen: true }, /socket fd 3 \("dbus\.socket"\) passed by systemd is an AF_INET socket, not AF_UNIX/],
    ['a unix datagram socket', { family: 'unix', type: 'dgram' }, /socket fd 3 \("dbus\.socket"\) passed by systemd is a SOCK_DGRAM socket, not SOCK_STREAM \(use ListenStream=\)/],
    ['a unix stream socket that does not listen (Accept=yes)', { family: 'unix', type: 'stream' }, /socket fd 3 \("dbus\.socket"\) passed by systemd is not listening/],
  ])('refuses to start on %s, saying what the fd is', async (_what, spec, message) => {
    const r = await runClient(SYSTEM_PYTHON, launcherArgs([{ ...spec, path: spec.family === 'unix' ? socketPath() : undefined }], 'dbus.socket'));
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^ferrybus: ${message.source}.*\\n$`));
  });

  it('refuses LISTEN_FDNAMES that name another number of sockets than LISTEN_FDS', async () => {
    const r = await runClient(SYSTEM_PYTHON, launcherArgs([{ family: 'unix', type: 'stream', path: socketPath(), listen: true }], 'dbus.socket:extra.socket'));
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toBe('ferrybus: --address=systemd: but no sockets were passed (LISTEN_FDNAMES names 2 sockets ("dbus.socket:extra.socket") but LISTEN_FDS=1)\n');
  });
});
