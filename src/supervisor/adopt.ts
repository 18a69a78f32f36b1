import * as fs from 'node:fs';
import type { DriverMethod } from '../bus/driver.js';
import type { HandoffDocument } from '../handoff/document.js';
import { handoffDirectory, readHandoffFile } from '../handoff/handoff-file.js';
import type { SpoolFile } from '../transport/spooled-bytes.js';
import { restore } from '../handoff/restore.js';
import { isListeningSocket, setCloexecFrom } from '../sys/libc.js';
import { formatAddressEntry, type ListenTarget } from '../transport/address.js';
import { Listener } from '../transport/listener.js';
import { inheritPoller, poller } from '../transport/poller.js';
import { closeFd, isEpollSet } from '../sys/socket-io.js';
import { Daemon, listenerLogOf, type DaemonSettings, type RuntimeState } from './daemon.js';
import type { HandoffArgs } from './handoff-controller.js';
import { newBusGuid, readMachineId } from './identity.js';
import type { Logger } from './logger.js';
import { anchorFds } from './anchors.js';
import { rereadSettings } from './settings.js';
import { formatHandoffPhases, handoffPhases } from './handoff-phases.js';
import { startMarks } from '../util/start-marks.js';
import type { ServiceDirConfig } from './config-types.js';

function adoptListener(fd: number, onClient: (fd: number) => void, log: Logger): Listener | string {
  try {
    if (!fs.fstatSync(fd).isSocket()) return `fd ${fd} is not a socket`;
  } catch {
    return `fd ${fd} was not inherited`;
  }
  if (!isListeningSocket(fd)) return `fd ${fd} is not a listening socket`;
  try {
    return new Listener(fd, onClient, listenerLogOf(log));
  } catch (err) {
    return `fd ${fd}: ${(err as Error).message}`;
  }
}

function settingsOf(doc: HandoffDocument | undefined): DaemonSettings {
  const s = doc?.settings as Partial<DaemonSettings> | undefined;
  return {
    listen: Array.isArray(s?.listen) ? s.listen.filter((l): l is string => typeof l === 'string') : [],
    kind: typeof s?.kind === 'string' ? s.kind : (doc?.bus.kind ?? 'session'),
    limits: typeof s?.limits === 'object' && s.limits !== null ? s.limits : {},
    source: typeof s?.source === 'object' && s.source !== null ? s.source : undefined,
    // Checked rule by rule when compiled; a malformed one fails closed (see compilePolicy).
    policies: Array.isArray(s?.policies) ? s.policies : undefined,
    serviceDirs: Array.isArray(s?.serviceDirs) ? s.serviceDirs.filter(isServiceDir) : undefined,
    runtime: runtimeOf(s?.runtime),
  };
}

/** A service directory entry as the old image recorded it; anything else is dropped. */
function isServiceDir(raw: unknown): raw is ServiceDirConfig {
  if (typeof raw !== 'object' || raw === null) return false;
  const d = raw as Record<string, unknown>;
  const source = d.source as Record<string, unknown> | undefined;
  if (typeof source !== 'object' || source === null || typeof source.file !== 'string' || typeof source.line !== 'number') return false;
  return (d.kind === 'dir' && typeof d.path === 'string') || d.kind === 'standard-session' || d.kind === 'standard-system';
}

/** The pid file and systemd's socket files, as the old image recorded them; anything else is dropped. */
function runtimeOf(raw: unknown): RuntimeState | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const runtime: RuntimeState = {};
  if (typeof r.pidFile === 'string' && r.pidFile !== '') runtime.pidFile = r.pidFile;
  if (Array.isArray(r.systemdSocketPaths)) {
    runtime.systemdSocketPaths = r.systemdSocketPaths.filter((p): p is string => typeof p === 'string');
  }
  return runtime;
}

/**
 * Sockets inherited but not accounted for (a document we could not read): close them so clients
 * see EOF, not a hang. Files of the handoff directory nobody holds (spool files of a document
 * that could not be read) are closed too, or their bytes would stay on /run until the bus exits.
 */
