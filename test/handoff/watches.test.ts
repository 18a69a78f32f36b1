// A new image serves the clients that waited through the pause first, then sets up its watches,
// and answers the Handoff call only once they are ready (as a first start prints its address):
// a service file or a policy file written as soon as the handoff returns is picked up.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NextClient } from '../harness/dbus-next-client.js';
import { runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import { handoffByMethod, logLines, writePermissiveConfig } from './support/ferrybus.js';

let build: BuildSnapshot;
let bus: RunningBus;
let dir: string;
let services: string;
let client: NextClient;

beforeAll(async () => {
  build = await snapshotBuild();
  dir = await makeTempDir('ferrybus-watches');
  services = path.join(dir, 'services');
  const policies = path.join(dir, 'policies');
  const fs = await import('node:fs/promises');
  await fs.mkdir(services);
  await fs.mkdir(policies);
  const config = writePermissiveConfig(dir, [services], `<includedir>${policies}</includedir>`);
  bus = await startSnapshotBus(build, [`--config-file=${config}`]);
  client = await NextClient.connect(bus.address);
});
afterAll(async () => {
  client?.disconnect();
  await bus?.stop();
  await build?.remove();
  if (dir) await removeTempDir(dir);
});

async function activatable(): Promise<string[]> {
  const r = await runClient('busctl', [`--address=${bus.address}`, '--json=short', 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
    'org.freedesktop.DBus', 'ListActivatableNames']);
  expect(r.exitCode, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { data: [string[]] }).data[0];
}

async function until(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${bus.process.describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('watches after a handoff', () => {
  it('picks up a service file and a policy file written right after the handoff', async () => {
    expect((await handoffByMethod(client, '', bus)).generation).toBe(2);
    // At once, as a package manager might while the bus moves into the real root.
    writeFileSync(path.join(services, 'org.ferrybus.Test.Late.service'), '[D-BUS Service]\nName=org.ferrybus.Test.Late\nExec=/bin/true\n');
    await until('the new service file to be activatable', async () => (await activatable()).includes('org.ferrybus.Test.Late'));

    const from = logLines(bus.process, 'reloaded').length;
    writeFileSync(path.join(dir, 'policies', 'late.conf'), `<busconfig>
  <policy context="default"><deny own="org.ferrybus.Test.Denied"/></policy>
</busconfig>`);
    await until('the new policy file to be applied', () => logLines(bus.process, 'reloaded').length > from);
    const own = await runClient('busctl', [`--address=${bus.address}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
      'org.freedesktop.DBus', 'RequestName', 'su', 'org.ferrybus.Test.Denied', '0']);
    expect(own.exitCode).not.toBe(0);
    expect(own.stderr).toMatch(/not allowed|AccessDenied|denied/i);
  }, 60_000);
});
