import { readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeResult } from '../harness/run-client.js';
import { useCleanup } from '../harness/use-bus.js';
import { ferrybus, ferrybusJson, startPeer, useFerrybus } from './support/cli.js';

interface StatusJson {
  socket: string;
  pid: number;
  generation: number;
  root: string | null;
  rootError: string | null;
  startedAt: string;
  uptimeSeconds: number;
  addresses: string[];
  connections: number;
  monitors: number;
  names: number;
  queuedBytes: number;
  pendingCalls: number;
  guid: string;
  lastHandoff: { at: string; pauseMs: number; root: string; phasesMs: Record<string, number> } | null;
}

describe('ferrybus status', () => {
  const bus = useFerrybus();
  const defer = useCleanup();

  it('reports the daemon it reached: pid, generation, root as /proc shows it here, address and counts', async () => {
    await startPeer(bus(), ['--name', 'org.ferrybus.test.StatusA', '--name', 'org.ferrybus.test.StatusB'], defer);
    const s = await ferrybusJson<StatusJson>(['status', '--address', bus().address]);
    expect(s.pid).toBe(bus().pid);
    expect(s.generation).toBe(1);
    expect(s.root).toBe(readlinkSync(`/proc/${bus().pid}/root`));
    expect(s.rootError).toBeNull();
    expect(s.socket).toBe(bus().socketPath);
    expect(s.addresses).toEqual([bus().address]);
    expect(s.guid).toBe(/guid=([0-9a-f]{32})/.exec(bus().address)![1]);
    // The peer and the CLI's own connection.
    expect(s.connections).toBeGreaterThanOrEqual(2);
    expect(s.names).toBe(2);
    expect(s.queuedBytes).toBe(0);
    expect(s.pendingCalls).toBe(0);
    expect(s.monitors).toBe(0);
    expect(s.lastHandoff).toBeNull();
    expect(Date.parse(s.startedAt)).toBeLessThanOrEqual(Date.now());
    expect(s.uptimeSeconds).toBeGreaterThanOrEqual(0);
  });

  it('prints aligned "key  value" lines for people', async () => {
    const r = await ferrybus(['status', '--address', bus().address]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    // Every value starts in the same column, after the longest key and two spaces.
    const valueColumn = /^\S+(?: \S+)*\s{2,}/.exec(lines[0]!)![0].length;
    const at = (key: string) => {
      const line = lines.find((l) => l.startsWith(key + ' '));
      if (!line) throw new Error(`no "${key}" line in\n${r.stdout}`);
      expect(line.slice(0, valueColumn).trim()).toBe(key);
      expect(line[valueColumn]).not.toBe(' ');
      return line.slice(valueColumn).trim();
    };
    expect(at('pid')).toBe(String(bus().pid));
    expect(at('generation')).toBe('1');
    expect(at('root')).toBe(readlinkSync(`/proc/${bus().pid}/root`));
    expect(at('address')).toBe(bus().address);
    expect(at('started')).toMatch(/^\d{4}-\d\d-\d\dT.* \(up \d+s\)$/);
    expect(at('connections')).toMatch(/^\d+ \(0 monitors\)$/);
    expect(at('queued bytes')).toMatch(/^0 B \(quota 127\.0 MiB per connection\)$/);
    expect(at('last handoff')).toBe('none');
  });

  it('shows the new generation and the last handoff (time, pause, root) after `ferrybus handoff`', async () => {
    const h = await ferrybus(['handoff', '--address', bus().address, '--json'], { timeoutMs: 60_000 });
    expect(h.exitCode, describeResult(h)).toBe(0);
    const handoff = JSON.parse(h.stdout) as { generation: number; pauseMs: number };
    expect(handoff.generation).toBe(2);

    const s = await ferrybusJson<StatusJson>(['status', '--address', bus().address]);
    expect(s.pid).toBe(bus().pid); // same process, new image
    expect(s.generation).toBe(2);
    expect(s.lastHandoff).not.toBeNull();
    expect(s.lastHandoff!.root).toBe('/');
    expect(Math.abs(Date.now() - Date.parse(s.lastHandoff!.at))).toBeLessThan(60_000);
    expect(s.lastHandoff!.pauseMs).toBeGreaterThan(0);
    // Where the pause went: the old image's part, then the new image's, in order. Run from dist/
    // (no bundle loader) node's start and the program's loading are one phase.
    const phases = s.lastHandoff!.phasesMs;
    expect(Object.keys(phases)).toEqual([
      'old image', 'node start-up + program loaded', 'program started', 'document read', 'core built', 'connections restored',
    ]);
    for (const [name, value] of Object.entries(phases)) expect(value, name).toBeGreaterThanOrEqual(0);
    const sum = Object.values(phases).reduce((a, b) => a + b, 0);
    expect(sum).toBeLessThanOrEqual(s.lastHandoff!.pauseMs + 0.01);
    expect(sum).toBeGreaterThan(s.lastHandoff!.pauseMs - 0.01 * Object.keys(phases).length);

    const r = await ferrybus(['status', '--address', bus().address]);
    expect(r.stdout).toMatch(/^generation\s+2$/m);
    expect(r.stdout).toMatch(/^last handoff\s+\d{4}-\d\d-\d\dT\S+ \(pause \d+\.\d ms, into \/\)$/m);
    expect(r.stdout).toMatch(/^pause, ms\s+old image \d+\.\d, node start-up \+ program loaded \d+\.\d, program started \d+\.\d, .*connections restored \d+\.\d$/m);
  });
});
