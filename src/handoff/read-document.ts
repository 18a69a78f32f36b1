import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { setCloexec } from '../sys/libc.js';
import { partsLength, SpooledBytes, SpoolFile, type QueuedPart } from '../transport/spooled-bytes.js';
import { FerryError } from '../util/errors.js';
import { isValidBusName, isValidWellKnownName } from '../wire/names.js';
import { bufferSection, fileSection, looksBinary, readHeader, sizeProblem, type ByteSection, type ContainerHeader } from './binary-document.js';
import {
  CONNECTION_ROW,
  CONNECTION_UNIX_FDS,
  DOCUMENT_HEADER_BYTES,
  HANDOFF_FORMAT,
  HANDOFF_FORMAT_BINARY,
  HANDOFF_FORMAT_JSON,
  HANDOFF_FORMAT_SPOOLED,
  MAX_DOCUMENT_BYTES,
  READABLE_FORMATS,
  type ActivationDoc,
  type ByteRange,
  type ConnectionDoc,
  type HeldMessageDoc,
  type PendingActivationDoc,
  type HandoffDocument,
  type ListenerDoc,
  type NameDoc,
  type PendingCallDoc,
} from './document.js';

/** A document that cannot be used at all: the handoff is refused or the state is dropped. */
export class HandoffError extends FerryError {}

