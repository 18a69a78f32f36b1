// Bytes queued for a client that does not read cross a handoff without being read or written
// again: they move to a spool file as the handoff starts (while the bus serves), the new image
// sends them from there (sendfile), a later handoff passes that open file on instead of copying
// the bytes, and the file closes once they are sent. A target image that reads no such document
// (an older ferrybus) gets every byte in its own.
import { readdirSync, readlinkSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NextClient } from '../harness/dbus-next-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { useCleanup } from '../harness/use-bus.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import { busStatus, handoffByMethod, logLines } from './support/ferrybus.js';
import { RawClient, readBody, TYPE } from './support/raw-client.js';

const defer = useCleanup();
const SIGNAL = { path: '/org/ferrybus/Spool', interface: 'org.ferrybus.Spool', member: 'Filler' };
const CHUNK = 64 * 1024;

/** The files of the handoff directory the bus holds open: documents and spool files (deleted: " (deleted)"). */
function openDocuments(bus: RunningBus): string[] {
  const links: string[] = [];
  for (const fd of readdirSync(`/proc/${bus.pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${bus.pid}/fd/${fd}`);
      if (/\/handoff\/(generation-\d+-pid-\d+\.json|spool-pid-\d+-[0-9a-f]+)/.test(target)) links.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return links;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A subscriber that stops reading, and enough numbered 64 KiB signals to leave `bytes` queued
 * in the bus for it. Returns the subscriber and how many signals were sent.
 */
async function stuckSubscriber(bus: RunningBus, watcher: NextClient, bytes: number): Promise<{ subscriber: RawClient; sent: number }> {
  const subscriber = await RawClient.connect(bus.socketPath);
  defer(() => subscriber.close());
  await subscriber.addMatch(`type='signal',interface='${SIGNAL.interface}'`);
  subscriber.stopReading();
  const emitter = await RawClient.connect(bus.socketPath);
  defer(() => emitter.close());
  let sent = 0;
  while ((await busStatus(watcher)).queuedBytes < BigInt(bytes)) {
    for (let i = 0; i < 16; i++) emitter.send({ type: TYPE.SIGNAL, ...SIGNAL }, 'us', [sent++, 'x'.repeat(CHUNK)]);
    await emitter.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'GetId' });
  }
  return { subscriber, sent };
}

/** The subscriber reads again: every signal arrives once, in order. */
async function expectAllDelivered(subscriber: RawClient, sent: number): Promise<void> {
  subscriber.resumeReading();
  await subscriber.waitFor((m) => m.header.member === SIGNAL.member && readBody(m)[0] === sent - 1, `signal ${sent - 1}`, 30_000);
  const numbers = subscriber.received.filter((m) => m.header.member === SIGNAL.member).map((m) => readBody(m)[0]);
  expect(numbers).toEqual(Array.from({ length: sent }, (_, i) => i));
  expect(subscriber.corrupt).toBeUndefined();
  expect(subscriber.closed).toBeUndefined();
}

describe('bytes queued for a client that does not read, across handoffs', () => {
  let build: BuildSnapshot;
  beforeAll(async () => {
    build = await snapshotBuild();
  });
  afterAll(() => build?.remove());

  it('move to a spool file as the first handoff starts, stay there through two handoffs, arrive once and in order, and the file closes once they are sent', async () => {
    const bus = await startSnapshotBus(build);
    defer(() => bus.stop());
    const watcher = await NextClient.connect(bus.address);
    defer(() => watcher.disconnect());
    const { subscriber, sent } = await stuckSubscriber(bus, watcher, 2 * 1024 * 1024);
    const queued = (await busStatus(watcher)).queuedBytes;

    const from = bus.process.mark('stderr');
    expect((await handoffByMethod(watcher, '', bus)).generation).toBe(2);
    expect(logLines(bus.process, 'handoff-spooled', from).join('\n')).toMatch(/ connections=1 bytes=\d+ /);
    // The new image holds the spool file: the queued bytes are still in it, not in memory; the
    // document, which holds none of them, is closed.
    const first = openDocuments(bus);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatch(new RegExp(`/spool-pid-${bus.pid}-[0-9a-f]+ \\(deleted\\)$`));
    const afterFirst = (await busStatus(watcher)).queuedBytes;
    // Still queued (fewer only when the socket took some meanwhile).
    expect(afterFirst).toBeLessThanOrEqual(queued);
    expect(afterFirst).toBeGreaterThan(queued / 2n);

    expect((await handoffByMethod(watcher, '', bus)).generation).toBe(3);
    // The second document points into the same file, passed on open.
    expect(openDocuments(bus)).toEqual(first);
    expect((await busStatus(watcher)).queuedBytes).toBeLessThanOrEqual(afterFirst);
    expect((await busStatus(watcher)).queuedBytes).toBeGreaterThan(queued / 2n);

    await expectAllDelivered(subscriber, sent);
    await until('the spool file to close', () => openDocuments(bus).length === 0);
    expect((await busStatus(watcher)).queuedBytes).toBe(0n);
  });

  it('stay in the spool file for a target image that reads no format 4 (format 3: every connection one record)', async () => {
    await handoffToOlderImage([3, 2, 1], 3);
  });

  it('are written into the document itself for a target image that reads only format 2', async () => {
    await handoffToOlderImage([2, 1], 2);
  });

  /** A handoff to an image that reads `reads` only: the document is of format `writes`, and nothing is lost. */
  async function handoffToOlderImage(reads: number[], writes: number): Promise<void> {
    // A target image as an older ferrybus answers the preflight: it names the formats it reads.
    const main = build.main;
    const real = path.join(path.dirname(main), 'main-real.js');
    renameSync(main, real);
    writeFileSync(main, [
      "const args = process.argv.slice(2);",
      `if (args[0] === 'handoff-check' && !${JSON.stringify(reads.map(String))}.includes(args[2])) {`,
      `  process.stdout.write(JSON.stringify({ ok: false, formats: ${JSON.stringify(reads)}, version: '0.0.1' }) + '\\n');`,
      '  process.exit(1);',
      '}',
      "await import('./main-real.js');",
    ].join('\n'));
    defer(() => renameSync(real, main));
    const bus = await startSnapshotBus(build);
    defer(() => bus.stop());
    const watcher = await NextClient.connect(bus.address);
    defer(() => watcher.disconnect());
    const { subscriber, sent } = await stuckSubscriber(bus, watcher, 1024 * 1024);
    const from = bus.process.mark('stderr');

    expect((await handoffByMethod(watcher, '', bus)).generation).toBe(2);
    expect(logLines(bus.process, 'handoff-preflight', from).join('\n')).toMatch(new RegExp(` format=${writes} `));
    expect(logLines(bus.process, 'handoff-complete', from).join('\n')).toMatch(/ dropped=0$/);
    await expectAllDelivered(subscriber, sent);
    await until('the document to close', () => openDocuments(bus).length === 0);
  }
});