function closeStrays(keep: Set<number>, log: Logger): number {
  const handoffDir = `${handoffDirectory(process.getuid!(), process.env)}/`;
  let closed = 0;
  let fds: string[];
  try {
    fds = fs.readdirSync('/proc/self/fd');
  } catch {
    return 0;
  }
  for (const name of fds) {
    const fd = Number(name);
    if (fd <= 2 || keep.has(fd) || anchorFds().includes(fd)) continue;
    try {
      const st = fs.fstatSync(fd);
      if (st.isSocket() && !isListeningSocket(fd)) {
        fs.closeSync(fd);
        closed++;
      } else if (st.isFile() && fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(handoffDir)) {
        fs.closeSync(fd);
        log.warning('handoff-spool-dropped', `closed fd ${fd}, a spool file no restored queue points into`);
      }
    } catch {
      // the readdir fd itself, or already closed
    }
  }
  if (closed > 0) log.error('handoff-dropped-connections', `closed ${closed} inherited client connections that could not be restored`);
  return closed;
}

/**
 * The old image's epoll set becomes this image's poller: its registrations of the sockets the
 * document hands over stand as they are. Without a usable document it is closed (the sockets
 * are registered in a set of this image's own); an fd that is no epoll set is left alone.
 */
function takeOverPoller(fd: number, doc: HandoffDocument | undefined, log: Logger): void {
  if (doc?.poller) {
    const handedOver = new Set([...doc.listeners.map((l) => l.fd), ...doc.connections.map((c) => c.fd)]);
    const watched = doc.poller.watched.filter((w) => handedOver.has(w));
    if (inheritPoller({ fd, watched, writable: doc.poller.writable })) return;
    log.warning('handoff-poller-lost', `fd ${fd} is not the epoll set the document names: every socket is registered again`);
    return;
  }
  if (isEpollSet(fd)) closeFd(fd);
}

/** An adopted daemon, and the answer to whoever asked for the handoff (see adoptDaemon). */
export interface Adopted {
  daemon: Daemon;
  /** Replies to the Handoff callers: (generation, pause). */
  answerCallers(): void;
}

/**
 * The new image's side of a handoff: take over the inherited listening sockets
 * and connections described by the document. A document that cannot be read
 * still leaves a serving bus: the listeners come from the command line.
 * The callers are answered when the caller of this says so: once the new image watches its
 * configuration, so that a file written after the answer is never missed.
 */
