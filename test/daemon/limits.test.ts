// reply_timeout, auth_timeout, max_incomplete_connections and max_message_size from a config,
// seen by clients on real sockets.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, TYPE } from '../handoff/support/raw-client.js';
import { readBody } from '../../src/wire/message.js';
import { unixPathAddress } from '../harness/address.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { type LongRunning, startLongRunning } from '../harness/long-running.js';
import { waitForAddressLine } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { describeResult, runClient } from '../harness/run-client.js';

const ALLOW = '<policy context="default"><allow user="*"/><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>';

/** A ferrybus daemon on a permissive config with these <limit> elements, stopped after the describe block. */
function daemonWithLimits(name: string, limits: string): { readonly socketPath: string; readonly daemon: LongRunning } {
  const state = { socketPath: '', daemon: undefined as unknown as LongRunning };
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir(name);
    state.socketPath = path.join(dir, 'bus');
    const config = path.join(dir, 'bus.conf');
    writeFileSync(config, `<busconfig><listen>${unixPathAddress(state.socketPath)}</listen>${ALLOW}${limits}</busconfig>`);
    state.daemon = startLongRunning(process.execPath, [path.join(REPO_ROOT, 'dist/src/cli/main.js'), 'daemon', '--nofork', '--print-address=1', `--config-file=${config}`]);
    await waitForAddressLine(state.daemon);
  });
  afterAll(async () => {
    await state.daemon?.stop();
    await removeTempDir(dir);
  });
  return state;
}

