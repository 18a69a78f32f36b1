import { describe, expect, it } from 'vitest';
import { describeResult } from '../harness/run-client.js';
import { useCleanup } from '../harness/use-bus.js';
import { startLongRunning } from '../harness/long-running.js';
import { ferrybus, ferrybusJson, headerOf, rowWith, startPeer, CLI, useFerrybus } from './support/cli.js';

interface OwnerJson {
  uniqueName: string;
  pid: number;
  command: string | null;
  flags: string[];
}
interface NameJson {
  name: string;
  owner: OwnerJson;
  queue: OwnerJson[];
}
interface ConnectionJson {
  uniqueName: string | null;
  pid: number;
  uid: number;
  command: string | null;
  comm: string | null;
  ownedNames: string[];
  queuedNames: string[];
  matchRules: number;
  outboundBytes: number;
  pendingCalls: number;
  monitor: boolean;
  state: string;
}

const ALLOW_REPLACEMENT = 1;
const DO_NOT_QUEUE = 4;

describe('ferrybus names', () => {
  const bus = useFerrybus();
  const defer = useCleanup();

  it('lists each well-known name with its owner (unique name, pid, command) and its queue with flags', async () => {
    const owner = await startPeer(bus(), ['--name', `org.ferrybus.test.Shared:${ALLOW_REPLACEMENT}`, '--name', 'org.ferrybus.test.Solo'], defer);
    const waiter = await startPeer(bus(), ['--name', 'org.ferrybus.test.Shared:0'], defer);
    const second = await startPeer(bus(), ['--name', `org.ferrybus.test.Shared:${ALLOW_REPLACEMENT}`], defer);

    const names = await ferrybusJson<NameJson[]>(['names', '--address', bus().address]);
    expect(names.map((n) => n.name)).toEqual(['org.ferrybus.test.Shared', 'org.ferrybus.test.Solo']);
    const shared = names[0]!;
    expect(shared.owner).toMatchObject({ uniqueName: owner.uniqueName, pid: owner.pid, flags: ['allow-replacement'] });
    expect(shared.owner.command).toContain('bus-peer.mjs');
    expect(shared.queue.map((q) => [q.uniqueName, q.pid, q.flags])).toEqual([
      [waiter.uniqueName, waiter.pid, []],
      [second.uniqueName, second.pid, ['allow-replacement']],
    ]);
    expect(names[1]!.owner).toMatchObject({ uniqueName: owner.uniqueName, pid: owner.pid, flags: [] });
    expect(names[1]!.queue).toEqual([]);

    const r = await ferrybus(['names', '--address', bus().address]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(headerOf(r.stdout)).toEqual(['NAME', 'OWNER', 'PID', 'COMMAND', 'FLAGS', 'QUEUED']);
    const row = rowWith(r.stdout, 'org.ferrybus.test.Shared');
    expect(row).toMatch(new RegExp(`^org\\.ferrybus\\.test\\.Shared\\s+${owner.uniqueName.replace('.', '\\.')}\\s+${owner.pid}\\s+node bus-peer\\.mjs unix:path=`));
    expect(row).toContain(`${waiter.uniqueName} (pid ${waiter.pid}), ${second.uniqueName} (pid ${second.pid}, allow-replacement)`);
    // Columns line up: every row's OWNER starts where the header's does.
    const ownerColumn = r.stdout.indexOf('OWNER');
    for (const line of r.stdout.trimEnd().split('\n').slice(1)) expect(line.slice(ownerColumn)).toMatch(/^:1\.\d+ /);
  });

  it('says when nobody owns a well-known name, and gives [] as JSON', async () => {
    const fresh = await ferrybusJson<NameJson[]>(['names', '--address', bus().address]);
    // Owners of the previous test are gone with their processes.
    expect(fresh).toEqual([]);
    const r = await ferrybus(['names', '--address', bus().address]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('NAME  OWNER  PID  COMMAND  FLAGS  QUEUED\n(no well-known names are owned)\n');
  });
});

describe('ferrybus connections', () => {
  const bus = useFerrybus();
  const defer = useCleanup();

  it('lists each connection: unique name, pid, uid, command, names, match rules, queued bytes, monitor', async () => {
    const a = await startPeer(
      bus(),
      ['--name', `org.ferrybus.test.Held:${DO_NOT_QUEUE}`, '--match', "type='signal',interface='org.ferrybus.test.A'", '--match', "type='signal',member='B'"],
      defer,
    );
    const b = await startPeer(bus(), ['--name', 'org.ferrybus.test.Held:0'], defer);
    const monitor = startLongRunning(process.execPath, [CLI, 'monitor', '--address', bus().address, "type='signal'"]);
    defer(() => monitor.stop());
    await monitor.waitFor(/monitoring/, { stream: 'stderr' });

    const list = await ferrybusJson<ConnectionJson[]>(['connections', '--address', bus().address]);
    const of = (pid: number) => list.filter((c) => c.pid === pid);
    expect(of(a.pid)).toEqual([
      expect.objectContaining({
        uniqueName: a.uniqueName, uid: process.getuid!(), comm: 'node', ownedNames: ['org.ferrybus.test.Held'], queuedNames: [],
        matchRules: 2, outboundBytes: 0, pendingCalls: 0, monitor: false, state: 'connected',
      }),
    ]);
    expect(of(a.pid)[0]!.command).toMatch(/bus-peer\.mjs unix:path=/);
    expect(of(b.pid)).toEqual([
      expect.objectContaining({ uniqueName: b.uniqueName, ownedNames: [], queuedNames: ['org.ferrybus.test.Held'], matchRules: 0, monitor: false }),
    ]);
    expect(of(monitor.pid)).toEqual([expect.objectContaining({ monitor: true, matchRules: 1, state: 'monitor', ownedNames: [] })]);
    expect(of(monitor.pid)[0]!.command).toMatch(/ monitor --address/);
    // The CLI's own connection is listed too: a row whose command is `ferrybus connections`.
    expect(list.some((c) => c.command?.includes(' connections --address'))).toBe(true);

    const r = await ferrybus(['connections', '--address', bus().address]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(headerOf(r.stdout)).toEqual(['UNIQUE', 'PID', 'UID', 'COMMAND', 'NAMES', 'MATCHES', 'OUTBOUND', 'MONITOR']);
    const row = rowWith(r.stdout, a.uniqueName).split(/\s{2,}/);
    expect(row[0]).toBe(a.uniqueName);
    expect(row[1]).toBe(String(a.pid));
    expect(row[2]).toBe(String(process.getuid!()));
    expect(row[3]).toMatch(/^node bus-peer\.mjs unix:path=/);
    expect(row.slice(4)).toEqual(['org.ferrybus.test.Held', '2', '0 B', 'no']);
    expect(rowWith(r.stdout, b.uniqueName)).toMatch(/org\.ferrybus\.test\.Held \(queued\)\s+0\s+0 B\s+no$/);
    expect(rowWith(r.stdout, String(monitor.pid))).toMatch(/\s1\s+\d+(\.\d)? (B|KiB)\s+yes$/);
  });
});
