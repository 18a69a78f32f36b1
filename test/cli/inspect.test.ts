import { mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeDocument } from '../../src/handoff/binary-document.js';
import { snapshot } from '../../src/handoff/snapshot.js';
import { Daemon } from '../../src/supervisor/daemon.js';
import type { Logger } from '../../src/supervisor/logger.js';
import { encodeMessage } from '../../src/wire/message.js';
import { marshal } from '../../src/wire/marshal.js';
import { MessageClass, MessageType, NextClient } from '../harness/dbus-next-client.js';
import { startLongRunning } from '../harness/long-running.js';
import { describeResult } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { ferrybus, headerOf, rowWith, startPeer, startStuckReader, type Peer } from './support/cli.js';

const quiet: Logger = { debug() {}, info() {}, notice() {}, warning() {}, error() {} };

interface InspectJson {
  file: string;
  format: number;
  generation: number;
  pid: number;
  writtenAt: string;
  bus: { guid: string; kind: string; startedAt: string; nextUniqueName: string };
  listeners: Array<{ fd: number; path: string; address: string }>;
  connections: Array<{
    fd: number; uniqueName: string | null; pid: number; uid: number; state: string; ownedNames: string[]; queuedNames: string[];
    matchRules: number; monitorRules: number | null; inboundBytes: number; outboundBytes: number;
  }>;
  names: Array<{ name: string; owner: { uniqueName: string | null; flags: string[] }; queue: Array<{ uniqueName: string | null; flags: string[] }> }>;
  pendingCalls: Array<{ caller: string; serial: number; callee: string }>;
  warnings: string[];
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ferrybus inspect of a document the snapshot code wrote', () => {
  let dir = '';
  let daemon: Daemon;
  let file = '';
  const cleanups: Array<() => unknown> = [];
  const defer = (fn: () => unknown) => cleanups.push(fn);
  let owner: Peer;
  let waiter: Peer;
  let stuck: { uniqueName: string; close(): void };
  let halfSent = 0;

  // A daemon in this process, real clients around it, then the same snapshot() a handoff runs.
  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-cli-inspect');
    const socketPath = path.join(dir, 'bus');
    daemon = await Daemon.start({ listen: [`unix:path=${socketPath}`], kind: 'session', limits: {} }, quiet, []);
    const bus = { address: daemon.addresses[0]!, socketPath } as RunningBus;

    owner = await startPeer(bus, ['--name', 'org.ferrybus.test.Doc:1', '--match', "type='signal',member='Doc'", '--hang', 'Hang'], defer);
    waiter = await startPeer(bus, ['--name', 'org.ferrybus.test.Doc:1'], defer);
    stuck = await startStuckReader(socketPath, "type='signal',interface='org.ferrybus.test.Flood'");
    defer(() => stuck.close());
    const emitter = await NextClient.connect(bus.address);
    defer(() => emitter.disconnect());
    for (let i = 0; i < 16; i++) {
      emitter.bus.send(new MessageClass({
        type: MessageType.SIGNAL, path: '/f', interface: 'org.ferrybus.test.Flood', member: 'Chunk', signature: 'ay', body: [Buffer.alloc(65536)],
      }));
    }
    await emitter.ping();
    const caller = startLongRunning('dbus-send', [
      `--bus=${bus.address}`, '--print-reply', '--reply-timeout=60000', '--dest=org.ferrybus.test.Doc', '/doc', 'org.ferrybus.test.Doc.Hang',
    ]);
    defer(() => caller.stop());
    await until('the pending call', () => [...daemon.bus.replies.all()].length === 1);
    // Half a message from a raw client: bytes the new image would have to finish reading.
    const half = net.connect({ path: socketPath });
    defer(() => half.destroy());
    const hello = encodeMessage({ type: 1, serial: 1, destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'Hello', signature: '' });
    const ping = encodeMessage({ type: 1, serial: 2, destination: 'org.freedesktop.DBus', path: '/', interface: 'org.freedesktop.DBus.Peer', member: 'Ping', signature: 's', body: marshal('s', ['x'.repeat(100)]) });
    halfSent = 40;
    half.write(Buffer.concat([Buffer.from(`\0AUTH EXTERNAL ${Buffer.from(String(process.getuid!())).toString('hex')}\r\nBEGIN\r\n`), hello, ping.subarray(0, halfSent)]));
    await until('the half message', () => [...daemon.connections.all].some((c) => c.framer.pendingLength === halfSent));

