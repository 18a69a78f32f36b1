// The D-Bus client of the VM boot test (scripts/vm-test.sh). Bundled with dbus-next (an
// independent client implementation) into one .mjs that runs in the initrd, on the real root
// and in the shutdown root with the same node binary as ferrybus. ferrybus is the system bus:
// it listens on /run/dbus/system_bus_socket (dbus.socket), PID 1 and logind use it.
//
//   vm-client serve          the "initrd client": started in the initrd as an '@' process, owns
//                            org.ferrybus.VmTest, answers Ping/LastSignal, listens for Announce
//   vm-client activated      the bus-activated test service (org.ferrybus.VmTestActivated, Exec=)
//   vm-client probe PHASE    one check of the boot timeline: initrd | realroot | shutdown | exitrd
//
// Every result is one console line "FERRYBUS-VM PASS|FAIL <check> <details>" (vm-bus.ts).
// test/vm/boot.test.ts reads them from the serial log. State crosses phases in /run (a tmpfs
// that moves from the initrd to the real root and into the shutdown root).

import dbus from 'dbus-next';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { runActivationChecks } from './vm-activation.js';
import {
  busAddress, call, check, connect, DRIVER, failureCount, Message, nameOwner, openConsole, say, status, waitFor, type Bus,
} from './vm-bus.js';
import {
  failedUnits, inhibitorRoundTrip, LOGIND, managerGetUnit, referenceBusBinaries, referenceBusInInitramfs, runningServices,
  servicesChanged, showProperty, SYSTEMD, systemdOnBus, unitProperty,
} from './vm-system.js';

const NAME = 'org.ferrybus.VmTest';
const PATH = '/org/ferrybus/VmTest';
const IFACE = 'org.ferrybus.VmTest';
const STATE_DIR = '/run/ferrybus-vmtest';
const VMTEST = { destination: NAME, path: PATH, interface: IFACE };

function devIno(p: string): string {
  const s = fs.statSync(p);
  return `${s.dev}:${s.ino}`;
}

function readState(file: string): Record<string, any> {
  try {
    return JSON.parse(fs.readFileSync(`${STATE_DIR}/${file}`, 'utf8'));
  } catch {
    return {};
  }
}
function writeState(file: string, data: Record<string, unknown>): void {
  fs.mkdirSync(STATE_DIR, { recursive: true });
  fs.writeFileSync(`${STATE_DIR}/${file}`, JSON.stringify(data) + '\n');
}

// --- serve: the initrd client ----------------------------------------------------------------
async function serve(): Promise<void> {
  const bus = await connect(busAddress());
  const unique = bus.name ?? '';
  let lastSignal = '';
  bus.on('message', (m: dbus.Message) => {
    if (m.type === dbus.MessageType.SIGNAL && m.interface === IFACE && m.member === 'Announce') {
      lastSignal = String(m.body[0]);
      say(`INFO initrd-client got signal Announce(${lastSignal}) from ${m.sender}`);
    }
    if (m.type === dbus.MessageType.SIGNAL && m.member === 'NameLost') say(`FAIL initrd-client-name-lost ${m.body[0]}`);
  });
  bus.addMethodHandler((m: dbus.Message) => {
    if (m.interface !== IFACE || m.path !== PATH) return false;
    if (m.member === 'Ping') {
      bus.send(Message.newMethodReturn(m, 's', [`pong(${m.body[0]}) from ${unique} pid ${process.pid}`]));
      return true;
    }
    if (m.member === 'LastSignal') {
      bus.send(Message.newMethodReturn(m, 's', [lastSignal]));
      return true;
    }
    return false;
  });
  const stream = (bus as unknown as { _connection: { stream: NodeJS.EventEmitter } })._connection.stream;
  stream.on('close', () => {
    say(`FAIL initrd-client-connection-lost unique=${unique}`);
    process.exit(1);
  });
  await call(bus, DRIVER, 'AddMatch', 's', [`type='signal',interface='${IFACE}',member='Announce'`]);
  const reply = await bus.requestName(NAME, dbus.NameFlag.DO_NOT_QUEUE);
  writeState('client.json', { unique, pid: process.pid });
  check('initrd-client-owns-name', reply === dbus.RequestNameReply.PRIMARY_OWNER, `name=${NAME} unique=${unique} pid=${process.pid} reply=${reply}`);
  // Stay: the event loop holds the connection.
}

