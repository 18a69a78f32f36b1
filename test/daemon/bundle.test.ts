/**
 * The bundle (scripts/bundle.mjs) is what the initrd and the installed system run: a loader, the
 * program in one file and V8's code cache for it. Built here into a directory of its own, as
 * `npm run bundle` builds it, and run with the node flags of systemd/ferrybus.service.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unitNodeFlags } from '../../bench/buses.js';
import { unixPathAddress } from '../harness/address.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { startLongRunning } from '../harness/long-running.js';
import { runClient } from '../harness/run-client.js';
import { waitForAddressLine } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';

let dir: string;
let loader: string;
let cacheFile: string;
const flags = unitNodeFlags();
const version = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version as string;

beforeAll(async () => {
  dir = await makeTempDir('ferrybus-bundle');
  const built = await runClient(process.execPath, [path.join(REPO_ROOT, 'scripts/bundle.mjs'), '--outdir', path.join(dir, 'bundle')], { timeoutMs: 120_000 });
  expect(built.exitCode, built.stderr).toBe(0);
  // A bundle without its cache still works; the build says so on stderr, and this test wants one.
  expect(built.stderr).toBe('');
  loader = path.join(dir, 'bundle/ferrybus.cjs');
  cacheFile = path.join(dir, 'bundle/ferrybus-program.cache');
}, 150_000);
afterAll(async () => {
  if (dir) await removeTempDir(dir);
});

/** Starts the bundled bus, asks it for its id (and hands it off when asked), stops it. */
async function serveOnce(name: string, handoff = false, entry = loader): Promise<void> {
  const daemon = startLongRunning(process.execPath, [
    ...flags, entry, 'daemon', '--session', '--nofork', '--print-address=1', `--address=${unixPathAddress(path.join(dir, name))}`,
  ]);
  try {
    const address = await waitForAddressLine(daemon);
    if (handoff) {
      const r = await runClient(process.execPath, [...flags, loader, 'handoff', '--address', address, '--json'], { timeoutMs: 30_000 });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).generation).toBe(2);
      // The loader marks when node handed over to it: node's start and the program's loading are
      // reported apart (a build run from dist/ has one phase for both).
      const st = await runClient(process.execPath, [...flags, loader, 'status', '--address', address, '--json']);
      expect(st.exitCode, st.stderr).toBe(0);
      const phases = JSON.parse(st.stdout).lastHandoff.phasesMs as Record<string, number>;
      expect(Object.keys(phases)).toEqual([
        'old image', 'node start-up', 'program loaded', 'program started', 'document read', 'core built', 'connections restored',
      ]);
      expect(Object.values(phases).every((ms) => ms >= 0)).toBe(true);
      // The new image runs the entry the old one was started by.
      expect(readFileSync(`/proc/${daemon.pid}/cmdline`, 'latin1').split('\0')).toContain(entry);
    }
    const id = await runClient('dbus-send', [`--bus=${address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/', 'org.freedesktop.DBus.GetId']);
    expect(id.exitCode, id.stderr).toBe(0);
    expect(id.stdout).toMatch(/string "[0-9a-f]{32}"/);
  } finally {
    await daemon.stop();
  }
  expect(daemon.describe()).not.toMatch(/Error|panic|Fatal/);
}

/**
 * Starts the bundled bus logging at debug level (a client's lines come after it serves, and the
 * first of them loads winston), has one client call it and one operator command ask it, stops it.
 */
async function serveWithClients(name: string) {
  const daemon = startLongRunning(process.execPath, [
    ...flags, loader, 'daemon', '--session', '--nofork', '--print-address=1', `--address=${unixPathAddress(path.join(dir, name))}`,
  ], { env: { FERRYBUS_LOG_LEVEL: 'debug' } });
  try {
    const address = await waitForAddressLine(daemon);
    const id = await runClient('dbus-send', [`--bus=${address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/', 'org.freedesktop.DBus.GetId']);
    // Idle from here: the bus loads winston at its next quiet sweep, or says why it could not.
    await daemon.waitFor(/logger-winston|logger-fallback/, { stream: 'stderr', timeoutMs: 10_000 });
    const status = await runClient(process.execPath, [...flags, loader, 'status', '--address', address]);
    return { id, status, daemon };
  } finally {
    await daemon.stop();
  }
}

describe('the bundle', () => {
  it('prints its version', async () => {
    const r = await runClient(process.execPath, [...flags, loader, '--version']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('serves a bus and hands it off to itself', async () => {
    await serveOnce('bus-intact', true);
  }, 60_000);

  it('serves from the entry of earlier releases (ferrybus.mjs), and hands off to it again', async () => {
    const legacy = path.join(dir, 'bundle/ferrybus.mjs');
    const v = await runClient(process.execPath, [legacy, '--version']);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stdout.trim()).toBe(version);
    await serveOnce('bus-legacy', true, legacy);
  }, 60_000);

  it('serves with a damaged code cache (V8 verifies its checksum and compiles instead)', async () => {
    const cache = readFileSync(cacheFile);
    const damaged = Buffer.from(cache);
    // Past the build id (32 bytes) and V8's header: bytecode and object data.
    for (let at = 256; at < damaged.length; at += Math.floor(damaged.length / 64)) damaged[at] ^= 0x5a;
    writeFileSync(cacheFile, damaged);
    try {
      await serveOnce('bus-damaged', true);
    } finally {
      writeFileSync(cacheFile, cache);
    }
  }, 60_000);

  it('serves without a code cache, and with one from another build', async () => {
    const cache = readFileSync(cacheFile);
    try {
      rmSync(cacheFile);
      await serveOnce('bus-none');
      writeFileSync(cacheFile, Buffer.concat([Buffer.from('0'.repeat(32), 'latin1'), cache.subarray(32)]));
      await serveOnce('bus-foreign');
    } finally {
      writeFileSync(cacheFile, cache);
    }
  }, 60_000);

  it('loads the command parser and the logger from ferrybus-vendor.cjs once asked for, and serves without the file', async () => {
    const vendorFile = path.join(dir, 'bundle/ferrybus-vendor.cjs');
    const vendor = readFileSync(vendorFile);
    const whole = await serveWithClients('bus-vendor');
    expect(whole.id.exitCode, whole.id.stderr).toBe(0);
    expect(whole.status.exitCode, whole.status.stderr).toBe(0);
    expect(whole.status.stdout).toMatch(/^generation\s+1$/m);
    // winston took over the log once the bus was idle, after the client's lines.
    expect(whole.daemon.stderr).toMatch(/client-disconnected[^]*<7>ferrybus\[\d+\]: logger-winston: winston has taken over the log loadMs=[\d.]+\n/);
    expect(whole.daemon.stderr).not.toMatch(/logger-fallback/);
    try {
      rmSync(vendorFile);
      const without = await serveWithClients('bus-no-vendor');
      expect(without.id.exitCode, without.id.stderr).toBe(0);
      expect(without.id.stdout).toMatch(/string "[0-9a-f]{32}"/);
      expect(without.daemon.stderr).toMatch(/<4>ferrybus\[\d+\]: logger-fallback: winston could not be loaded; logging without it error=".*ferrybus-vendor\.cjs cannot be read \(ENOENT\)/);
      // After the fallback, the bus still logs (the stop) and exits cleanly.
      expect(without.daemon.stderr).toMatch(/stopping: bus is stopping/);
      expect(without.daemon.exit).toEqual({ exitCode: 0, signal: undefined });
      expect(without.status.exitCode).toBe(1);
      expect(without.status.stderr).toBe(`ferrybus: ${vendorFile} cannot be read (ENOENT): this installation of ferrybus is incomplete; reinstall it\n`);
      // A file from another build is refused as such.
      writeFileSync(vendorFile, vendor.toString('latin1').replace(/ferrybus-build=[0-9a-f]{32}/, `ferrybus-build=${'0'.repeat(32)}`), 'latin1');
      const r = await runClient(process.execPath, [...flags, loader, 'names', '--address', 'unix:path=/nonexistent']);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/^ferrybus: .*ferrybus-vendor\.cjs is not from the build of .*ferrybus-program\.cjs: this installation of ferrybus is incomplete; reinstall it\n$/);
    } finally {
      writeFileSync(vendorFile, vendor);
    }
  }, 60_000);
});