export interface ReadResult {
  doc: HandoffDocument;
  /** Everything that was ignored or dropped, one line each: the caller logs them. */
  warnings: string[];
  /**
   * The files the queued bytes stay in (the document's own, earlier ones it names): the reader's
   * reference on each, released by the caller once the queues that point into them exist.
   */
  spools: SpoolFile[];
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isStr = (v: unknown): v is string => typeof v === 'string';

/** Takes a byte field out of the document: its bytes, or why it is unusable. */
type TakeBytes = (v: unknown) => Buffer | string;

/** A spool file a format-3 document names (an earlier document's, inherited open), or why it is unusable. */
type SpoolFileEntry = { spool: SpoolFile; size: number } | string;

/** Takes an outbound field: its parts (bytes, or ranges left in a spool file), or why it is unusable. */
type TakeQueued = (v: unknown, files: readonly SpoolFileEntry[]) => QueuedPart[] | string;

/** Where a document's bytes are, by format. */
interface ByteSource {
  bytes: TakeBytes;
  queued: TakeQueued;
  /** Format 3's `files`: checks and takes an inherited fd (a document read from bytes reaches none). */
  openFile(fd: number): SpoolFileEntry;
}

/** Format 1 has no spool files and one base64 string per field. */
const base64Source = (): ByteSource => ({
  bytes: base64Bytes,
  queued: (v) => {
    const bytes = base64Bytes(v);
    return typeof bytes === 'string' ? bytes : bytes.length > 0 ? [bytes] : [];
  },
  openFile: () => 'a format-1 document names no files',
});

/**
 * Format 1: base64, decoded once, here. Node's decoder skips what is not base64 instead of
 * failing, so a string that decodes to fewer bytes than its length promises held some.
 */
const base64Bytes: TakeBytes = (v) => {
  if (!isStr(v) || v.length % 4 !== 0) return 'bad byte fields';
  const bytes = Buffer.from(v, 'base64');
  const padding = v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0;
  return bytes.length === (v.length / 4) * 3 - padding ? bytes : 'bad byte fields';
};

/** Every empty byte field: a zero-length Buffer holds nothing to share (most connections' input). */
const NO_BYTES = Buffer.alloc(0);

/** Why a range of the binary section is unusable, or undefined. */
function rangeProblem(v: unknown, section: ByteSection): string | undefined {
  if (!isObj(v) || !isInt(v.offset) || !isInt(v.length) || v.file !== undefined) return 'bad byte fields';
  if (v.offset + v.length > section.length) {
    return `bytes at ${v.offset} (${v.length} of them) lie outside the ${section.length}-byte binary section`;
  }
  return undefined;
}

/**
 * Formats 2 and 3: ranges of the binary section, checked against its length, never decoded.
 * Format 3's outbound is one range or a list, each in the section or in a spool file.
 */
function rangeSource(format: number, section: ByteSection, openFile: ByteSource['openFile']): ByteSource {
  const read = <T>(take: () => T): T => {
    try {
      return take();
    } catch (err) {
      fatal(`cannot read the binary section: ${(err as Error).message}`);
    }
  };
  /** One range of an outbound field into `parts`, or why it is unusable. */
  const takeRange = (range: unknown, files: readonly SpoolFileEntry[], parts: QueuedPart[]): string | undefined => {
    if (isObj(range) && range.file !== undefined && format >= HANDOFF_FORMAT_SPOOLED) {
      if (!isInt(range.offset) || !isInt(range.length) || !isInt(range.file)) return 'bad byte fields';
      const file = files[range.file];
      if (file === undefined) return `bytes in file ${range.file}, which the document does not list`;
      if (typeof file === 'string') return file;
      if (range.offset + range.length > file.size) {
        return `bytes at ${range.offset} (${range.length} of them) lie outside spool file ${range.file} (${file.size} bytes)`;
      }
      if (range.length > 0) parts.push(new SpooledBytes(file.spool, range.offset, range.length));
      return undefined;
    }
    const why = rangeProblem(range, section);
    if (why) return why;
    if ((range as ByteRange).length > 0) parts.push(read(() => section.queued(range as ByteRange)));
    return undefined;
  };
  // A thousand connections in a busy handoff, most with nothing queued either way: no closure,
  // Buffer or list is made per field for them (each would be garbage to collect inside the pause).
  return {
    openFile,
    bytes: (v) => rangeProblem(v, section) ?? ((v as ByteRange).length === 0 ? NO_BYTES : read(() => section.bytes(v as ByteRange))),
    queued: (v, files) => {
      const parts: QueuedPart[] = [];
      if (!Array.isArray(v) || format < HANDOFF_FORMAT_SPOOLED) return takeRange(v, files, parts) ?? parts;
      for (const range of v) {
        const why = takeRange(range, files, parts);
        if (why) return why;
      }
      return parts;
    },
  };
}

/** A document read from bytes (inspect, tests) cannot reach the bus's fds: its spool files are named only. */
const unreachableFile = (): SpoolFileEntry => ({ spool: new SpoolFile(-1), size: Number.MAX_SAFE_INTEGER });

/**
 * An inherited spool file must be the bus's own (as a document is: its uid's, 0600) and a
 * regular file; it is close-on-exec again (execve kept it because the old image cleared it).
 */
export function openInheritedFile(fd: number): SpoolFileEntry {
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch {
    return `spool file fd ${fd} was not inherited`;
  }
  if (!st.isFile()) return `spool file fd ${fd} is not a regular file`;
  if (st.uid !== process.getuid!() || (st.mode & 0o077) !== 0) {
    return `spool file fd ${fd} is not private to the bus's uid (owner ${st.uid}, mode ${(st.mode & 0o777).toString(8)})`;
  }
  setCloexec(fd, true);
  return { spool: new SpoolFile(fd), size: st.size };
}

/**
 * Notes keys this reader does not know: logged and ignored, never fatal (newer writers add keys).
 * `index`: the record's place in the list `where` names (its text is made only for a warning).
 */
function unknownKeys(where: string, o: Obj, known: readonly string[] | ReadonlySet<string>, warnings: string[], index?: number): void {
  for (const k in o) {
    if (known instanceof Set ? known.has(k) : (known as readonly string[]).includes(k)) continue;
    warnings.push(`${index === undefined ? where : `${where}[${index}]`}: unknown key "${k}" ignored`);
  }
}

/** A connection record's keys (a thousand records in a busy handoff: looked up, not searched). */
const CONNECTION_KEYS: ReadonlySet<string> = new Set([
  'fd', 'peerId', 'credentials', 'sasl', 'uniqueName', 'unixFds', 'inbound', 'inboundFds', 'outbound', 'outboundFds',
  'matches', 'monitorRules',
]);

function fatal(why: string): never {
  throw new HandoffError('HandoffDocumentInvalid', why);
}

/**
 * Parses and checks a handoff document: the bytes of a format-2 file, or format-1 JSON text
 * (a string, or its bytes). Top-level damage (not a document, truncated, wrong format, wrong
 * nonce or pid) throws; a damaged record (one connection, one name) is dropped with a warning
 * so everyone else's state survives. The byte fields of a format-2 document are views into
 * `input`.
 */
export function readDocument(
  input: string | Buffer,
  expect: { nonce?: string; pid?: number } = {},
): ReadResult {
  if (typeof input !== 'string' && looksBinary(input)) {
    const h = header(input.subarray(0, DOCUMENT_HEADER_BYTES), input.length);
    const jsonEnd = DOCUMENT_HEADER_BYTES + h.jsonBytes;
    const source = rangeSource(h.format, bufferSection(input.subarray(jsonEnd)), unreachableFile);
    return readParsed(input.toString('utf8', DOCUMENT_HEADER_BYTES, jsonEnd), h, source, expect, []);
  }
  if (input.length > MAX_DOCUMENT_BYTES) fatal(`document of ${input.length} bytes exceeds ${MAX_DOCUMENT_BYTES}`);
  return readParsed(typeof input === 'string' ? input : input.toString('utf8'), undefined, base64Source(), expect, []);
}

/**
 * readDocument for an open file of `size` bytes (`file`: it, as a spool file): the header and
 * the JSON are read first, then only the byte ranges of records that are kept, each into a
 * Buffer of its own (fileSection); queued outbound bytes are not read, they stay in the file
 * (and in the earlier files a format-3 document names, inherited open).
 */
export function readDocumentFile(file: SpoolFile, size: number, expect: { nonce?: string; pid?: number } = {}): ReadResult {
  const fd = file.fd;
  if (size > MAX_DOCUMENT_BYTES) fatal(`document of ${size} bytes exceeds ${MAX_DOCUMENT_BYTES}`);
  const head = readAt(fd, Math.min(DOCUMENT_HEADER_BYTES, size), 0);
  if (!looksBinary(head)) {
    // Format 1 is read whole: nothing points into the file afterwards.
    const read = readDocument(fs.readFileSync(fd, 'utf8'), expect);
    return { ...read, spools: [file] };
  }
  const h = header(head, size);
  const json = readAt(fd, h.jsonBytes, DOCUMENT_HEADER_BYTES).toString('utf8');
  const source = rangeSource(h.format, fileSection(file, DOCUMENT_HEADER_BYTES + h.jsonBytes, h.sectionBytes), openInheritedFile);
  return readParsed(json, h, source, expect, [file]);
}

/** `length` bytes at `position` (pread: the file's offset stays where it was). */
function readAt(fd: number, length: number, position: number): Buffer {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, length - done, position + done);
    if (n === 0) fatal(`truncated: the file ended at ${position + done} bytes`);
    done += n;
  }
  return out;
}

