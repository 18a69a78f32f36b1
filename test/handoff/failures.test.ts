/**
 * DESIGN.md §3: "A failed handoff (missing binary, bad root, corrupt state, exec error) loses
 * nothing." Two halves:
 * - a handoff refused before exec (bad root, no binary, a preflight that says no, an execve that
 *   fails): the old image keeps serving, unchanged, and the caller is told exactly why;
 * - a new image whose document cannot be used (corrupt, truncated, oversized, newer format,
 *   stale): it keeps the listening socket, serves new clients, drops the old ones loudly and
 *   never exits. Its start is played honestly: a launcher creates the listening socket, accepts
 *   the clients and execs the daemon with them inherited, as the old image does.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOn } from '../harness/clients.js';
import { NextClient, REQUEST_NAME_REPLY } from '../harness/dbus-next-client.js';
import { SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { ECHO_INTERFACE, ECHO_PATH, startEchoService } from '../harness/python-clients.js';
import { describeResult, runClient } from '../harness/run-client.js';
import type { RunningBus } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { DOCUMENT_HEADER_BYTES, DOCUMENT_MAGIC, HANDOFF_FORMAT, HANDOFF_FORMAT_JSON, HANDOFF_FORMAT_SPOOLED, MAX_DOCUMENT_BYTES } from '../../src/handoff/document.js';
import { handoffDirectory } from '../../src/handoff/handoff-file.js';
import { encodeMessage } from '../../src/wire/message.js';
import { marshal } from '../../src/wire/marshal.js';
import {
  busStatus,
  handoffByMethod,
  HANDOFF_FAILED,
  logLines,
  supportPath,
  watchDisconnect,
} from './support/ferrybus.js';
import { type BuildSnapshot, snapshotBuild, startSnapshotBus } from './support/build-snapshot.js';
import { RawClient, readBody, TYPE } from './support/raw-client.js';
import { CONFUSED_IMAGE, REFUSING_IMAGE, scriptRoot, VANISHING_IMAGE } from './support/roots.js';

let build: BuildSnapshot;
beforeAll(async () => {
  build = await snapshotBuild();
});
afterAll(() => build?.remove());

const ECHO = 'org.ferrybus.Test.Echo';
const OWNED = 'org.ferrybus.Test.Failures.Owned';
const O_CLOEXEC = 0o2000000;

/** Runs cleanups registered during beforeAll, last first. */
function useScope(): (fn: () => unknown) => void {
  const pending: Array<() => unknown> = [];
  afterAll(async () => {
    while (pending.length > 0) await pending.pop()!();
  });
  return (fn) => {
    pending.push(fn);
  };
}

