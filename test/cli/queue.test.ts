import { describe, expect, it } from 'vitest';
import { startLongRunning } from '../harness/long-running.js';
import { MessageClass, MessageType } from '../harness/dbus-next-client.js';
import { connectNext } from '../harness/next-clients.js';
import { describeResult } from '../harness/run-client.js';
import { useCleanup } from '../harness/use-bus.js';
import { ferrybus, ferrybusJson, headerOf, rowWith, startPeer, startStuckReader, useFerrybus } from './support/cli.js';
import { DRIVER_CALL, FdRawClient, TYPE } from '../harness/fd-raw-client.js';

interface QueueJson {
  outbound: Array<{ uniqueName: string | null; pid: number; command: string | null; outboundBytes: number; outboundFds: number; inboundBytes: number; inboundFds: number; names: string[] }>;
  pendingCalls: Array<{ caller: string; callerPid: number | null; callerCommand: string | null; callee: string; calleePid: number | null; calleeNames: string[]; serial: number }>;
}

const FLOOD = 'org.ferrybus.test.Flood';

describe('ferrybus queue', () => {
  const bus = useFerrybus();
  const defer = useCleanup();

  it('says nothing is waiting on an idle bus', async () => {
    const q = await ferrybusJson<QueueJson>(['queue', '--address', bus().address]);
    expect(q).toEqual({ outbound: [], pendingCalls: [] });
    const r = await ferrybus(['queue', '--address', bus().address]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toContain('(none: every connection is keeping up)');
    expect(r.stdout).toMatch(/Pending method calls \(awaiting a reply\):\nCALLER .*SERIAL\n\(none\)\n$/);
  });

  it('lists readers with bytes piling up, largest first, and calls awaiting a reply (caller → callee, serial)', async () => {
    // Two readers that stopped reading, one subscribed to twice the traffic of the other.
    const big = await startStuckReader(bus().socketPath, `type='signal',interface='${FLOOD}'`);
    defer(() => big.close());
    const small = await startStuckReader(bus().socketPath, `type='signal',interface='${FLOOD}',member='Half'`);
    defer(() => small.close());
    const emitter = await connectNext(bus(), defer);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < 64; i++) {
      emitter.bus.send(new MessageClass({
        type: MessageType.SIGNAL, path: '/flood', interface: FLOOD, member: i % 2 === 0 ? 'Half' : 'Other', signature: 'ay', body: [chunk],
      }));
    }
    await emitter.ping(); // every signal before the ping was routed

    // A service that never answers Hang, and dbus-send waiting for it.
    const service = await startPeer(bus(), ['--name', 'org.ferrybus.test.Slow', '--hang', 'Hang'], defer);
    const caller = startLongRunning('dbus-send', [
      `--bus=${bus().address}`, '--print-reply', '--reply-timeout=60000', '--dest=org.ferrybus.test.Slow', '/slow', 'org.ferrybus.test.Slow.Hang',
    ]);
    defer(() => caller.stop());
    let q: QueueJson;
    const deadline = Date.now() + 10_000;
    do {
      q = await ferrybusJson<QueueJson>(['queue', '--address', bus().address]);
    } while (q.pendingCalls.length === 0 && Date.now() < deadline);

    expect(q.outbound.map((o) => o.uniqueName)).toEqual([big.uniqueName, small.uniqueName]);
    // 4 MiB sent to `big`, 2 MiB to `small`; the kernel's socket buffer took a part of each.
    expect(q.outbound[0]!.outboundBytes).toBeGreaterThan(2 * 1024 * 1024);
    expect(q.outbound[1]!.outboundBytes).toBeGreaterThan(1024 * 1024);
    expect(q.outbound[0]!.outboundBytes).toBeGreaterThan(q.outbound[1]!.outboundBytes);
    expect(q.outbound[0]!.pid).toBe(process.pid);
    expect(q.pendingCalls).toEqual([
      {
        caller: expect.stringMatching(/^:1\.\d+$/), callerPid: caller.pid, callerCommand: expect.stringMatching(/^dbus-send /),
        callee: service.uniqueName, calleePid: service.pid, calleeCommand: expect.stringMatching(/bus-peer\.mjs/),
        calleeNames: ['org.ferrybus.test.Slow'], serial: expect.any(Number),
      },
    ]);
    expect(q.pendingCalls[0]!.serial).toBeGreaterThan(0);

    const r = await ferrybus(['queue', '--address', bus().address]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    const [queues, calls] = r.stdout.split('\n\n');
    expect(queues!.split('\n')[0]).toBe('Connections with outbound bytes queued (largest first):');
    expect(headerOf(queues!.split('\n').slice(1).join('\n'))).toEqual(['UNIQUE', 'PID', 'COMMAND', 'QUEUED', 'FDS', 'INBOUND', 'IN FDS', 'NAMES']);
    const lines = queues!.trimEnd().split('\n').slice(2);
    expect(lines[0]).toMatch(new RegExp(`^${big.uniqueName.replace('.', '\\.')}\\s+${process.pid}\\s+node .*\\s\\d+\\.\\d MiB\\s+0\\s+0 B\\s+0\\s+-$`));
    expect(lines[1]).toMatch(new RegExp(`^${small.uniqueName.replace('.', '\\.')}\\s`));
    expect(calls!.split('\n')[0]).toBe('Pending method calls (awaiting a reply):');
    const call = rowWith(calls!, service.uniqueName);
    expect(call).toMatch(new RegExp(`^:1\\.\\d+\\s+${caller.pid}\\s+dbus-send --bus=.*\\s+→\\s+${service.uniqueName.replace('.', '\\.')}\\s+${service.pid}\\s+org\\.ferrybus\\.test\\.Slow\\s+${q.pendingCalls[0]!.serial}$`));
  });

  it('shows the unix fds queued for each connection and those held in a message not received whole, in the table and in --json', async () => {
    const connect = async () => {
      const c = await FdRawClient.connect(bus().socketPath);
      defer(() => c.quit());
      return c;
    };
    // A reader that stopped with its socket full: three calls with one fd each wait in the bus.
    const reader = await connect();
    await reader.stall();
    const caller = await connect();
    caller.send({ type: TYPE.SIGNAL, destination: reader.uniqueName, path: '/x', interface: 'org.ferrybus.Test', member: 'Fill' }, 's', ['x'.repeat(512 * 1024)]);
    for (let i = 0; i < 3; i++) {
      caller.send({ type: TYPE.METHOD_CALL, destination: reader.uniqueName, path: '/x', interface: 'org.ferrybus.Test', member: 'Take', unixFds: 1 }, 'h', [0], 1);
    }
    await caller.call({ ...DRIVER_CALL, member: 'GetId' });
    // A sender whose message stopped after its first bytes, which carried two fds.
    const staller = await connect();
    const { bytes } = staller.encode({ type: TYPE.METHOD_CALL, destination: reader.uniqueName, path: '/x', interface: 'org.ferrybus.Test', member: 'Take', unixFds: 2 }, 'hhs', [0, 1, 'x'.repeat(1024)]);
    await staller.sendBytes(bytes.subarray(0, 100), 2);
    let q: QueueJson;
    const deadline = Date.now() + 10_000;
    do q = await ferrybusJson<QueueJson>(['queue', '--all', '--address', bus().address]);
    while (q.outbound.find((o) => o.uniqueName === staller.uniqueName)?.inboundFds !== 2 && Date.now() < deadline);

    const readerRow = q.outbound.find((o) => o.uniqueName === reader.uniqueName)!;
    expect(readerRow.outboundFds).toBe(3);
    expect(readerRow.outboundBytes).toBeGreaterThan(0);
    expect(q.outbound.find((o) => o.uniqueName === staller.uniqueName)).toMatchObject({ outboundFds: 0, inboundFds: 2, inboundBytes: 100 });
    expect(q.outbound.find((o) => o.uniqueName === caller.uniqueName)).toMatchObject({ outboundFds: 0, inboundFds: 0 });

    const r = await ferrybus(['queue', '--all', '--address', bus().address]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    const [queues] = r.stdout.split('\n\n');
    expect(rowWith(queues!, reader.uniqueName)).toMatch(/\s\d+(\.\d)? [KM]iB\s+3\s+0 B\s+0\s+-$/);
    expect(rowWith(queues!, staller.uniqueName)).toMatch(/\s0 B\s+0\s+100 B\s+2\s+-$/);
  });
});