    const doc = snapshot({
      bus: daemon.bus,
      connections: daemon.connections,
      listeners: daemon.listeners,
      targets: daemon.targets,
      addresses: daemon.addresses,
      settings: daemon.settings,
      generation: daemon.generation,
      startedAt: daemon.startedAt,
      nonce: 'f'.repeat(32),
      stoppedAtNs: process.hrtime.bigint(),
      handoffCallers: [],
    });
    file = path.join(dir, 'generation-2.json');
    writeFileSync(file, Buffer.concat(encodeDocument(doc).pieces)); // as writeHandoffFile lays it out
  });

  afterAll(async () => {
    for (const fn of cleanups.reverse()) await fn();
    await daemon?.stop('test over');
    await removeTempDir(dir);
  });

  it('--json: generation, pid, guid, listeners, connections with names, match rules and byte counts, names, pending calls', async () => {
    const r = await ferrybus(['inspect', file, '--json']);
    expect(r.exitCode, describeResult(r)).toBe(0);
    const doc = JSON.parse(r.stdout) as InspectJson;
    expect(doc).toMatchObject({ file, format: 4, generation: 1, pid: process.pid, warnings: [] });
    expect(doc.bus.guid).toBe(daemon.identity.guid);
    expect(doc.bus.nextUniqueName).toMatch(/^:1\.\d+$/);
    expect(doc.listeners).toEqual([{ fd: expect.any(Number), path: path.join(dir, 'bus'), address: daemon.addresses[0] }]);
    const conn = (unique: string) => doc.connections.find((c) => c.uniqueName === unique)!;
    expect(conn(owner.uniqueName)).toMatchObject({
      pid: owner.pid, uid: process.getuid!(), state: 'connected', ownedNames: ['org.ferrybus.test.Doc'], queuedNames: [], matchRules: 1, monitorRules: null,
    });
    expect(conn(waiter.uniqueName)).toMatchObject({ pid: waiter.pid, ownedNames: [], queuedNames: ['org.ferrybus.test.Doc'] });
    // 1 MiB was sent to a reader that never reads; the kernel holds a part of it.
    expect(conn(stuck.uniqueName).outboundBytes).toBeGreaterThan(256 * 1024);
    expect(doc.connections.filter((c) => c.inboundBytes === halfSent)).toHaveLength(1);
    expect(doc.names).toEqual([
      {
        name: 'org.ferrybus.test.Doc',
        owner: { peerId: expect.any(Number), uniqueName: owner.uniqueName, flags: ['allow-replacement'] },
        queue: [{ peerId: expect.any(Number), uniqueName: waiter.uniqueName, flags: ['allow-replacement'] }],
      },
    ]);
    expect(doc.pendingCalls).toEqual([{ caller: expect.stringMatching(/^:1\.\d+$/), serial: expect.any(Number), callee: owner.uniqueName }]);
  });

  it('prints a summary and one table per part for people', async () => {
    const r = await ferrybus(['inspect', file]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    const [summary, listeners, connections, names, calls] = r.stdout.trimEnd().split('\n\n');
    expect(summary).toMatch(/^file\s+\S+generation-2\.json$/m);
    expect(summary).toMatch(/^format\s+4$/m);
    expect(summary).toMatch(/^generation\s+1 \(read by the next image as generation 2\)$/m);
    expect(summary).toMatch(new RegExp(`^pid\\s+${process.pid}$`, 'm'));
    expect(summary).toMatch(new RegExp(`^bus guid\\s+${daemon.identity.guid}$`, 'm'));
    expect(summary).toMatch(/^written at\s+\d{4}-\d\d-\d\dT/m);
    expect(listeners!.split('\n')[0]).toBe('Listeners (1):');
    expect(connections!.split('\n')[0]).toMatch(/^Connections \(\d+\):$/);
    const connTable = connections!.split('\n').slice(1).join('\n');
    expect(headerOf(connTable)).toEqual(['FD', 'UNIQUE', 'PID', 'UID', 'STATE', 'NAMES', 'MATCHES', 'INBOUND', 'OUTBOUND', 'FDS']);
    expect(rowWith(connTable, owner.uniqueName)).toMatch(new RegExp(`\\s${owner.pid}\\s+\\d+\\s+connected\\s+org\\.ferrybus\\.test\\.Doc\\s+1\\s+0 B\\s+0 B\\s+0$`));
    expect(rowWith(connTable, waiter.uniqueName)).toContain('org.ferrybus.test.Doc (queued)');
    expect(rowWith(connTable, stuck.uniqueName)).toMatch(/\d+\.\d (KiB|MiB)\s+0$/);
    expect(names).toMatch(new RegExp(`^Names \\(1\\):\\nNAME\\s+OWNER\\s+FLAGS\\s+QUEUED\\norg\\.ferrybus\\.test\\.Doc\\s+${owner.uniqueName.replace('.', '\\.')}\\s+allow-replacement\\s+${waiter.uniqueName.replace('.', '\\.')} \\(allow-replacement\\)$`));
    expect(calls).toMatch(new RegExp(`^Pending method calls \\(1\\):\\nCALLER\\s+CALLEE\\s+SERIAL\\n:1\\.\\d+\\s+→\\s+${owner.uniqueName.replace('.', '\\.')}\\s+\\d+$`));
  });
});