/** Every socket fd of a process, with whether it is close-on-exec. */
function socketFds(pid: number): Array<{ fd: number; cloexec: boolean }> {
  const out: Array<{ fd: number; cloexec: boolean }> = [];
  for (const name of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue;
    }
    if (!target.startsWith('socket:') || Number(name) <= 2) continue;
    const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${name}`, 'utf8'))![1]!;
    out.push({ fd: Number(name), cloexec: (parseInt(flags, 8) & O_CLOEXEC) !== 0 });
  }
  return out;
}

describe('a handoff refused before exec leaves the old image serving, unchanged, and says why', () => {
  const scope = useScope();
  let bus: RunningBus;
  let watcher: NextClient;
  let owner: NextClient;
  let echo: { proc: LongRunning; uniqueName: string };
  let gone: Array<() => string | undefined>;
  let roots: string;
  let protectedNames: Set<string>;
  let cwd: string;

  beforeAll(async () => {
    bus = await startSnapshotBus(build);
    scope(() => bus.stop());
    roots = await makeTempDir('ferrybus-failure-roots');
    scope(() => removeTempDir(roots));
    watcher = await NextClient.connect(bus.address);
    scope(() => watcher.disconnect());
    await watcher.addMatch("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'");
    owner = await NextClient.connect(bus.address);
    scope(() => owner.disconnect());
    expect((await owner.driver('RequestName', 'su', [OWNED, 0]))[0]).toBe(REQUEST_NAME_REPLY.PRIMARY_OWNER);
    echo = await startEchoService(bus, scope, ECHO);
    gone = [watcher, owner].map(watchDisconnect);
    protectedNames = new Set([OWNED, ECHO, watcher.uniqueName, owner.uniqueName, echo.uniqueName]);
    cwd = readlinkSync(`/proc/${bus.pid}/cwd`);
  });

  /** Asks for a handoff into `root`; expects HandoffFailed with `why`, then proves nothing changed. */
  async function expectRefused(root: string, why: RegExp): Promise<string> {
    const from = { stderr: bus.process.mark('stderr'), watcher: watcher.received.length };
    const err = (await handoffByMethod(watcher, root, bus).then(
      () => undefined,
      (e: unknown) => e,
    )) as { type?: string; text?: string } | undefined;
    expect(err?.type, 'the handoff was not refused').toBe(HANDOFF_FAILED);
    expect(err!.text).toMatch(why);
    await expectUnharmed(from, why);
    return err!.text!;
  }

  async function expectUnharmed(from: { stderr: number; watcher: number }, why: RegExp): Promise<void> {
    const status = await busStatus(watcher);
    expect(status.generation, 'generation changed').toBe(1);
    expect(status.pid).toBe(bus.pid);
    // Back in its own root and working directory, fds close-on-exec again (no leak into children).
    expect(readlinkSync(`/proc/${bus.pid}/root`)).toBe('/');
    expect(readlinkSync(`/proc/${bus.pid}/cwd`)).toBe(cwd);
    expect(socketFds(bus.pid).filter((f) => !f.cloexec)).toEqual([]);
    // Said in the log too, once; nothing was handed off.
    const failed = logLines(bus.process, 'handoff-failed', from.stderr);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatch(why);
    expect(logLines(bus.process, 'handoff-complete', from.stderr)).toEqual([]);
    // Everyone keeps what they had, and calls still go through.
    expect((await watcher.driver('GetNameOwner', 's', [OWNED]))[0]).toBe(owner.uniqueName);
    expect((await watcher.driver('GetNameOwner', 's', [ECHO]))[0]).toBe(echo.uniqueName);
    const call = await runOn(bus, 'busctl', [`--address=${bus.address}`, 'call', ECHO, ECHO_PATH, ECHO_INTERFACE, 'Echo', 's', 'still here']);
    expect(call.stdout, describeResult(call)).toBe('s "still here"\n');
    await owner.ping();
    const touched = watcher.received
      .slice(from.watcher)
      .filter((m) => m.member === 'NameOwnerChanged' && (m.body as string[]).some((n) => protectedNames.has(n)));
    expect(touched.map((m) => m.body)).toEqual([]);
    expect(owner.received.filter((m) => m.member === 'NameLost')).toEqual([]);
    expect(gone.map((g) => g())).toEqual([undefined, undefined]);
    expect(echo.proc.exit).toBeUndefined();
  }

  it('a root that does not exist', async () => {
    const root = path.join(roots, 'no-such-root');
    await expectRefused(root, new RegExp(`root ${root} does not exist`));
  });

  it('a root that is a file', async () => {
    const root = path.join(roots, 'a-file');
    writeFileSync(root, 'not a directory\n');
    await expectRefused(root, new RegExp(`root ${root} is not a directory`));
  });

  it('a root without the node binary (an empty directory)', async () => {
    const root = path.join(roots, 'empty');
    mkdirSync(root);
    await expectRefused(root, new RegExp(`cannot run ${process.execPath} in root ${root}: .*ENOENT`));
  });

  it('a target image whose preflight refuses (handoff-check exits 1), with its reason', async () => {
    const root = path.join(roots, 'refusing');
    scriptRoot(root, REFUSING_IMAGE);
    await expectRefused(
      root,
      new RegExp(`in root ${root} refused the handoff \\(exit 1\\): ferrybus: handoff document format ${HANDOFF_FORMAT} is not readable by this image \\(it reads 7\\)`),
    );
  });

  it('a target image that does not answer the preflight properly', async () => {
    const root = path.join(roots, 'confused');
    scriptRoot(root, CONFUSED_IMAGE);
    await expectRefused(root, new RegExp(`in root ${root} gave no valid handoff-check answer`));
  });

  it('an exec that fails after the preflight passed (the target stopped being executable)', async () => {
    const root = path.join(roots, 'vanishing');
    const { nodePath } = scriptRoot(root, VANISHING_IMAGE);
    await expectRefused(root, new RegExp(`exec of ${process.execPath} failed: .*EACCES`));
    // The preflight really passed (the image made itself non-executable on its way out; the
    // snapshot was rehearsed meanwhile, for as long as the line says), and the document written
    // for the exec was taken back.
    expect(statSync(nodePath).mode & 0o111).toBe(0);
    expect(logLines(bus.process, 'handoff-preflight').some((l) =>
      l.includes(`root=${root}`) && l.includes('version=vanishing') && /rehearsalMs=[0-9]+\.[0-9]/.test(l))).toBe(true);
    const docs = path.join(root, 'run/ferrybus/handoff');
    expect(existsSync(docs) ? readdirSync(docs) : []).toEqual([]);
  });

  it('the CLI reports the refusal and exits 1', async () => {
    const root = path.join(roots, 'also-missing');
    const from = { stderr: bus.process.mark('stderr'), watcher: watcher.received.length };
    const r = await runClient(process.execPath, [build.main, 'handoff', '--address', bus.address, '--root', root, '--json'], { timeoutMs: 30_000 });
    expect(r.exitCode, describeResult(r)).toBe(1);
    expect(r.stdout).toBe('');
    // The CLI names the root as seen from its own root (/proc/<its pid>/root/…).
    expect(r.stderr).toMatch(new RegExp(`HandoffFailed: root \\S*${root} does not exist`));
    await expectUnharmed(from, /does not exist/);
  });

  it('after every refusal the same image still hands off in place, keeping everything', async () => {
    const from = { stderr: bus.process.mark('stderr'), watcher: watcher.received.length };
    const { generation } = await handoffByMethod(watcher, '', bus);
    expect(generation).toBe(2);
    expect(logLines(bus.process, 'handoff-complete', from.stderr)[0]).toMatch(/ connections=\d+ names=2 .* dropped=0$/);
    expect((await watcher.driver('GetNameOwner', 's', [OWNED]))[0]).toBe(owner.uniqueName);
    expect((await watcher.driver('GetNameOwner', 's', [ECHO]))[0]).toBe(echo.uniqueName);
    expect(gone.map((g) => g())).toEqual([undefined, undefined]);
  });
});

/** A started new image, fed by the launcher. */
interface Adopted {
  proc: LongRunning;
  socketPath: string;
  address: string;
  document: string;
  old: RawClient[];
}

const NONCE = '0123456789abcdef0123456789abcdef';
/** Where the bus (this test's uid) keeps documents and spool files. */
const SPOOL_DIR = handoffDirectory(process.getuid!(), process.env);
const GUID = 'fe11ba5e0000000000000000c0ffee00';

/**
 * Plays a handoff into a new image: listening socket and `clients` connections created and
 * accepted by the launcher, then the daemon exec'd with them. `document` is the text the new
 * image finds (placeholders {pid} {listen} {fd0}… filled in) or, with `raw`, a file given as is.
 */
async function launchNewImage(
  dir: string,
  clients: number,
  document: { text: string } | { bytes: Buffer } | { raw: string },
  nonce = NONCE,
  spool?: string,
): Promise<Adopted> {
  const socketPath = path.join(dir, 'bus');
  const docPath = 'raw' in document ? document.raw : path.join(dir, 'generation-2.json');
  const template = path.join(dir, 'template.json');
  if ('text' in document) writeFileSync(template, document.text);
  if ('bytes' in document) writeFileSync(template, document.bytes);
  const proc = startLongRunning(SYSTEM_PYTHON, [
    supportPath('adopt-launcher.py'),
    '--socket', socketPath,
    '--clients', String(clients),
    '--document', docPath,
    ...('raw' in document ? [] : ['--template', template]),
    ...(spool ? ['--spool', spool] : []),
    '--', process.execPath, build.main, 'daemon',
    `--handoff-document=${docPath}`,
    `--handoff-nonce=${nonce}`,
    '--handoff-listen-fds={listen}',
    '--handoff-generation=2',
    '--handoff-next-unique=7',
  ]);
  await proc.waitFor('listening\n');
  const old: RawClient[] = [];
  for (let i = 0; i < clients; i++) old.push(await RawClient.connect(socketPath, 'connected'));
  await proc.waitFor(/^exec /m);
  return { proc, socketPath, address: `unix:path=${socketPath}`, document: docPath, old };
}

/**
 * A document the way an older image writes it (format 1, JSON text, bytes in base64), for the
 * clients the launcher accepted.
 */
function validDocument(socketPath: string, connections: unknown[], names: unknown[], extra: Record<string, unknown> = {}): string {
  const doc = {
    format: HANDOFF_FORMAT_JSON,
    nonce: NONCE,
    pid: '__PID__',
    generation: 1,
    stoppedAtNs: process.hrtime.bigint().toString(),
    writtenAt: new Date().toISOString(),
    bus: { guid: GUID, machineId: '', kind: 'session', nextUniqueId: 10, nextPeerId: 10, driverSerial: 100, startedAt: new Date().toISOString() },
    settings: { listen: [`unix:path=${socketPath}`], kind: 'session', limits: {} },
    listeners: [{ fd: '__LISTEN__', path: socketPath, address: `unix:path=${socketPath},guid=${GUID}` }],
    connections,
    names,
    pendingCalls: [],
    handoffCallers: [],
    ...extra,
  };
  return JSON.stringify(doc)
    .replace('"__PID__"', '{pid}')
    .replace('"__LISTEN__"', '{listen}')
    .replace(/"__FD(\d+)__"/g, '{fd$1}');
}

/**
 * The same as an image writes it for a target that reads no format 4 (format 3): header, the
 * JSON (byte fields are ranges of the section), the binary section. The header is left as
 * given: a test may announce more than follows.
 */
function binaryDocument(json: string, section: Buffer, announced = section.length): Buffer {
  const header = Buffer.alloc(DOCUMENT_HEADER_BYTES);
  DOCUMENT_MAGIC.copy(header);
  header.writeUInt32LE(HANDOFF_FORMAT_SPOOLED, 8);
  header.writeUInt32LE(Buffer.byteLength(json), 12);
  header.writeBigUInt64LE(BigInt(announced), 16);
  return Buffer.concat([header, Buffer.from(json), section]);
}

const me = { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid, groups: [] as number[] };
const connectionDoc = (i: number, overrides: Record<string, unknown> = {}) => ({
  fd: `__FD${i}__`,
  peerId: i + 1,
  credentials: me,
  uniqueName: `:1.${i + 1}`,
  inbound: '',
  outbound: '',
  matches: [],
  ...overrides,
});

describe('a new image whose document is unusable keeps serving and drops the old clients loudly', () => {
  const scope = useScope();
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-adopt');
    scope(() => removeTempDir(dir));
  });

  async function fresh(name: string): Promise<string> {
    const d = path.join(dir, name);
    mkdirSync(d);
    return d;
  }

  /** The new image must: drop both old clients, say why, serve new clients, never exit. */
  async function expectServesWithoutState(a: Adopted, why: RegExp): Promise<void> {
    scope(() => a.proc.stop());
    await a.proc.waitFor(/handoff-document-unusable: .*/, { stream: 'stderr' });
    const unusable = logLines(a.proc, 'handoff-document-unusable');
    expect(unusable, a.proc.describe()).toHaveLength(1);
    expect(unusable[0]).toMatch(why);
    for (const c of a.old) await c.whenClosed();
    await a.proc.waitFor(`handoff-dropped-connections: closed ${a.old.length} inherited client connections`, { stream: 'stderr' });
    expect(existsSync(a.document), 'the document was not removed').toBe(false);
    expect(statSync(a.socketPath).isSocket()).toBe(true);
    // New clients are served; unique names continue from the command line's counter.
    const client = await NextClient.connect(a.address);
    scope(() => client.disconnect());
    expect(client.uniqueName).toBe(':1.7');
    const status = await busStatus(client);
    expect(status).toMatchObject({ pid: a.proc.pid, generation: 2, connections: 1, names: 0 });
    const list = await runClient('busctl', [`--address=${a.address}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetNameOwner', 's', client.uniqueName]);
    expect(list.stdout, describeResult(list)).toBe(`s "${client.uniqueName}"\n`);
    expect(a.proc.exit).toBeUndefined();
    expect(logLines(a.proc, 'handoff-complete')).toEqual([]);
  }

  it('not JSON at all', async () => {
    const d = await fresh('garbage');
    const a = await launchNewImage(d, 2, { text: 'this is not a handoff document {"format":1' });
    await expectServesWithoutState(a, /document is not valid JSON/);
  });

  it('not JSON, with a spool file of the old image inherited: the file is closed, its bytes not kept on /run', async () => {
    const d = await fresh('garbage-spool');
    mkdirSync(SPOOL_DIR, { recursive: true, mode: 0o700 });
    const spool = path.join(SPOOL_DIR, `spool-pid-${process.pid}-test${Date.now()}`);
    const a = await launchNewImage(d, 1, { text: 'not a document' }, NONCE, spool);
    await expectServesWithoutState(a, /document is not valid JSON/);
    expect(logLines(a.proc, 'handoff-spool-dropped')).toHaveLength(1);
    const held = readdirSync(`/proc/${a.proc.pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${a.proc.pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    expect(held.filter((target) => target.startsWith(spool))).toEqual([]);
  });

  it('empty', async () => {
    const d = await fresh('empty');
    const a = await launchNewImage(d, 2, { text: '' });
    await expectServesWithoutState(a, /document is not valid JSON/);
  });

  it('truncated half-way', async () => {
    const d = await fresh('truncated');
    const text = validDocument(path.join(d, 'bus'), [connectionDoc(0), connectionDoc(1)], []);
    const a = await launchNewImage(d, 2, { text: text.slice(0, Math.floor(text.length / 2)) });
    await expectServesWithoutState(a, /document is not valid JSON/);
  });

  it('oversized (refused by its size, never read)', async () => {
    const d = await fresh('oversized');
    const giant = path.join(d, 'generation-2.json');
    writeFileSync(giant, '{"format":1,', { mode: 0o600 });
    truncateSync(giant, MAX_DOCUMENT_BYTES + 1); // sparse: no disk, no memory
    const a = await launchNewImage(d, 2, { raw: giant });
    await expectServesWithoutState(a, new RegExp(`document of ${MAX_DOCUMENT_BYTES + 1} bytes exceeds ${MAX_DOCUMENT_BYTES}`));
  });

  it('a newer format', async () => {
    const d = await fresh('newer');
    const text = validDocument(path.join(d, 'bus'), [connectionDoc(0), connectionDoc(1)], [], { format: HANDOFF_FORMAT + 1, future: { x: 1 } });
    const a = await launchNewImage(d, 2, { text });
    await expectServesWithoutState(a, new RegExp(`document format ${HANDOFF_FORMAT + 1} is not readable by this image`));
  });

  it('binary, its section cut short', async () => {
    const d = await fresh('section-truncated');
    const queued = Buffer.alloc(4096, 1);
    const json = validDocument(path.join(d, 'bus'), [connectionDoc(0, { outbound: { offset: 0, length: 4096 } }), connectionDoc(1)], [], { format: HANDOFF_FORMAT_SPOOLED });
    const a = await launchNewImage(d, 2, { bytes: binaryDocument(json, queued.subarray(0, 1000), queued.length) });
    await expectServesWithoutState(a, /truncated: the header announces \d+ bytes \(\d+ of JSON, 4096 of binary section\), the file has \d+/);
  });

  it('binary, with a bad magic', async () => {
    const d = await fresh('bad-magic');
    const bytes = binaryDocument(validDocument(path.join(d, 'bus'), [connectionDoc(0), connectionDoc(1)], [], { format: HANDOFF_FORMAT_SPOOLED }), Buffer.alloc(0));
    bytes[5] = 0x21;
    const a = await launchNewImage(d, 2, { bytes });
    await expectServesWithoutState(a, /bad magic: not a ferrybus handoff document/);
  });

  it('stale: left by another handoff (its nonce is not the one on the command line)', async () => {
    const d = await fresh('stale');
    const text = validDocument(path.join(d, 'bus'), [connectionDoc(0), connectionDoc(1)], []);
    const a = await launchNewImage(d, 2, { text }, 'ffffffffffffffffffffffffffffffff');
    await expectServesWithoutState(a, /nonce does not match/);
  });

  it('written by another process', async () => {
    const d = await fresh('other-pid');
    const text = validDocument(path.join(d, 'bus'), [connectionDoc(0), connectionDoc(1)], []).replace('{pid}', '1');
    const a = await launchNewImage(d, 2, { text });
    await expectServesWithoutState(a, /document was written by pid 1, not this process/);
  });
});

describe('a new image restores what it can from a damaged document and drops the rest loudly', () => {
  const scope = useScope();
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-adopt-damaged');
    scope(() => removeTempDir(dir));
  });

  it('a damaged record and a record whose fd is someone else: those two clients are closed, the third keeps its name and its queued message', async () => {
    const socketPath = path.join(dir, 'bus');
    const queued = encodeMessage({
      type: TYPE.SIGNAL, serial: 77, path: '/org/ferrybus/Test', interface: 'org.ferrybus.Test.Queued', member: 'Waiting',
      sender: ':1.2', signature: 's', body: marshal('s', ['queued before the handoff']),
    });
    const text = validDocument(
      socketPath,
      [
        connectionDoc(0, { outbound: queued.toString('base64'), matches: ["type='signal',member='Later'"] }),
        connectionDoc(1, { credentials: { ...me, uid: 'root' } }),
        connectionDoc(2, { credentials: { ...me, pid: 1 } }),
      ],
      [
        { name: 'org.ferrybus.Test.Kept', queue: [{ peerId: 1, flags: 0 }] },
        { name: 'org.ferrybus.Test.Orphaned', queue: [{ peerId: 2, flags: 0 }] },
        { name: 'org.ferrybus.Test.Inherited', queue: [{ peerId: 3, flags: 0 }, { peerId: 1, flags: 0 }] },
      ],
      { aKeyFromTheFuture: true },
    );
    const a = await launchNewImage(dir, 3, { text });
    scope(() => a.proc.stop());
    const [kept, damaged, foreign] = a.old as [RawClient, RawClient, RawClient];
    kept.assumeRegistered(':1.1');
    await a.proc.waitFor(/handoff-complete: .*/, { stream: 'stderr' });
    expect(logLines(a.proc, 'handoff-document-warning').join('\n')).toMatch(/connections\[1\]: bad credentials; connection dropped/);
    expect(logLines(a.proc, 'handoff-document-warning').join('\n')).toMatch(/unknown key "aKeyFromTheFuture" ignored/);
    expect(logLines(a.proc, 'handoff-restore-dropped').join('\n')).toMatch(/connection :1\.3: fd \d+ belongs to pid \d+ uid \d+, not pid 1/);
    expect(logLines(a.proc, 'handoff-complete')[0]).toMatch(/generation=2 .* connections=1 names=2 matches=1 .* dropped=\d+$/);

    // The two clients that could not be restored are told: their connection closes.
    await damaged.whenClosed();
    await foreign.whenClosed();
    // The survivor first receives what was queued for it, then talks as :1.1.
    const first = await kept.waitFor(() => true, 'the queued signal');
    expect(first.header.member).toBe('Waiting');
    expect(readBody(first)).toEqual(['queued before the handoff']);
    // The owner of Inherited was not taken over: its successor in the queue is told, as after a disconnect.
    const acquired = await kept.waitFor((m) => m.header.member === 'NameAcquired' && readBody(m)[0] === 'org.ferrybus.Test.Inherited', 'NameAcquired for the inherited name');
    expect(acquired.header.sender).toBe('org.freedesktop.DBus');
    const driver = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
    expect(await kept.call({ ...driver, member: 'GetNameOwner' }, 's', ['org.ferrybus.Test.Kept'])).toEqual([':1.1']);
    expect(await kept.call({ ...driver, member: 'GetNameOwner' }, 's', ['org.ferrybus.Test.Inherited'])).toEqual([':1.1']);
    expect(await kept.call({ ...driver, member: 'GetId' })).toEqual([GUID]);
    const [names] = (await kept.call({ ...driver, member: 'ListNames' })) as [string[]];
    expect(names.sort()).toEqual([':1.1', 'org.ferrybus.Test.Inherited', 'org.ferrybus.Test.Kept', 'org.freedesktop.DBus']);
    // New clients get names after the document's counter.
    const client = await NextClient.connect(a.address);
    scope(() => client.disconnect());
    expect(client.uniqueName).toBe(':1.10');
    expect(kept.closed).toBeUndefined();
    expect(a.proc.exit).toBeUndefined();
  });
});

describe('a new image restores what it can from a damaged binary document and drops the rest loudly', () => {
  const scope = useScope();

  it('a byte range outside the binary section drops that client alone; the others keep their names and queued bytes', async () => {
    const dir = await makeTempDir('ferrybus-adopt-range');
    scope(() => removeTempDir(dir));
    const socketPath = path.join(dir, 'bus');
    const queued = encodeMessage({
      type: TYPE.SIGNAL, serial: 78, path: '/org/ferrybus/Test', interface: 'org.ferrybus.Test.Queued', member: 'Waiting',
      sender: ':1.3', signature: 's', body: marshal('s', ['queued in the binary section']),
    });
    const none = { offset: 0, length: 0 };
    const json = validDocument(
      socketPath,
      [
        connectionDoc(0, { inbound: none, outbound: { offset: 0, length: queued.length } }),
        connectionDoc(1, { inbound: none, outbound: { offset: queued.length - 4, length: 5 } }),
        connectionDoc(2, { inbound: none, outbound: none }),
      ],
      [
        { name: 'org.ferrybus.Test.Kept', queue: [{ peerId: 1, flags: 0 }] },
        { name: 'org.ferrybus.Test.Orphaned', queue: [{ peerId: 2, flags: 0 }] },
      ],
      { format: HANDOFF_FORMAT_SPOOLED },
    );
    const a = await launchNewImage(dir, 3, { bytes: binaryDocument(json, queued) });
    scope(() => a.proc.stop());
    const [kept, damaged, idle] = a.old as [RawClient, RawClient, RawClient];
    kept.assumeRegistered(':1.1');
    idle.assumeRegistered(':1.3');
    await a.proc.waitFor(/handoff-complete: .*/, { stream: 'stderr' });
    expect(logLines(a.proc, 'handoff-document-warning').join('\n')).toContain(
      `connections[1]: bytes at ${queued.length - 4} (5 of them) lie outside the ${queued.length}-byte binary section; connection dropped`,
    );
    expect(logLines(a.proc, 'handoff-complete')[0]).toMatch(/generation=2 .* connections=2 names=1 /);
    await damaged.whenClosed();
    const first = await kept.waitFor(() => true, 'the queued signal');
    expect(first.header.member).toBe('Waiting');
    expect(readBody(first)).toEqual(['queued in the binary section']);
    const driver = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
    expect(await kept.call({ ...driver, member: 'GetNameOwner' }, 's', ['org.ferrybus.Test.Kept'])).toEqual([':1.1']);
    expect(await idle.call({ ...driver, member: 'GetId' })).toEqual([GUID]);
    expect(kept.closed).toBeUndefined();
    expect(a.proc.exit).toBeUndefined();
  });
});

describe('a new image whose configuration became stricter', () => {
  const scope = useScope();

  it('keeps every inherited connection when max_connections_per_user was lowered below their number; new ones are refused', async () => {
    const dir = await makeTempDir('ferrybus-stricter');
    scope(() => removeTempDir(dir));
    const config = path.join(dir, 'bus.conf');
    const limit = (n: number) =>
      writeFileSync(config, `<busconfig><type>session</type><limit name="max_connections_per_user">${n}</limit><policy context="default"><allow user="*"/><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy></busconfig>\n`);
    limit(10);
    const bus = await startSnapshotBus(build, [`--config-file=${config}`]);
    scope(() => bus.stop());
    const clients: NextClient[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await NextClient.connect(bus.address);
      scope(() => c.disconnect());
      clients.push(c);
    }
    expect((await clients[1]!.driver('RequestName', 'su', [OWNED, 0]))[0]).toBe(REQUEST_NAME_REPLY.PRIMARY_OWNER);
    const gone = clients.map(watchDisconnect);
    limit(2);
    const from = bus.process.mark('stderr');
    expect((await handoffByMethod(clients[0]!, '', bus)).generation).toBe(2);
    expect(logLines(bus.process, 'handoff-complete', from)[0]).toMatch(/ connections=3 names=1 .* dropped=0$/);
    // The config watcher may apply the new file before the handoff re-reads it; either way it is in force.
    expect(bus.process.text('stderr', from)).toMatch(/config-limits-changed: .*maxConnectionsPerUser.*2|reloaded: /);
    for (const c of clients) await c.ping();
    expect((await clients[2]!.driver('GetNameOwner', 's', [OWNED]))[0]).toBe(clients[1]!.uniqueName);
    expect(gone.map((g) => g())).toEqual([undefined, undefined, undefined]);
    // The lowered limit is in force for new connections: the fourth one's Hello is refused, then it is closed.
    const late = await RawClient.connect(bus.socketPath, 'sasl-ok');
    scope(() => late.close());
    await expect(late.begin()).rejects.toThrow(/^org\.freedesktop\.DBus\.Error\.LimitsExceeded: The maximum number of active connections for UID \d+ has been reached$/);
    await late.whenClosed();
    await bus.process.waitFor(/client-dropped: .*maximum number of active connections/, { stream: 'stderr', from });
  });
});

describe('a bus that handed off still stops when asked', () => {
  it('SIGTERM with clients connected before and after the handoff: exits 0 at once, socket removed, the clients see the end', async () => {
    const bus = await startSnapshotBus(build);
    try {
      const before = await NextClient.connect(bus.address);
      expect((await handoffByMethod(before, '', bus)).generation).toBe(2);
      const after = await RawClient.connect(bus.socketPath);
      const started = Date.now();
      process.kill(bus.pid, 'SIGTERM');
      const exit = await bus.process.exited;
      // Well inside the harness's 2 s grace before SIGKILL.
      expect(Date.now() - started).toBeLessThan(1500);
      expect(exit).toEqual({ exitCode: 0, signal: undefined });
      expect(existsSync(bus.socketPath)).toBe(false);
      await after.whenClosed();
      await before.disconnect();
    } finally {
      await bus.stop();
    }
  });
});

describe('a fresh start never picks up a document left behind', () => {
  it('a stale document in the handoff directory is ignored: new bus id, generation 1, no names', async () => {
    const docs = '/run/ferrybus/handoff';
    mkdirSync(docs, { recursive: true, mode: 0o700 });
    // Named like the documents handoffs write (no daemon has the test's pid).
    const stale = path.join(docs, `generation-2-pid-${process.pid}.json`);
    writeFileSync(stale, validDocument('/nonexistent/bus', [], [{ name: 'org.ferrybus.Test.Stale', queue: [] }]).replace('{pid}', String(process.pid)).replace('{listen}', '3'), { mode: 0o600 });
    const bus = await startSnapshotBus(build);
    try {
      const client = await NextClient.connect(bus.address);
      try {
        expect((await client.driver('GetId'))[0]).not.toBe(GUID);
        expect(await busStatus(client)).toMatchObject({ generation: 1, names: 0 });
        expect(((await client.driver('ListNames'))[0] as string[]).filter((n) => !n.startsWith(':'))).toEqual(['org.freedesktop.DBus']);
      } finally {
        await client.disconnect();
      }
      expect(bus.process.stderr).not.toMatch(/handoff-(complete|document|restore|dropped)/);
    } finally {
      await bus.stop();
      rmSync(stale, { force: true });
    }
  });
});
