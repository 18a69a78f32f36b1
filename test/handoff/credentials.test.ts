// A peer's credentials cross a handoff without being read for it: the document carries what
// the bus had read (pid, uid, gid), and the new image reads the supplementary groups from the
// inherited socket the first time someone asks — the kernel keeps them from the connect.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOn } from '../harness/clients.js';
import { MessageClass, NextClient } from '../harness/dbus-next-client.js';
import { SYSTEM_PYTHON } from '../harness/fixtures.js';
import { useCleanup } from '../harness/use-bus.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import { handoffByMethod } from './support/ferrybus.js';

const defer = useCleanup();
let build: BuildSnapshot;
beforeAll(async () => {
  build = await snapshotBuild();
});
afterAll(() => build?.remove());

async function credentialsOf(watcher: NextClient, uniqueName: string): Promise<Record<string, unknown>> {
  const reply = await watcher.bus.call(new MessageClass({
    destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
    member: 'GetConnectionCredentials', signature: 's', body: [uniqueName],
  }));
  const dict = reply!.body[0] as Record<string, { value: unknown }>;
  return Object.fromEntries(Object.entries(dict).map(([k, v]) => [k, v.value]));
}

describe('credentials across a handoff', () => {
  it('a client\'s supplementary groups, never asked for before the handoff, are right after it', async () => {
    const bus = await startSnapshotBus(build);
    defer(() => bus.stop());
    const watcher = await NextClient.connect(bus.address);
    defer(() => watcher.disconnect());
    // A python-dbus client with supplementary groups of its own, connected before the handoff.
    const client = startOn(bus, defer, 'setpriv', [
      '--groups=4242,4343', '--', SYSTEM_PYTHON, '-c',
      `import dbus, sys, time\nb = dbus.bus.BusConnection(sys.argv[1])\nprint('ready', b.get_unique_name(), flush=True)\ntime.sleep(60)`,
      bus.address,
    ]);
    const uniqueName = (await client.waitFor(/^ready (\S+)/m))[1]!;

    expect((await handoffByMethod(watcher, '', bus)).generation).toBe(2);
    const after = await credentialsOf(watcher, uniqueName);
    expect(after.ProcessID).toBe(client.pid);
    expect(after.UnixUserID).toBe(process.getuid!());
    expect([...(after.UnixGroupIDs as number[])].sort((a, b) => a - b)).toEqual([process.getgid!(), 4242, 4343].sort((a, b) => a - b));

    // Read once, they travel in the document from then on.
    expect((await handoffByMethod(watcher, '', bus)).generation).toBe(3);
    expect(await credentialsOf(watcher, uniqueName)).toEqual(after);
  });
});