describe('ferrybus inspect of what is not a usable document', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-cli-inspect-bad');
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  function write(name: string, text: string): string {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  }

  /** A small document as document.ts describes it: one listener, two connections, one name. */
  function handWritten(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      format: 1, nonce: 'ab'.repeat(16), pid: 4242, generation: 3, stoppedAtNs: '123456789', writtenAt: '2026-01-02T03:04:05.000Z',
      bus: { guid: '0123456789abcdef0123456789abcdef', machineId: 'm', kind: 'system', nextUniqueId: 9, nextPeerId: 9, driverSerial: 40, startedAt: '2026-01-01T00:00:00.000Z' },
      settings: {},
      listeners: [{ fd: 3, path: '/run/dbus/system_bus_socket', address: 'unix:path=/run/dbus/system_bus_socket,guid=0123456789abcdef0123456789abcdef' }],
      connections: [
        { fd: 7, peerId: 1, credentials: { uid: 0, gid: 0, pid: 100, groups: [0] }, uniqueName: ':1.1', inbound: '', outbound: 'AAAA', outboundFds: [{ at: 1, fds: [11, 12] }], matches: ["type='signal'"] },
        { fd: 8, peerId: 2, credentials: { uid: 1000, gid: 1000, pid: 200, groups: [] }, uniqueName: ':1.2', inbound: 'AAECAw==', outbound: '', matches: [], monitorRules: [] },
      ],
      names: [{ name: 'org.freedesktop.login1', queue: [{ peerId: 1, flags: 0 }] }],
      pendingCalls: [{ caller: 2, serial: 5, callee: 1 }],
      handoffCallers: [{ peerId: 2, serial: 6 }],
      lastHandoff: { at: '2026-01-02T03:00:00.000Z', pauseUs: 2500, root: '/sysroot' },
      ...overrides,
    };
  }

  it('reads a hand-written document following document.ts', async () => {
    const file = write('good.json', JSON.stringify(handWritten()));
    const r = await ferrybus(['inspect', file]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toMatch(/^generation\s+3 \(read by the next image as generation 4\)$/m);
    expect(r.stdout).toMatch(/^last handoff\s+2026-01-02T03:00:00\.000Z \(pause 2\.5 ms, into \/sysroot\)$/m);
    expect(r.stdout).toMatch(/^callers\s+1 awaiting the Handoff reply$/m);
    expect(rowWith(r.stdout, ':1.1')).toMatch(/^\s*7\s+:1\.1\s+100\s+0\s+connected\s+org\.freedesktop\.login1\s+1\s+0 B\s+3 B\s+2$/);
    expect(rowWith(r.stdout, ':1.2')).toMatch(/^\s*8\s+:1\.2\s+200\s+1000\s+monitor\s+-\s+0\s+4 B\s+0 B\s+0$/);
    expect(r.stdout).toMatch(/^:1\.2\s+→\s+:1\.1\s+5$/m);
  });

  it('shows the services being started and what waits for them', async () => {
    const activation = {
      environment: [],
      pending: [
        { name: 'org.freedesktop.hostname1', via: 'systemd', deadline: Date.parse('2026-01-02T03:05:00.000Z'),
          entry: { exec: '/bin/false', file: '/usr/share/dbus-1/system-services/org.freedesktop.hostname1.service', systemdService: 'dbus-org.freedesktop.hostname1.service' },
          held: [{ sender: 2, start: false, message: 'AAAAAAAA', fds: [13] }, { sender: 1, start: true, message: 'AAAA' }] },
      ],
    };
    const file = write('activation.json', JSON.stringify(handWritten({ activation })));
    const text = await ferrybus(['inspect', file]);
    expect(text.exitCode, describeResult(text)).toBe(0);
    expect(text.stdout).toMatch(/^Services being started \(1\):$/m);
    expect(rowWith(text.stdout, 'org.freedesktop.hostname1')).toMatch(
      /^org\.freedesktop\.hostname1\s+systemd \(dbus-org\.freedesktop\.hostname1\.service\)\s+-\s+2026-01-02T03:05:00\.000Z\s+2\s+9 B\s+1$/,
    );
    const json = await ferrybus(['inspect', file, '--json']);
    expect(JSON.parse(json.stdout).activations).toEqual([{
      name: 'org.freedesktop.hostname1', via: 'systemd', pid: null, unit: 'dbus-org.freedesktop.hostname1.service',
      deadline: '2026-01-02T03:05:00.000Z',
      waiting: [{ sender: ':1.2', kind: 'message', bytes: 6, fds: [13] }, { sender: ':1.1', kind: 'start', bytes: 3, fds: [] }],
    }]);
  });

  it('lists what the daemon would drop from a damaged document, and still exits 0', async () => {
    const doc = handWritten();
    (doc.connections as unknown[]).push({ fd: 9, peerId: 3, credentials: { uid: 'root' }, inbound: '', outbound: '', matches: [] });
    doc.extra = true;
    const r = await ferrybus(['inspect', write('damaged.json', JSON.stringify(doc))]);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toMatch(/^Connections \(2\):$/m);
    expect(r.stdout).toContain('Warnings (2): the daemon would ignore or drop these\n');
    expect(r.stdout).toContain('  connections[2]: bad credentials; connection dropped\n');
    expect(r.stdout).toContain('  document: unknown key "extra" ignored\n');
  });

  it.each([
    ['not JSON at all', '{"format": 1, "nonce": ', /is not a valid handoff document: document is not valid JSON: /],
    ['JSON that is not an object', '[1, 2, 3]', /is not a valid handoff document: document is not a JSON object$/],
    ['no generation', JSON.stringify({ format: 1, nonce: 'n', pid: 5 }), /is not a valid handoff document: document has no generation$/],
    ['a bad guid', JSON.stringify({ ...{ format: 1, nonce: 'n', pid: 5, generation: 1 }, bus: { guid: 'xyz' } }), /is not a valid handoff document: document has no valid bus guid$/],
    ['an empty file', '', /is not a valid handoff document: document is not valid JSON/],
  ])('refuses %s: says why, exit 1', async (_what, text, why) => {
    const file = write(`bad-${_what.replace(/\W+/g, '-')}.json`, text);
    const r = await ferrybus(['inspect', file]);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.startsWith(`ferrybus: ${file} is not a valid handoff document: `)).toBe(true);
    expect(r.stderr.trimEnd()).toMatch(why);
    expect(r.stderr.split('\n')).toHaveLength(2); // one line
  });

  it('tells a newer format from a broken file', async () => {
    const file = write('future.json', JSON.stringify(handWritten({ format: 99 })));
    const r = await ferrybus(['inspect', file]);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toBe(`ferrybus: ${file} is a handoff document this ferrybus cannot read: document format 99 is not readable by this image (reads 4, 3, 2, 1)\n`);
  });

  it('says where documents live when the file does not exist, and what a directory holds', async () => {
    const missing = path.join(dir, 'generation-7.json');
    const r = await ferrybus(['inspect', missing]);
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stderr).toBe(
      `ferrybus: cannot read ${missing}: ENOENT (documents live in /run/ferrybus/handoff/ and are deleted once the new image read them)\n`,
    );
    const sub = path.join(dir, 'handoff');
    mkdirSync(sub);
    writeFileSync(path.join(sub, 'generation-2.json'), '{}');
    const d = await ferrybus(['inspect', sub]);
    expect(d.exitCode, describeResult(d)).toBe(1);
    expect(d.stderr).toBe(`ferrybus: ${sub} is a directory; name a document in it (generation-2.json)\n`);
  });
});
