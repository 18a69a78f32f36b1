// Limits on the fds a client makes the bus hold, from a config, on real sockets:
// pending_fd_timeout (fds in a message never finished), max_outgoing_unix_fds (fds queued for a
// reader that stopped reading) and the per-uid ceiling of fds (one uid's flood, another uid's
// fds still pass). pending_fd_timeout also runs against dbus-daemon (FERRYBUS_TEST_BUS); the
// rest is ferrybus's own accounting, read back with `ferrybus users` and `ferrybus queue`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBody, type Message } from '../../src/wire/message.js';
import { ferrybus, ferrybusJson } from '../cli/support/cli.js';
import { busKindFromEnv } from '../harness/bus-kind.js';
import { startBusWithConfig } from '../harness/config-bus.js';
import { settlesAt, steadyFdCount } from '../harness/fd-count.js';
import { DRIVER_CALL, FdRawClient, TYPE } from '../harness/fd-raw-client.js';
import { describeResult } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { asUser, ensureTestUser, isRoot, type TestUser } from '../harness/test-users.js';
import { useCleanup } from '../harness/use-bus.js';

const KIND = busKindFromEnv();
const ALLOW = '<policy context="default"><allow user="*"/><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>';
const config = (limits: string) => (listen: string) => `<busconfig><listen>${listen}</listen>${ALLOW}${limits}</busconfig>`;

const defer = useCleanup();

function connectTo(bus: RunningBus, options: Parameters<typeof FdRawClient.connect>[1] = {}): Promise<FdRawClient> {
  return FdRawClient.connect(bus.socketPath, options).then((client) => {
    defer(() => client.quit());
    return client;
  });
}

/** The first part of a call that carries one fd: sent with its fd, the rest never follows. */
function firstPartWithFd(client: FdRawClient, to: string): Buffer {
  const { bytes } = client.encode(
    { type: TYPE.METHOD_CALL, destination: to, path: '/x', interface: 'org.ferrybus.Test', member: 'Take', unixFds: 1 },
    'hs', [0, 'x'.repeat(4096)],
  );
  return bytes.subarray(0, 64);
}

/** A unicast call with one fd to `to`, nobody answers it; resolves with the bus's error, if it refused it. */
async function callWithFd(client: FdRawClient, to: string): Promise<Message | undefined> {
  const serial = client.send({ type: TYPE.METHOD_CALL, destination: to, path: '/x', interface: 'org.ferrybus.Test', member: 'Take', unixFds: 1 }, 'h', [0], 1);
  // The bus handles one sender's messages in order: an error for the call comes before this answer.
  await client.call({ ...DRIVER_CALL, member: 'GetId' });
  return client.received.find((m) => m.header.replySerial === serial);
}

describe.skipIf(KIND === 'dbus-broker')(`pending_fd_timeout (${KIND})`, () => {
  // dbus-broker reads no busconfig (its launcher compiles it) and has no pending_fd_timeout: it
  // allows one message with fds in flight per connection instead.
  let bus: RunningBus;
  beforeAll(async () => {
    bus = await startBusWithConfig(KIND, config('<limit name="pending_fd_timeout">1000</limit>'));
  });
  afterAll(() => bus?.stop());

  it('closes a connection that holds an fd in a message it never finishes; a bystander keeps working; the fd is closed', async () => {
    const bystander = await connectTo(bus);
    const baseline = await steadyFdCount(bus.pid);
    const staller = await connectTo(bus);
    await staller.sendBytes(firstPartWithFd(staller, bystander.uniqueName), 1);
    expect(await staller.whenClosed(15_000)).toBe('end of stream');
    if (KIND === 'ferrybus') {
      await bus.process.waitFor(/client-dropped: .*held 1 unix fds in a message not received whole for longer than pending_fd_timeout \(1000 ms\)/, { stream: 'stderr' });
    }
    const [id] = await bystander.call({ ...DRIVER_CALL, member: 'GetId' });
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(await settlesAt(bus.pid, baseline)).toBe(baseline);
  });
});