export function adoptDaemon(args: HandoffArgs, log: Logger, extraMethods: readonly DriverMethod[]): Adopted {
  const adoptNs = process.hrtime.bigint();
  // The old image cleared close-on-exec on everything it handed over; no program this image
  // starts may inherit a client's socket. One call for all of them where the kernel can.
  const cloexecDone = setCloexecFrom(3);
  let doc: HandoffDocument | undefined;
  let spools: SpoolFile[] = [];
  let documentWarnings = 0;
  try {
    const read = readHandoffFile(args.document, { nonce: args.nonce, pid: process.pid });
    doc = read.doc;
    spools = read.spools;
    documentWarnings = read.warnings.length;
    for (const w of read.warnings) log.warning('handoff-document-warning', w);
  } catch (err) {
    log.error('handoff-document-unusable', 'handoff document unusable: every client connection is dropped, the bus keeps listening', {
      document: args.document,
      error: (err as Error).message,
    });
  } finally {
    try {
      fs.unlinkSync(args.document);
    } catch {
      // gone already
    }
  }

  const documentNs = process.hrtime.bigint();
  if (args.pollFd !== undefined) takeOverPoller(args.pollFd, doc, log);
  const settings = rereadSettings(settingsOf(doc), log);
  const machine = doc?.bus.machineId ? { id: doc.bus.machineId } : readMachineId();
  const identity = {
    guid: doc?.bus.guid ?? newBusGuid(),
    machineId: machine.id,
    startedAt: doc?.bus.startedAt || new Date().toISOString(),
  };
  const { bus, connections, services } = Daemon.createCore(settings, identity, log, extraMethods);
  // Unique names are never reused, even when the document is lost.
  if (!doc) bus.restoreCounters(args.nextUniqueId, 1, 1);

  const listenerDocs = doc?.listeners ?? args.listenFds.map((fd) => ({ fd, path: '', address: '' }));
  const listeners: Listener[] = [];
  const targets: ListenTarget[] = [];
  const addresses: string[] = [];
  for (const l of listenerDocs) {
    const listener = adoptListener(l.fd, (fd) => connections.accept(fd), log);
    if (typeof listener === 'string') {
      log.error('handoff-listener-lost', `listening socket not adopted: ${listener}`);
      continue;
    }
    listeners.push(listener);
    targets.push({ path: l.path, abstract: l.path.startsWith('\0'), address: { transport: 'unix', params: { path: l.path } } });
    addresses.push(l.address || formatAddressEntry({ transport: 'unix', params: { guid: identity.guid } }));
  }

  const daemon = new Daemon(bus, connections, listeners, targets, addresses, settings, identity, log, services);
  daemon.generation = args.generation;
  if (!doc) {
    closeStrays(new Set(args.listenFds), log);
    return { daemon, answerCallers: () => {} };
  }
  const coreNs = process.hrtime.bigint();
  const report = restore(doc, bus, connections, cloexecDone);
  poller().settleInherited();
  // The queues hold what they still need of the spool files; the rest closes now.
  for (const spool of spools) spool.release();
  const openSpools = spools.filter((s) => s.open).map((s) => s.fd);
  for (const line of report.dropped) log.error('handoff-restore-dropped', line);
  // A client whose record was dropped (damaged, or its fd is not what the record says) would
  // otherwise wait forever on a socket nobody reads: close it so it sees the end.
  // The fds restore handed to connections, sockets in their queued messages included (those
  // are the clients', not strays). One closed since (its replayed input was malformed) closed
  // them itself; leaving their numbers alone here is all that follows.
  const adopted = new Set<number>([...report.keptFds, ...openSpools]);
  // Fds in messages held for a starting service belong to their senders too.
  for (const fd of bus.activator.heldFds()) adopted.add(fd);
  // The old image left everything but what the document names close-on-exec: with every record
  // taken as written, nothing else came across, and the search (a readdir of /proc/self/fd and
  // an fstat of each unknown fd) is skipped.
  if (report.dropped.length > 0 || documentWarnings > 0) closeStrays(adopted, log);
  // Programs an earlier image started are this process's children: still watched, and reaped
  // when they end — those still being activated, and those that took their name long ago.
  services.launcher.adopt([...bus.activator.runningPids(), ...(doc?.activation?.children ?? [])]);
  const doneNs = process.hrtime.bigint();
  const stoppedNs = BigInt(doc.stoppedAtNs);
  const pauseUs = Number((doneNs - stoppedNs) / 1000n);
  const phases = handoffPhases({ stoppedNs, execNs: args.execNs, ...startMarks(), adoptNs, documentNs, coreNs, doneNs });
  daemon.lastHandoff = { at: new Date().toISOString(), pauseUs, root: doc.lastHandoff?.root ?? '/', phases };
  log.notice('handoff-complete', 'handoff complete: serving as the new generation', {
    generation: daemon.generation,
    pauseMs: (pauseUs / 1000).toFixed(1),
    phasesMs: formatHandoffPhases(phases),
    connections: report.connections,
    names: report.names,
    matches: report.matches,
    pendingCalls: report.pendingCalls,
    dropped: report.dropped.length,
  });
  const answerCallers = () => {
    for (const c of doc.handoffCallers) {
      const peer = bus.peers.get(c.peerId);
      if (peer) bus.sendReply(peer, c.serial, 'ut', [daemon.generation, BigInt(pauseUs)]);
    }
  };
  return { daemon, answerCallers };
}
