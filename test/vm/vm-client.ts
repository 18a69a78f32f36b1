// The D-Bus client of the VM boot test (scripts/vm-test.sh). Bundled with dbus-next (an
// independent client implementation) into one .mjs that runs in the initrd, on the real root
// and in the shutdown root with the same node binary as ferrybus.
//
//   vm-client serve          the "initrd client": started in the initrd as an '@' process, owns
//                            org.ferrybus.VmTest, answers Ping/LastSignal, listens for Announce
//   vm-client probe PHASE    one check of the boot timeline: initrd | realroot | shutdown | exitrd
//
// Every result is one console line "FERRYBUS-VM PASS|FAIL <check> <details>", written to
// /dev/kmsg so it reaches the serial console in every root, even after journald is gone.
// test/vm/boot.test.ts reads them from the serial log. State crosses phases in /run (a tmpfs
// that moves from the initrd to the real root and into the shutdown root).

import dbus from 'dbus-next';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

const NAME = 'org.ferrybus.VmTest';
const PATH = '/org/ferrybus/VmTest';
const IFACE = 'org.ferrybus.VmTest';
const STATE_DIR = '/run/ferrybus-vmtest';
const DRIVER = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
const SUPERVISOR = { destination: 'org.freedesktop.DBus', path: '/org/ferrybus/Supervisor1', interface: 'org.ferrybus.Supervisor1' };

// --- console ---------------------------------------------------------------------------------
let consoleFd: number | undefined;
function openConsole(): void {
  try {
    // O_NOCTTY is not needed for kmsg, but nothing here may ever become a controlling tty.
    consoleFd = fs.openSync('/dev/kmsg', fs.constants.O_WRONLY | fs.constants.O_NOCTTY);
  } catch {
    consoleFd = undefined;
  }
}
function say(line: string): void {
  const text = `FERRYBUS-VM ${line}`;
  if (consoleFd !== undefined) {
    try {
      // <5> = notice: printed on the console at the default console log level.
      fs.writeSync(consoleFd, `<5>${text.length > 960 ? `${text.slice(0, 957)}...` : text}\n`);
      return;
    } catch {
      // no kernel log: stdout instead
    }
  }
  process.stdout.write(text + '\n');
}
let failures = 0;
function check(name: string, ok: boolean, details: string): void {
  if (!ok) failures++;
  say(`${ok ? 'PASS' : 'FAIL'} ${name} ${details}`);
}

// --- bus helpers -----------------------------------------------------------------------------
/** dbus-next's bus; its typings omit `name`, the unique name it got from Hello. */
type Bus = dbus.MessageBus & { name?: string };
const { Message } = dbus;