/** A format-2 header, checked: magic, a format this image reads, the size it announces. */
function header(head: Buffer, fileBytes: number): ContainerHeader {
  const h = readHeader(head, fileBytes);
  if (typeof h === 'string') fatal(h);
  checkReadable(h.format);
  if (h.format === HANDOFF_FORMAT_JSON) fatal(`format ${h.format} is JSON text, but this file has a binary header`);
  const why = sizeProblem(h, fileBytes);
  if (why) fatal(why);
  return h;
}

function checkReadable(format: number): void {
  if (!READABLE_FORMATS.includes(format)) {
    throw new HandoffError(
      'HandoffFormatUnsupported',
      `document format ${format} is not readable by this image (reads ${READABLE_FORMATS.join(', ')})`,
    );
  }
}

/** The JSON part, whichever format: `container` is the binary header (format 2) or absent (format 1). */
function readParsed(
  text: string,
  container: ContainerHeader | undefined,
  source: ByteSource,
  expect: { nonce?: string; pid?: number },
  spools: SpoolFile[],
): ReadResult {
  const takeBytes = source.bytes;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    fatal(`document is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObj(raw)) fatal('document is not a JSON object');
  const warnings: string[] = [];
  if (!isInt(raw.format)) fatal('document has no format number');
  checkReadable(raw.format);
  if (container && raw.format !== container.format) fatal(`the header says format ${container.format}, the JSON format ${raw.format}`);
  if (!container && raw.format !== HANDOFF_FORMAT_JSON) fatal(`a format-${raw.format} document is a binary file; this is JSON text alone`);
  if (!isStr(raw.nonce)) fatal('document has no nonce');
  if (expect.nonce !== undefined && raw.nonce !== expect.nonce) {
    fatal('document nonce does not match: it was left by another handoff');
  }
  if (!isInt(raw.pid, 1)) fatal('document has no pid');
  if (expect.pid !== undefined && raw.pid !== expect.pid) {
    fatal(`document was written by pid ${raw.pid}, not this process (${expect.pid})`);
  }
  if (!isInt(raw.generation)) fatal('document has no generation');
  const bus = raw.bus;
  if (!isObj(bus) || !isStr(bus.guid) || !/^[0-9a-f]{32}$/.test(bus.guid)) fatal('document has no valid bus guid');
  if (!isInt(bus.nextUniqueId, 0) || !isInt(bus.nextPeerId, 1) || !isInt(bus.driverSerial, 1, 0xffffffff)) {
    fatal('document has invalid bus counters');
  }
  unknownKeys('bus', bus, ['guid', 'machineId', 'kind', 'nextUniqueId', 'nextPeerId', 'driverSerial', 'startedAt'], warnings);
  const spooled = raw.format >= HANDOFF_FORMAT_SPOOLED;
  const tabled = raw.format >= HANDOFF_FORMAT;
  unknownKeys('document', raw, [
    'format', 'nonce', 'pid', 'generation', 'stoppedAtNs', 'writtenAt', 'bus', 'settings', 'listeners',
    'names', 'pendingCalls', 'handoffCallers', 'lastHandoff', 'activation',
    ...(tabled ? ['connectionTable', 'connectionDetails'] : ['connections']),
    ...(spooled ? ['files', 'poller'] : []),
  ], warnings);

  const listeners = list(raw.listeners, 'listeners', warnings).filter((l, i): l is ListenerDoc => {
    const ok = isObj(l) && isInt(l.fd) && isStr(l.path) && isStr(l.address);
    if (!ok) warnings.push(`listeners[${i}]: malformed, dropped`);
    else unknownKeys(`listeners[${i}]`, l, ['fd', 'path', 'address'], warnings);
    return ok;
  });
  const usedFds = new Set<number>(listeners.map((l) => l.fd));
  // Earlier documents' files, still holding queued bytes: a bad one drops the connections with bytes in it.
  const files: SpoolFileEntry[] = !spooled ? [] : list(raw.files, 'files', warnings).map((f, i) => {
    if (!isObj(f) || !isInt(f.fd, 0, 1 << 30)) return `files[${i}] is malformed`;
    if (usedFds.has(f.fd)) return `files[${i}]: fd ${f.fd} used twice`;
    usedFds.add(f.fd);
    const opened = source.openFile(f.fd);
    if (typeof opened !== 'string') spools.push(opened.spool);
    return opened;
  });
  const peerIds = new Set<number>();
  const uniqueNames = new Set<string>();
  let nextUniqueId = bus.nextUniqueId;
  const connections: ConnectionDoc[] = [];
  const takeQueued = (v: unknown) => source.queued(v, files);
  /**
   * A checked record joins the others unless it claims what another already holds. Where it
   * was (`list[index]`) is put into words only for a warning: a thousand records, no strings.
   */
  const admit: Admit = (conn, list, index, record, known) => {
    if (usedFds.has(conn.fd)) return void warnings.push(`${list}[${index}]: fd ${conn.fd} used twice; dropped`);
    if (peerIds.has(conn.peerId)) return void warnings.push(`${list}[${index}]: peer id ${conn.peerId} used twice; dropped`);
    // Two peers answering to one unique name would receive each other's messages.
    if (conn.uniqueName !== undefined && uniqueNames.has(conn.uniqueName)) {
      return void warnings.push(`${list}[${index}]: unique name ${conn.uniqueName} used twice; dropped`);
    }
    if (record && known) unknownKeys(list, record, known, warnings, index);
    if (conn.inboundFds || conn.outboundFds) {
      const messageFds = [...(conn.inboundFds ?? []), ...(conn.outboundFds ?? []).flatMap((m) => m.fds)];
      const reused = messageFds.find((fd) => usedFds.has(fd) || fd === conn.fd || messageFds.indexOf(fd) !== messageFds.lastIndexOf(fd));
      if (reused !== undefined) return void warnings.push(`${list}[${index}]: fd ${reused} used twice; dropped`);
      for (const fd of messageFds) usedFds.add(fd);
    }
    usedFds.add(conn.fd);
    peerIds.add(conn.peerId);
    if (conn.uniqueName !== undefined) {
      uniqueNames.add(conn.uniqueName);
      // A unique name is never handed out twice: the counter must be past every name in use.
      const n = Number(conn.uniqueName.slice(3));
      if (n >= nextUniqueId) {
        warnings.push(`bus: nextUniqueId ${nextUniqueId} is not above ${conn.uniqueName} (a connection's unique name); raised to ${n + 1}`);
        nextUniqueId = n + 1;
      }
    }
    connections.push(conn);
  };
  /** A record as format 3 and before write it (or a row with its details): checked, its bytes taken. */
  const admitRecord: AdmitRecord = (c, list, index, known) => {
    const checked = checkConnection(c, takeBytes, takeQueued, spooled);
    if (typeof checked === 'string') return void warnings.push(`${list}[${index}]: ${checked}; connection dropped`);
    // The parsed record is this reader's own: its fields are replaced by their bytes in place.
    admit(Object.assign(c as Obj, checked) as unknown as ConnectionDoc, list, index, c as Obj, known);
  };
  if (tabled) {
    readConnectionTable(raw.connectionTable, raw.connectionDetails, warnings, admit, admitRecord);
  } else {
    list(raw.connections, 'connections', warnings).forEach((c, i) => admitRecord(c, 'connections', i, CONNECTION_KEYS));
  }
  const names: NameDoc[] = [];
  const seenNames = new Set<string>();
  list(raw.names, 'names', warnings).forEach((n, i) => {
    if (!isObj(n) || !isStr(n.name) || !Array.isArray(n.queue)) return warnings.push(`names[${i}]: malformed, dropped`);
    if (!isValidWellKnownName(n.name)) return warnings.push(`names[${i}]: ${JSON.stringify(n.name)} is not a valid well-known name; dropped`);
    if (seenNames.has(n.name)) return warnings.push(`names[${i}] (${n.name}): listed twice; dropped`);
    const queue = n.queue.filter(
      (o): o is { peerId: number; flags: number } => isObj(o) && isInt(o.peerId) && isInt(o.flags, 0, 7) && peerIds.has(o.peerId),
    );
    if (queue.length !== n.queue.length) warnings.push(`names[${i}] (${n.name}): ${n.queue.length - queue.length} unknown owners dropped`);
    const queued = new Set<number>();
    const unique = queue.filter((o) => {
      if (queued.has(o.peerId)) {
        warnings.push(`names[${i}] (${n.name}): peer ${o.peerId} queued twice; the later entry dropped`);
        return false;
      }
      queued.add(o.peerId);
      return true;
    });
    if (unique.length === 0) return;
    seenNames.add(n.name);
    names.push({ name: n.name, queue: unique });
  });
  const pendingCalls = list(raw.pendingCalls, 'pendingCalls', warnings).filter((p): p is PendingCallDoc => {
    const ok = isObj(p) && isInt(p.caller) && isInt(p.serial, 1, 0xffffffff) && isInt(p.callee) &&
      peerIds.has(p.caller) && peerIds.has(p.callee) &&
      (p.expiresAt === undefined || (typeof p.expiresAt === 'number' && Number.isFinite(p.expiresAt)));
    if (!ok) warnings.push('pendingCalls: a malformed or orphaned entry dropped');
    return ok;
  });
  const handoffCallers = list(raw.handoffCallers, 'handoffCallers', warnings).filter(
    (h): h is { peerId: number; serial: number } => isObj(h) && isInt(h.peerId) && isInt(h.serial, 1, 0xffffffff),
  );
  const last = raw.lastHandoff;
  const lastHandoff = isObj(last) && isStr(last.at) && isInt(last.pauseUs) && isStr(last.root)
    ? { at: last.at, pauseUs: last.pauseUs, root: last.root }
    : undefined;
  if (last !== undefined && !lastHandoff) warnings.push('lastHandoff: malformed, dropped');
  const activation = raw.activation === undefined ? undefined : readActivation(raw.activation, peerIds, usedFds, takeBytes, warnings);
  const poller = spooled && raw.poller !== undefined ? readPoller(raw.poller, warnings) : undefined;
  const doc: HandoffDocument = {
    format: raw.format,
    nonce: raw.nonce,
    pid: raw.pid,
    generation: raw.generation,
    stoppedAtNs: isStr(raw.stoppedAtNs) && /^[0-9]+$/.test(raw.stoppedAtNs) ? raw.stoppedAtNs : '0',
    writtenAt: isStr(raw.writtenAt) ? raw.writtenAt : '',
    bus: {
      guid: bus.guid,
      machineId: isStr(bus.machineId) ? bus.machineId : '',
      kind: isStr(bus.kind) ? bus.kind : 'session',
      nextUniqueId,
      nextPeerId: bus.nextPeerId,
      driverSerial: bus.driverSerial,
      startedAt: isStr(bus.startedAt) ? bus.startedAt : '',
    },
    settings: raw.settings,
    listeners,
    connections,
    names,
    pendingCalls,
    handoffCallers,
    lastHandoff,
    ...(activation ? { activation } : {}),
    ...(poller ? { poller } : {}),
  };
  return { doc, warnings, spools };
}

