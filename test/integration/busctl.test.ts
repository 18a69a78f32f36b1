import { describe, expect, it } from 'vitest';
import { runOn, startOn } from '../harness/clients.js';
import { startEchoService } from '../harness/python-clients.js';
import { describeResult } from '../harness/run-client.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const SERVICE = 'org.ferrybus.Test.Busctl';

describe('busctl (systemd sd-bus) on the test bus', () => {
  const bus = useBus();
  const defer = useCleanup();
  const busctl = (...args: string[]) => runOn(bus(), 'busctl', [`--address=${bus().address}`, ...args]);

  it('lists the bus driver and a name owned by a running service, with the owner PID', async () => {
    const svc = await startEchoService(bus(), defer, SERVICE);
    const r = await busctl('list', '--no-legend');
    expect(r.exitCode, describeResult(r)).toBe(0);
    const rows = r.stdout.split('\n').map((l) => l.trim().split(/\s+/));
    const row = (name: string) => rows.find((cols) => cols[0] === name);
    expect(row('org.freedesktop.DBus'), r.stdout).toBeDefined();
    // NAME PID PROCESS USER CONNECTION ...
    const service = row(SERVICE);
    expect(service, r.stdout).toBeDefined();
    expect(service![1]).toBe(String(svc.proc.pid));
    expect(service![2]).toBe('python3');
    expect(service![4]).toBe(svc.uniqueName);
  });

  it('call GetId returns a 32-hex-digit bus id that is the same for every client', async () => {
    const getId = async () => {
      const r = await busctl('call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId');
      expect(r.exitCode, describeResult(r)).toBe(0);
      const id = /^s "([0-9a-f]{32})"$/.exec(r.stdout.trim())?.[1];
      expect(id, r.stdout).toBeDefined();
      return id;
    };
    // Each busctl run is a new connection. Note: on dbus-daemon the bus id is NOT the
    // guid= of its printed address (that is the listening server's guid).
    expect(await getId()).toBe(await getId());
  });

  it('call ListNames includes the driver and both names of a service', async () => {
    const svc = await startEchoService(bus(), defer, SERVICE);
    const r = await busctl('call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'ListNames');
    expect(r.exitCode, describeResult(r)).toBe(0);
    const m = /^as (\d+) (.*)$/.exec(r.stdout.trim());
    expect(m, r.stdout).not.toBeNull();
    const names = [...m![2]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]);
    expect(names).toHaveLength(Number(m![1]));
    expect(names).toEqual(expect.arrayContaining(['org.freedesktop.DBus', SERVICE, svc.uniqueName]));
  });

  it('call GetNameOwner answers the unique name of the service that owns the name', async () => {
    const svc = await startEchoService(bus(), defer, SERVICE);
    const r = await busctl('call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetNameOwner', 's', SERVICE);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout.trim()).toBe(`s "${svc.uniqueName}"`);
  });

  it('status of a peer shows its PID, UID, command line and unique name', async () => {
    const svc = await startEchoService(bus(), defer, SERVICE);
    const r = await busctl('status', SERVICE);
    expect(r.exitCode, describeResult(r)).toBe(0);
    const fields = new Map(
      r.stdout
        .split('\n')
        .filter((l) => /^[A-Za-z]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
    );
    expect(fields.get('PID')).toBe(String(svc.proc.pid));
    expect(fields.get('UID')).toBe(String(process.getuid!()));
    expect(fields.get('UniqueName')).toBe(svc.uniqueName);
    expect(fields.get('CommandLine')).toContain('echo-service.py');
  });

  it('monitor shows a signal that another client sends', async () => {
    const monitor = startOn(bus(), defer, 'busctl', [`--address=${bus().address}`, 'monitor']);
    // Printed once BecomeMonitor has returned.
    await monitor.waitFor('Monitoring bus message stream.', { stream: 'stderr' });
    const send = await runOn(bus(), 'dbus-send', [`--bus=${bus().address}`, '--type=signal', '/org/ferrybus/Test', 'org.ferrybus.Test.Busctl.Ping', 'string:seen-by-busctl']);
    expect(send.exitCode, describeResult(send)).toBe(0);
    const m = await monitor.waitFor(/Type=signal[^\n]*\n\s+Sender=(:\S+)\s+Path=\/org\/ferrybus\/Test\s+Interface=org\.ferrybus\.Test\.Busctl\s+Member=Ping[\s\S]*?MESSAGE "s" \{\s+STRING "seen-by-busctl";/);
    expect(m[1]).toMatch(/^:\d+\.\d+$/);
  });
});
