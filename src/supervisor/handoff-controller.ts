import * as path from 'node:path';
import { currentExecTarget, preflight, type ExecTarget } from '../handoff/exec-target.js';
import { createSpoolFile, handoffDirectory, removeHandoffFile, writeHandoffFile } from '../handoff/handoff-file.js';
import { SpoolWriter } from '../transport/spooled-bytes.js';
import { poller } from '../transport/poller.js';
import { HANDOFF_FORMAT, HANDOFF_FORMAT_SPOOLED, type HandoffDocument } from '../handoff/document.js';
import { encodeDocument } from '../handoff/binary-document.js';
import { reexec } from '../handoff/reexec.js';
import { RootSwitch } from '../handoff/root-switch.js';
import { snapshot } from '../handoff/snapshot.js';
import { activationFds } from '../handoff/activation-state.js';
import { loadLibc, randomBytes } from '../sys/libc.js';
import { FerryError } from '../util/errors.js';
import { holdOptimizingCompiler, releaseOptimizingCompiler } from '../util/start-up-compiler.js';
import type { Daemon } from './daemon.js';
import type { Logger } from './logger.js';
import { anchorFds, anchors } from './anchors.js';
import { notifySystemd } from './notify.js';

export const HANDOFF_ERROR = 'org.ferrybus.Error.HandoffFailed';

export interface HandoffCaller {
  peerId: number;
  serial: number;
}

/** Command-line flags that carry a handoff to the new image (beside the document). */
export interface HandoffArgs {
  document: string;
  nonce: string;
  listenFds: number[];
  generation: number;
  nextUniqueId: number;
  /** The node binary the new image was exec'd by (see currentExecTarget). */
  execPath?: string;
  /** The systemd notify socket, inherited (see anchors.ts). */
  notifyFd?: number;
  /** The old image's epoll set, inherited (formats 3 and 4; the document says what it watches). */
  pollFd?: number;
  /** When the old image called execve (CLOCK_MONOTONIC ns): where the pause's first phase ends. */
  execNs?: bigint;
}

export function handoffArgv(a: HandoffArgs): string[] {
  return [
    'daemon',
    `--handoff-document=${a.document}`,
    `--handoff-nonce=${a.nonce}`,
    `--handoff-listen-fds=${a.listenFds.join(',')}`,
    `--handoff-generation=${a.generation}`,
    `--handoff-next-unique=${a.nextUniqueId}`,
    ...(a.execPath ? [`--handoff-exec-path=${a.execPath}`] : []),
    ...(a.notifyFd !== undefined ? [`--handoff-notify-fd=${a.notifyFd}`] : []),
    ...(a.pollFd !== undefined ? [`--handoff-poll-fd=${a.pollFd}`] : []),
    ...(a.execNs !== undefined ? [`--handoff-exec-ns=${a.execNs}`] : []),
  ];
}

/** Reads the flags written by handoffArgv back, or undefined when this is not a handoff start. */
export function parseHandoffArgv(argv: readonly string[]): HandoffArgs | undefined {
  const flag = (name: string) => argv.find((a) => a.startsWith(`--handoff-${name}=`))?.slice(name.length + 11);
  const document = flag('document');
  if (argv[0] !== 'daemon' || document === undefined) return undefined;
  return {
    document,
    nonce: flag('nonce') ?? '',
    listenFds: (flag('listen-fds') ?? '').split(',').filter(Boolean).map(Number),
    generation: Number(flag('generation') ?? 2),
    nextUniqueId: Number(flag('next-unique') ?? 0),
    execPath: flag('exec-path') || undefined,
    notifyFd: flag('notify-fd') ? Number(flag('notify-fd')) : undefined,
    pollFd: flag('poll-fd') ? Number(flag('poll-fd')) : undefined,
    execNs: /^[0-9]{1,20}$/.test(flag('exec-ns') ?? '') ? BigInt(flag('exec-ns')!) : undefined,
  };
}

/** A queue this large belongs to a client that is not reading: spooled as a handoff starts. */
const SPOOL_FROM_BYTES = 64 * 1024;
/**
 * Snapshots taken and thrown away before the pause (see rehearse). Measured at 1 000
 * connections: the old image's part of the pause 16–24 ms with none, 11–15 with 3, 9–13 with 5.
 */
