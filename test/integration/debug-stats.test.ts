// org.freedesktop.DBus.Debug.Stats through real clients (busctl, gdbus, python3-dbus).
// Runs against ferrybus (default) and dbus-daemon (FERRYBUS_TEST_BUS=dbus-daemon; Debian builds
// it with --enable-stats). dbus-broker is left out: it does not offer the interface (dbus-broker 33
// answers its methods with Failed "Unimplemented functionality"; Interfaces lists only Monitoring).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busKindFromEnv } from '../harness/bus-kind.js';
import { runOn } from '../harness/clients.js';
import { startBusWithConfig } from '../harness/config-bus.js';
import { startEchoService, startSignalSubscriber } from '../harness/python-clients.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { asUser, ensureTestUser, isRoot, type TestUser } from '../harness/test-users.js';
import { useBus, useCleanup } from '../harness/use-bus.js';
import { stockSystemConfig } from '../harness/stock-system-config.js';

const kind = busKindFromEnv();
const STATS = 'org.freedesktop.DBus.Debug.Stats';
const DRIVER = ['org.freedesktop.DBus', '/org/freedesktop/DBus'] as const;

/** ferrybus' GetStats keys: dbus-daemon's, less the three about libdbus' list allocator. */
const STATS_KEYS = [
  'Serial', 'ActiveConnections', 'IncompleteConnections', 'MatchRules', 'PeakMatchRules',
  'PeakMatchRulesPerConnection', 'BusNames', 'PeakBusNames', 'PeakBusNamesPerConnection',
];
const DBUS_DAEMON_ONLY_KEYS = ['ListMemPoolUsedBytes', 'ListMemPoolCachedBytes', 'ListMemPoolAllocatedBytes'];
const CONNECTION_KEYS = [
  'Serial', 'MatchRules', 'PeakMatchRules', 'BusNames', 'PeakBusNames', 'UniqueName',
  'IncomingMessages', 'IncomingBytes', 'IncomingFDs', 'PeakIncomingBytes', 'PeakIncomingFDs',
  'OutgoingMessages', 'OutgoingBytes', 'OutgoingFDs', 'PeakOutgoingBytes', 'PeakOutgoingFDs',
];

type Typed = { type: string; data: unknown };

/** One Debug.Stats call through busctl --json: the reply's a{sv} as key → {type, data}. */
async function busctlCall(bus: RunningBus, member: string, ...args: string[]): Promise<unknown> {
  const r = await runOn(bus, 'busctl', [`--address=${bus.address}`, '--json=short', 'call', ...DRIVER, STATS, member, ...args]);
  expect(r.exitCode, describeResult(r)).toBe(0);
  return (JSON.parse(r.stdout) as { data: unknown[] }).data[0];
}

async function asv(bus: RunningBus, member: string, ...args: string[]): Promise<Record<string, Typed>> {
  return (await busctlCall(bus, member, ...args)) as Record<string, Typed>;
}

/** The values, after checking every count is a uint32 as in dbus-daemon. */
function values(dict: Record<string, Typed>): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(dict)) {
    expect(v.type, k).toBe(k === 'UniqueName' ? 's' : 'u');
    out[k] = v.data as number | string;
  }
  return out;
}

function gdbusCall(bus: RunningBus, user: TestUser | undefined, method: string, ...args: string[]) {
  const prefix = user ? asUser(user) : [];
  const argv = [...prefix, 'gdbus', 'call', '--address', bus.address, '--dest', DRIVER[0], '--object-path', DRIVER[1], '--method', method, ...args];
  return runClient(argv[0]!, argv.slice(1));
}

