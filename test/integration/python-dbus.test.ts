import { describe, expect, it } from 'vitest';
import { runOn } from '../harness/clients.js';
import { MessageClass } from '../harness/dbus-next-client.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { connectNext, watchName } from '../harness/next-clients.js';
import { startEchoService, startSignalSubscriber } from '../harness/python-clients.js';
import { describeResult } from '../harness/run-client.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const SERVICE = 'org.ferrybus.Test.Echo';

describe('python3-dbus (libdbus) service and clients on the test bus', () => {
  const bus = useBus();
  const defer = useCleanup();
  const echoClient = (text: string) =>
    runOn(bus(), SYSTEM_PYTHON, [fixturePath('echo-client.py'), '--address', bus().address, '--name', SERVICE, '--text', text]);

  it('a client gets the answer of a method exported by a service under its well-known name', async () => {
    await startEchoService(bus(), defer, SERVICE);
    const r = await echoClient('grüße, ferrybus ✓');
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toBe('reply: grüße, ferrybus ✓\n');
  });

  it('a second service cannot take a name that is already owned (DO_NOT_QUEUE)', async () => {
    await startEchoService(bus(), defer, SERVICE);
    const second = await runOn(bus(), SYSTEM_PYTHON, [fixturePath('echo-service.py'), '--address', bus().address, '--name', SERVICE]);
    expect(second.exitCode).not.toBe(0);
    expect(second.stderr).toContain('NameExistsException');
  });

  it('a client calling the name after its service went away gets ServiceUnknown', async () => {
    const watcher = await watchName(bus(), defer, SERVICE);
    const svc = await startEchoService(bus(), defer, SERVICE);
    await svc.proc.stop();
    await watcher.waitForSignal('NameOwnerChanged', [SERVICE, svc.uniqueName, '']);
    const r = await echoClient('anyone?');
    expect(r.stdout).toBe('error: org.freedesktop.DBus.Error.ServiceUnknown\n');
    expect(r.exitCode).toBe(2);
  });

  it('a subscriber with an arg0 match rule receives only the signal whose first argument matches', async () => {
    const base = "type='signal',interface='org.ferrybus.Test.Py',member='Changed'";
    const filtered = await startSignalSubscriber(bus(), defer, `${base},arg0='wanted'`);
    const everything = await startSignalSubscriber(bus(), defer, base);
    const emitter = await connectNext(bus(), defer);
    // One sender, so the bus keeps the order: the non-matching signals go first and would
    // have reached the filtered subscriber before the matching one, had they been routed.
    for (const value of ['unwanted', 'wanted-not-exactly', 'wanted']) {
      emitter.bus.send(MessageClass.newSignal('/org/ferrybus/Test', 'org.ferrybus.Test.Py', 'Changed', 's', [value]));
    }
    await everything.proc.waitFor('Changed wanted\n');
    expect(everything.proc.lines()).toEqual([
      `ready ${everything.uniqueName}`,
      'signal org.ferrybus.Test.Py.Changed unwanted',
      'signal org.ferrybus.Test.Py.Changed wanted-not-exactly',
      'signal org.ferrybus.Test.Py.Changed wanted',
    ]);
    await filtered.proc.waitFor('Changed wanted\n');
    expect(filtered.proc.lines()).toEqual([`ready ${filtered.uniqueName}`, 'signal org.ferrybus.Test.Py.Changed wanted']);
  });
});
