import { partsLength } from '../transport/spooled-bytes.js';
import * as fs from 'node:fs';
import { MAX_DOCUMENT_BYTES, type HandoffDocument } from '../handoff/document.js';
import { HandoffError, readDocument } from '../handoff/read-document.js';
import { CliError } from './cli-error.js';
import { nameFlags } from './supervisor-client.js';
import { formatBytes, formatFields, formatTable, listCell, printJson } from './table.js';

export interface InspectArgs {
  file: string;
  json?: boolean;
}

interface OwnerReport {
  peerId: number;
  uniqueName: string | null;
  flags: string[];
}

/** What `ferrybus inspect` reports: the document as an operator reads it (no nonce, no bytes). */
export interface InspectReport {
  file: string;
  format: number;
  /** The generation that wrote the document; the image reading it becomes generation + 1. */
  generation: number;
  pid: number;
  writtenAt: string;
  bus: { guid: string; machineId: string; kind: string; startedAt: string; nextUniqueName: string };
  lastHandoff: HandoffDocument['lastHandoff'] | null;
  listeners: Array<{ fd: number; path: string; address: string }>;
  connections: Array<{
    fd: number;
    peerId: number;
    uniqueName: string | null;
    pid: number;
    uid: number;
    gid: number;
    state: 'authenticating' | 'connected' | 'monitor';
    ownedNames: string[];
    queuedNames: string[];
    matchRules: number;
    monitorRules: number | null;
    inboundBytes: number;
    outboundBytes: number;
    /** Fds (by number, inherited) travelling in the half-received and the queued messages. */
    inboundFds: number[];
    outboundFds: number[];
  }>;
  names: Array<{ name: string; owner: OwnerReport; queue: OwnerReport[] }>;
  pendingCalls: Array<{ caller: string; serial: number; callee: string }>;
  /** Services being started, and what waits for them (messages, start requests, their fds). */
  activations: Array<{
    name: string;
    via: string;
    pid: number | null;
    unit: string | null;
    deadline: string;
    waiting: Array<{ sender: string; kind: 'message' | 'start'; bytes: number; fds: number[] }>;
  }>;
  /** Handoff callers the next image answers. */
  handoffCallers: number;
  /** Everything the reader ignored or dropped: a damaged record does not stop a handoff. */
  warnings: string[];
}

/**
 * Reads a document (the bytes of a format-2 file, or format-1 JSON text) as the daemon's new
 * image would (without its nonce and pid checks) and summarizes it.
 */
export function inspectDocument(file: string, contents: string | Buffer): InspectReport {
  const { doc, warnings } = readDocument(contents);
  const byPeer = new Map(doc.connections.map((c) => [c.peerId, c]));
  const uniqueOf = (peerId: number) => byPeer.get(peerId)?.uniqueName ?? null;
  const owned = new Map<number, string[]>();
  const queued = new Map<number, string[]>();
  for (const n of doc.names) {
    n.queue.forEach((o, i) => {
      const into = i === 0 ? owned : queued;
      if (!into.has(o.peerId)) into.set(o.peerId, []);
      into.get(o.peerId)!.push(n.name);
    });
  }
  const owner = (o: { peerId: number; flags: number }): OwnerReport => ({
    peerId: o.peerId,
    uniqueName: uniqueOf(o.peerId),
    flags: nameFlags(o.flags),
  });
  return {
    file,
    format: doc.format,
    generation: doc.generation,
    pid: doc.pid,
    writtenAt: doc.writtenAt,
    bus: {
      guid: doc.bus.guid,
      machineId: doc.bus.machineId,
      kind: doc.bus.kind,
      startedAt: doc.bus.startedAt,
      nextUniqueName: `:1.${doc.bus.nextUniqueId}`,
    },
    lastHandoff: doc.lastHandoff ?? null,
    listeners: doc.listeners.map((l) => ({ fd: l.fd, path: l.path.startsWith('\0') ? `@${l.path.slice(1)}` : l.path, address: l.address })),
    connections: doc.connections.map((c) => ({
      fd: c.fd,
      peerId: c.peerId,
      uniqueName: c.uniqueName ?? null,
      pid: c.credentials.pid,
      uid: c.credentials.uid,
      gid: c.credentials.gid,
      state: c.monitorRules ? 'monitor' : c.sasl || !c.uniqueName ? 'authenticating' : 'connected',
      ownedNames: owned.get(c.peerId) ?? [],
      queuedNames: queued.get(c.peerId) ?? [],
      matchRules: c.matches.length,
      monitorRules: c.monitorRules ? c.monitorRules.length : null,
      inboundBytes: c.inbound.length,
      outboundBytes: partsLength(c.outbound),
      inboundFds: c.inboundFds ?? [],
      outboundFds: (c.outboundFds ?? []).flatMap((m) => m.fds),
    })),
    names: doc.names.map((n) => ({ name: n.name, owner: owner(n.queue[0]!), queue: n.queue.slice(1).map(owner) })),
    pendingCalls: doc.pendingCalls.map((p) => ({
      caller: uniqueOf(p.caller) ?? `peer #${p.caller}`,
      serial: p.serial,
      callee: uniqueOf(p.callee) ?? `peer #${p.callee}`,
    })),
    activations: (doc.activation?.pending ?? []).map((p) => ({
      name: p.name,
      via: p.via,
      pid: p.pid ?? null,
      unit: p.entry?.systemdService ?? null,
      deadline: new Date(p.deadline).toISOString(),
      waiting: p.held.map((h) => ({
        sender: h.sender === 0 ? 'org.freedesktop.DBus' : uniqueOf(h.sender) ?? `peer #${h.sender}`,
        kind: h.start ? 'start' as const : 'message' as const,
        bytes: h.message.length,
        fds: h.fds ?? [],
      })),
    })),
    handoffCallers: doc.handoffCallers.length,
    warnings,
  };
}

