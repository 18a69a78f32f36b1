import { describe, expect, it } from 'vitest';
import { runOn, startOn } from '../harness/clients.js';
import { watchName } from '../harness/next-clients.js';
import { startSignalSubscriber } from '../harness/python-clients.js';
import { describeResult } from '../harness/run-client.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const SERVICE = 'org.ferrybus.Test.DbusSend';

describe('dbus-send (libdbus) on the test bus', () => {
  const bus = useBus();
  const defer = useCleanup();
  // --bus=ADDRESS: a bus connection (Hello). --address would be peer-to-peer.
  const send = (...args: string[]) => runOn(bus(), 'dbus-send', [`--bus=${bus().address}`, ...args]);
  const driverCall = (member: string, ...args: string[]) =>
    send('--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', `org.freedesktop.DBus.${member}`, ...args);

  it('ListNames prints the driver and the caller itself', async () => {
    const r = await driverCall('ListNames');
    expect(r.exitCode, describeResult(r)).toBe(0);
    const me = /^method return .* destination=(:\d+\.\d+) /m.exec(r.stdout)?.[1];
    expect(me, r.stdout).toBeDefined();
    expect(r.stdout).toContain('string "org.freedesktop.DBus"');
    expect(r.stdout).toContain(`string "${me}"`);
  });

  it('NameHasOwner is true for the driver and false for a name nobody owns', async () => {
    const yes = await driverCall('NameHasOwner', 'string:org.freedesktop.DBus');
    expect(yes.exitCode, describeResult(yes)).toBe(0);
    expect(yes.stdout).toMatch(/^\s+boolean true$/m);
    const no = await driverCall('NameHasOwner', 'string:org.ferrybus.Test.Nobody');
    expect(no.exitCode, describeResult(no)).toBe(0);
    expect(no.stdout).toMatch(/^\s+boolean false$/m);
  });

  it('a service that requested a name (dbus-test-tool echo) answers a call sent to that name', async () => {
    const watcher = await watchName(bus(), defer, SERVICE);
    // dbus-test-tool only knows --session: DBUS_SESSION_BUS_ADDRESS points at the test bus.
    startOn(bus(), defer, 'dbus-test-tool', ['echo', `--name=${SERVICE}`]);
    const owned = await watcher.waitForSignal('NameOwnerChanged', [SERVICE, '']);
    const owner = owned.body[2] as string;

    const r = await send('--print-reply', `--dest=${SERVICE}`, '/org/ferrybus/Test', 'org.ferrybus.Test.Anything', 'string:hi');
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^method return .* sender=${owner.replace('.', '\\.')} -> destination=:\\d+\\.\\d+ `, 'm'));
  });

  it('RequestName from a one-shot dbus-send answers 1 (primary owner); the name goes when it exits', async () => {
    const name = 'org.ferrybus.Test.DbusSendOwner';
    const watcher = await watchName(bus(), defer, name);
    const r = await driverCall('RequestName', `string:${name}`, 'uint32:0');
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toMatch(/^\s+uint32 1$/m);
    const me = /^method return .* destination=(:\d+\.\d+) /m.exec(r.stdout)![1]!;
    await watcher.waitForSignal('NameOwnerChanged', [name, '', me]);
    await watcher.waitForSignal('NameOwnerChanged', [name, me, '']);
  });

  it('a signal it sends reaches a subscriber whose match rule selects it', async () => {
    const sub = await startSignalSubscriber(bus(), defer, "type='signal',interface='org.ferrybus.Test.DbusSend'");
    const r = await send('--type=signal', '/org/ferrybus/Test', 'org.ferrybus.Test.DbusSend.Ping', 'string:hello');
    expect(r.exitCode, describeResult(r)).toBe(0);
    await sub.proc.waitFor('signal org.ferrybus.Test.DbusSend.Ping hello\n');
  });

  describe('errors a user sees', () => {
    // The error names are common to the references; the texts after them differ
    // (e.g. dbus-daemon: "The name org.x was not provided by any .service files",
    // dbus-broker: "The name is not activatable"), so only the names are asserted.
    it('calling a name nobody owns fails with ServiceUnknown', async () => {
      const r = await send('--print-reply', '--dest=org.ferrybus.Test.Nobody', '/x', 'org.ferrybus.Test.Nobody.Call');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/^Error org\.freedesktop\.DBus\.Error\.ServiceUnknown: /);
    });

    it('an unknown method on the bus driver fails with UnknownMethod', async () => {
      const r = await driverCall('NoSuchMethod');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/^Error org\.freedesktop\.DBus\.Error\.UnknownMethod: /);
    });

    it.each([["type='bogus'"], ['nonsense'], ["arg64='x'"], ["type='signal',,"]])(
      'AddMatch with the invalid rule %s fails with MatchRuleInvalid',
      async (rule) => {
        const r = await driverCall('AddMatch', `string:${rule}`);
        expect(r.exitCode).toBe(1);
        expect(r.stderr).toMatch(/^Error org\.freedesktop\.DBus\.Error\.MatchRuleInvalid: /);
      },
    );
  });
});
