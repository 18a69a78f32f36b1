import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MessageClass, MessageFlag, MessageType, NAME_FLAG, type Message } from '../harness/dbus-next-client.js';
import { connectNext } from '../harness/next-clients.js';
import { startEchoService } from '../harness/python-clients.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const SERVICE = 'org.ferrybus.Test.Driver';
const uid = process.getuid!();

describe('the org.freedesktop.DBus driver as a dbus-next client sees it', () => {
  const bus = useBus();
  const defer = useCleanup();
  const connect = () => connectNext(bus(), defer);

  describe('credentials', () => {
    it('GetConnectionUnixUser and GetConnectionUnixProcessID of the caller are its real uid and pid', async () => {
      const me = await connect();
      expect(await me.driver('GetConnectionUnixUser', 's', [me.uniqueName])).toEqual([uid]);
      expect(await me.driver('GetConnectionUnixProcessID', 's', [me.uniqueName])).toEqual([process.pid]);
    });

    it('GetConnectionUnixProcessID of a service, asked by its well-known name, is that process', async () => {
      const svc = await startEchoService(bus(), defer, SERVICE);
      const me = await connect();
      expect(await me.driver('GetConnectionUnixProcessID', 's', [SERVICE])).toEqual([svc.proc.pid]);
      expect(await me.driver('GetConnectionUnixUser', 's', [svc.uniqueName])).toEqual([uid]);
    });

    it('GetConnectionCredentials of the caller has its uid, pid and groups', async () => {
      const me = await connect();
      const [creds] = (await me.driver('GetConnectionCredentials', 's', [me.uniqueName])) as [Record<string, { signature: string; value: unknown }>];
      expect(creds.UnixUserID).toEqual({ signature: 'u', value: uid });
      expect(creds.ProcessID).toEqual({ signature: 'u', value: process.pid });
      // Both references send the groups for a client connection; for the driver's own name
      // dbus-daemon leaves UnixGroupIDs out while dbus-broker includes them (not asserted).
      expect(creds.UnixGroupIDs?.signature).toBe('au');
      expect(creds.UnixGroupIDs?.value).toContain(process.getgid!());
    });

    it('credentials of a name nobody owns fail with NameHasNoOwner', async () => {
      const me = await connect();
      for (const member of ['GetConnectionUnixUser', 'GetConnectionUnixProcessID', 'GetConnectionCredentials']) {
        await expect(me.driver(member, 's', ['org.ferrybus.Test.Nobody'])).rejects.toMatchObject({
          type: 'org.freedesktop.DBus.Error.NameHasNoOwner',
        });
      }
    });
  });

  it('Peer.Ping on the bus returns an empty reply and GetMachineId the machine id', async () => {
    const me = await connect();
    expect(await me.driver('Ping', '', [], 'org.freedesktop.DBus.Peer')).toEqual([]);
    const [id] = await me.driver('GetMachineId', '', [], 'org.freedesktop.DBus.Peer');
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    if (existsSync('/etc/machine-id')) expect(id).toBe(readFileSync('/etc/machine-id', 'utf8').trim());
  });

  it('Introspect of /org/freedesktop/DBus returns XML describing the driver interfaces', async () => {
    // Only this path is common: on "/" dbus-daemon returns the same full XML (it serves the
    // driver at every path) while dbus-broker returns a node listing the child org/freedesktop/DBus.
    const me = await connect();
    const [xml] = (await me.driver('Introspect', '', [], 'org.freedesktop.DBus.Introspectable')) as [string];
    expect(xml).toMatch(/^<!DOCTYPE node PUBLIC "-\/\/freedesktop\/\/DTD D-BUS Object Introspection 1\.0\/\/EN"/);
    for (const iface of ['org.freedesktop.DBus', 'org.freedesktop.DBus.Introspectable', 'org.freedesktop.DBus.Peer', 'org.freedesktop.DBus.Properties', 'org.freedesktop.DBus.Monitoring']) {
      expect(xml).toContain(`<interface name="${iface}">`);
    }
    for (const method of ['Hello', 'RequestName', 'ReleaseName', 'ListQueuedOwners', 'AddMatch', 'GetConnectionCredentials', 'BecomeMonitor']) {
      expect(xml).toContain(`<method name="${method}">`);
    }
  });

  it('Properties.Get of Features and Interfaces returns string arrays', async () => {
    const me = await connect();
    const get = async (prop: string) => {
      const [v] = (await me.driver('Get', 'ss', ['org.freedesktop.DBus', prop], 'org.freedesktop.DBus.Properties')) as [{ signature: string; value: unknown }];
      return v;
    };
    const features = await get('Features');
    expect(features.signature).toBe('as');
    // The lists differ: dbus-daemon 1.14 answers ["ActivatableServicesChanged", "HeaderFiltering"],
    // dbus-broker 33 answers []; only the type is common.
    expect(Array.isArray(features.value)).toBe(true);
    const interfaces = await get('Interfaces');
    expect(interfaces.signature).toBe('as');
    // dbus-daemon adds org.freedesktop.DBus.Debug.Stats; dbus-broker lists only Monitoring
    // (although its Introspect XML also mentions Debug.Stats).
    expect(interfaces.value).toContain('org.freedesktop.DBus.Monitoring');

    const [all] = (await me.driver('GetAll', 's', ['org.freedesktop.DBus'], 'org.freedesktop.DBus.Properties')) as [Record<string, unknown>];
    expect(Object.keys(all).sort()).toEqual(['Features', 'Interfaces']);
  });

  it('a unicast call flagged NO_REPLY_EXPECTED reaches the owner of the name with the flag set', async () => {
    const receiver = await connect();
    const sender = await connect();
    expect(await receiver.bus.requestName(SERVICE, NAME_FLAG.DO_NOT_QUEUE)).toBe(1);
    // Swallow the call (no automatic UnknownMethod error) and answer it anyway below.
    receiver.bus.addMethodHandler((m: Message) => m.member === 'Fire');
    const call = new MessageClass({
      destination: SERVICE,
      path: '/org/ferrybus/Test',
      interface: 'org.ferrybus.Test.Driver',
      member: 'Fire',
      signature: 's',
      body: ['and forget'],
      flags: MessageFlag.NO_REPLY_EXPECTED,
    });
    expect(await sender.bus.call(call)).toBeNull(); // dbus-next does not wait for a reply
    const got = await receiver.waitFor((m) => m.type === MessageType.METHOD_CALL && m.member === 'Fire', 'the Fire call');
    expect(got.flags & MessageFlag.NO_REPLY_EXPECTED).toBe(1);
    expect(got.destination).toBe(SERVICE);
    expect(got.sender).toBe(sender.uniqueName);
    expect(got.body).toEqual(['and forget']);

    // A reply nobody asked for. Round trips through the bus from both ends order everything
    // before them, so after them the sender has received whatever the bus routed.
    receiver.bus.send(MessageClass.newMethodReturn(got, 's', ['unasked']));
    await receiver.ping();
    await sender.ping();
    const stray = sender.received.filter((m) => m.type !== MessageType.SIGNAL && Number(m.replySerial) === got.serial);
    // No error from the bus in any case. The reply itself: dbus-daemon (with an allow-all
    // send/receive policy) forwards it; dbus-broker drops replies it has no pending call for.
    expect(stray.filter((m) => m.type === MessageType.ERROR)).toEqual([]);
    if (bus().kind === 'dbus-daemon') expect(stray.map((m) => m.body)).toEqual([['unasked']]);
    if (bus().kind === 'dbus-broker') expect(stray).toEqual([]);
  });
});
