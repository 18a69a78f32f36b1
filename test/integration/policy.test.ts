// The busconfig policy enforced for real clients running as real, different uids.
// Runs against ferrybus (default) and dbus-daemon (FERRYBUS_TEST_BUS=dbus-daemon); the two
// must agree. dbus-broker is left out: it reads no busconfig (its launcher compiles one).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busKindFromEnv } from '../harness/bus-kind.js';
import { startBusWithConfig } from '../harness/config-bus.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning } from '../harness/long-running.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { asUser, ensureTestUser, isRoot, type TestUser } from '../harness/test-users.js';
import { stockSystemConfig } from '../harness/stock-system-config.js';
import { useCleanup } from '../harness/use-bus.js';

const kind = busKindFromEnv();
const ECHO = 'org.ferrybus.Test.Echo';
const PATH = '/org/ferrybus/Test/Echo';
/** Signals on this interface are denied to every sender but root. */
const QUIET = 'org.ferrybus.Test.Quiet';

/**
 * Sends one signal (to argv[2], or broadcast when it is "-"), then a round trip to the bus, and
 * prints every error the bus sent back in answer to the signal: "error NAME: TEXT", or "none".
 */
const SIGNAL_SENDER = `
import sys, dbus, dbus.lowlevel
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
bus = dbus.bus.BusConnection(sys.argv[1], mainloop=DBusGMainLoop())
answers = []
def seen(conn, msg):
    if msg.get_type() == 3 and msg.get_reply_serial() == serial:
        answers.append('error %s: %s' % (msg.get_error_name(), msg.get_args_list()[0]))
bus.add_message_filter(seen)
signal = dbus.lowlevel.SignalMessage('/org/ferrybus/Test', '${QUIET}', 'Hush')
if sys.argv[2] != '-':
    signal.set_destination(sys.argv[2])
serial = bus.send_message(signal)
bus.get_unique_name(); bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId', '', ())
context = GLib.MainContext.default()
while context.iteration(False):
    pass
print('\\n'.join(answers) or 'none')
`;

/** A system-bus style policy: default deny, holes punched per name, as distributions ship. */
const TEST_CONFIG = (users: { alice: TestUser; carol: TestUser }) => (listen: string) => `<busconfig>
  <type>system</type>
  <listen>${listen}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="${users.alice.name}">
    <allow own="org.ferrybus.Test.Alice"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.ferrybus.Test.Alice" send_interface="${ECHO}" send_member="Echo"/>
    <deny send_interface="${QUIET}"/>
  </policy>
  <policy user="root">
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <policy context="mandatory">
    <deny user="${users.carol.name}"/>
  </policy>
</busconfig>
`;

function gdbus(bus: RunningBus, user: TestUser | undefined, dest: string, path: string, method: string, ...args: string[]) {
  const prefix = user ? asUser(user) : [];
  const argv = [...prefix, 'gdbus', 'call', '--address', bus.address, '--dest', dest, '--object-path', path, '--method', method, ...args];
  return runClient(argv[0]!, argv.slice(1));
}

