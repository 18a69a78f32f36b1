// NODE_EXTRA_CA_CERTS makes node parse its root certificates before it runs anything (tens of
// ms of every handoff's pause). A handoff execs the new image without it and puts it back: the
// services the bus starts afterwards, and the image after the next handoff, still get it.
import { readFileSync, writeFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NextClient } from '../harness/dbus-next-client.js';
import { runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import { handoffByMethod, writePermissiveConfig } from './support/ferrybus.js';

let build: BuildSnapshot;
let bus: RunningBus;
let dir: string;
let client: NextClient;
let certs: string;
const before = process.env.NODE_EXTRA_CA_CERTS;

beforeAll(async () => {
  build = await snapshotBuild();
  dir = await makeTempDir('ferrybus-exec-env');
  // One real certificate: node loads it without a warning.
  certs = path.join(dir, 'extra-ca.pem');
  writeFileSync(certs, rootCertificates[0]! + '\n');
  const services = path.join(dir, 'services');
  await import('node:fs/promises').then((fs) => fs.mkdir(services));
  for (const n of [1, 2]) {
    writeFileSync(path.join(services, `org.ferrybus.Test.Env${n}.service`), `[D-BUS Service]
Name=org.ferrybus.Test.Env${n}
Exec=/bin/sh -c 'env > ${path.join(dir, `env-${n}`)}; exit 3'
`);
  }
  const config = writePermissiveConfig(dir, [services]);
  process.env.NODE_EXTRA_CA_CERTS = certs;
  try {
    bus = await startSnapshotBus(build, [`--config-file=${config}`]);
  } finally {
    if (before === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
    else process.env.NODE_EXTRA_CA_CERTS = before;
  }
  client = await NextClient.connect(bus.address);
});
afterAll(async () => {
  client?.disconnect();
  await bus?.stop();
  await build?.remove();
  if (dir) await removeTempDir(dir);
});

const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');

/** Starts a service by name and returns the environment it ran with. */
async function serviceEnvironment(n: number): Promise<string[]> {
  const r = await runClient('dbus-send', [`--bus=${bus.address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
    'org.freedesktop.DBus.StartServiceByName', `string:org.ferrybus.Test.Env${n}`, 'uint32:0'], { timeoutMs: 30_000 });
  // The service writes its environment and exits 3 without taking its name: the start fails.
  expect(r.stdout + r.stderr).toMatch(/Spawn\.ChildExited|exited/);
  return readFileSync(path.join(dir, `env-${n}`), 'utf8').split('\n');
}

describe('the environment across a handoff', () => {
  it('execs the new image without NODE_EXTRA_CA_CERTS and gives it back to the services started after', async () => {
    expect(environ(bus.pid)).toContain(`NODE_EXTRA_CA_CERTS=${certs}`);
    expect((await handoffByMethod(client, '', bus)).generation).toBe(2);
    // What execve got: the variable under another name, so node did not read it.
    const exec = environ(bus.pid);
    expect(exec.filter((e) => e.startsWith('NODE_EXTRA_CA_CERTS='))).toEqual([]);
    expect(exec).toContain(`FERRYBUS_HELD_NODE_EXTRA_CA_CERTS=${certs}`);

    const first = await serviceEnvironment(1);
    expect(first).toContain(`NODE_EXTRA_CA_CERTS=${certs}`);
    expect(first.filter((e) => e.startsWith('FERRYBUS_HELD_'))).toEqual([]);

    // The next image holds it back again, and gives it back again.
    expect((await handoffByMethod(client, '', bus)).generation).toBe(3);
    expect(environ(bus.pid)).toContain(`FERRYBUS_HELD_NODE_EXTRA_CA_CERTS=${certs}`);
    const second = await serviceEnvironment(2);
    expect(second).toContain(`NODE_EXTRA_CA_CERTS=${certs}`);
  }, 60_000);
});
