import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixPathAddress } from '../harness/address.js';
import { MessageClass, MessageFlag, NextClient } from '../harness/dbus-next-client.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { waitForAddressLine } from '../harness/running-bus.js';
import { marshal } from '../../src/wire/marshal.js';
import { encodeMessage, MessageType } from '../../src/wire/message.js';

/**
 * ferrybus's documented outbound-quota policy (README "Limits and slow readers"): a reader
 * that never reads gets at most max_outgoing_bytes queued; beyond that a caller gets
 * LimitsExceeded, and the bus's memory does not grow with what the sender keeps sending.
 */
const QUOTA = 1024 * 1024;

async function queuedBytes(client: NextClient): Promise<bigint> {
  const [status] = (await client.driver('Status', '', [], 'org.ferrybus.Supervisor1')) as [Record<string, { value: bigint }>];
  return status.QueuedBytes!.value;
}

function take(payload: string, noReply: boolean): InstanceType<typeof MessageClass> {
  return new MessageClass({
    destination: 'org.ferrybus.Test.Slow',
    path: '/',
    interface: 'org.ferrybus.Test',
    member: 'Take',
    signature: 's',
    body: [payload],
    flags: noReply ? MessageFlag.NO_REPLY_EXPECTED : 0,
  });
}

describe('a client that never reads', () => {
  let dir: string;
  let daemon: LongRunning;
  let address: string;
  let socketPath: string;
  const clients: NextClient[] = [];

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-quota');
    socketPath = path.join(dir, 'bus');
    const config = path.join(dir, 'bus.conf');
    writeFileSync(
      config,
      `<busconfig><listen>${unixPathAddress(socketPath)}</listen><auth>EXTERNAL</auth>` +
        `<limit name="max_outgoing_bytes">${QUOTA}</limit>` +
        // A config without <policy> allows nothing (as in dbus-daemon).
        `<policy context="default"><allow user="*"/><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy></busconfig>`,
    );
    daemon = startLongRunning(process.execPath, [path.join(REPO_ROOT, 'dist/src/cli/main.js'), 'daemon', '--nofork', '--print-address=1', `--config-file=${config}`]);
    address = await waitForAddressLine(daemon);
  });

  afterAll(async () => {
    for (const c of clients) await c.disconnect().catch(() => {});
    await daemon?.stop();
    await removeTempDir(dir);
  });

  it('gets its queue capped: callers see LimitsExceeded and the queue stays within max_outgoing_bytes', async () => {
    // The slow reader: authenticates, owns a name, then never reads another byte.
    const slow = net.connect({ path: socketPath });
    await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
    const uid = Buffer.from(String(process.getuid!())).toString('hex');
    const requestName = encodeMessage({
      type: MessageType.MethodCall,
      serial: 2,
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      interface: 'org.freedesktop.DBus',
      member: 'RequestName',
      signature: 'su',
      body: marshal('su', ['org.ferrybus.Test.Slow', 4]),
    });
    const hello = encodeMessage({
      type: MessageType.MethodCall, serial: 1, destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'Hello',
    });
    slow.write(Buffer.concat([Buffer.from(`\0AUTH EXTERNAL ${uid}\r\nBEGIN\r\n`), hello, requestName]));
    slow.pause(); // never read again

    const caller = await NextClient.connect(address);
    clients.push(caller);
    // Wait until the slow reader owns its name.
    for (let i = 0; i < 200; i++) {
      const [has] = await caller.driver('NameHasOwner', 's', ['org.ferrybus.Test.Slow']);
      if (has) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const payload = 'x'.repeat(64 * 1024);
    // 32 MiB offered to a reader that takes nothing: far beyond kernel buffers plus the quota.
    for (let i = 0; i < 512; i++) {
      caller.bus.send(take(payload, true));
      if (i % 32 === 31) await caller.driver('GetId'); // a round trip: the bus routed what came before
    }
    // A call that expects a reply is refused once the queue is full.
    const refused = await caller.bus.call(take(payload, false)).then(
      () => 'answered',
      (err: { type?: string }) => err.type ?? String(err),
    );
    expect(refused).toBe('org.freedesktop.DBus.Error.LimitsExceeded');
    expect(await queuedBytes(caller)).toBeLessThanOrEqual(BigInt(QUOTA));
    expect(await queuedBytes(caller)).toBeGreaterThan(0n);
    expect(daemon.stderr).toContain('quota-drop');
    // The bus still serves everyone else.
    const [id] = await caller.driver('GetId');
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    slow.destroy();
  });

  it('logs why it disconnected a client that sent malformed bytes', async () => {
    const from = daemon.mark('stderr');
    const bad = net.connect({ path: socketPath });
    await new Promise<void>((resolve) => bad.once('connect', () => resolve()));
    const uid = Buffer.from(String(process.getuid!())).toString('hex');
    bad.on('error', () => {});
    bad.write(Buffer.concat([Buffer.from(`\0AUTH EXTERNAL ${uid}\r\nBEGIN\r\n`), Buffer.alloc(32, 0x99)]));
    await daemon.waitFor(/client-dropped: disconnecting client: malformed input: bad endianness mark/, { stream: 'stderr', from });
    bad.destroy();
  });
});
