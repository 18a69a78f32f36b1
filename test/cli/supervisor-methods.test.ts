import { describe, expect, it } from 'vitest';
import { describeResult, runClient } from '../harness/run-client.js';
import { useCleanup } from '../harness/use-bus.js';
import { startPeer, useFerrybus } from './support/cli.js';

/**
 * The typed Supervisor1 listings are for any privileged client, not only the CLI: busctl reads
 * them with nothing but their signatures.
 */
describe('org.ferrybus.Supervisor1 listings through busctl', () => {
  const bus = useFerrybus();
  const defer = useCleanup();

  async function busctl(member: string): Promise<{ type: string; data: unknown[] }> {
    const r = await runClient('busctl', [
      `--address=${bus().address}`, '--json=short', 'call', 'org.freedesktop.DBus', '/org/ferrybus/Supervisor1', 'org.ferrybus.Supervisor1', member,
    ]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    return JSON.parse(r.stdout) as { type: string; data: unknown[] };
  }

  it('ListConnections() → a(usuuuasasuttub), ListNameOwners() → a(sa(suu)), ListPendingCalls() → a(sus)', async () => {
    const a = await startPeer(bus(), ['--name', 'org.ferrybus.test.M:1', '--match', "type='signal'", '--match', "member='X'"], defer);
    const b = await startPeer(bus(), ['--name', 'org.ferrybus.test.M:0'], defer);

    const conns = await busctl('ListConnections');
    expect(conns.type).toBe('a(usuuuasasuttub)');
    const rows = conns.data[0] as unknown[][];
    const rowA = rows.find((r) => r[1] === a.uniqueName)!;
    expect(rowA).toEqual([expect.any(Number), a.uniqueName, a.pid, process.getuid!(), expect.any(Number), ['org.ferrybus.test.M'], [], 2, 0, 0, 0, false]);
    const rowB = rows.find((r) => r[1] === b.uniqueName)!;
    expect(rowB.slice(5, 8)).toEqual([[], ['org.ferrybus.test.M'], 0]);
    // busctl's own connection is listed too.
    expect(rows.length).toBeGreaterThanOrEqual(3);

    const names = await busctl('ListNameOwners');
    expect(names).toEqual({ type: 'a(sa(suu))', data: [[['org.ferrybus.test.M', [[a.uniqueName, a.pid, 1], [b.uniqueName, b.pid, 0]]]]] });

    const calls = await busctl('ListPendingCalls');
    expect(calls).toEqual({ type: 'a(sus)', data: [[]] });
  });

  it('Status() keeps its keys and adds the totals the CLI shows', async () => {
    const s = await busctl('Status');
    expect(s.type).toBe('a{sv}');
    const keys = Object.keys(s.data[0] as Record<string, unknown>);
    for (const k of ['Pid', 'Generation', 'StartedAt', 'UptimeSeconds', 'Addresses', 'Connections', 'Names', 'QueuedBytes',
      'Monitors', 'Authenticating', 'PendingCalls', 'MaxOutgoingBytes', 'Guid', 'Kind']) {
      expect(keys).toContain(k);
    }
  });
});