describe('limits and timeouts from the config', () => {
  const bus = daemonWithLimits('ferrybus-limits', `
      <limit name="reply_timeout">500</limit>
      <limit name="auth_timeout">700</limit>
      <limit name="max_incomplete_connections">3</limit>
      <limit name="max_message_size">65536</limit>
    `);

  it('answers NoReply for a call nobody answers within reply_timeout, and drops the late reply', async () => {
    const caller = await RawClient.connect(bus.socketPath);
    const callee = await RawClient.connect(bus.socketPath);
    const started = Date.now();
    const serial = caller.send({ type: TYPE.METHOD_CALL, destination: callee.uniqueName, path: '/x', interface: 'org.example.Slow', member: 'Wait' });
    const call = await callee.waitFor((m) => m.header.member === 'Wait', 'the call');
    const answer = await caller.waitForReply(serial, 'NoReply', 5000);
    expect(answer.header.type).toBe(TYPE.ERROR);
    expect(answer.header.errorName).toBe('org.freedesktop.DBus.Error.NoReply');
    expect(readBody(answer)).toEqual(['Message did not receive a reply (timeout by message bus)']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    callee.send({ type: TYPE.METHOD_RETURN, destination: caller.uniqueName, replySerial: call.header.serial });
    // A ping after the late reply: if the reply had been forwarded it would arrive first.
    await caller.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' });
    expect(caller.received.filter((m) => m.header.replySerial === serial)).toHaveLength(1);
    caller.socket.destroy();
    callee.socket.destroy();
  });

  it('closes a connection that does not finish authenticating within auth_timeout', async () => {
    const idle = await RawClient.connect(bus.socketPath, 'connected');
    const started = Date.now();
    await idle.whenClosed(5000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    await bus.daemon.waitFor(/client-dropped: .*auth_timeout/, { stream: 'stderr' });
  });

  it('refuses new connections beyond max_incomplete_connections while others still authenticate', async () => {
    const idle = await Promise.all([0, 1, 2].map(() => RawClient.connect(bus.socketPath, 'connected')));
    await new Promise((r) => setTimeout(r, 100));
    const extra = await RawClient.connect(bus.socketPath, 'connected');
    await extra.whenClosed(500);
    expect(idle.map((c) => c.closed)).toEqual([undefined, undefined, undefined]);
    await bus.daemon.waitFor(/client-refused: .*max_incomplete_connections/, { stream: 'stderr' });
    for (const c of idle) c.socket.destroy();
    // Once they are gone, a client gets in again.
    await new Promise((r) => setTimeout(r, 100));
    const fine = await RawClient.connect(bus.socketPath);
    expect(fine.uniqueName).toMatch(/^:1\./);
    fine.socket.destroy();
  });

  it('disconnects a client that announces a message above max_message_size', async () => {
    const big = await RawClient.connect(bus.socketPath);
    big.send({ type: TYPE.SIGNAL, path: '/x', interface: 'org.example.Big', member: 'Blob' }, 's', ['x'.repeat(70_000)]);
    await big.whenClosed(5000);
    await bus.daemon.waitFor(/client-dropped: .*max_message_size/, { stream: 'stderr' });
  });
});

describe('reply_timeout across a handoff', () => {
  let dir: string;
  let socketPath: string;
  let daemon: LongRunning;
  const TIMEOUT_MS = 4000;

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-limits-handoff');
    socketPath = path.join(dir, 'bus');
    const config = path.join(dir, 'bus.conf');
    writeFileSync(config, `<busconfig><listen>${unixPathAddress(socketPath)}</listen>${ALLOW}
      <limit name="reply_timeout">${TIMEOUT_MS}</limit>
    </busconfig>`);
    daemon = startLongRunning(process.execPath, [path.join(REPO_ROOT, 'dist/src/cli/main.js'), 'daemon', '--nofork', '--print-address=1', `--config-file=${config}`]);
    await waitForAddressLine(daemon);
  });
  afterAll(async () => {
    await daemon?.stop();
    await removeTempDir(dir);
  });

  it('a call pending when the bus is handed off still gets NoReply at its original deadline', async () => {
    const caller = await RawClient.connect(socketPath);
    const callee = await RawClient.connect(socketPath);
    const started = Date.now();
    const serial = caller.send({ type: TYPE.METHOD_CALL, destination: callee.uniqueName, path: '/x', interface: 'org.example.Slow', member: 'Wait' });
    await callee.waitFor((m) => m.header.member === 'Wait', 'the call');
    const handoff = await runClient(process.execPath, [path.join(REPO_ROOT, 'dist/src/cli/main.js'), 'handoff', '--address', unixPathAddress(socketPath)], { timeoutMs: 20_000 });
    expect(handoff.exitCode, describeResult(handoff)).toBe(0);
    expect(caller.received.filter((m) => m.header.replySerial === serial)).toHaveLength(0);
    const answer = await caller.waitForReply(serial, 'NoReply after the handoff', TIMEOUT_MS + 10_000);
    expect(answer.header.errorName).toBe('org.freedesktop.DBus.Error.NoReply');
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
    expect(waited).toBeLessThan(2 * TIMEOUT_MS);
    caller.socket.destroy();
    callee.socket.destroy();
  });
});

describe('max_connections_per_user', () => {
  const bus = daemonWithLimits('ferrybus-limits-per-user', '<limit name="max_connections_per_user">2</limit>');

  it("answers the Hello of a uid's connection beyond the limit with LimitsExceeded, as dbus-daemon does", async () => {
    const { socketPath, daemon } = bus;
    const held = [await RawClient.connect(socketPath), await RawClient.connect(socketPath)];
    const refused = await runClient('dbus-send', [`--bus=${unixPathAddress(socketPath)}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.Peer.Ping']);
    expect(refused.exitCode, describeResult(refused)).not.toBe(0);
    expect(refused.stderr, describeResult(refused)).toContain(`message bus: The maximum number of active connections for UID ${process.getuid!()} has been reached`);
    held[0]!.socket.destroy();
    await daemon.waitFor(/client-disconnected|client-dropped/, { stream: 'stderr' });
    const admitted = await runClient('dbus-send', [`--bus=${unixPathAddress(socketPath)}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.Peer.Ping']);
    expect(admitted.exitCode, describeResult(admitted)).toBe(0);
    held[1]!.socket.destroy();
  });
});