describe.skipIf(KIND !== 'ferrybus' || !isRoot)('unix fds charged per uid, max_outgoing_unix_fds (ferrybus)', () => {
  // Only ferrybus charges fds per uid; a second uid needs root (setpriv), as CI runs.
  let bus: RunningBus;
  let bob: TestUser;
  beforeAll(async () => {
    bob = ensureTestUser('fbtest-bob');
    // A uid may hold max_incoming_unix_fds + max_outgoing_unix_fds = 2 + 6 = 8 fds.
    bus = await startBusWithConfig('ferrybus', config('<limit name="max_outgoing_unix_fds">6</limit><limit name="max_incoming_unix_fds">2</limit>'));
  });
  afterAll(() => bus?.stop());

  /** A reader that stopped reading with its socket full: what the bus sends it from now on waits in the bus. */
  async function stalledReader(filler: FdRawClient): Promise<FdRawClient> {
    const reader = await connectTo(bus);
    await reader.stall();
    filler.send({ type: TYPE.SIGNAL, destination: reader.uniqueName, path: '/x', interface: 'org.ferrybus.Test', member: 'Fill' }, 's', ['x'.repeat(512 * 1024)]);
    await filler.call({ ...DRIVER_CALL, member: 'GetId' });
    return reader;
  }

  it("refuses one uid's fd flood with LimitsExceeded that speaks of fds, while another uid's fds still pass", { timeout: 60_000 }, async () => {
    const baseline = await steadyFdCount(bus.pid);
    const root = await connectTo(bus);
    const first = await stalledReader(root);
    const second = await stalledReader(root);
    const flooder = await connectTo(bus, { user: bob });

    // Bob fills his account (8) across two readers, neither at its own quota (6).
    for (const reader of [first, first, first, first, second, second, second, second]) {
      expect(await callWithFd(flooder, reader.uniqueName)).toBeUndefined();
    }
    const refused = await callWithFd(flooder, first.uniqueName);
    expect(refused?.header.errorName).toBe('org.freedesktop.DBus.Error.LimitsExceeded');
    expect(readBody(refused!)[0]).toBe(`uid ${bob.uid} has 8 unix fds held by the bus, queued or in half-received messages, and may hold at most 8 (max_incoming_unix_fds + max_outgoing_unix_fds); this message carries 1; the message was not delivered`);

    // Root's fds still reach the same reader, until that reader's own quota is full.
    expect(await callWithFd(root, first.uniqueName)).toBeUndefined();
    expect(await callWithFd(root, first.uniqueName)).toBeUndefined();
    const full = await callWithFd(root, first.uniqueName);
    expect(full?.header.errorName).toBe('org.freedesktop.DBus.Error.LimitsExceeded');
    expect(readBody(full!)[0]).toBe(`The destination ${first.uniqueName} has too many unix fds queued (max_outgoing_unix_fds 6); this message carries 1; the message was not delivered`);

    const users = await ferrybusJson<Array<{ uid: number; fds: { held: number; ceiling: number } }>>(['users', '--address', bus.address]);
    expect(users.find((u) => u.uid === bob.uid)?.fds).toEqual({ held: 8, ceiling: 8 });
    expect(users.find((u) => u.uid === 0)?.fds).toEqual({ held: 2, ceiling: 8 });
    const table = await ferrybus(['users', '--address', bus.address]);
    expect(table.exitCode, describeResult(table)).toBe(0);
    expect(table.stdout).toMatch(/^\s*UID\s+USER\s+CONNECTIONS\s+NAMES\s+MATCH RULES\s+PENDING CALLS\s+QUEUED\s+UNIX FDS\n/);
    expect(table.stdout).toMatch(new RegExp(`\\b${bob.uid}\\s+${bob.name}\\s+1 / \\d+ .*\\s8 / 8\\n`));

    // A half-received message counts too: over the ceiling, it cannot be answered, so the
    // connection that sent it is closed; Bob's other connection keeps what it had.
    const second_flooder = await connectTo(bus, { user: bob });
    await second_flooder.sendBytes(firstPartWithFd(second_flooder, first.uniqueName), 1);
    expect(await second_flooder.whenClosed()).toBe('end of stream');
    await bus.process.waitFor(new RegExp(`client-dropped: .*uid ${bob.uid} would hold more than its 8 unix fds in the bus`), { stream: 'stderr' });
    expect(flooder.closedReason()).toBeUndefined();

    // Once the readers are gone, nobody is charged for anything and every fd is closed.
    for (const c of [first, second, flooder, root]) await c.quit();
    expect(await settlesAt(bus.pid, baseline)).toBe(baseline);
    const after = await ferrybusJson<Array<{ uid: number }>>(['users', '--address', bus.address]);
    expect(after.map((u) => u.uid)).not.toContain(bob.uid);
  });
});
