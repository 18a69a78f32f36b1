// Service activation across a handoff: messages held for a service that is still starting
// (one of them carrying an fd), a StartServiceByName waiting for its answer, and the programs
// the old image started all cross into the new image. The services start only when the test
// opens a gate file, after the handoff: the new image delivers what waited, in order, answers
// the start request, and reports the exit of a program the old image started.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOn } from '../harness/clients.js';
import { NextClient } from '../harness/dbus-next-client.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { useCleanup } from '../harness/use-bus.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import { busStatus, handoffByMethod, SUPERVISOR, writePermissiveConfig } from './support/ferrybus.js';

const defer = useCleanup();
let build: BuildSnapshot;
let bus: RunningBus;
let dir: string;
let watcher: NextClient;

/**
 * A program that waits for `gate` to exist, then runs `then`; it gives up when the gate's
 * directory is removed (the test ended without opening it), so nothing is left behind.
 */
const gated = (gate: string, then: string) =>
  `/bin/sh -c 'while [ ! -e ${gate} ]; do [ -d ${path.dirname(gate)} ] || exit 0; sleep 0.05; done; ${then}'`;

beforeAll(async () => {
  build = await snapshotBuild();
  dir = await makeTempDir('ferrybus-activation-handoff');
  const services = path.join(dir, 'services');
  await import('node:fs/promises').then((fs) => fs.mkdir(services));
  writeFileSync(path.join(services, 'org.ferrybus.Test.Fd.service'), `[D-BUS Service]
Name=org.ferrybus.Test.Fd
Exec=${gated(path.join(dir, 'open-fd'), `exec ${SYSTEM_PYTHON} ${fixturePath('fd-peer.py')} service "$DBUS_STARTER_ADDRESS"`)}
`);
  writeFileSync(path.join(services, 'org.ferrybus.Test.Fails.service'), `[D-BUS Service]
Name=org.ferrybus.Test.Fails
Exec=${gated(path.join(dir, 'open-fails'), 'exit 4')}
`);
  const config = writePermissiveConfig(dir, [services], '<limit name="service_start_timeout">60000</limit>');
  bus = await startSnapshotBus(build, [`--config-file=${config}`]);
  watcher = await NextClient.connect(bus.address);
});
afterAll(async () => {
  watcher?.disconnect();
  await bus?.stop();
  await build?.remove();
  if (dir) await removeTempDir(dir);
});

const fdCount = () => readdirSync(`/proc/${bus.pid}/fd`).length;

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${bus.process.describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('activation across a handoff', () => {
  it('delivers what waited for a starting service, fds included, after the handoff; the old image\'s programs are still watched', async () => {
    const baseline = fdCount();
    // A libdbus client whose first call carries a pipe's write end: it waits in the bus.
    const client = startOn(bus, defer, SYSTEM_PYTHON, [fixturePath('fd-peer.py'), 'client', bus.address]);
    const start = runClient('busctl', [`--address=${bus.address}`, '--timeout=60', 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
      'org.freedesktop.DBus', 'StartServiceByName', 'su', 'org.ferrybus.Test.Fd', '0'], { timeoutMs: 60_000 });
    const fails = runClient('dbus-send', [`--bus=${bus.address}`, '--reply-timeout=60000', '--print-reply', '--dest=org.ferrybus.Test.Fails', '/x', 'a.b.C'], { timeoutMs: 60_000 });
    await until('three requests held for two services', async () => {
      const s = await watcher.driver('Status', '', [], SUPERVISOR) as [Record<string, { value: number }>];
      return s[0].Activating?.value === 2 && s[0].HeldMessages?.value === 3;
    });

    const { generation } = await handoffByMethod(watcher, '', bus);
    expect(generation).toBe(2);
    const after = (await watcher.driver('Status', '', [], SUPERVISOR)) as [Record<string, { value: number }>];
    expect([after[0].Activating?.value, after[0].HeldMessages?.value]).toEqual([2, 3]);

    // The programs were started by the old image; they go on only now.
    writeFileSync(path.join(dir, 'open-fd'), '');
    writeFileSync(path.join(dir, 'open-fails'), '');
    await client.waitFor(/^ok many 8 /m, { timeoutMs: 30_000 });
    expect(client.stdout).toMatch(/^ok pipe written by the service$/m);
    expect(client.stdout).toMatch(/^ok memfd kept in a memfd$/m);
    const started = await start;
    expect(started.stdout.trim(), describeResult(started)).toBe('u 1');
    const failed = await fails;
    expect(failed.stderr, describeResult(failed)).toContain('Error org.freedesktop.DBus.Error.Spawn.ChildExited: Process org.ferrybus.Test.Fails exited with status 4');
    expect((await busStatus(watcher)).generation).toBe(2);
    // Everything held was delivered or answered: only the service's connection remains.
    await until('the daemon\'s fds back to the baseline plus the service', () => fdCount() === baseline + 1);
  });

  it('reaps a program it activated before a handoff when that program ends after it (no zombie)', async () => {
    // The service runs (taken its name) once its gate is open; started by this image or the last.
    writeFileSync(path.join(dir, 'open-fd'), '');
    const started = await runClient('busctl', [`--address=${bus.address}`, '--timeout=30', 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
      'org.freedesktop.DBus', 'StartServiceByName', 'su', 'org.ferrybus.Test.Fd', '0'], { timeoutMs: 40_000 });
    expect(started.stdout.trim(), describeResult(started)).toMatch(/^u [12]$/);
    const [pid] = (await watcher.driver('GetConnectionUnixProcessID', 's', ['org.ferrybus.Test.Fd'])) as [number];
    // The service is the bus's own child (the activation's shell exec'd it).
    expect(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]).toBe(String(bus.pid));

    const { generation } = await handoffByMethod(watcher, '', bus);
    expect(generation).toBeGreaterThanOrEqual(2);
    process.kill(pid, 'SIGTERM');
    // A child nobody reaps stays in the process table as a zombie for ever.
    await until(`the ended service (pid ${pid}) reaped by the new image`, () => !existsSync(`/proc/${pid}`));
  });
});