/** Reads the file, refusing what cannot be a document before parsing it. */
function readDocumentFile(file: string): Buffer {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    const hint = code === 'ENOENT' ? ' (documents live in /run/ferrybus/handoff/ and are deleted once the new image read them)' : '';
    throw new CliError(`cannot read ${file}: ${code}${hint}`);
  }
  if (stat.isDirectory()) {
    const docs = fs.readdirSync(file).filter((f) => f.endsWith('.json'));
    throw new CliError(`${file} is a directory; name a document in it${docs.length ? ` (${docs.join(', ')})` : ' (it holds none)'}`);
  }
  if (stat.size > MAX_DOCUMENT_BYTES) {
    throw new CliError(`${file} is not a valid handoff document: ${stat.size} bytes exceeds the limit of ${MAX_DOCUMENT_BYTES}`);
  }
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** `ferrybus inspect FILE`: a handoff document, read without a daemon. */
export function runInspectCommand(args: InspectArgs): void {
  const contents = readDocumentFile(args.file);
  let report: InspectReport;
  try {
    report = inspectDocument(args.file, contents);
  } catch (err) {
    if (err instanceof HandoffError) {
      throw new CliError(
        err.code === 'HandoffFormatUnsupported'
          ? `${args.file} is a handoff document this ferrybus cannot read: ${err.message}`
          : `${args.file} is not a valid handoff document: ${err.message}`,
      );
    }
    throw err;
  }
  if (args.json) {
    printJson(report);
    return;
  }
  printReport(report);
}

function printReport(r: InspectReport): void {
  const out: string[] = [];
  const last = r.lastHandoff;
  out.push(
    formatFields([
      ['file', r.file],
      ['format', String(r.format)],
      ['generation', `${r.generation} (read by the next image as generation ${r.generation + 1})`],
      ['pid', String(r.pid)],
      ['written at', r.writtenAt || '?'],
      ['bus guid', r.bus.guid],
      ['kind', r.bus.kind],
      ['started', r.bus.startedAt || '?'],
      ['next unique', r.bus.nextUniqueName],
      ['last handoff', last ? `${last.at} (pause ${(last.pauseUs / 1000).toFixed(1)} ms, into ${last.root || '/'})` : 'none'],
      ['callers', `${r.handoffCallers} awaiting the Handoff reply`],
    ]),
  );
  const right = (header: string) => ({ header, align: 'right' as const });
  out.push(`\nListeners (${r.listeners.length}):\n`);
  out.push(formatTable([right('FD'), 'PATH', 'ADDRESS'], r.listeners.map((l) => [String(l.fd), l.path, l.address])));
  out.push(`\nConnections (${r.connections.length}):\n`);
  out.push(
    formatTable(
      [right('FD'), 'UNIQUE', right('PID'), right('UID'), 'STATE', 'NAMES', right('MATCHES'), right('INBOUND'), right('OUTBOUND'), right('FDS')],
      r.connections.map((c) => [
        String(c.fd),
        c.uniqueName ?? '-',
        String(c.pid),
        String(c.uid),
        c.state,
        listCell([...c.ownedNames, ...c.queuedNames.map((n) => `${n} (queued)`)]),
        String(c.monitorRules ?? c.matchRules),
        formatBytes(c.inboundBytes),
        formatBytes(c.outboundBytes),
        String(c.inboundFds.length + c.outboundFds.length),
      ]),
    ),
  );
  const who = (o: OwnerReport) => o.uniqueName ?? `peer #${o.peerId}`;
  out.push(`\nNames (${r.names.length}):\n`);
  out.push(
    formatTable(
      ['NAME', 'OWNER', 'FLAGS', 'QUEUED'],
      r.names.map((n) => [
        n.name,
        who(n.owner),
        listCell(n.owner.flags),
        listCell(n.queue.map((q) => (q.flags.length ? `${who(q)} (${q.flags.join(',')})` : who(q)))),
      ]),
    ),
  );
  out.push(`\nPending method calls (${r.pendingCalls.length}):\n`);
  out.push(formatTable(['CALLER', '', 'CALLEE', right('SERIAL')], r.pendingCalls.map((p) => [p.caller, '→', p.callee, String(p.serial)])));
  if (r.activations.length > 0) {
    out.push(`\nServices being started (${r.activations.length}):\n`);
    out.push(formatTable(
      ['NAME', 'VIA', right('PID'), 'DEADLINE', right('WAITING'), right('BYTES'), right('FDS')],
      r.activations.map((a) => [
        a.name,
        a.unit ? `${a.via} (${a.unit})` : a.via,
        a.pid === null ? '-' : String(a.pid),
        a.deadline,
        String(a.waiting.length),
        formatBytes(a.waiting.reduce((n, w) => n + w.bytes, 0)),
        String(a.waiting.reduce((n, w) => n + w.fds.length, 0)),
      ]),
    ));
  }
  if (r.warnings.length > 0) {
    out.push(`\nWarnings (${r.warnings.length}): the daemon would ignore or drop these\n`);
    for (const w of r.warnings) out.push(`  ${w}\n`);
  }
  process.stdout.write(out.join(''));
}
