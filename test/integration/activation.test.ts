// Service activation driven by real clients: Exec= auto-start and StartServiceByName, the errors
// a failed start gives, and systemd activation with a stand-in for systemd (what PID 1 does).
// Runs against ferrybus (default) and dbus-daemon (FERRYBUS_TEST_BUS=dbus-daemon): they must
// agree. dbus-broker is left out: it reads no busconfig (its launcher reads service files).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busKindFromEnv } from '../harness/bus-kind.js';
import { startBusWithConfig } from '../harness/config-bus.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning } from '../harness/long-running.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { useCleanup } from '../harness/use-bus.js';

const kind = busKindFromEnv();
const ECHO_PATH = '/org/ferrybus/Test/Echo';
const ECHO_IFACE = 'org.ferrybus.Test.Echo';

/** A command that runs the python echo service for `name` on the bus that started it, until that bus ends. */
const echoCommand = (name: string) =>
  `exec ${SYSTEM_PYTHON} ${fixturePath('echo-service.py')} --exit-with-bus --address "$DBUS_STARTER_ADDRESS" --name ${name}`;

function echoExec(name: string, delay = 0): string {
  return `/bin/sh -c '${delay > 0 ? `sleep ${delay}; ` : ''}${echoCommand(name)}'`;
}

function serviceFile(name: string, exec: string, extra = ''): string {
  return `[D-BUS Service]\nName=${name}\nExec=${exec}\n${extra}`;
}

const config = (extra = '') => (listen: string) => `<busconfig>
  <type>session</type>
  <listen>${listen}</listen>
  <servicedir>services</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="service_start_timeout">3000</limit>
  ${extra}
</busconfig>
`;

const dbusSend = (bus: RunningBus, dest: string, objectPath: string, method: string, ...args: string[]) =>
  runClient('dbus-send', [`--bus=${bus.address}`, '--print-reply', `--dest=${dest}`, objectPath, method, ...args], { timeoutMs: 20_000 });

const busctl = (bus: RunningBus, ...args: string[]) => runClient('busctl', [`--address=${bus.address}`, ...args], { timeoutMs: 20_000 });