/** The epoll set's registrations; malformed: dropped (the new image registers every socket itself). */
function readPoller(raw: unknown, warnings: string[]): HandoffDocument['poller'] {
  const fds = (v: unknown) => Array.isArray(v) && v.every((fd) => isInt(fd, 0, 1 << 30));
  if (isObj(raw) && fds(raw.watched) && fds(raw.writable)) return { watched: raw.watched as number[], writable: raw.writable as number[] };
  warnings.push('poller: malformed, dropped');
  return undefined;
}

const VIAS = ['exec', 'systemd', 'await-systemd'];

/**
 * Services being started: a damaged held message is dropped alone, a damaged activation with
 * what it held (its senders then get nothing, as if the service had failed before they asked).
 */
function readActivation(
  raw: unknown, peerIds: ReadonlySet<number>, usedFds: Set<number>, takeBytes: TakeBytes, warnings: string[],
): ActivationDoc | undefined {
  if (!isObj(raw)) {
    warnings.push('activation: malformed, dropped');
    return undefined;
  }
  unknownKeys('activation', raw, ['environment', 'pending', 'children'], warnings);
  const children = [...new Set(list(raw.children, 'activation.children', warnings).filter((pid): pid is number => isInt(pid, 1)))];
  const environment = list(raw.environment, 'activation.environment', warnings).filter(
    (e): e is [string, string] => Array.isArray(e) && e.length === 2 && isStr(e[0]) && isStr(e[1]),
  );
  const pending: PendingActivationDoc[] = [];
  const names = new Set<string>();
  list(raw.pending, 'activation.pending', warnings).forEach((p, i) => {
    const where = `activation.pending[${i}]`;
    if (!isObj(p) || !isStr(p.name) || !isValidBusName(p.name) || names.has(p.name) || !VIAS.includes(p.via as string) ||
        typeof p.deadline !== 'number' || !Number.isFinite(p.deadline) || (p.pid !== undefined && !isInt(p.pid, 1))) {
      return warnings.push(`${where}: malformed, dropped with what it held`);
    }
    const e = p.entry;
    const entryOk = e === undefined || (isObj(e) && isStr(e.exec) && isStr(e.file) &&
      (e.user === undefined || isStr(e.user)) && (e.systemdService === undefined || isStr(e.systemdService)));
    if (!entryOk) return warnings.push(`${where}: bad service entry, dropped with what it held`);
    unknownKeys(where, p, ['name', 'via', 'deadline', 'pid', 'entry', 'held'], warnings);
    const held: HeldMessageDoc[] = [];
    list(p.held, `${where}.held`, warnings).forEach((h, k) => {
      const at = `${where}.held[${k}]`;
      if (!isObj(h) || !isInt(h.sender) || (h.sender !== 0 && !peerIds.has(h.sender)) || typeof h.start !== 'boolean') {
        return warnings.push(`${at}: malformed or orphaned, dropped`);
      }
      const message = takeBytes(h.message);
      if (typeof message === 'string' || message.length === 0) {
        return warnings.push(`${at}: ${typeof message === 'string' && message !== 'bad byte fields' ? message : 'malformed or orphaned'}, dropped`);
      }
      const fds = h.fds;
      if (fds !== undefined && (!Array.isArray(fds) || !fds.every((fd) => isInt(fd, 0, 1 << 30)))) return warnings.push(`${at}: bad fds, dropped`);
      const reused = (fds ?? []).find((fd, n, all) => usedFds.has(fd as number) || all.indexOf(fd) !== n);
      if (reused !== undefined) return warnings.push(`${at}: fd ${String(reused)} used twice, dropped`);
      for (const fd of fds ?? []) usedFds.add(fd as number);
      held.push({ sender: h.sender, start: h.start, message, ...(fds ? { fds: fds as number[] } : {}) });
    });
    names.add(p.name);
    pending.push({
      name: p.name, via: p.via as PendingActivationDoc['via'], deadline: p.deadline,
      ...(p.pid !== undefined ? { pid: p.pid as number } : {}),
      ...(e !== undefined ? { entry: e as NonNullable<PendingActivationDoc['entry']> } : {}),
      held,
    });
  });
  return { environment, pending, ...(children.length > 0 ? { children } : {}) };
}