async function connect(address: string, timeoutMs = 20_000): Promise<Bus> {
  const bus: Bus = dbus.sessionBus({ busAddress: address });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connection to ${address} in ${timeoutMs} ms`)), timeoutMs);
    bus.once('connect', () => { clearTimeout(timer); resolve(); });
    bus.once('error', (err: unknown) => { clearTimeout(timer); reject(err instanceof Error ? err : new Error(String(err))); });
  });
  return bus;
}

async function call(bus: Bus, to: { destination: string; path: string; interface: string }, member: string, signature = '', body: unknown[] = []): Promise<any[]> {
  const reply = await bus.call(new Message({ ...to, member, signature, body }));
  return reply?.body ?? [];
}

const VMTEST = { destination: NAME, path: PATH, interface: IFACE };

async function status(bus: Bus): Promise<Record<string, any>> {
  const [dict] = await call(bus, SUPERVISOR, 'Status');
  const out: Record<string, any> = {};
  for (const [k, v] of Object.entries(dict as Record<string, { value: unknown }>)) out[k] = v.value;
  return out;
}

async function nameOwner(bus: Bus, name: string): Promise<string> {
  try {
    return String((await call(bus, DRIVER, 'GetNameOwner', 's', [name]))[0]);
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

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

/** The first bus socket that exists among the candidates (the shutdown root sees /run twice). */
function busAddress(): string {
  const candidates = [process.env.FERRYBUS_VM_SOCKET, '/run/ferrybus/bus', '/oldsys/run/ferrybus/bus'].filter(Boolean) as string[];
  const found = candidates.find((p) => { try { return fs.statSync(p).isSocket(); } catch { return false; } });
  return `unix:path=${found ?? candidates[0]}`;
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
async function waitForOwner(bus: Bus, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const owner = await nameOwner(bus, NAME);
    if (owner || Date.now() > end) return owner;
    await sleep(250);
  }
}

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

async function probe(phase: string): Promise<void> {
  const bus = await connect(busAddress());
  try {
    if (phase === 'initrd') {
      const owner = await waitForOwner(bus, 90_000);
      const r = await commonChecks(phase, bus, { owner }, undefined);
      const place = daemonPlace(r.pid, '/');
      check('initrd-serving', r.generation >= 1 && place.sameRoot && place.exeInRoot,
        `pid=${r.pid} generation=${r.generation} root-is-initrd=${place.sameRoot} exe=${place.exe} address=${r.status.Addresses}`);
      writeState('initrd.json', { pid: r.pid, generation: r.generation, owner: r.owner, busId: r.busId });
      return;
    }
    if (phase === 'realroot') {
      const prev = readState('initrd.json');
      const r = await commonChecks(phase, bus, prev, Number(prev.generation) + 1);
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

      // Phase 3: live handoff in place through systemd.
      const mainPid = () => Number(execFileSync('systemctl', ['show', '-P', 'MainPID', 'ferrybus.service'], { encoding: 'utf8' }).trim());
      const before = mainPid();
      const started = Date.now();
      let reloadError = '';
      try {
        execFileSync('systemctl', ['reload', 'ferrybus.service'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 180_000 });
      } catch (e) {
        reloadError = (e as Error).message;
      }
      check('reload-command', reloadError === '', `systemctl reload ferrybus.service took ${Date.now() - started} ms ${reloadError}`);
      const r2 = await commonChecks('reload', bus, r, r.generation + 1);
      const after = mainPid();
      const active = execFileSync('systemctl', ['show', '-P', 'ActiveState', 'ferrybus.service'], { encoding: 'utf8' }).trim();
      check('reload-unit-main-pid', before === r.pid && after === r.pid && active === 'active', `MainPID before=${before} after=${after} ActiveState=${active}`);
      writeState('realroot.json', { pid: r2.pid, generation: r2.generation, owner: r2.owner, busId: r2.busId });
      return;
    }
    if (phase === 'shutdown') {
      // ExecStop of a unit stopped after ferrybus-shutdown.service: the daemon should now run
      // from /run/initramfs, the unpacked shutdown root.
      const prev = readState('realroot.json');
      const r = await commonChecks(phase, bus, prev, Number(prev.generation) + 1);
      const place = daemonPlace(r.pid, '/run/initramfs/');
      check('shutdown-handoff-into-exitrd', place.sameRoot && place.exeInRoot,
        `root-is-/run/initramfs=${place.sameRoot} exe=${place.exe} last-handoff-root=${r.status.LastHandoffRoot ?? ''}`);
      writeState('shutdown.json', { pid: r.pid, generation: r.generation, owner: r.owner, busId: r.busId });
      return;
    }
    if (phase === 'exitrd') {
      // In the shutdown root, from dracut's shutdown hook (after the unmount loop).
      const prev = readState('shutdown.json');
      const r = await commonChecks(phase, bus, prev, Number(prev.generation) + 1);
      const place = daemonPlace(r.pid, '/');
      check('exitrd-daemon-in-shutdown-root', place.sameRoot && place.exeInRoot, `root-is-shutdown-root=${place.sameRoot} exe=${place.exe}`);
      const [names] = await call(bus, DRIVER, 'ListNames');
      check('exitrd-list-names', (names as string[]).includes(NAME), `names=${(names as string[]).join(',')}`);
      const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes('/oldroot'));
      check('exitrd-oldroot-unmounted', mounts.length === 0, mounts.length ? `still mounted: ${mounts.join(' | ')}` : 'no mount under /oldroot');
      return;
    }
    throw new Error(`unknown phase ${phase}`);
  } finally {
    bus.disconnect();
  }
}

// --- main --------------------------------------------------------------------------------------
async function main(): Promise<void> {
  openConsole();
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'serve') return serve();
  if (cmd === 'probe' && arg) {
    try {
      await probe(arg);
    } catch (e) {
      check(`${arg}-probe`, false, `error=${(e as Error).stack ?? String(e)}`.replace(/\n/g, ' | '));
    }
    say(`DONE ${arg} failures=${failures}`);
    process.exit(failures === 0 ? 0 : 1);
  }
  process.stderr.write('usage: vm-client serve | probe initrd|realroot|shutdown|exitrd\n');
  process.exit(64);
}

void main().catch((e) => {
  say(`FAIL vm-client ${(e as Error).message}`);
  process.exit(1);
});
