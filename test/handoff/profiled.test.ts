/**
 * A bus run under node's sampling profiler (`node --cpu-prof`, how its handoff pause is
 * studied) hands off like any other. The profiler interrupts the main thread with SIGPROF,
 * every 50 µs here: a signal pending at the exec reached the new image before it had a handler,
 * and SIGPROF's default action ended the process, the bus and every client with it.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NextClient } from '../harness/dbus-next-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { busStatus, handoffByMethod } from './support/ferrybus.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';

const HANDOFFS = 4;

let build: BuildSnapshot;
let profiles: string;
let bus: RunningBus;
beforeAll(async () => {
  build = await snapshotBuild();
  profiles = await makeTempDir('ferrybus-profiles');
  bus = await startSnapshotBus(build, [], ['--cpu-prof', `--cpu-prof-dir=${profiles}`, '--cpu-prof-interval=50']);
});
afterAll(async () => {
  await bus?.stop();
  await build?.remove();
  if (profiles) await removeTempDir(profiles);
});

it(`survives ${HANDOFFS} handoffs in a row while profiled, and the last image writes its profile`, async () => {
  const client = await NextClient.connect(bus.address);
  try {
    for (let i = 1; i <= HANDOFFS; i++) {
      const { generation } = await handoffByMethod(client, '', bus);
      expect(generation).toBe(1 + i);
    }
    expect((await busStatus(client)).connections).toBeGreaterThanOrEqual(1);
  } finally {
    await client.disconnect();
  }
  await bus.stop();
  // Only the image that exits writes one: the profiler ran in it from its start.
  expect(readdirSync(profiles).filter((f) => path.extname(f) === '.cpuprofile')).toHaveLength(1);
}, 120_000);
