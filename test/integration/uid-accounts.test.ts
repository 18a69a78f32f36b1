// Per-uid accounting on real sockets with real uids: the connections of a uid that stopped
// reading share one max_outgoing_bytes between them, and the bytes of a flooding caller are
// its own. ferrybus only: dbus-daemon bounds each connection, not each uid.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBusWithConfig } from '../harness/config-bus.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning } from '../harness/long-running.js';
import { connectNext } from '../harness/next-clients.js';
import { MessageClass, MessageType } from '../harness/dbus-next-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { asUser, ensureTestUser, isRoot, type TestUser } from '../harness/test-users.js';
import { useCleanup } from '../harness/use-bus.js';
import { ferrybus, ferrybusJson } from '../cli/support/cli.js';
import { describeResult } from '../harness/run-client.js';

const QUOTA = 1024 * 1024;
const FLOOD = 'org.ferrybus.test.Flood';

const CONFIG = (listen: string) => `<busconfig>
  <listen>${listen}</listen>
  <policy context="default"><allow user="*"/><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>
  <limit name="max_outgoing_bytes">${QUOTA}</limit>
</busconfig>`;

interface UserRow { uid: number; user: string | null; connections: { held: number; ceiling: number }; queuedBytes: { held: number; ceiling: number } }
interface ConnectionRow { uniqueName: string | null; uid: number; outboundBytes: number }

describe.skipIf(!isRoot)('per-uid accounting (ferrybus, real uids)', () => {
  const defer = useCleanup();
  let bus: RunningBus;
  let bob: TestUser;

  beforeAll(async () => {
    bob = ensureTestUser('fbtest-bob');
    bus = await startBusWithConfig('ferrybus', CONFIG);
  });
  afterAll(() => bus?.stop());

  function subscriber(user: TestUser | undefined, stall: boolean) {
    const argv = [...(user ? asUser(user) : []), SYSTEM_PYTHON, fixturePath('signal-subscriber.py'),
      '--address', bus.address, '--match', `type='signal',interface='${FLOOD}'`, ...(stall ? ['--stall'] : [])];
    const proc = startLongRunning(argv[0]!, argv.slice(1));
    defer(() => proc.stop());
    return proc;
  }

  it('a uid whose connections stopped reading holds at most max_outgoing_bytes in all; a reader of another uid gets every signal', { timeout: 60_000 }, async () => {
    const stalled = [subscriber(bob, true), subscriber(bob, true), subscriber(bob, true)];
    for (const s of stalled) await s.waitFor(/^ready /m, { timeoutMs: 15_000 });
    const reader = subscriber(undefined, false);
    await reader.waitFor(/^ready /m, { timeoutMs: 15_000 });

    // 3 MiB of signals: with a quota per connection only, each stalled reader would hold ~1 MiB.
    const emitter = await connectNext(bus, defer);
    const chunk = 'a'.repeat(64 * 1024);
    const signalsRead = () => reader.text().split('\nsignal ').length - 1;
    // In steps the reader keeps up with: its own quota is max_outgoing_bytes too.
    for (let i = 0; i < 48; i++) {
      emitter.bus.send(new MessageClass({ type: MessageType.SIGNAL, path: '/flood', interface: FLOOD, member: 'Chunk', signature: 's', body: [chunk] }));
      if (i % 8 === 7) {
        await emitter.ping();
        const until = Date.now() + 20_000;
        while (signalsRead() < i + 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(signalsRead()).toBe(48);

    const users = await ferrybusJson<UserRow[]>(['users', '--address', bus.address]);
    const bobRow = users.find((u) => u.uid === bob.uid);
    expect(bobRow, JSON.stringify(users)).toBeDefined();
    expect(bobRow!.user).toBe(bob.name);
    expect(bobRow!.connections.held).toBe(3);
    expect(bobRow!.queuedBytes.held).toBeLessThanOrEqual(QUOTA);
    expect(bobRow!.queuedBytes.held).toBeGreaterThan(QUOTA / 2);
    expect(bobRow!.queuedBytes.ceiling).toBe(QUOTA);

    const connections = await ferrybusJson<ConnectionRow[]>(['connections', '--address', bus.address]);
    const bobQueued = connections.filter((c) => c.uid === bob.uid).reduce((n, c) => n + c.outboundBytes, 0);
    expect(bobQueued).toBe(bobRow!.queuedBytes.held);

    const table = await ferrybus(['users', '--address', bus.address]);
    expect(table.exitCode, describeResult(table)).toBe(0);
    expect(table.stdout).toMatch(/^\s*UID\s+USER\s+CONNECTIONS\s+NAMES\s+MATCH RULES\s+PENDING CALLS\s+QUEUED/);
    expect(table.stdout).toMatch(new RegExp(`\\b${bob.uid}\\s+${bob.name}\\s+3 / \\d+`));

    // A handoff carries the state, and the new image charges it to the same uids.
    const handoff = await ferrybus(['handoff', '--address', bus.address], { timeoutMs: 30_000 });
    expect(handoff.exitCode, describeResult(handoff)).toBe(0);
    const afterHandoff = (await ferrybusJson<UserRow[]>(['users', '--address', bus.address])).find((u) => u.uid === bob.uid);
    expect(afterHandoff?.connections.held).toBe(3);
    // What the kernel had not taken crossed (a batch it took part of counted whole before).
    const carried = (await ferrybusJson<ConnectionRow[]>(['connections', '--address', bus.address]))
      .filter((c) => c.uid === bob.uid).reduce((n, c) => n + c.outboundBytes, 0);
    expect(carried).toBeGreaterThan(0);
    expect(afterHandoff?.queuedBytes.held).toBe(carried);
    expect(carried).toBeLessThanOrEqual(bobRow!.queuedBytes.held);

    // Once they are gone, nothing is charged to Bob any more.
    for (const s of stalled) await s.stop();
    const deadline = Date.now() + 10_000;
    let after: UserRow[];
    do after = await ferrybusJson<UserRow[]>(['users', '--address', bus.address]);
    while (after.some((u) => u.uid === bob.uid) && Date.now() < deadline);
    expect(after.map((u) => u.uid)).not.toContain(bob.uid);
  });
});
