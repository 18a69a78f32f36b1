/**
 * Root transitions (DESIGN.md §2): initrd → real root → shutdown root, in a private mount
 * namespace. The scenario (support/roots-scenario.mjs) must run under `unshare --mount`, which
 * vitest's own process cannot do, so it runs as a child and these tests judge its JSON result:
 * after every handoff the daemon (same PID) has its root, executable and cwd in the new tree and
 * no open file or mapping on an old tree, and the load clients (some living in the initrd tree,
 * some on the host) noticed nothing.
 */
import { readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LongRunning, startLongRunning } from '../harness/long-running.js';
import { expectNoLoss, type LoadPeer, type LoadReport } from './support/load-checks.js';

const SCENARIO = fileURLToPath(new URL('./support/roots-scenario.mjs', import.meta.url));

interface OnTree {
  fds: string[];
  maps: string[];
}

interface Inspection {
  pid: number;
  tree: string;
  rootIsTree: boolean;
  exeIsTreeNode: boolean;
  cwdInTree: boolean;
  links: { root: string; exe: string; cwd: string };
  argv0: string;
  onTree: OnTree;
  onOthers: Record<string, OnTree>;
}

interface Probe {
  busId: string;
  owners: Record<string, string>;
  echo: Record<string, number[]>;
  pid: number;
  generation: number;
}

interface Step {
  name: string;
  inspect?: Inspection;
  probe?: Probe;
  handoff?: { command: string; code: number; reply?: { generation: number; pauseMs: number; root: string }; stderr: string };
  initrdEntries?: string[];
  code?: number;
  stderr?: string;
}

interface ScenarioResult {
  ok: boolean;
  error?: string;
  pid: number;
  busId: string;
  steps: Step[];
  peers: Array<LoadPeer & { where: string }>;
  reports: LoadReport[];
  lost: string[];
  daemonAlive: boolean;
  daemonLog: string;
}

