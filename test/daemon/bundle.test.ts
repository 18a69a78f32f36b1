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
});