const REHEARSALS = 5;

/**
 * Runs handoffs one at a time: preflight while serving, then snapshot, write
 * and exec in one synchronous step. Every failure before exec leaves this image
 * serving; callers are told why.
 */
export class HandoffController {
  daemon!: Daemon;
  private running: { root: string; callers: HandoffCaller[] } | undefined;
  private readonly target: ExecTarget;

  /** `inheritedExecPath`: given by the handoff that started this image (HandoffArgs.execPath). */
  constructor(private readonly log: Logger, inheritedExecPath?: string) {
    this.target = currentExecTarget(inheritedExecPath);
  }

  get inProgress(): boolean {
    return this.running !== undefined;
  }

  /** Asks for a handoff into `root` ('' or '/' = in place). Failures are answered to the caller. */
  request(root: string, caller?: HandoffCaller): void {
    const normalized = root === '' ? '/' : path.resolve(root);
    if (this.running) {
      if (this.running.root === normalized) {
        if (caller) this.running.callers.push(caller);
        return;
      }
      this.fail([caller], new FerryError('HandoffBusy', `a handoff into ${this.running.root} is already running`));
      return;
    }
    this.running = { root: normalized, callers: caller ? [caller] : [] };
    void this.run(normalized);
  }

  private async run(root: string): Promise<void> {
    const started = process.hrtime.bigint();
    let rootSwitch: RootSwitch | undefined;
    notifySystemd({ RELOADING: 1, STATUS: `handing off into ${root}` }, this.log);
    try {
      // Everything the exec needs is loaded now: after a root switch nothing can be loaded by path.
      loadLibc();
      if (root !== '/') rootSwitch = RootSwitch.enter(root);
      const checking = preflight(this.target, root);
      this.spoolSlowQueues();
      // Together: a refusal ends the wait at once (and is never left unhandled meanwhile).
      const [checked, rehearsalMs] = await Promise.all([checking, this.rehearse(root)]);
      this.log.info('handoff-preflight', 'target image accepted the handoff', {
        root, version: checked.version, format: checked.format, ms: Number((process.hrtime.bigint() - started) / 1_000_000n),
        rehearsalMs: rehearsalMs.toFixed(1),
      });
      this.execNow(root, checked.format);
    } catch (err) {
      releaseOptimizingCompiler();
      try {
        rootSwitch?.back();
      } catch (backErr) {
        this.log.error('handoff-root-stuck', 'could not return to the previous root', { error: String(backErr) });
      }
      const callers = this.running?.callers ?? [];
      this.running = undefined;
      this.log.error('handoff-failed', 'handoff refused; this image keeps serving', { root, error: (err as Error).message });
      notifySystemd({ READY: 1, STATUS: `serving (generation ${this.daemon.generation}); last handoff failed` }, this.log);
      this.fail(callers, err as Error);
    }
  }

  /**
   * While the target image is checked (the bus serves meanwhile), the queues of clients that
   * are not reading move to a spool file: the pause then writes only what is queued after
   * this, and the new image sends the rest from the file. A failure leaves them in memory.
   */
  private spoolSlowQueues(): void {
    const slow = [...this.daemon.connections.all].filter((c) => c.outbound.size >= SPOOL_FROM_BYTES);
    if (slow.length === 0) return;
    const started = process.hrtime.bigint();
    let writer: SpoolWriter | undefined;
    let bytes = 0;
    try {
      writer = new SpoolWriter(createSpoolFile(handoffDirectory(process.getuid!(), process.env)));
      for (const conn of slow) bytes += conn.spoolOutbound(writer);
      this.log.info('handoff-spooled', 'queues of clients not reading moved to a spool file', {
        connections: slow.length, bytes, ms: Number((process.hrtime.bigint() - started) / 1_000_000n),
      });
    } catch (err) {
      this.log.warning('handoff-spool-failed', 'queues stay in memory: the handoff writes them into its document', {
        error: (err as Error).message, spooledBytes: bytes,
      });
    } finally {
      writer?.file.release();
    }
  }