/** Adds a checked connection unless it clashes with one before it; `record`'s keys not `known` are noted. */
type Admit = (conn: ConnectionDoc, list: string, index: number, record?: Obj, known?: ReadonlySet<string>) => void;
/** Checks a connection record (its byte fields still ranges) and admits it, or notes why not. */
type AdmitRecord = (c: unknown, list: string, index: number, known: ReadonlySet<string>) => void;

const NO_RULES: readonly string[] = Object.freeze([]);
const EMPTY_RANGE = (): ByteRange => ({ offset: 0, length: 0 });

/** Why the row at `r` cannot be a connection, or undefined. */
function rowProblem(cells: readonly unknown[], r: number): string | undefined {
  if (!isInt(cells[r], 0, 1 << 30)) return 'bad fd';
  if (!isInt(cells[r + 1], 1)) return 'bad peer id';
  if (!isInt(cells[r + 2], 0) || !isInt(cells[r + 3], 0, 0xffffffff) || !isInt(cells[r + 4], 0, 0xffffffff)) return 'bad credentials';
  if (!isInt(cells[r + 5], 0)) return 'bad unique name';
  if (!isInt(cells[r + 6], 0, CONNECTION_UNIX_FDS)) return 'bad flags';
  return undefined;
}

/**
 * Format 4's connections: rows of CONNECTION_ROW integers, details for those with more. A row
 * without details is checked here, integer by integer, and becomes its record with nothing
 * else to read; a row with details becomes the record format 3 would hold, checked as one.
 */
