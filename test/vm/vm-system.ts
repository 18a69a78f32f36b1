// What the VM test checks of the operating system on the bus: PID 1 (org.freedesktop.systemd1),
// logind (org.freedesktop.login1, an inhibitor fd through the bus), the services systemd runs
// (none may be stopped or killed by a handoff or a daemon-reexec), and that no other bus exists.

import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { call, connectionPid, nameOwner, sleep, waitFor, type Bus, type Target } from './vm-bus.js';

export const SYSTEMD = 'org.freedesktop.systemd1';
export const LOGIND = 'org.freedesktop.login1';
const MANAGER: Target = { destination: SYSTEMD, path: '/org/freedesktop/systemd1', interface: 'org.freedesktop.systemd1.Manager' };

/** Who owns org.freedesktop.systemd1, and whether that is PID 1. */
export async function systemdOnBus(bus: Bus, timeoutMs: number, notOwner = ''): Promise<{ owner: string; pid: number }> {
  // PID 1 connects once dbus.socket and dbus.service both run, asynchronously: wait for it (and,
  // after a re-exec, for its NEW connection, when the old owner is given).
  const owner = await waitFor(async () => {
    const o = await nameOwner(bus, SYSTEMD);
    return o !== '' && o !== notOwner ? o : '';
  }, timeoutMs);
  return { owner, pid: owner ? await connectionPid(bus, owner) : 0 };
}

/** A call to PID 1's Manager through the bus: the object path of a unit. */
export async function managerGetUnit(bus: Bus, unit: string): Promise<string> {
  return String((await call(bus, MANAGER, 'GetUnit', 's', [unit]))[0]);
}

/** A unit's property through the bus, from PID 1 itself. */
export async function unitProperty(bus: Bus, unit: string, iface: string, property: string): Promise<unknown> {
  const path = await managerGetUnit(bus, unit);
  const [variant] = await call(bus, { destination: SYSTEMD, path, interface: 'org.freedesktop.DBus.Properties' }, 'Get', 'ss', [iface, property]);
  return (variant as { value: unknown }).value;
}

function systemctl(...args: string[]): string {
  return execFileSync('systemctl', args, { encoding: 'utf8', timeout: 60_000 }).trim();
}

/** Every running service with its main PID and restart count: what a bus hiccup must not change. */
export function runningServices(): Map<string, string> {
  const units = systemctl('list-units', '--type=service', '--state=running', '--no-legend', '--plain')
    .split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((u) => u.endsWith('.service'));
  const out = new Map<string, string>();
  for (const unit of units) {
    const [mainPid, restarts] = systemctl('show', '-P', 'MainPID', '-P', 'NRestarts', unit).split('\n');
    out.set(unit, `pid=${mainPid} restarts=${restarts}`);
  }
  return out;
}

/** The services that were running before and are not now, or run another process, or restarted. */
export function servicesChanged(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [unit, was] of before) {
    const now = after.get(unit);
    if (now !== was) changed.push(`${unit}: ${was} -> ${now ?? 'not running'}`);
  }
  return changed;
}

export function failedUnits(): string[] {
  return systemctl('list-units', '--state=failed', '--no-legend', '--plain').split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean);
}

export function showProperty(unit: string, property: string): string {
  return systemctl('show', '-P', property, unit);
}

/**
 * An inhibitor taken from logind through the bus (its fd comes back in the reply), listed by
 * `systemd-inhibit --list` (logind asked over the bus), gone once its holder exits.
 */
export async function inhibitorRoundTrip(): Promise<{ ok: boolean; details: string }> {
  const who = `ferrybus-vmtest-${process.pid}`;
  const listed = () => execFileSync('systemd-inhibit', ['--list', '--no-pager', '--no-legend'], { encoding: 'utf8', timeout: 30_000 }).includes(who);
  const holder = spawn('systemd-inhibit', ['--what=idle', `--who=${who}`, '--why=an inhibitor fd through the bus', '--mode=block', '/bin/sleep', '600'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  holder.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => holder.once('exit', () => resolve()));
  try {
    const held = await waitFor(async () => listed(), 30_000);
    if (!held) return { ok: false, details: `systemd-inhibit --list never showed ${who} (holder stderr: ${stderr.trim()})` };
    // The holder's exit closes the inhibitor fd; logind drops the inhibitor when it sees that.
    process.kill(-holder.pid!, 'SIGTERM');
    await exited;
    const released = await waitFor(async () => !listed(), 30_000);
    return { ok: released, details: released ? `${who} listed while held, gone once the holder exited` : `${who} still listed after its holder exited` };
  } finally {
    try {
      process.kill(-holder.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Programs of the reference buses: none may exist in this root. */
export function referenceBusBinaries(root = '/'): string[] {
  const dirs = ['usr/bin', 'usr/sbin', 'bin', 'sbin', 'usr/lib/dbus-1.0', 'usr/libexec'];
  const names = ['dbus-daemon', 'dbus-broker', 'dbus-broker-launch', 'dbus-daemon-launch-helper'];
  const found: string[] = [];
  for (const dir of dirs) {
    for (const name of names) {
      const p = `${root.replace(/\/$/, '')}/${dir}/${name}`;
      try {
        fs.lstatSync(p);
        found.push(p);
      } catch {
        // absent: good
      }
    }
  }
  return found;
}

/** The reference buses' files in the initramfs this machine boots (lsinitrd, dracut's lister). */
export function referenceBusInInitramfs(): { found: string[]; image: string } {
  const image = `/boot/initrd.img-${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}`;
  const listing = execFileSync('lsinitrd', [image], { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  const found = listing.split('\n').filter((l) => /\/(dbus-daemon|dbus-broker|dbus-broker-launch|dbus-daemon-launch-helper)$/.test(l.trim()));
  return { found, image };
}

export { sleep };