const requestName = (bus: RunningBus, user: TestUser | undefined, name: string) =>
  gdbus(bus, user, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.RequestName', name, '4');

// Real uids need root to create test users and switch to them (CI runs as root); dbus-broker reads
// no busconfig policy (its launcher compiles one), so these cases do not apply to it.
describe.skipIf(!isRoot || kind === 'dbus-broker')(`policy with real uids (${kind})`, () => {
  // Skipped without root (test users need useradd; CI runs as root) and for dbus-broker (no busconfig).
  const defer = useCleanup();
  let bus: RunningBus;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;

  beforeAll(async () => {
    alice = ensureTestUser('fbtest-alice');
    bob = ensureTestUser('fbtest-bob');
    carol = ensureTestUser('fbtest-carol');
    bus = await startBusWithConfig(kind, TEST_CONFIG({ alice, carol }));
  });
  afterAll(() => bus?.stop());

  async function startAliceService(name = 'org.ferrybus.Test.Alice') {
    const proc = startLongRunning(asUser(alice)[0]!, [...asUser(alice).slice(1), SYSTEM_PYTHON, fixturePath('echo-service.py'), '--address', bus.address, '--name', name]);
    defer(() => proc.stop());
    await proc.waitFor(/^ready (\S+) (\S+)$/m);
    return proc;
  }

  it('lets a user own only the name its <policy user> allows; others get AccessDenied', async () => {
    const service = await startAliceService();
    const byBob = await requestName(bus, bob, 'org.ferrybus.Test.Alice');
    expect(byBob.exitCode, describeResult(byBob)).not.toBe(0);
    expect(byBob.stderr).toMatch(/org\.freedesktop\.DBus\.Error\.AccessDenied/);
    expect(byBob.stderr).toMatch(/not allowed to own the service "org\.ferrybus\.Test\.Alice"/);
    const otherByAlice = await requestName(bus, alice, 'org.ferrybus.Test.NotAlice');
    expect(otherByAlice.stderr).toMatch(/AccessDenied/);
    const byRoot = await requestName(bus, undefined, 'org.ferrybus.Test.Root');
    expect(byRoot.stdout, describeResult(byRoot)).toMatch(/\(uint32 1,\)/);
    await service.stop();
  });

  it('delivers the call a rule allows and refuses the one it does not, with dbus-daemon\'s text', async () => {
    const service = await startAliceService();
    const echo = await gdbus(bus, bob, 'org.ferrybus.Test.Alice', PATH, `${ECHO}.Echo`, 'hello');
    expect(echo.stdout, describeResult(echo)).toBe("('hello',)\n");
    const whoami = await gdbus(bus, bob, 'org.ferrybus.Test.Alice', PATH, `${ECHO}.Whoami`);
    expect(whoami.exitCode).not.toBe(0);
    expect(whoami.stderr, describeResult(whoami)).toMatch(
      new RegExp(`AccessDenied: Rejected send message, \\d+ matched rules; type="method_call", sender=":[0-9.]+" \\(uid=${bob.uid} pid=\\d+ comm="[^"]*"\\) ` +
        `interface="${ECHO}" member="Whoami" error name="\\(unset\\)" requested_reply="0" destination="org.ferrybus.Test.Alice" \\(uid=${alice.uid} pid=\\d+ comm="[^"]*"\\)`),
    );
    const asRoot = await gdbus(bus, undefined, 'org.ferrybus.Test.Alice', PATH, `${ECHO}.Whoami`);
    expect(asRoot.stdout, describeResult(asRoot)).toMatch(/^\(':[0-9.]+',\)\n$/);
    await service.stop();
  });

  it('answers a unicast signal the policy denies with AccessDenied, and a denied broadcast with silence', async () => {
    const service = await startAliceService();
    const owner = await gdbus(bus, undefined, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.GetNameOwner', 'org.ferrybus.Test.Alice');
    const unique = /'(:[0-9.]+)'/.exec(owner.stdout)?.[1];
    expect(unique, describeResult(owner)).toBeDefined();
    const send = (user: TestUser | undefined, to: string) => {
      const argv = [...(user ? asUser(user) : []), SYSTEM_PYTHON, '-c', SIGNAL_SENDER, bus.address, to];
      return runClient(argv[0]!, argv.slice(1));
    };
    const unicast = await send(bob, unique!);
    expect(unicast.stdout, describeResult(unicast)).toMatch(
      new RegExp(`^error org\\.freedesktop\\.DBus\\.Error\\.AccessDenied: Rejected send message, \\d+ matched rules; type="signal", sender=":[0-9.]+" \\(uid=${bob.uid} pid=\\d+ comm="[^"]*"\\) interface="${QUIET}" member="Hush"`),
    );
    const broadcast = await send(bob, '-');
    expect(broadcast.stdout, describeResult(broadcast)).toBe('none\n');
    const byRoot = await send(undefined, unique!);
    expect(byRoot.stdout, describeResult(byRoot)).toBe('none\n');
    await service.stop();
  });

  it('lets every user talk to the bus driver, but not become a monitor', async () => {
    const names = await gdbus(bus, bob, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.ListNames');
    expect(names.stdout, describeResult(names)).toMatch(/'org\.freedesktop\.DBus'/);
    const monitor = await gdbus(bus, bob, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.Monitoring.BecomeMonitor', '[]', '0');
    expect(monitor.stderr, describeResult(monitor)).toMatch(/AccessDenied/);
  });

  it('refuses a connection the mandatory policy denies, and only that one', async () => {
    const refused = await gdbus(bus, carol, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.GetId');
    expect(refused.exitCode, describeResult(refused)).not.toBe(0);
    expect(refused.stdout).toBe('');
    const allowed = await gdbus(bus, bob, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.GetId');
    expect(allowed.stdout, describeResult(allowed)).toMatch(/^\('[0-9a-f]{32}',\)\n$/);
  });
});

// Needs root to run clients as test users (CI runs as root); dbus-broker reads no busconfig.
describe.skipIf(!isRoot || kind === 'dbus-broker')(`Debian's stock system.conf (${kind})`, () => {
  const defer = useCleanup();
  let bus: RunningBus;
  let bob: TestUser;

  beforeAll(async () => {
    bob = ensureTestUser('fbtest-bob');
    bus = await startBusWithConfig(kind, stockSystemConfig);
  });
  afterAll(() => bus?.stop());

  it('lets only root own org.freedesktop.login1', async () => {
    const byBob = await requestName(bus, bob, 'org.freedesktop.login1');
    expect(byBob.stderr, describeResult(byBob)).toMatch(/AccessDenied/);
    const byRoot = await requestName(bus, undefined, 'org.freedesktop.login1');
    expect(byRoot.stdout, describeResult(byRoot)).toMatch(/\(uint32 1,\)/);
  });

  it('lets a user call org.freedesktop.DBus but not own a name of its own', async () => {
    const names = await gdbus(bus, bob, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.ListNames');
    expect(names.stdout, describeResult(names)).toMatch(/'org\.freedesktop\.DBus'/);
    const own = await requestName(bus, bob, 'com.example.Mine');
    expect(own.stderr, describeResult(own)).toMatch(/AccessDenied/);
    const stats = await gdbus(bus, bob, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.UpdateActivationEnvironment', '{}');
    expect(stats.stderr, describeResult(stats)).toMatch(/AccessDenied/);
  });

  it('lets a user reach login1 methods its policy opens, and not the ones it closes', async () => {
    const service = startLongRunning(SYSTEM_PYTHON, [fixturePath('echo-service.py'), '--address', bus.address, '--name', 'org.freedesktop.login1']);
    defer(() => service.stop());
    await service.waitFor(/^ready /m);
    // login1.conf allows Manager.ListSessions for everyone: the call reaches the service, which
    // has no such method (UnknownMethod), instead of stopping at the bus (AccessDenied).
    const open = await gdbus(bus, bob, 'org.freedesktop.login1', '/org/freedesktop/login1', 'org.freedesktop.login1.Manager.ListSessions');
    expect(open.stderr, describeResult(open)).toMatch(/UnknownMethod/);
    // ...and denies anything it does not name, such as our echo interface.
    const closed = await gdbus(bus, bob, 'org.freedesktop.login1', PATH, `${ECHO}.Echo`, 'x');
    expect(closed.stderr, describeResult(closed)).toMatch(/AccessDenied/);
  });
});