function readConnectionTable(table: unknown, rawDetails: unknown, warnings: string[], admit: Admit, admitRecord: AdmitRecord): void {
  const cells = list(table, 'connectionTable', warnings);
  const rows = Math.floor(cells.length / CONNECTION_ROW);
  if (cells.length % CONNECTION_ROW !== 0) {
    warnings.push(`connectionTable: ${cells.length} numbers, not rows of ${CONNECTION_ROW}; the last ${cells.length % CONNECTION_ROW} ignored`);
  }
  const details = new Map<number, Obj | undefined>();
  list(rawDetails, 'connectionDetails', warnings).forEach((d, k) => {
    if (!isObj(d) || !isInt(d.at, 0, rows - 1)) return warnings.push(`connectionDetails[${k}]: names no connection row; dropped`);
    if (details.has(d.at)) warnings.push(`connectionDetails[${k}]: row ${d.at} described twice; its connection dropped`);
    // A row described twice has no details one can trust: undefined drops it below.
    details.set(d.at, details.has(d.at) ? undefined : d);
  });
  for (let i = 0; i < rows; i++) {
    const r = i * CONNECTION_ROW;
    const why = rowProblem(cells, r) ?? (details.has(i) && details.get(i) === undefined ? 'described twice' : undefined);
    if (why) {
      warnings.push(`connectionTable[${i}]: ${why}; connection dropped`);
      continue;
    }
    // Checked above: integers in range.
    const fd = cells[r] as number, peerId = cells[r + 1] as number, pid = cells[r + 2] as number;
    const uid = cells[r + 3] as number, gid = cells[r + 4] as number, unique = cells[r + 5] as number, flags = cells[r + 6] as number;
    const detail = details.get(i);
    if (detail === undefined) {
      const conn: ConnectionDoc = { fd, peerId, credentials: { uid, gid, pid }, inbound: NO_BYTES, outbound: [], matches: NO_RULES as string[] };
      if (unique > 0) conn.uniqueName = `:1.${unique}`;
      if (flags & CONNECTION_UNIX_FDS) conn.unixFds = true;
      admit(conn, 'connectionTable', i);
      continue;
    }
    const { at: _, uniqueName, groups, securityLabel, ...rest } = detail;
    if (uniqueName !== undefined && unique > 0) {
      warnings.push(`connectionTable[${i}]: two unique names; connection dropped`);
      continue;
    }
    const credentials: Obj = { uid, gid, pid };
    if (groups !== undefined) credentials.groups = groups;
    if (securityLabel !== undefined) credentials.securityLabel = securityLabel;
    // What the row says, the details cannot change.
    const record: Obj = { inbound: EMPTY_RANGE(), outbound: EMPTY_RANGE(), matches: [], ...rest, fd, peerId, credentials };
    delete record.unixFds;
    if (unique > 0 || uniqueName !== undefined) record.uniqueName = unique > 0 ? `:1.${unique}` : uniqueName;
    if (flags & CONNECTION_UNIX_FDS) record.unixFds = true;
    // Keys neither the row nor the details explain are noted as the record's.
    admitRecord(record, 'connectionTable', i, CONNECTION_KEYS);
  }
}

