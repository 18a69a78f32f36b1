import { describe, expect, it } from 'vitest';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { describeResult, runClient } from '../harness/run-client.js';
import { useCleanup } from '../harness/use-bus.js';
import { CLI, ferrybus, useFerrybus } from './support/cli.js';

interface MessageJson {
  time: string;
  type: string;
  sender: string | null;
  destination: string | null;
  serial: number;
  replySerial: number | null;
  path: string | null;
  interface: string | null;
  member: string | null;
  signature: string;
  errorName: string | null;
  body?: unknown[];
}

describe('ferrybus monitor', () => {
  const bus = useFerrybus();
  const defer = useCleanup();

  async function monitor(args: string[]): Promise<LongRunning> {
    const proc = startLongRunning(process.execPath, [CLI, 'monitor', '--address', bus().address, ...args]);
    defer(() => proc.stop());
    await proc.waitFor(/^ferrybus: monitoring .*Ctrl-C stops$/m, { stream: 'stderr' });
    return proc;
  }

  function dbusSend(args: string[]) {
    return runClient('dbus-send', [`--bus=${bus().address}`, ...args]);
  }

  it('prints one line per message: type, sender → destination, serial, path, interface.member, signature, error', async () => {
    const proc = await monitor([]);
    const from = proc.mark();
    const sent = await dbusSend(['--type=signal', '/org/example/Thing', 'org.example.Thing.Changed', 'string:hello', 'uint32:7']);
    expect(sent.exitCode, describeResult(sent)).toBe(0);
    const failed = await dbusSend(['--print-reply', '--dest=org.example.Nobody', '/x', 'org.example.Nobody.Call']);
    expect(failed.exitCode).not.toBe(0);

    const signal = await proc.waitFor(/^.*org\.example\.Thing\.Changed.*$/m, { from });
    expect(signal[0]).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3}  signal {9}:1\.\d+ → \(broadcast\)  serial=\d+  path=\/org\/example\/Thing  org\.example\.Thing\.Changed  sig="su"$/,
    );
    const error = await proc.waitFor(/^.*error=org\.freedesktop\.DBus\.Error\.ServiceUnknown$/m, { from });
    expect(error[0]).toMatch(/^\S+  error {10}org\.freedesktop\.DBus → :1\.\d+  serial=\d+  reply_serial=\d+  sig="s"  error=org\.freedesktop\.DBus\.Error\.ServiceUnknown$/);
    const call = await proc.waitFor(/^.*method_call.*org\.example\.Nobody\.Call.*$/m, { from });
    expect(call[0]).toMatch(/  method_call {4}:1\.\d+ → org\.example\.Nobody  serial=\d+  path=\/x  org\.example\.Nobody\.Call  sig=""$/);
    // Nothing but messages on stdout: every line starts with a time.
    for (const line of proc.lines()) expect(line).toMatch(/^\d\d:\d\d:\d\d\.\d{3}  (signal {7}|method_call {2}|method_return|error {8})  \S/);
  });

  it('with --json prints one JSON object per line, with --body the arguments too', async () => {
    const proc = await monitor(['--json', '--body']);
    const sent = await dbusSend(['--type=signal', '/org/example/Thing', 'org.example.Thing.Json', 'string:hi', 'int64:-5', 'array:byte:1,2']);
    expect(sent.exitCode, describeResult(sent)).toBe(0);
    await proc.waitFor(/"member":"Json"/);
    const messages = proc.lines().map((l) => JSON.parse(l) as MessageJson);
    const m = messages.find((x) => x.member === 'Json')!;
    expect(m).toMatchObject({
      type: 'signal', destination: null, path: '/org/example/Thing', interface: 'org.example.Thing', signature: 'sxay',
      errorName: null, replySerial: null, body: ['hi', -5, '0102'],
    });
    expect(m.sender).toMatch(/^:1\.\d+$/);
    expect(m.serial).toBeGreaterThan(0);
    expect(Date.parse(m.time)).not.toBeNaN();
  });

  it('applies match rules given as arguments', async () => {
    const proc = await monitor(["type='signal',member='Wanted'"]);
    await dbusSend(['--type=signal', '/a', 'org.example.A.Unwanted']);
    await dbusSend(['--type=signal', '/a', 'org.example.A.Wanted']);
    await proc.waitFor(/org\.example\.A\.Wanted/);
    // dbus-send's Hello calls, NameOwnerChanged, the Unwanted signal: none of them match.
    expect(proc.lines()).toHaveLength(1);
  });

  it('stops on Ctrl-C (SIGINT) with exit status 0', async () => {
    const proc = await monitor([]);
    process.kill(proc.pid, 'SIGINT');
    const exit = await proc.exited;
    expect(exit.exitCode).toBe(0);
  });

  it('exits 1 and says so when the bus goes away', async () => {
    const proc = startLongRunning(process.execPath, [CLI, 'monitor', '--address', bus().address]);
    defer(() => proc.stop());
    await proc.waitFor(/monitoring/, { stream: 'stderr' });
    // Last test of this block: the daemon stops here instead of in afterAll.
    await bus().stop();
    const exit = await proc.exited;
    expect(exit.exitCode).toBe(1);
    expect(proc.stderr).toMatch(/ferrybus: monitoring stopped: the bus closed the connection \(.*\/bus\)\n$/);
  });
});

describe('ferrybus monitor usage errors', () => {
  const bus = useFerrybus();

  it('rejects an invalid match rule with exit status 64 and the daemon\'s reason', async () => {
    const r = await ferrybus(['monitor', '--address', bus().address, "type='nonsense'"]);
    expect(r.exitCode, describeResult(r)).toBe(64);
    expect(r.stderr).toMatch(/^ferrybus: invalid match rule: .*nonsense/);
    expect(r.stdout).toBe('');
  });
});
