import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixPathAddress } from '../harness/address.js';
import { SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning } from '../harness/long-running.js';
import { trackPid, untrackPid } from '../harness/process-registry.js';
import { describeResult, runClient } from '../harness/run-client.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { useCleanup } from '../harness/use-bus.js';
import { CLI, ferrybus } from './support/cli.js';

const SOCKET_ACTIVATE = '/usr/bin/systemd-socket-activate';

/** org.freedesktop.DBus.ListNames through dbus-send (libdbus), as a distribution's client would ask. */
function listNames(address: string) {
  return runClient('dbus-send', [`--bus=${address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.ListNames']);
}

/** Gone, or a zombie nobody has reaped yet: either way it serves nothing any more. */
function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!isGone(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/** PIDs of live processes whose command line contains `needle`. */
function processesWith(needle: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name) || isGone(Number(name))) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(needle)) found.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

describe('ferrybus daemon takes dbus-daemon\'s command line', () => {
  let dir = '';
  let n = 0;
  const defer = useCleanup();
  /** A fresh socket path per test. */
  const socketPath = () => path.join(dir, `bus-${++n}`);

  /** A bus this test did not start as a child (a forked one): stopped by PID after the test, whatever happens. */
  function ownForeign(pid: number): void {
    trackPid(pid);
    defer(async () => {
      if (!isGone(pid)) process.kill(pid, 'SIGTERM');
      if (!(await waitGone(pid, 5000))) process.kill(pid, 'SIGKILL');
      untrackPid(pid);
    });
  }

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-daemon-flags');
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it('starts and serves with Debian dbus.service\'s flags (minus systemd:), with systemd activation on', async () => {
    const address = unixPathAddress(socketPath());
    const bus = startLongRunning(process.execPath, [
      CLI, 'daemon', '--session', `--address=${address}`, '--nofork', '--nopidfile', '--systemd-activation', '--syslog-only', '--print-address',
    ]);
    defer(() => bus.stop());
    const printed = (await bus.waitFor(/^(unix:\S+)\n/m))[1]!;
    expect(printed).toMatch(new RegExp(`^${address},guid=[0-9a-f]{32}$`));
    const r = await listNames(printed);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toContain('string "org.freedesktop.DBus"');
    expect(bus.stderr).not.toContain('Unknown argument');
    expect(bus.stderr).not.toContain('--systemd-activation');
    expect(bus.stderr.match(/flag-unsupported: --syslog-only: .*no syslog/g)).toHaveLength(1);
    const features = await runClient('busctl', [`--address=${printed}`, 'get-property', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Features']);
    expect(features.stdout, describeResult(features)).toContain('"SystemdActivation"');
  });

  it('--version prints the version and the protocol it speaks, and starts no bus', async () => {
    const r = await ferrybus(['daemon', '--version']);
    expect(r.exitCode, describeResult(r)).toBe(0);
    const version = (JSON.parse(readFileSync(path.join(path.dirname(CLI), '../../../package.json'), 'utf8')) as { version: string }).version;
    expect(r.stdout).toMatch(new RegExp(`^ferrybus ${version.replace(/\./g, '\\.')}\n.*D-Bus protocol.*\n$`));
    expect(r.stderr).toBe('');
  });

  it('--introspect prints XML that declares org.freedesktop.DBus (and the supervisor interface), and starts no bus', async () => {
    const r = await ferrybus(['daemon', '--introspect']);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stderr).toBe('');
    // A real XML parser, not ours: it must be XML for anyone.
    const parsed = await runClient(SYSTEM_PYTHON, ['-c', [
      'import sys, xml.etree.ElementTree as E',
      'root = E.fromstring(sys.stdin.read())',
      'print(root.tag, *[i.get("name") for i in root.iter("interface")])',
    ].join('\n')], { input: r.stdout });
    expect(parsed.exitCode, describeResult(parsed)).toBe(0);
    const [tag, ...interfaces] = parsed.stdout.trim().split(' ');
    expect(tag).toBe('node');
    expect(interfaces).toContain('org.freedesktop.DBus');
    expect(interfaces).toContain('org.ferrybus.Supervisor1');
    expect(r.stdout).toContain('<method name="ListNames">');
  });

  it('--help lists every dbus-daemon flag and no internal one; a value flag given twice is a usage error', async () => {
    const help = await ferrybus(['daemon', '--help']);
    expect(help.exitCode, describeResult(help)).toBe(0);
    for (const flag of ['--systemd-activation', '--nopidfile', '--pidfile', '--syslog', '--syslog-only', '--nosyslog', '--introspect',
      '--version', '--fork', '--nofork', '--print-address', '--print-pid', '--address', '--config-file', '--session', '--system']) {
      expect(help.stdout).toMatch(new RegExp(`^\\s+${flag}\\s`, 'm'));
    }
    expect(help.stdout).not.toContain('--ready-fd');
    expect(help.stdout).not.toContain('--stderr-fd');
    const twice = await ferrybus(['daemon', '--address=unix:path=/a', '--address', 'unix:path=/b']);
    expect(twice.exitCode, describeResult(twice)).toBe(64);
    expect(twice.stderr).toBe('ferrybus: --address given more than once ("unix:path=/a" and "unix:path=/b")\n');
  });

  it('rejects bad values naming the flag: --print-pid=abc, an empty --pidfile, an unwritable pid file', async () => {
    const address = unixPathAddress(socketPath());
    const pid = await ferrybus(['daemon', `--address=${address}`, '--print-pid=abc']);
    expect(pid.exitCode, describeResult(pid)).toBe(64);
    expect(pid.stderr).toBe('ferrybus: --print-pid takes a file descriptor number, got "abc"\n');
    const empty = await ferrybus(['daemon', `--address=${address}`, '--pidfile=']);
    expect(empty.exitCode, describeResult(empty)).toBe(64);
    expect(empty.stderr).toContain('ferrybus: --pidfile needs a file name');
    const unwritable = path.join(dir, 'no-such-dir', 'ferrybus.pid');
    const bad = await ferrybus(['daemon', `--address=${address}`, `--pidfile=${unwritable}`]);
    expect(bad.exitCode, describeResult(bad)).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`^ferrybus: cannot write pid file ${unwritable.replace(/[.]/g, '\\.')}: ENOENT`, 'm'));
    // It failed to start: its socket is not left behind for clients to hang on.
    expect(existsSync(address.slice('unix:path='.length))).toBe(false);
  });

  it('--pidfile holds the pid (mode 0644) while serving, is removed on SIGTERM; --nopidfile suppresses it; of --fork --nofork the last wins', async () => {
    const pidFile = path.join(dir, 'foreground.pid');
    const bus = startLongRunning(process.execPath, [
      CLI, 'daemon', `--address=${unixPathAddress(socketPath())}`, '--fork', '--nofork', `--pidfile=${pidFile}`, '--print-pid',
    ]);
    defer(() => bus.stop());
    const printed = Number((await bus.waitFor(/^(\d+)\n/m))[1]);
    // --nofork came last: the process we started serves, in the foreground.
    expect(printed).toBe(bus.pid);
    expect(readFileSync(pidFile, 'utf8')).toBe(`${bus.pid}\n`);
    expect(statSync(pidFile).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const exit = await bus.stop();
    expect(exit.exitCode, bus.describe()).toBe(0);
    expect(existsSync(pidFile)).toBe(false);

    const suppressed = path.join(dir, 'suppressed.pid');
    const quiet = startLongRunning(process.execPath, [
      CLI, 'daemon', `--address=${unixPathAddress(socketPath())}`, `--pidfile=${suppressed}`, '--nopidfile', '--print-pid',
    ]);
    defer(() => quiet.stop());
    await quiet.waitFor(/^\d+\n/m);
    expect(existsSync(suppressed)).toBe(false);
  });

  it('--fork returns once the bus is ready, printing the address and the pid of the process that serves', async () => {
    const socket = socketPath();
    const pidFile = path.join(dir, 'forked.pid');
    const r = await ferrybus(['daemon', '--nofork', '--fork', '--print-address', '--print-pid', `--pidfile=${pidFile}`, `--address=${unixPathAddress(socket)}`]);
    const lines = r.stdout.split('\n');
    const pid = Number(lines[1]);
    if (Number.isInteger(pid) && pid > 0) ownForeign(pid);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`^${unixPathAddress(socket)},guid=[0-9a-f]{32}$`));
    // The launcher has exited; the printed pid is alive, so it is not the launcher's.
    expect(isGone(pid)).toBe(false);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('daemon');
    expect(readFileSync(pidFile, 'utf8')).toBe(`${pid}\n`);
    const names = await listNames(lines[0]!);
    expect(names.exitCode, describeResult(names)).toBe(0);
    expect(names.stdout).toContain('string "org.freedesktop.DBus"');

    process.kill(pid, 'SIGTERM');
    expect(await waitGone(pid, 10_000)).toBe(true);
    expect(existsSync(pidFile)).toBe(false);
    expect(existsSync(socket)).toBe(false);
  });

  it('--fork with a bad config fails with the bus\'s error on stderr and leaves no process behind', async () => {
    const config = path.join(dir, `missing-${process.pid}.conf`);
    const r = await ferrybus(['daemon', '--fork', `--config-file=${config}`, '--print-address', `--address=${unixPathAddress(socketPath())}`]);
    for (const pid of processesWith(config)) ownForeign(pid);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`ferrybus: ${config}: cannot read configuration: ENOENT`);
    expect(processesWith(config)).toEqual([]);
  });

  it('--address=systemd: without LISTEN_FDS (or with another process\'s) fails, saying no sockets were passed', async () => {
    const env = { ...process.env };
    delete env.LISTEN_FDS;
    delete env.LISTEN_PID;
    const unset = await runClient(process.execPath, [CLI, 'daemon', '--address=systemd:'], { env });
    expect(unset.exitCode, describeResult(unset)).toBe(1);
    expect(unset.stderr).toBe('ferrybus: --address=systemd: but no sockets were passed (LISTEN_FDS unset)\n');
    const other = await runClient(process.execPath, [CLI, 'daemon', '--address=systemd:'], { env: { ...env, LISTEN_FDS: '1', LISTEN_PID: '1' } });
    expect(other.exitCode, describeResult(other)).toBe(1);
    expect(other.stderr).toMatch(/^ferrybus: --address=systemd: but no sockets were passed \(LISTEN_PID=1 is not this process, \d+\)\n$/);
  });

  it.runIf(existsSync(SOCKET_ACTIVATE))('--address=systemd: serves the socket systemd passed, across a handoff (pid file kept), and leaves its file alone', async () => {
    const socket = socketPath();
    const pidFile = path.join(dir, 'activated.pid');
    const activator = startLongRunning(SOCKET_ACTIVATE, [
      '-l', socket, '--', process.execPath, CLI, 'daemon', '--session', '--address=systemd:', '--print-address', `--pidfile=${pidFile}`,
    ]);
    defer(() => activator.stop());
    await activator.waitFor(`Listening on ${socket}`, { stream: 'stderr' });
    // systemd-socket-activate execs the bus on the first connection: this one.
    const first = await listNames(unixPathAddress(socket));
    expect(first.exitCode, describeResult(first)).toBe(0);
    expect(first.stdout).toContain('string "org.freedesktop.DBus"');
    // The address it reports is the socket's real path, not "systemd:".
    const printed = (await activator.waitFor(/^(unix:\S+)\n/m))[1]!;
    expect(printed).toMatch(new RegExp(`^${unixPathAddress(socket)},guid=[0-9a-f]{32}$`));

    const handoff = await ferrybus(['handoff', '--address', printed, '--json']);
    expect(handoff.exitCode, describeResult(handoff)).toBe(0);
    expect(JSON.parse(handoff.stdout)).toMatchObject({ generation: 2 });
    const after = await listNames(printed);
    expect(after.exitCode, describeResult(after)).toBe(0);
    // Same process after the re-exec: the pid file still names it.
    expect(readFileSync(pidFile, 'utf8')).toBe(`${activator.pid}\n`);

    const exit = await activator.stop();
    expect(exit.exitCode, activator.describe()).toBe(0);
    // The new generation knew about the pid file: a clean exit removes it.
    expect(existsSync(pidFile)).toBe(false);
    // systemd's socket file: a bus started again by the socket unit is reached through it.
    expect(statSync(socket).isSocket()).toBe(true);
  });
});
