// Reloading the policy: SIGHUP, ReloadConfig, a changed file; an invalid config keeps the one in
// force; and (ferrybus) the policy in force crosses a handoff, also when the file went bad.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { handoffByCli, logLines } from '../handoff/support/ferrybus.js';
import { busKindFromEnv } from '../harness/bus-kind.js';
import { startBusWithConfig } from '../harness/config-bus.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { asUser, ensureTestUser, isRoot, type TestUser } from '../harness/test-users.js';

const kind = busKindFromEnv();
const MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/** Everything allowed except owning names; `own` lists the names bob may own. */
const config = (bob: TestUser, own: string[]) => (listen: string) => `<busconfig>
  <type>system</type>
  <listen>${listen}</listen>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <policy user="${bob.name}">
${own.map((name) => `    <allow own="${name}"/>`).join('\n')}
  </policy>
</busconfig>
`;

function driver(bus: RunningBus, user: TestUser | undefined, method: string, ...args: string[]) {
  const argv = [...(user ? asUser(user) : []), 'gdbus', 'call', '--address', bus.address, '--dest', 'org.freedesktop.DBus',
    '--object-path', '/org/freedesktop/DBus', '--method', `org.freedesktop.DBus.${method}`, ...args];
  return runClient(argv[0]!, argv.slice(1));
}

/** Whether bob may own `name` now (requested and released again). */
async function bobMayOwn(bus: RunningBus, bob: TestUser, name: string): Promise<boolean> {
  const r = await driver(bus, bob, 'RequestName', name, '4');
  if (/AccessDenied/.test(r.stderr)) return false;
  expect(r.stdout, describeResult(r)).toMatch(/\(uint32 1,\)/);
  return true;
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(!isRoot || kind === 'dbus-broker')(`policy reload (${kind})`, () => {
  // Skipped without root (test users need useradd; CI runs as root) and for dbus-broker (no busconfig).
  let bob: TestUser;
  let bus: RunningBus & { configFile: string; dir: string };
  beforeAll(() => {
    bob = ensureTestUser('fbtest-bob');
  });
  afterEach(() => bus?.stop());

  it('applies a new policy on SIGHUP and on ReloadConfig to connections already there', async () => {
    bus = await startBusWithConfig(kind, config(bob, []));
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.One')).toBe(false);
    writeFileSync(bus.configFile, config(bob, ['org.ferrybus.Test.One'])(bus.address.split(',')[0]!));
    process.kill(bus.pid, 'SIGHUP');
    expect(await eventually(() => bobMayOwn(bus, bob, 'org.ferrybus.Test.One'))).toBe(true);

    writeFileSync(bus.configFile, config(bob, ['org.ferrybus.Test.One', 'org.ferrybus.Test.Two'])(bus.address.split(',')[0]!));
    const reload = await driver(bus, undefined, 'ReloadConfig');
    expect(reload.stdout, describeResult(reload)).toBe('()\n');
    expect(await eventually(() => bobMayOwn(bus, bob, 'org.ferrybus.Test.Two'))).toBe(true);
  });

  it('refuses an invalid config on ReloadConfig and keeps the policy in force', async () => {
    bus = await startBusWithConfig(kind, config(bob, ['org.ferrybus.Test.Kept']));
    writeFileSync(bus.configFile, '<busconfig><policy context="default"><allow own="*"/></policy><oops');
    const reload = await driver(bus, undefined, 'ReloadConfig');
    expect(reload.exitCode, describeResult(reload)).not.toBe(0);
    expect(reload.stderr).toMatch(/org\.freedesktop\.DBus\.Error\.Failed/);
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.Kept')).toBe(true);
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.Other')).toBe(false);
  });

  it('reloads when a file appears in an <includedir>, as a package installing its policy does', async () => {
    const withDir = (listen: string) => config(bob, [])(listen).replace('</busconfig>', '  <includedir>bus.d</includedir>\n</busconfig>');
    bus = await startBusWithConfig(kind, withDir, { 'bus.d/README': 'policy drop-ins\n' });
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.Watched')).toBe(false);
    writeFileSync(path.join(bus.dir, 'bus.d', 'watched.conf'),
      `<busconfig><policy user="${bob.name}"><allow own="org.ferrybus.Test.Watched"/></policy></busconfig>`);
    expect(await eventually(() => bobMayOwn(bus, bob, 'org.ferrybus.Test.Watched'))).toBe(true);
  });

  it.skipIf(kind !== 'ferrybus')('keeps the policy across handoffs, also when the file on disk became invalid', async () => {
    // Only ferrybus hands off.
    bus = await startBusWithConfig(kind, config(bob, ['org.ferrybus.Test.Handed']));
    let from = bus.process.mark('stderr');
    await handoffByCli(MAIN, bus);
    expect(logLines(bus.process, 'policy-unchanged', from), bus.process.stderr).toHaveLength(1);
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.Handed')).toBe(true);
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.NotHanded')).toBe(false);

    writeFileSync(bus.configFile, '<busconfig><policy context="default"><allow own="*"/>');
    // The watcher refuses the broken file; the handoff then re-reads it, fails, and keeps the policy.
    await new Promise((r) => setTimeout(r, 500));
    from = bus.process.mark('stderr');
    await handoffByCli(MAIN, bus);
    expect(logLines(bus.process, 'config-reread-failed', from), bus.process.stderr).toHaveLength(1);
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.Handed')).toBe(true);
    expect(await bobMayOwn(bus, bob, 'org.ferrybus.Test.NotHanded')).toBe(false);
  });
});