// --- probes ----------------------------------------------------------------------------------
/** Where the daemon process runs from, seen from here. */
function daemonPlace(pid: number, root: string): { sameRoot: boolean; exe: string; exeInRoot: boolean } {
  let exe = '';
  try { exe = fs.readlinkSync(`/proc/${pid}/exe`); } catch (e) { exe = `unreadable (${(e as Error).message})`; }
  let sameRoot = false;
  let exeInRoot = false;
  try { sameRoot = devIno(`/proc/${pid}/root/`) === devIno(root); } catch { /* stays false */ }
  try { exeInRoot = devIno(`/proc/${pid}/exe`) === devIno(`${root.replace(/\/$/, '')}/usr/bin/node`); } catch { /* stays false */ }
  return { sameRoot, exe, exeInRoot };
}

async function commonChecks(phase: string, bus: Bus, prev: Record<string, any>, expectGeneration: number | undefined): Promise<Record<string, any>> {
  const st = await status(bus);
  const pid = Number(st.Pid);
  const generation = Number(st.Generation);
  if (prev.pid !== undefined) check(`${phase}-same-pid`, pid === prev.pid, `pid=${pid} before=${prev.pid}`);
  if (expectGeneration !== undefined) check(`${phase}-generation`, generation === expectGeneration, `generation=${generation} expected=${expectGeneration}`);
  const owner = await nameOwner(bus, NAME);
  if (prev.owner !== undefined) check(`${phase}-name-kept`, owner === prev.owner, `${NAME} owner=${owner || '(none)'} before=${prev.owner}`);
  const busId = String((await call(bus, DRIVER, 'GetId'))[0]);
  if (prev.busId !== undefined) check(`${phase}-same-bus-id`, busId === prev.busId, `id=${busId}`);
  try {
    const [reply] = await call(bus, VMTEST, 'Ping', 's', [phase]);
    check(`${phase}-call`, typeof reply === 'string' && reply.startsWith(`pong(${phase}) from ${prev.owner ?? owner}`), `caller=${bus.name} reply="${reply}"`);
  } catch (e) {
    check(`${phase}-call`, false, `caller=${bus.name} error=${(e as Error).message}`);
  }
  return { pid, generation, owner, busId, status: st };
}

function noReferenceBus(where: string, found: string[], extra = ''): void {
  check('no-reference-bus', found.length === 0, `${where}: ${found.length ? `found ${found.join(', ')}` : 'no dbus-daemon or dbus-broker'}${extra}`);
}

async function probeInitrd(bus: Bus): Promise<void> {
  const owner = await waitFor(() => nameOwner(bus, NAME), 90_000);
  const r = await commonChecks('initrd', bus, { owner }, undefined);
  const place = daemonPlace(r.pid, '/');
  check('initrd-serving', r.generation >= 1 && place.sameRoot && place.exeInRoot,
    `pid=${r.pid} generation=${r.generation} root-is-initrd=${place.sameRoot} exe=${place.exe} address=${r.status.Addresses}`);
  const systemd = await systemdOnBus(bus, 90_000);
  check('initrd-systemd-on-bus', systemd.pid === 1, `${SYSTEMD} owner=${systemd.owner || '(none)'} pid=${systemd.pid} on ${busAddress()}`);
  noReferenceBus('initrd', referenceBusBinaries('/'));
  writeState('initrd.json', { pid: r.pid, generation: r.generation, owner: r.owner, busId: r.busId, systemdOwner: systemd.owner });
}

