import { describe, expect, it } from 'vitest';
import { runOn, startOn } from '../harness/clients.js';
import { MessageClass, NAME_FLAG, REQUEST_NAME_REPLY } from '../harness/dbus-next-client.js';
import { connectNext } from '../harness/next-clients.js';
import { ECHO_INTERFACE, ECHO_PATH, startEchoService } from '../harness/python-clients.js';
import { describeResult } from '../harness/run-client.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const SERVICE = 'org.ferrybus.Test.Gdbus';

describe('gdbus (GLib GDBus) on the test bus', () => {
  const bus = useBus();
  const defer = useCleanup();
  // `--session` with DBUS_SESSION_BUS_ADDRESS pointing at the test bus, not `--address`: for
  // gdbus, --address is a peer-to-peer connection (`gdbus emit --address` sends its signal
  // without ever saying Hello; dbus-daemon shows it to monitors as sent by ":not.active.yet").
  const gdbus = (...args: string[]) => runOn(bus(), 'gdbus', [args[0]!, '--session', ...args.slice(1)]);

  it('call invokes a method of a python service and prints its answer', async () => {
    await startEchoService(bus(), defer, SERVICE);
    const r = await gdbus('call', '--dest', SERVICE, '--object-path', ECHO_PATH, '--method', `${ECHO_INTERFACE}.Echo`, 'hello gdbus');
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout.trim()).toBe("('hello gdbus',)");
  });

  it('call GetNameOwner on the driver prints the owner of a name', async () => {
    const svc = await startEchoService(bus(), defer, SERVICE);
    const r = await gdbus('call', '--dest', 'org.freedesktop.DBus', '--object-path', '/org/freedesktop/DBus', '--method', 'org.freedesktop.DBus.GetNameOwner', SERVICE);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout.trim()).toBe(`('${svc.uniqueName}',)`);
  });

  it('call to a name nobody owns fails with ServiceUnknown', async () => {
    const r = await gdbus('call', '--dest', 'org.ferrybus.Test.Nobody', '--object-path', '/x', '--method', 'org.ferrybus.Test.Nobody.Call');
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('org.freedesktop.DBus.Error.ServiceUnknown');
  });

  it('emit sends a signal that a subscribed client receives with its arguments', async () => {
    const sub = await connectNext(bus(), defer);
    await sub.addMatch("type='signal',interface='org.ferrybus.Test.Gdbus'");
    const r = await gdbus('emit', '--object-path', '/org/ferrybus/Test', '--signal', 'org.ferrybus.Test.Gdbus.Ping', "'hello'", '42');
    expect(r.exitCode, describeResult(r)).toBe(0);
    const sig = await sub.waitForSignal('Ping');
    expect(sig.interface).toBe('org.ferrybus.Test.Gdbus');
    expect(sig.path).toBe('/org/ferrybus/Test');
    expect(sig.signature).toBe('si');
    expect(sig.body).toEqual(['hello', 42]);
    expect(sig.sender).toMatch(/^:\d+\.\d+$/);
  });

  it('monitor --dest NAME shows signals sent by the owner of NAME', async () => {
    const owner = await connectNext(bus(), defer);
    expect(await owner.bus.requestName(SERVICE, NAME_FLAG.DO_NOT_QUEUE)).toBe(REQUEST_NAME_REPLY.PRIMARY_OWNER);
    const monitor = startOn(bus(), defer, 'gdbus', ['monitor', '--session', '--dest', SERVICE]);
    await monitor.waitFor(`The name ${SERVICE} is owned by ${owner.uniqueName}`);
    // gdbus adds its match rule (sender=':1.N') only AFTER printing that line, and nothing it
    // prints tells when AddMatch has returned. So the owner re-sends until one arrives; every
    // try waits for the monitor's output, there is no blind sleep.
    const line = "/org/ferrybus/Test: org.ferrybus.Test.Gdbus.Tick ('tick',)";
    for (let attempt = 1; !monitor.stdout.includes(line); attempt++) {
      owner.bus.send(MessageClass.newSignal('/org/ferrybus/Test', 'org.ferrybus.Test.Gdbus', 'Tick', 's', ['tick']));
      await monitor.waitFor(line, { timeoutMs: 200 }).catch((err: unknown) => {
        if (attempt >= 25) throw err;
      });
    }
    expect(monitor.stdout).toContain(line);
  });
});