describe.skipIf(kind === 'dbus-broker')(`service activation with Exec= (${kind})`, () => {
  // Skipped for dbus-broker only: it reads no busconfig, so <servicedir> cannot be given to it.
  const defer = useCleanup();
  let bus: RunningBus & { dir: string };

  beforeAll(async () => {
    bus = await startBusWithConfig(kind, config(), {
      'services/org.ferrybus.Test.Echo.service': serviceFile('org.ferrybus.Test.Echo', echoExec('org.ferrybus.Test.Echo')),
      'services/org.ferrybus.Test.Slow.service': serviceFile('org.ferrybus.Test.Slow', echoExec('org.ferrybus.Test.Slow', 1)),
      'services/org.ferrybus.Test.Started.service': serviceFile('org.ferrybus.Test.Started', echoExec('org.ferrybus.Test.Started')),
      'services/org.ferrybus.Test.Fails.service': serviceFile('org.ferrybus.Test.Fails', "/bin/sh -c 'exit 3'"),
      'services/org.ferrybus.Test.Missing.service': serviceFile('org.ferrybus.Test.Missing', '/nonexistent/ferrybus-test-program'),
      // Killed by the bus at service_start_timeout.
      'services/org.ferrybus.Test.Hangs.service': serviceFile('org.ferrybus.Test.Hangs', '/bin/sleep 60'),
      'services/not-a-service.txt': 'ignored: not a .service file',
    });
  });
  afterAll(() => bus?.stop());

  it('lists the activatable names (dbus-send ListActivatableNames)', async () => {
    const r = await dbusSend(bus, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.ListActivatableNames');
    expect(r.exitCode, describeResult(r)).toBe(0);
    for (const name of ['org.freedesktop.DBus', 'org.ferrybus.Test.Echo', 'org.ferrybus.Test.Fails', 'org.ferrybus.Test.Hangs']) {
      expect(r.stdout).toContain(`string "${name}"`);
    }
  });

  it('starts a service on the first call to its name and answers the call (dbus-send)', async () => {
    const r = await dbusSend(bus, 'org.ferrybus.Test.Echo', ECHO_PATH, `${ECHO_IFACE}.Echo`, 'string:first');
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toContain('string "first"');
    const owner = await dbusSend(bus, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.NameHasOwner', 'string:org.ferrybus.Test.Echo');
    expect(owner.stdout).toContain('boolean true');
  });

  it('holds every call sent while the service starts and delivers them in order (python3-dbus)', async () => {
    const r = await runClient(SYSTEM_PYTHON, [fixturePath('ordered-calls.py'), bus.address, 'org.ferrybus.Test.Slow', ECHO_PATH, '20'], { timeoutMs: 30_000 });
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(Array.from({ length: 20 }, (_, i) => `reply call-${i}`));
  });

  it('answers StartServiceByName with 1 (started), then 2 (already running) (busctl)', async () => {
    const first = await busctl(bus, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'StartServiceByName', 'su', 'org.ferrybus.Test.Started', '0');
    expect(first.stdout.trim(), describeResult(first)).toBe('u 1');
    const again = await busctl(bus, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'StartServiceByName', 'su', 'org.ferrybus.Test.Started', '0');
    expect(again.stdout.trim(), describeResult(again)).toBe('u 2');
  });

  it('answers Spawn.ChildExited when the program exits with an error (gdbus)', async () => {
    const r = await runClient('gdbus', ['call', '--address', bus.address, '--dest', 'org.ferrybus.Test.Fails', '--object-path', '/x', '--method', 'a.b.C'], { timeoutMs: 20_000 });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr, describeResult(r)).toContain('org.freedesktop.DBus.Error.Spawn.ChildExited');
    expect(r.stderr).toContain('Process org.ferrybus.Test.Fails exited with status 3');
  });

  it('answers Spawn.ExecFailed when the program does not exist', async () => {
    const r = await dbusSend(bus, 'org.ferrybus.Test.Missing', '/x', 'a.b.C');
    expect(r.stderr, describeResult(r)).toContain('Error org.freedesktop.DBus.Error.Spawn.ExecFailed: Failed to execute program org.ferrybus.Test.Missing: No such file or directory');
  });

  it('answers TimedOut when the service does not take its name within service_start_timeout', async () => {
    const r = await dbusSend(bus, 'org.ferrybus.Test.Hangs', '/x', 'a.b.C');
    expect(r.stderr, describeResult(r)).toContain(
      "Error org.freedesktop.DBus.Error.TimedOut: Failed to activate service 'org.ferrybus.Test.Hangs': timed out (service_start_timeout=3000ms)",
    );
  });

  it('answers ServiceUnknown for a name no file provides, NameHasNoOwner without auto-start', async () => {
    const unknown = await dbusSend(bus, 'org.ferrybus.Test.Nobody', '/x', 'a.b.C');
    expect(unknown.stderr, describeResult(unknown)).toContain('Error org.freedesktop.DBus.Error.ServiceUnknown: The name org.ferrybus.Test.Nobody was not provided by any .service files');
    const noAutoStart = await busctl(bus, '--auto-start=no', 'call', 'org.ferrybus.Test.Fails', '/x', 'a.b', 'C');
    expect(noAutoStart.stderr, describeResult(noAutoStart)).toMatch(/does not exist|not activatable|NameHasNoOwner/i);
  });

  it('finds a service file written while the bus runs, at the first call to its name', async () => {
    writeFileSync(path.join(bus.dir, 'services', 'org.ferrybus.Test.Late.service'), serviceFile('org.ferrybus.Test.Late', echoExec('org.ferrybus.Test.Late')));
    const r = await dbusSend(bus, 'org.ferrybus.Test.Late', ECHO_PATH, `${ECHO_IFACE}.Echo`, 'string:late');
    expect(r.stdout, describeResult(r)).toContain('string "late"');
  });

  it('keeps serving others while one service fails to start', async () => {
    const [fail, ok] = await Promise.all([
      dbusSend(bus, 'org.ferrybus.Test.Fails', '/x', 'a.b.C'),
      dbusSend(bus, 'org.ferrybus.Test.Echo', ECHO_PATH, `${ECHO_IFACE}.Echo`, 'string:still'),
    ]);
    expect(fail.stderr).toContain('Spawn.ChildExited');
    expect(ok.stdout, describeResult(ok)).toContain('string "still"');
    void defer;
  });
});

describe.skipIf(kind === 'dbus-broker')(`systemd activation with a stand-in for systemd (${kind})`, () => {
  const defer = useCleanup();
  let bus: RunningBus & { dir: string };

  beforeAll(async () => {
    bus = await startBusWithConfig(kind, config(), {
      'services/org.ferrybus.Test.Unit.service': serviceFile('org.ferrybus.Test.Unit', '/bin/false', 'SystemdService=ferrybus-test-unit.service\n'),
      'services/org.ferrybus.Test.NoUnit.service': serviceFile('org.ferrybus.Test.NoUnit', '/bin/false', 'SystemdService=ferrybus-test-missing.service\n'),
      'services/org.ferrybus.Test.Plain.service': serviceFile('org.ferrybus.Test.Plain', echoExec('org.ferrybus.Test.Plain')),
    }, ['--systemd-activation']);
  });
  afterAll(() => bus?.stop());

  it('says so in Features', async () => {
    const r = await busctl(bus, 'get-property', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Features');
    expect(r.stdout, describeResult(r)).toContain('"SystemdActivation"');
  });

  it('asks systemd to start the unit, even when systemd connects only after the call', async () => {
    const call = dbusSend(bus, 'org.ferrybus.Test.Unit', ECHO_PATH, `${ECHO_IFACE}.Echo`, 'string:via-systemd');
    const systemd = startLongRunning(SYSTEM_PYTHON, [fixturePath('fake-systemd.py'), '--address', bus.address,
      '--unit', `ferrybus-test-unit.service=${echoCommand('org.ferrybus.Test.Unit')}`]);
    defer(() => systemd.stop());
    await systemd.waitFor(/^ready /m);
    await systemd.waitFor(/^request ferrybus-test-unit\.service$/m);
    const r = await call;
    expect(r.stdout, describeResult(r)).toContain('string "via-systemd"');

    // systemd answers a unit it does not have with ActivationFailure: the caller gets that error.
    const missing = await dbusSend(bus, 'org.ferrybus.Test.NoUnit', '/x', 'a.b.C');
    expect(missing.stderr, describeResult(missing)).toContain('Error org.freedesktop.systemd1.NoSuchUnit: Unit ferrybus-test-missing.service not found.');

    // A service without SystemdService= is still started from its Exec= line.
    const plain = await dbusSend(bus, 'org.ferrybus.Test.Plain', ECHO_PATH, `${ECHO_IFACE}.Echo`, 'string:plain');
    expect(plain.stdout, describeResult(plain)).toContain('string "plain"');
  });
});