describe.skipIf(kind === 'dbus-broker')(`Debug.Stats on the test bus (${kind})`, () => {
  const bus = useBus();
  const defer = useCleanup();

  it('GetStats answers the documented keys as uint32; BusNames grows when a service takes a name', async () => {
    const before = values(await asv(bus(), 'GetStats'));
    const keys = Object.keys(before);
    if (kind === 'ferrybus') expect(keys).toEqual(STATS_KEYS);
    else expect(keys).toEqual(expect.arrayContaining([...STATS_KEYS, ...DBUS_DAEMON_ONLY_KEYS]));
    expect(before.ActiveConnections).toBeGreaterThanOrEqual(1); // busctl itself
    expect(before.BusNames).toBeGreaterThanOrEqual(1);

    await startEchoService(bus(), defer, 'org.ferrybus.Test.Stats');
    const after = values(await asv(bus(), 'GetStats'));
    // The service's unique name and org.ferrybus.Test.Stats, plus this busctl's own name.
    expect(after.BusNames).toBeGreaterThanOrEqual((before.BusNames as number) + 2);
    expect(after.ActiveConnections).toBeGreaterThanOrEqual((before.ActiveConnections as number) + 1);
    expect(after.PeakBusNames).toBeGreaterThanOrEqual(after.BusNames as number);
    expect(after.PeakMatchRules).toBeGreaterThanOrEqual(after.MatchRules as number);
    expect(after.Serial).toBeGreaterThan(before.Serial as number);
  });

  it('GetConnectionStats counts a connection\'s names and match rules, by unique or well-known name', async () => {
    const service = await startEchoService(bus(), defer, 'org.ferrybus.Test.StatsNames');
    const byName = values(await asv(bus(), 'GetConnectionStats', 's', 'org.ferrybus.Test.StatsNames'));
    if (kind === 'ferrybus') expect(Object.keys(byName)).toEqual(CONNECTION_KEYS);
    else expect(Object.keys(byName)).toEqual(expect.arrayContaining(CONNECTION_KEYS));
    expect(byName).toMatchObject({ UniqueName: service.uniqueName, BusNames: 2, PeakBusNames: 2, IncomingFDs: 0, OutgoingFDs: 0 });
    const byUnique = values(await asv(bus(), 'GetConnectionStats', 's', service.uniqueName));
    expect(byUnique).toMatchObject({ UniqueName: service.uniqueName, BusNames: 2 });

    const rule = "member='StatsProbe',type='signal',interface='org.ferrybus.Test.Stats'";
    const subscriber = await startSignalSubscriber(bus(), defer, rule);
    const sub = values(await asv(bus(), 'GetConnectionStats', 's', subscriber.uniqueName));
    expect(sub.MatchRules).toBeGreaterThanOrEqual(1);
    expect(sub.PeakMatchRules).toBeGreaterThanOrEqual(sub.MatchRules as number);
    expect(sub).toMatchObject({ BusNames: 1, PeakBusNames: 1 });
  });

  it('GetAllMatchRules shows the rule a client added, written as dbus-daemon writes it', async () => {
    const rule = "arg0='it'\\''s',member='StatsProbe',sender='org.freedesktop.DBus',type='signal',path_namespace='/org/ferrybus',interface='org.ferrybus.Test.Stats'";
    const subscriber = await startSignalSubscriber(bus(), defer, rule);
    const all = (await busctlCall(bus(), 'GetAllMatchRules')) as Record<string, string[]>;
    // Same string from both buses: dbus-daemon's key order, its quoting of the apostrophe.
    expect(all[subscriber.uniqueName]).toContain(
      "type='signal',interface='org.ferrybus.Test.Stats',member='StatsProbe',path_namespace='/org/ferrybus',sender='org.freedesktop.DBus',arg0='it'\\''s'");
    const stats = values(await asv(bus(), 'GetConnectionStats', 's', subscriber.uniqueName));
    expect(all[subscriber.uniqueName]).toHaveLength(stats.MatchRules as number);
    // Every entry is a unique name; well-known names are not repeated.
    for (const name of Object.keys(all)) expect(name).toMatch(/^:/);
  });

  it('GetConnectionStats answers NameHasNoOwner for a name nobody owns, InvalidArgs for the bus itself', async () => {
    const nobody = await runOn(bus(), 'gdbus', ['call', '--address', bus().address, '--dest', DRIVER[0], '--object-path', DRIVER[1],
      '--method', `${STATS}.GetConnectionStats`, 'org.ferrybus.Test.Nobody']);
    expect(nobody.stderr, describeResult(nobody)).toMatch(/org\.freedesktop\.DBus\.Error\.NameHasNoOwner: Could not get statistics of name 'org\.ferrybus\.Test\.Nobody': no such name/);
    const driver = await runOn(bus(), 'gdbus', ['call', '--address', bus().address, '--dest', DRIVER[0], '--object-path', DRIVER[1],
      '--method', `${STATS}.GetConnectionStats`, 'org.freedesktop.DBus']);
    expect(driver.stderr, describeResult(driver)).toMatch(/org\.freedesktop\.DBus\.Error\.InvalidArgs/);
  });

  it('the driver lists the interface in its Interfaces property and its introspection', async () => {
    const prop = await runOn(bus(), 'busctl', [`--address=${bus().address}`, '--json=short', 'get-property', ...DRIVER, 'org.freedesktop.DBus', 'Interfaces']);
    expect(prop.exitCode, describeResult(prop)).toBe(0);
    expect(JSON.parse(prop.stdout)).toEqual({ type: 'as', data: ['org.freedesktop.DBus.Monitoring', STATS] });
    const intro = await runOn(bus(), 'busctl', [`--address=${bus().address}`, 'introspect', ...DRIVER, STATS]);
    expect(intro.exitCode, describeResult(intro)).toBe(0);
    expect(intro.stdout).toMatch(/^\.GetAllMatchRules\s+method\s+-\s+a\{sas\}/m);
    expect(intro.stdout).toMatch(/^\.GetConnectionStats\s+method\s+s\s+a\{sv\}/m);
    expect(intro.stdout).toMatch(/^\.GetStats\s+method\s+-\s+a\{sv\}/m);
  });

  it('exists only at /org/freedesktop/DBus', async () => {
    const r = await runOn(bus(), 'dbus-send', [`--bus=${bus().address}`, '--print-reply', `--dest=${DRIVER[0]}`, '/', `${STATS}.GetStats`]);
    expect(r.stderr, describeResult(r)).toMatch(/org\.freedesktop\.DBus\.Error\.UnknownInterface/);
  });
});

describe.skipIf(!isRoot || kind === 'dbus-broker')(`Debug.Stats under Debian's stock system.conf (${kind})`, () => {
  // Needs root to run clients as a test user (CI runs as root).
  let bus: RunningBus;
  let bob: TestUser;

  beforeAll(async () => {
    bob = ensureTestUser('fbtest-bob');
    bus = await startBusWithConfig(kind, stockSystemConfig);
  });
  afterAll(() => bus?.stop());

  it.each(['GetStats', 'GetAllMatchRules'])('refuses %s to a user other than root with AccessDenied', async (member) => {
    const r = await gdbusCall(bus, bob, `${STATS}.${member}`);
    expect(r.stderr, describeResult(r)).toMatch(/org\.freedesktop\.DBus\.Error\.AccessDenied: Rejected send message/);
  });

  it('refuses GetConnectionStats to a user other than root, even about itself', async () => {
    const r = await gdbusCall(bus, bob, `${STATS}.GetConnectionStats`, 'org.freedesktop.DBus');
    expect(r.stderr, describeResult(r)).toMatch(/org\.freedesktop\.DBus\.Error\.AccessDenied/);
  });

  it('answers root', async () => {
    const r = await gdbusCall(bus, undefined, `${STATS}.GetStats`);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toMatch(/'BusNames': <uint32 \d+>/);
  });
});
