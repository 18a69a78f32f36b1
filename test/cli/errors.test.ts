import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { startBus } from '../harness/start-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { CLI, ferrybus, useFerrybus } from './support/cli.js';

const BUS_COMMANDS = [['status'], ['names'], ['connections'], ['queue'], ['users'], ['monitor'], ['handoff']];
const isRoot = process.getuid!() === 0;
const NOBODY = 65534;

/** Runs the CLI as uid/gid 65534 with a given environment (needs root to switch). */
function asNobody(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runClient('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, CLI, ...args], {
    env: { PATH: process.env.PATH, ...env },
    timeoutMs: 20_000,
  });
}

describe('ferrybus without a daemon', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-cli-errors');
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it.each(BUS_COMMANDS)('`ferrybus %s` names the socket, the errno, the address it tried, and exits 1', async (command) => {
    const socket = path.join(dir, 'no-bus-here');
    const r = await ferrybus([command!, '--address', `unix:path=${socket}`]);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `ferrybus: cannot connect to ${socket}: ENOENT — is the daemon running? (looked at unix:path=${socket} from --address)\n`,
    );
  });

  it.runIf(isRoot)('without --address says it tried the quick-start bus, then the system bus, and how to choose another', async () => {
    // A non-root user's quick-start bus is $XDG_RUNTIME_DIR/ferrybus/bus (root's is
    // /run/ferrybus/bus, where a real bus may be running); the system bus is where
    // DBUS_SYSTEM_BUS_ADDRESS says (/run/dbus/system_bus_socket, where one may be running).
    chmodSync(dir, 0o755);
    const system = path.join(dir, 'system_bus_socket');
    const r = await asNobody(['status'], { XDG_RUNTIME_DIR: dir, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${system}` });
    const socket = path.join(dir, 'ferrybus', 'bus');
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toBe(
      `ferrybus: cannot connect to any of ${socket}: ENOENT, ${system}: ENOENT — is the daemon running? ` +
        `(looked at unix:path=${socket};unix:path=${system}, the default address; set --address)\n`,
    );
  });

  it('explains a socket path where nothing listens (ECONNREFUSED)', async () => {
    const stale = path.join(dir, 'stale');
    writeFileSync(stale, '');
    const r = await ferrybus(['status', '--address', `unix:path=${stale}`]);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^ferrybus: cannot connect to ${stale}: ECONNREFUSED — nothing listens on that socket .*; is the daemon running\\? \\(looked at unix:path=${stale} from --address\\)\\n$`));
  });

  it('treats a malformed or unusable --address as a usage error (exit 64)', async () => {
    const bad = await ferrybus(['status', '--address', 'nonsense']);
    expect(bad.exitCode, describeResult(bad)).toBe(64);
    expect(bad.stderr).toMatch(/^ferrybus: bad bus address "nonsense": .*does not contain a colon\n$/);
    const tcp = await ferrybus(['names', '--address', 'tcp:host=localhost,port=1234']);
    expect(tcp.exitCode, describeResult(tcp)).toBe(64);
    expect(tcp.stderr).toMatch(/^ferrybus: bad bus address "tcp:host=localhost,port=1234": nothing to connect to \(.*only unix: addresses/);
  });

  it('rejects unknown commands, unknown flags, missing arguments and a bad --timeout with exit 64', async () => {
    for (const args of [['frobnicate'], ['status', '--frob'], ['inspect'], ['status', '--timeout', '0'], []]) {
      const r = await ferrybus(args);
      expect(r.exitCode, describeResult(r)).toBe(64);
      expect(r.stderr).toMatch(/^ferrybus: /);
    }
  });
});

describe('ferrybus against a bus that will not answer', () => {
  const bus = useFerrybus();

  it('gives up after --timeout seconds and says the daemon may be wedged', async () => {
    process.kill(bus().pid, 'SIGSTOP');
    try {
      const started = Date.now();
      const r = await ferrybus(['status', '--address', bus().address, '--timeout', '1']);
      expect(r.exitCode, describeResult(r)).toBe(1);
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(r.stderr).toBe(
        `ferrybus: no answer to authentication in 1 s; the daemon may be busy or wedged at ${bus().socketPath} (looked at ${bus().address} from --address)\n`,
      );
    } finally {
      process.kill(bus().pid, 'SIGCONT');
    }
  });

  it.runIf(isRoot)('tells a caller who may not use the supervisor methods why, and that root may', async () => {
    const dir = path.dirname(bus().socketPath);
    // The temp dir is 0700: the socket cannot even be reached.
    const unreachable = await asNobody(['connections', '--address', bus().address]);
    expect(unreachable.exitCode, describeResult(unreachable)).toBe(1);
    expect(unreachable.stderr).toMatch(
      new RegExp(`^ferrybus: cannot connect to ${bus().socketPath}: EACCES — permission denied; run as root or as the user the bus runs as`),
    );
    chmodSync(dir, 0o755);
    const denied = await asNobody(['connections', '--address', bus().address]);
    expect(denied.exitCode, describeResult(denied)).toBe(1);
    expect(denied.stderr).toBe(
      `ferrybus: the bus at ${bus().socketPath} refused org.ferrybus.Supervisor1.ListConnections: ` +
        `ListConnections is allowed to uid 0 only (caller is uid ${NOBODY}) (run as root or as the bus's user)\n`,
    );
    const users = await asNobody(['users', '--address', bus().address]);
    expect(users.exitCode, describeResult(users)).toBe(1);
    expect(users.stderr).toMatch(/refused org\.ferrybus\.Supervisor1\.ListUsers: ListUsers is allowed to uid 0 only/);
  });
});

describe('ferrybus against a bus that is not ferrybus', () => {
  let bus: RunningBus | undefined;
  beforeAll(async () => {
    bus = await startBus('dbus-daemon');
  });
  afterAll(async () => {
    await bus?.stop();
  });

  it('says the bus is not ferrybus: its driver does not offer the supervisor interface', async () => {
    const r = await ferrybus(['status', '--address', bus!.address]);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toMatch(
      /^ferrybus: the bus at \S+ is not ferrybus: its driver does not offer org\.ferrybus\.Supervisor1 \(Status was answered org\.freedesktop\.DBus\.Error\.\w+\); .* from --address\)\n$/,
    );
  });
});
