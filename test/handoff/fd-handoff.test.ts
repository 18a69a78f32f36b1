// Fds that wait in ferrybus's queues cross a handoff: the new image inherits exactly those fds,
// attaches each to its message again and delivers it once; the daemon's fd count returns to
// where it was. The slow reader is a real libdbus subscriber, stopped with SIGSTOP. An fd in a
// half-received message crosses too, and pending_fd_timeout still closes its sender afterwards.
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOn, startOn } from '../harness/clients.js';
import { MessageClass, NextClient } from '../harness/dbus-next-client.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { describeResult } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { useCleanup } from '../harness/use-bus.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import { handoffByMethod, logLines } from './support/ferrybus.js';
import { FdRawClient, TYPE } from '../harness/fd-raw-client.js';
import { settlesAt, steadyFdCount as steadyCount } from '../harness/fd-count.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';

const FD_PEER = fixturePath('fd-peer.py');
const defer = useCleanup();
let build: BuildSnapshot;
let bus: RunningBus;
let watcher: NextClient;

beforeAll(async () => {
  build = await snapshotBuild();
  bus = await startSnapshotBus(build);
  watcher = await NextClient.connect(bus.address);
});
afterAll(async () => {
  watcher?.disconnect();
  await bus?.stop();
  build?.remove();
});

const fdCount = () => readdirSync(`/proc/${bus.pid}/fd`).length;

async function steadyFdCount(): Promise<number> {
  let last = fdCount();
  for (let stable = 0; stable < 5;) {
    await new Promise((r) => setTimeout(r, 60));
    const now = fdCount();
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

/** Debug.Stats' OutgoingFDs of a connection: fds queued for it in the bus. */
async function outgoingFds(uniqueName: string): Promise<number> {
  const reply = await watcher.bus.call(new MessageClass({
    destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus.Debug.Stats',
    member: 'GetConnectionStats', signature: 's', body: [uniqueName],
  }));
  const stats = reply!.body[0] as Record<string, { value: number }>;
  return stats.OutgoingFDs!.value;
}

describe('fds queued for a slow reader across a handoff', () => {
  it('arrive once each, and work, after the handoff; no fd is left behind', async () => {
    const baseline = await steadyFdCount();
    const subscriber = startOn(bus, defer, SYSTEM_PYTHON, [FD_PEER, 'subscriber', bus.address, '2']);
    const uniqueName = (await subscriber.waitFor(/^ready (\S+)/m))[1]!;
    process.kill(subscriber.pid, 'SIGSTOP');
    defer(() => {
      try {
        process.kill(subscriber.pid, 'SIGCONT');
      } catch {
        // already gone
      }
    });
    // A megabyte of fillers fills the stopped reader's socket: the fd signals wait in the bus.
    for (const [text, fillers] of [['before the handoff 1', '4'], ['before the handoff 2', '0']] as const) {
      const r = await runOn(bus, SYSTEM_PYTHON, [FD_PEER, 'emit', bus.address, text, fillers]);
      expect(r.exitCode, describeResult(r)).toBe(0);
    }
    // Both memfds are held by the bus while they wait.
    expect(fdCount()).toBeGreaterThanOrEqual(baseline + 1 + 2);
    expect(await outgoingFds(uniqueName)).toBe(2);

    const { generation } = await handoffByMethod(watcher, '', bus);
    expect(generation).toBe(2);
    expect(await outgoingFds(uniqueName)).toBe(2); // still queued, now in the new image
    process.kill(subscriber.pid, 'SIGCONT');
    const exit = await subscriber.exited;
    expect(exit.exitCode, subscriber.describe()).toBe(0);
    const lines = subscriber.stdout.trim().split('\n').slice(1);
    expect(lines).toEqual(['filler 262144', 'filler 262144', 'filler 262144', 'filler 262144', 'got before the handoff 1', 'got before the handoff 2']);
    const deadline = Date.now() + 5_000;
    while (fdCount() !== baseline && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(fdCount()).toBe(baseline);
  });
});

describe('an fd in a half-received message across a handoff', () => {
  const TIMEOUT_MS = 8000;
  let timed: RunningBus;
  let dir: string;
  let client: NextClient;
  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-pending-fd');
    const config = path.join(dir, 'bus.conf');
    writeFileSync(config, `<busconfig><listen>unix:tmpdir=/tmp</listen><policy context="default"><allow user="*"/><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy><limit name="pending_fd_timeout">${TIMEOUT_MS}</limit></busconfig>`);
    timed = await startSnapshotBus(build, [`--config-file=${config}`]);
    client = await NextClient.connect(timed.address);
  });
  afterAll(async () => {
    client?.disconnect();
    await timed?.stop();
    await removeTempDir(dir);
  });

  async function stats(uniqueName: string): Promise<Record<string, { value: number }>> {
    const reply = await client.bus.call(new MessageClass({
      destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus.Debug.Stats',
      member: 'GetConnectionStats', signature: 's', body: [uniqueName],
    }));
    return reply!.body[0] as Record<string, { value: number }>;
  }

  it('is carried to the new image, which closes the sender after pending_fd_timeout (counted again from the handoff); no fd is left behind', { timeout: 60_000 }, async () => {
    const baseline = await steadyCount(timed.pid);
    const staller = await FdRawClient.connect(timed.socketPath);
    defer(() => staller.quit());
    const { bytes } = staller.encode({ type: TYPE.METHOD_CALL, destination: client.uniqueName, path: '/x', interface: 'org.ferrybus.Test', member: 'Take', unixFds: 1 }, 'hs', [0, 'x'.repeat(1024)]);
    await staller.sendBytes(bytes.subarray(0, 64), 1);
    expect((await stats(staller.uniqueName)).IncomingFDs!.value).toBe(1);

    const from = timed.process.mark('stderr');
    const { generation } = await handoffByMethod(client, '', timed);
    expect(generation).toBe(2);
    expect((await stats(staller.uniqueName)).IncomingFDs!.value).toBe(1); // held by the new image now
    expect(staller.closedReason()).toBeUndefined();

    expect(await staller.whenClosed(TIMEOUT_MS * 3)).toBe('end of stream');
    // The new image closed it: its log line comes after the handoff completed.
    const log = timed.process.text('stderr', from);
    const completed = log.indexOf(logLines(timed.process, 'handoff-complete', from)[0] ?? '\u0000');
    const dropped = log.search(/client-dropped: .*held 1 unix fds in a message not received whole for longer than pending_fd_timeout \(8000 ms\)/);
    expect(completed).toBeGreaterThanOrEqual(0);
    expect(dropped).toBeGreaterThan(completed);
    expect(await settlesAt(timed.pid, baseline)).toBe(baseline);
  });
});
