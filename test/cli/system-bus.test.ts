// The operator commands find ferrybus where it serves as the system bus (the socket
// DBUS_SYSTEM_BUS_ADDRESS names, /run/dbus/system_bus_socket by default) without --address, and
// say so clearly, without waiting for a timeout, when the bus there is dbus-daemon or dbus-broker.
// The buses run the stock system.conf (with its system.d): the policy PID 1 and every system
// service live under.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBusWithConfig } from '../harness/config-bus.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { startBus } from '../harness/start-bus.js';
import { stockSystemConfig } from '../harness/stock-system-config.js';
import { defaultAddress } from '../../src/transport/address.js';
import { CLI } from './support/cli.js';

const isRoot = process.getuid!() === 0;
const QUICK_START_SOCKET = '/run/ferrybus/bus';
const POLICY = path.join(REPO_ROOT, 'dbus/org.ferrybus.Supervisor1.conf');

/** The stock system.conf with ferrybus's own policy file, as install-files puts it in system.d. */
const systemConfigWithPolicy = (listen: string) =>
  stockSystemConfig(listen).replace('</busconfig>', `  <include>${POLICY}</include>\n</busconfig>`);

/** `ferrybus ARGS…` with no --address, the system bus being `address`. */
function ferrybusDefault(args: readonly string[], address: string) {
  return runClient(process.execPath, [CLI, ...args], { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address }, timeoutMs: 30_000 });
}

// Root: the stock policy lets only root through Supervisor1 (and ferrybus only uid 0 or its own).
// Without a bus at root's quick-start socket: the default tries that one first (a developer's
// `npm start` as root would answer instead).
describe.runIf(isRoot && !existsSync(QUICK_START_SOCKET))('ferrybus as the system bus, found by default', () => {
  let bus: RunningBus | undefined;
  beforeAll(async () => {
    bus = await startBusWithConfig('ferrybus', systemConfigWithPolicy);
  });
  afterAll(async () => {
    await bus?.stop();
  });

  it('status, names and handoff talk to it without --address', async () => {
    const status = await ferrybusDefault(['status', '--json'], bus!.address);
    expect(status.exitCode, describeResult(status)).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ socket: bus!.socketPath, pid: bus!.pid, kind: 'system' });
    const names = await ferrybusDefault(['names', '--json'], bus!.address);
    expect(names.exitCode, describeResult(names)).toBe(0);
    const handoff = await ferrybusDefault(['handoff', '--json'], bus!.address);
    expect(handoff.exitCode, describeResult(handoff)).toBe(0);
    expect(JSON.parse(handoff.stdout)).toMatchObject({ generation: 2 });
  });
});

describe.runIf(isRoot)('ferrybus under the stock system.conf without its policy file', () => {
  let bus: RunningBus | undefined;
  beforeAll(async () => {
    bus = await startBusWithConfig('ferrybus', stockSystemConfig);
  });
  afterAll(async () => {
    await bus?.stop();
  });

  it('names the security policy as what refused root, and the file that lets root through', async () => {
    const r = await runClient(process.execPath, [CLI, 'status', '--address', bus!.address]);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toMatch(
      /^ferrybus: the bus at \S+ refused org\.ferrybus\.Supervisor1\.Status by its security policy: Rejected send message.* \(ferrybus's \/usr\/share\/dbus-1\/system\.d\/org\.ferrybus\.Supervisor1\.conf lets root call it; is it installed in the bus's root\?\)\n$/,
    );
  });
});

describe('another bus at the system bus socket', () => {
  let daemon: RunningBus | undefined;
  let broker: RunningBus | undefined;
  beforeAll(async () => {
    [daemon, broker] = await Promise.all([startBusWithConfig('dbus-daemon', stockSystemConfig), startBus('dbus-broker')]);
  });
  afterAll(async () => {
    await Promise.all([daemon?.stop(), broker?.stop()]);
  });

  it.runIf(!existsSync(QUICK_START_SOCKET))('dbus-daemon with the stock system.conf: "not ferrybus", naming where it looked, exit 1', async () => {
    const r = await ferrybusDefault(['status'], daemon!.address);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe(
      `ferrybus: the bus at ${daemon!.socketPath} is not ferrybus: its driver does not offer org.ferrybus.Supervisor1 ` +
        '(Status was answered org.freedesktop.DBus.Error.AccessDenied); it is another D-Bus daemon, such as dbus-daemon or dbus-broker ' +
        `(looked at ${defaultAddress({ uid: process.getuid!(), env: process.env })};${daemon!.address}, the default address; set --address)\n`,
    );
  });

  it('dbus-broker: "not ferrybus" for every command that needs ferrybus', async () => {
    for (const command of ['status', 'names', 'connections', 'queue', 'users', 'handoff']) {
      const r = await runClient(process.execPath, [CLI, command, '--address', broker!.address]);
      expect(r.exitCode, describeResult(r)).toBe(1);
      expect(r.stderr).toMatch(/^ferrybus: the bus at \S+ is not ferrybus: its driver does not offer org\.ferrybus\.Supervisor1 \(\w+ was answered org\.freedesktop\.DBus\.Error\.\w+\); .* from --address\)\n$/);
    }
  });
});