describe('root transitions: initrd → real root → shutdown root, same PID, clients unaware', () => {
  let scenario: LongRunning | undefined;
  let result: ScenarioResult;

  beforeAll(async () => {
    // setpriv: the scenario dies with this worker, and everything it started dies with it.
    scenario = startLongRunning('setpriv', [
      '--pdeathsig', 'KILL', '--', 'unshare', '--mount', '--propagation', 'private', process.execPath, SCENARIO,
      '--outer-mnt-ns', readlinkSync('/proc/self/ns/mnt'),
    ]);
    const m = await scenario.waitFor(/^result (.*)$/m, { timeoutMs: 150_000 });
    result = JSON.parse(m[1]!) as ScenarioResult;
  }, 160_000);

  afterAll(async () => {
    // The scenario kills what it started when it exits (or is terminated); the namespace and
    // its mounts go with the last process in it.
    await scenario?.stop();
  });

  const step = (name: string): Step => {
    const s = result.steps.find((x) => x.name === name);
    expect(s, `step "${name}" ran\n${result.error ?? ''}\n--- daemon log\n${result.daemonLog}`).toBeDefined();
    return s!;
  };

  /** The daemon lives entirely in `tree`: root, exe, cwd; nothing open or mapped on `oldTrees`. */
  const expectLivesIn = (s: Step, tree: string) => {
    const i = s.inspect!;
    expect(i.pid).toBe(result.pid);
    expect(i.tree).toBe(tree);
    expect(i.rootIsTree, `/proc/${i.pid}/root is ${tree} (${i.links.root})`).toBe(true);
    expect(i.exeIsTreeNode, `/proc/${i.pid}/exe is ${tree}'s node (${i.links.exe})`).toBe(true);
    expect(i.cwdInTree, `/proc/${i.pid}/cwd is in ${tree} (${i.links.cwd})`).toBe(true);
    // Positive control: the same inspection does see the files of the tree it lives in.
    expect(i.onTree.maps.length, `${tree}'s node and libraries are mapped`).toBeGreaterThan(0);
    for (const [old, on] of Object.entries(i.onOthers)) {
      expect(on, `open files and mappings on ${old}`).toEqual({ fds: [], maps: [] });
    }
  };

  /** The bus answers a fresh connection: same bus, same PID, same owners, calls answered. */
  const expectServing = (s: Step, generation: number) => {
    const p = s.probe!;
    expect(p.busId).toBe(result.busId);
    expect(p.pid).toBe(result.pid);
    expect(p.generation).toBe(generation);
    const services = result.peers.filter((x) => x.role === 'service');
    expect(p.owners).toEqual(Object.fromEntries(services.map((x) => [x.name, x.uniqueName])));
    expect(p.echo).toEqual(Object.fromEntries(services.map((x) => [x.name, [1]])));
  };

  const expectHandedOff = (s: Step, generation: number) => {
    const h = s.handoff!;
    expect(h.code, `${h.command}\n${h.stderr}\n--- daemon log\n${result.daemonLog}`).toBe(0);
    expect(h.reply!.generation).toBe(generation);
  };

  it('the scenario ran to its end', () => {
    expect(result.error, `--- daemon log\n${result.daemonLog}`).toBeUndefined();
    expect(result.ok).toBe(true);
  });

  it('starts chrooted in the initrd, with clients inside the initrd and on the host', () => {
    const s = step('serving from the initrd');
    expectLivesIn(s, 'initrd');
    expectServing(s, 1);
    expect(new Set(result.peers.map((p) => p.where))).toEqual(new Set(['initrd', 'host']));
  });

  it('keeps serving from the initrd after switch-root emptied it', () => {
    const s = step('switch-root: initrd emptied, daemon still in it');
    expect(s.initrdEntries).toEqual([]);
    expectLivesIn(s, 'initrd');
    expectServing(s, 1);
  });

  it('refuses, losing nothing, a handoff it cannot resolve from an emptied root without procfs', () => {
    // The daemon resolves /proc/<caller pid>/root in its own root; the emptied initrd has no
    // procfs (it moved to the real root), which ferrybus-roots expose-proc supplies on a real
    // system. Should the daemon learn to resolve it without, this step will succeed instead.
    const s = step('handoff into the real root without a procfs in the old root');
    expect(s.handoff!.code).not.toBe(0);
    expect(s.handoff!.stderr).toContain('org.ferrybus.Error.HandoffFailed');
    expectServing(s, 1);
  });

  it('moves into the real root named by /proc/<pid>/root of a process living there', () => {
    const s = step('handoff into the real root (--root /proc/<pid>/root)');
    expectHandedOff(s, 2);
    expectLivesIn(s, 'real-root');
    expect(s.inspect!.argv0).toBe('@ferrybus');
    expectServing(s, 2);
  });

  it('hands off again from the real root once the initrd is gone, asked from inside (--root /)', () => {
    const s = step('handoff requested from inside the real root (--root /)');
    expectHandedOff(s, 3);
    expectLivesIn(s, 'real-root');
    expectServing(s, 3);
  });

  it('moves into the shutdown root named by a host path (--root DIR)', () => {
    const s = step('handoff into the shutdown root (--root <path>)');
    expectHandedOff(s, 4);
    expectLivesIn(s, 'shutdown-root');
    expect(s.inspect!.argv0).toBe('@ferrybus');
    expectServing(s, 4);
  });

  it('holds nothing on the real root afterwards: it unmounts without -l', () => {
    const s = step('real root unmounted');
    expect(s.code, s.stderr).toBe(0);
    expectServing(s, 4);
  });

  it('an image started in a root without procfs still hands off (in place)', () => {
    const s = step('handoff in place inside the shutdown root without procfs');
    expectHandedOff(s, 5);
    expectLivesIn(s, 'shutdown-root');
    expectServing(s, 5);
  });

  it('hands off once more for a client inside the shutdown root (--root /), as the pre-shutdown hook does', () => {
    const s = step('handoff requested from inside the shutdown root (--root /)');
    expectHandedOff(s, 6);
    expectLivesIn(s, 'shutdown-root');
    expectServing(s, 6);
  });

  it('clients noticed nothing: no disconnect, no name change, every call and signal delivered once, in order', () => {
    expect(result.lost).toEqual([]);
    expect(result.daemonAlive).toBe(true);
    expect(result.peers.length).toBeGreaterThanOrEqual(8);
    const reports = new Map(result.reports.map((r) => [r.uniqueName, r]));
    expectNoLoss(result.peers, reports, result.busId);
  });
});