async function probeRealRoot(bus: Bus): Promise<void> {
  const prev = readState('initrd.json');
  const r = await commonChecks('realroot', bus, prev, Number(prev.generation) + 1);
  const place = daemonPlace(r.pid, '/');
  check('realroot-daemon-in-real-root', place.sameRoot && place.exeInRoot && !place.exe.includes('(deleted)'),
    `root-is-real-root=${place.sameRoot} exe=${place.exe} last-handoff-root=${r.status.LastHandoffRoot ?? ''}`);
  // Pitfall 8: with its unit file in both roots, the process stays in its unit's cgroup.
  let cgroup = '';
  try {
    cgroup = fs.readFileSync(`/proc/${r.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::')) ?? '';
  } catch { /* empty */ }
  check('realroot-cgroup', cgroup.endsWith('/ferrybus.service'), `cgroup=${cgroup}`);
  // A signal emitted on the real root reaches the initrd client: the client records it, and
  // our next call to it is routed after the signal (same sender, same receiver: in order).
  bus.send(Message.newSignal(PATH, IFACE, 'Announce', 's', ['from-real-root']));
  const [last] = await call(bus, VMTEST, 'LastSignal');
  check('realroot-signal', last === 'from-real-root', `initrd client saw Announce(${last})`);

  // PID 1 of the real root, re-executed by switch-root, is on the same bus again.
  const systemd = await systemdOnBus(bus, 90_000, prev.systemdOwner);
  let busctl = '';
  try {
    busctl = execFileSync('busctl', ['--system', 'call', SYSTEMD, '/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager', 'GetUnit', 's', 'dbus.service'],
      { encoding: 'utf8', timeout: 60_000 }).trim();
  } catch (e) {
    busctl = `failed: ${(e as Error).message}`;
  }
  check('realroot-systemd-on-bus', r.pid === prev.pid && systemd.pid === 1 && systemd.owner !== prev.systemdOwner && busctl.startsWith('o "/org/freedesktop/systemd1/unit/'),
    `bus pid=${r.pid} (initrd ${prev.pid}) ${SYSTEMD} owner=${systemd.owner || '(none)'} pid=${systemd.pid} (initrd owner ${prev.systemdOwner}) busctl --system GetUnit dbus.service: ${busctl}`);

  // logind: its name, and an inhibitor whose fd travels through the bus.
  const logind = await waitFor(() => nameOwner(bus, LOGIND), 90_000);
  const inhibitor = logind ? await inhibitorRoundTrip() : { ok: false, details: 'logind not on the bus' };
  check('realroot-logind', logind !== '' && inhibitor.ok, `${LOGIND} owner=${logind || '(none)'}; ${inhibitor.details}`);

  noReferenceBus('real root', referenceBusBinaries('/'));
  const initramfs = referenceBusInInitramfs();
  noReferenceBus(initramfs.image, initramfs.found);

  await reload(bus, r, systemd.owner);
}

/** Phase 3: a live handoff through systemd while PID 1, logind and the initrd client are connected. */
async function reload(bus: Bus, r: Record<string, any>, systemdOwner: string): Promise<void> {
  const mainPid = () => Number(showProperty('dbus.service', 'MainPID'));
  const before = mainPid();
  const servicesBefore = runningServices();
  const started = Date.now();
  let reloadError = '';
  try {
    execFileSync('systemctl', ['reload', 'dbus.service'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 180_000 });
  } catch (e) {
    reloadError = (e as Error).message;
  }
  check('reload-command', reloadError === '', `systemctl reload dbus.service took ${Date.now() - started} ms ${reloadError}`);
  const r2 = await commonChecks('reload', bus, r, r.generation + 1);
  const after = mainPid();
  const active = showProperty('dbus.service', 'ActiveState');
  check('reload-unit-main-pid', before === r.pid && after === r.pid && active === 'active', `MainPID before=${before} after=${after} ActiveState=${active}`);
  const systemdAfter = await nameOwner(bus, SYSTEMD);
  const changed = servicesChanged(servicesBefore, runningServices());
  const failed = failedUnits();
  check('reload-systemd-unaffected', systemdAfter === systemdOwner && r2.owner === r.owner && changed.length === 0 && failed.length === 0,
    `${SYSTEMD} owner=${systemdAfter} (before ${systemdOwner}); ${NAME} owner=${r2.owner}; ` +
      `${servicesBefore.size} running services ${changed.length ? `changed: ${changed.join('; ')}` : 'unchanged'}; failed units: ${failed.join(',') || 'none'}`);
  writeState('realroot.json', { pid: r2.pid, generation: r2.generation, owner: r2.owner, busId: r2.busId });

  await daemonReexec(bus, systemdOwner);
}

/** PID 1 re-executes itself while on ferrybus: it must come back to the bus and kill nothing. */
async function daemonReexec(bus: Bus, systemdOwner: string): Promise<void> {
  const servicesBefore = runningServices();
  let error = '';
  try {
    execFileSync('systemctl', ['daemon-reexec'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 180_000 });
  } catch (e) {
    error = (e as Error).message;
  }
  const systemd = await systemdOnBus(bus, 90_000, systemdOwner);
  // Still there after PID 1 resynchronised with the bus: a wrong answer then kills Type=dbus services.
  const logindUnit = await unitProperty(bus, 'systemd-logind.service', 'org.freedesktop.systemd1.Unit', 'ActiveState').catch((e: Error) => `error ${e.message}`);
  const changed = servicesChanged(servicesBefore, runningServices());
  const failed = failedUnits();
  const owner = await nameOwner(bus, NAME);
  check('daemon-reexec-ok', error === '' && systemd.pid === 1 && logindUnit === 'active' && changed.length === 0 && failed.length === 0,
    `${error ? `systemctl daemon-reexec: ${error}; ` : ''}${SYSTEMD} owner=${systemd.owner || '(none)'} pid=${systemd.pid} (before ${systemdOwner}); ` +
      `systemd-logind ${logindUnit}; ${NAME} owner=${owner}; ${servicesBefore.size} running services ${changed.length ? `changed: ${changed.join('; ')}` : 'unchanged'}; failed units: ${failed.join(',') || 'none'}`);
  await runActivationChecks(bus);
}

async function probeShutdown(bus: Bus): Promise<void> {
  // ExecStop of a unit stopped after every service with default dependencies and after
  // ferrybus-shutdown.service: the daemon should now run from /run/initramfs, the unpacked
  // shutdown root, and PID 1 should still be on the bus.
  const prev = readState('realroot.json');
  const r = await commonChecks('shutdown', bus, prev, Number(prev.generation) + 1);
  const place = daemonPlace(r.pid, '/run/initramfs/');
  check('shutdown-handoff-into-exitrd', place.sameRoot && place.exeInRoot,
    `root-is-/run/initramfs=${place.sameRoot} exe=${place.exe} last-handoff-root=${r.status.LastHandoffRoot ?? ''}`);
  const owner = await nameOwner(bus, SYSTEMD);
  let logind: unknown;
  let unit = '';
  try {
    unit = await managerGetUnit(bus, 'ferrybus-shutdown.service');
    logind = await unitProperty(bus, 'systemd-logind.service', 'org.freedesktop.systemd1.Unit', 'ActiveState');
  } catch (e) {
    unit = `error ${(e as Error).message}`;
  }
  const pid = owner ? Number((await call(bus, DRIVER, 'GetConnectionUnixProcessID', 's', [owner]))[0]) : 0;
  check('shutdown-systemd-on-bus', pid === 1 && unit.startsWith('/org/freedesktop/systemd1/unit/') && logind === 'inactive',
    `${SYSTEMD} owner=${owner || '(none)'} pid=${pid}; Manager.GetUnit(ferrybus-shutdown.service)=${unit}; systemd-logind.service ${String(logind)} (stopped before this check)`);
  writeState('shutdown.json', { pid: r.pid, generation: r.generation, owner: r.owner, busId: r.busId });
}

async function probeExitrd(bus: Bus): Promise<void> {
  // In the shutdown root, from dracut's shutdown hook (after the unmount loop).
  const prev = readState('shutdown.json');
  const r = await commonChecks('exitrd', bus, prev, Number(prev.generation) + 1);
  const place = daemonPlace(r.pid, '/');
  check('exitrd-daemon-in-shutdown-root', place.sameRoot && place.exeInRoot, `root-is-shutdown-root=${place.sameRoot} exe=${place.exe}`);
  const [names] = await call(bus, DRIVER, 'ListNames');
  check('exitrd-list-names', (names as string[]).includes(NAME), `names=${(names as string[]).join(',')}`);
  const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes('/oldroot'));
  check('exitrd-oldroot-unmounted', mounts.length === 0, mounts.length ? `still mounted: ${mounts.join(' | ')}` : 'no mount under /oldroot');
}

const PROBES: Record<string, (bus: Bus) => Promise<void>> = {
  initrd: probeInitrd,
  realroot: probeRealRoot,
  shutdown: probeShutdown,
  exitrd: probeExitrd,
};

async function probe(phase: string): Promise<void> {
  const run = PROBES[phase];
  if (!run) throw new Error(`unknown phase ${phase}`);
  const bus = await connect(busAddress());
  try {
    await run(bus);
  } finally {
    bus.disconnect();
  }
}

// --- activated: the Exec= test service ----------------------------------------------------------
/** Owns org.ferrybus.VmTestActivated and answers Ping with the order calls arrived in. */
async function activated(): Promise<void> {
  const bus = await connect(busAddress());
  let served = 0;
  bus.addMethodHandler((m: dbus.Message) => {
    if (m.interface !== 'org.ferrybus.VmTestActivated' || m.member !== 'Ping') return false;
    bus.send(Message.newMethodReturn(m, 's', [`${++served}:${m.body[0]}`]));
    return true;
  });
  await bus.requestName('org.ferrybus.VmTestActivated', dbus.NameFlag.DO_NOT_QUEUE);
}

// --- main --------------------------------------------------------------------------------------
async function main(): Promise<void> {
  openConsole();
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'serve') return serve();
  if (cmd === 'activated') return activated();
  if (cmd === 'probe' && arg) {
    try {
      await probe(arg);
    } catch (e) {
      check(`${arg}-probe`, false, `error=${(e as Error).stack ?? String(e)}`.replace(/\n/g, ' | '));
    }
    say(`DONE ${arg} failures=${failureCount()}`);
    process.exit(failureCount() === 0 ? 0 : 1);
  }
  process.stderr.write('usage: vm-client serve | activated | probe initrd|realroot|shutdown|exitrd\n');
  process.exit(64);
}

void main().catch((e) => {
  say(`FAIL vm-client ${(e as Error).message}`);
  process.exit(1);
});