function list(v: unknown, where: string, warnings: string[]): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    warnings.push(`${where}: not a list, ignored`);
    return [];
  }
  return v;
}

const isGroups = (v: unknown): boolean => Array.isArray(v) && v.every((g) => isInt(g, 0, 0xffffffff));

/** Why a connection record is unusable, or its bytes. */
function checkConnection(
  c: unknown, takeBytes: TakeBytes, takeQueued: (v: unknown) => QueuedPart[] | string, partialCredentials: boolean,
): string | { inbound: Buffer; outbound: QueuedPart[] } {
  if (!isObj(c)) return 'not an object';
  if (!isInt(c.fd, 0, 1 << 30)) return 'bad fd';
  if (!isInt(c.peerId, 1)) return 'bad peer id';
  const cr = c.credentials;
  if (!isObj(cr) || !isInt(cr.uid, 0, 0xffffffff) || !isInt(cr.gid, 0, 0xffffffff) || !isInt(cr.pid, 0)) {
    return 'bad credentials';
  }
  if (partialCredentials ? cr.groups !== undefined && !isGroups(cr.groups) : !isGroups(cr.groups)) return 'bad groups';
  if (partialCredentials ? cr.securityLabel !== undefined && cr.securityLabel !== null && !isStr(cr.securityLabel) : cr.securityLabel !== undefined && !isStr(cr.securityLabel)) {
    return 'bad security label';
  }
  // Formats 1 and 2 read every credential: no label there means none.
  if (!partialCredentials) cr.securityLabel ??= null;
  const inbound = takeBytes(c.inbound);
  if (typeof inbound === 'string') return inbound;
  const outbound = takeQueued(c.outbound);
  if (typeof outbound === 'string') return outbound;
  if (c.unixFds !== undefined && typeof c.unixFds !== 'boolean') return 'bad unixFds';
  const isFd = (fd: unknown) => isInt(fd, 0, 1 << 30);
  if (c.inboundFds !== undefined && (!Array.isArray(c.inboundFds) || !c.inboundFds.every(isFd))) return 'bad inbound fds';
  if (c.outboundFds !== undefined) {
    const length = partsLength(outbound);
    const ok = Array.isArray(c.outboundFds) && c.outboundFds.every((m, k, all) =>
      isObj(m) && isInt(m.at, 0, length - 1) && Array.isArray(m.fds) && m.fds.length > 0 && m.fds.every(isFd) &&
      (k === 0 || (all[k - 1] as { at: number }).at < m.at));
    if (!ok) return 'bad outbound fds';
  }
  if (!Array.isArray(c.matches) || !c.matches.every(isStr)) return 'bad match rules';
  if (c.monitorRules !== undefined && (!Array.isArray(c.monitorRules) || !c.monitorRules.every(isStr))) {
    return 'bad monitor rules';
  }
  if (c.sasl !== undefined) {
    const s = c.sasl;
    if (!isObj(s) || !isStr(s.phase) || !isStr(s.buffer) || !isInt(s.total) || !isInt(s.rejections) || !isInt(s.uid, -1) ||
        (s.unixFds !== undefined && typeof s.unixFds !== 'boolean')) {
      return 'bad authentication state';
    }
  }
  if (c.uniqueName !== undefined && (!isStr(c.uniqueName) || !/^:1\.[0-9]+$/.test(c.uniqueName))) return 'bad unique name';
  return { inbound, outbound };
}