  /**
   * While the target image is checked, the bus takes and encodes its snapshot REHEARSALS times
   * and throws it away (nothing is written), one event-loop turn each so clients are served in
   * between: the code the pause runs once per connection is then compiled, and optimized,
   * before the pause instead of inside it. Returns the ms the rehearsals held the event loop.
   */
  private async rehearse(root: string): Promise<number> {
    const handoff = this.running;
    let busyNs = 0n;
    for (let i = 0; i < REHEARSALS; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (this.running !== handoff) break; // refused meanwhile
      const t0 = process.hrtime.bigint();
      encodeDocument(this.snapshotNow(root, HANDOFF_FORMAT, '', t0), HANDOFF_FORMAT);
      busyNs += process.hrtime.bigint() - t0;
    }
    return Number(busyNs) / 1e6;
  }

  private snapshotNow(root: string, format: number, nonce: string, stoppedAtNs: bigint): HandoffDocument {
    const d = this.daemon;
    return snapshot({
      bus: d.bus,
      connections: d.connections,
      listeners: d.listeners,
      targets: d.targets,
      addresses: d.addresses,
      settings: d.settings,
      generation: d.generation,
      startedAt: d.startedAt,
      nonce,
      stoppedAtNs,
      handoffCallers: this.running?.callers ?? [],
      lastHandoff: { at: new Date().toISOString(), pauseUs: 0, root },
      complete: format < HANDOFF_FORMAT_SPOOLED,
    });
  }

  /** Snapshot, write, exec: synchronous, so no I/O callback runs in between. Returns only by throwing. */
  private execNow(root: string, format: number): never {
    const d = this.daemon;
    // Inside the pause V8 runs what the rehearsals compiled and compiles nothing more: an
    // optimization due now would be compiled on this thread (--no-concurrent-recompilation).
    holdOptimizingCompiler();
    const nonce = randomBytes(16).toString('hex');
    const doc = this.snapshotNow(root, format, nonce, process.hrtime.bigint());
    // The epoll set goes over as it is (formats 3 and 4): the new image registers no socket again.
    const handedPoller = format >= HANDOFF_FORMAT_SPOOLED ? poller().inheritance() : undefined;
    if (handedPoller) doc.poller = { watched: [...handedPoller.watched], writable: [...handedPoller.writable] };
    const { file, spoolFds } = writeHandoffFile(handoffDirectory(process.getuid!(), process.env), doc, format);
    const listenFds = doc.listeners.map((l) => l.fd);
    const { notifyFd } = anchors();
    // Most connections carry no fds: nothing is made for them.
    const messageFds: number[] = [];
    for (const c of doc.connections) {
      if (c.inboundFds) messageFds.push(...c.inboundFds);
      for (const m of c.outboundFds ?? []) messageFds.push(...m.fds);
    }
    messageFds.push(...activationFds(doc.activation));
    // Opened close-on-exec by the bus (accept4, recvmsg, node's open) or set so when restored.
    const own = [...doc.connections.map((c) => c.fd), ...messageFds, ...spoolFds, ...(handedPoller ? [handedPoller.fd] : [])];
    try {
      reexec(this.target, () => handoffArgv({
        document: file,
        nonce,
        listenFds,
        generation: d.generation + 1,
        nextUniqueId: d.bus.nextUniqueId,
        execPath: this.target.execPath,
        notifyFd,
        pollFd: handedPoller?.fd,
        execNs: process.hrtime.bigint(),
      }), [0, 1, 2, ...anchorFds(), ...listenFds], own);
    } catch (err) {
      removeHandoffFile(file);
      throw new FerryError('HandoffExecFailed', `exec of ${this.target.execPath} failed: ${(err as Error).message}`);
    }
  }

  private fail(callers: Array<HandoffCaller | undefined>, err: Error): void {
    for (const c of callers) {
      if (!c) continue;
      const peer = this.daemon.bus.peers.get(c.peerId);
      if (peer) this.daemon.bus.sendError(peer, c.serial, HANDOFF_ERROR, err.message);
    }
  }
}
