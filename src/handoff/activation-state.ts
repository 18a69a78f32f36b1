import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import type { ActivationVia, HeldMessage, PendingActivation, ServiceEntry } from '../bus/activation.js';
import type { Bus } from '../bus/bus.js';
import type { Peer } from '../bus/peer.js';
import { UnixFds } from '../bus/unix-fds.js';
import { setCloexec } from '../sys/libc.js';
import { closeFd } from '../sys/socket-io.js';
import { parseMessage } from '../wire/message.js';
import type { ActivationDoc, HeldMessageDoc, PendingActivationDoc } from './document.js';

/** Services being started and what waits for them, for the document; undefined when there is nothing. */
export function snapshotActivation(bus: Bus): ActivationDoc | undefined {
  const a = bus.activator;
  const children = a.launcher?.children?.() ?? [];
  if (a.pending.size === 0 && a.environment.size === 0 && children.length === 0) return undefined;
  return {
    ...(children.length > 0 ? { children } : {}),
    environment: [...a.environment],
    pending: [...a.pending.values()].map((p): PendingActivationDoc => ({
      name: p.name,
      via: p.via,
      deadline: p.deadline,
      ...(p.pid !== undefined ? { pid: p.pid } : {}),
      ...(p.entry ? { entry: entryDoc(p.entry) } : {}),
      held: p.held.map((h): HeldMessageDoc => ({
        sender: h.sender?.id ?? 0,
        start: h.startRequest,
        // A start request is answered, not delivered: its call is kept for the serial and flags.
        message: h.startRequest ? h.routed.message.bytes : Buffer.concat(h.routed.pieces),
        ...(h.routed.fds ? { fds: [...h.routed.fds.fds] } : {}),
      })),
    })),
  };
}

function entryDoc(e: ServiceEntry): NonNullable<PendingActivationDoc['entry']> {
  return {
    exec: e.exec,
    file: e.file,
    ...(e.user !== undefined ? { user: e.user } : {}),
    ...(e.systemdService !== undefined ? { systemdService: e.systemdService } : {}),
  };
}

/** Every fd the activation state names (kept open across the exec). */
export function activationFds(doc: ActivationDoc | undefined): number[] {
  return (doc?.pending ?? []).flatMap((p) => p.held.flatMap((h) => h.fds ?? []));
}

/**
 * Takes back what the previous image was starting: the variables, each pending activation with
 * the messages (and fds) it held, in order. A held message whose sender was not taken over, or
 * whose fds were not inherited, is dropped (its fds closed) and reported.
 */
export function restoreActivation(doc: ActivationDoc, bus: Bus, peers: ReadonlyMap<number, Peer>): string[] {
  const dropped: string[] = [];
  const a = bus.activator;
  for (const [k, v] of doc.environment) a.environment.set(k, v);
  for (const p of doc.pending) {
    // The service file as read then, unless the one in force now says otherwise.
    const entry: ServiceEntry | undefined = a.catalog.lookup(p.name) ?? (p.entry ? { name: p.name, ...p.entry } : undefined);
    const held: HeldMessage[] = [];
    for (const h of p.held) {
      const why = heldProblem(h, peers);
      if (why) {
        dropped.push(`message held for ${p.name}: ${why}`);
        closeAll(h.fds);
        continue;
      }
      const bytes = h.message;
      let routed;
      try {
        const msg = parseMessage(bytes);
        for (const fd of h.fds ?? []) setCloexec(fd, true);
        const fds = h.fds && h.fds.length > 0 ? new UnixFds(h.fds, closeFd) : undefined;
        const sender = h.sender === 0 ? 'org.freedesktop.DBus' : peers.get(h.sender)!.uniqueName!;
        routed = bus.routedMessage(msg, sender, h.start ? [] : [bytes], fds);
      } catch (err) {
        dropped.push(`message held for ${p.name}: ${(err as Error).message}`);
        closeAll(h.fds);
        continue;
      }
      held.push({ sender: h.sender === 0 ? undefined : peers.get(h.sender), routed, startRequest: h.start, bytes: h.start ? 0 : bytes.length });
    }
    const pending: PendingActivation = { name: p.name, entry, via: p.via as ActivationVia, deadline: p.deadline, pid: p.pid, held };
    a.restorePending(pending);
  }
  return dropped;
}

function heldProblem(h: HeldMessageDoc, peers: ReadonlyMap<number, Peer>): string | undefined {
  if (h.sender !== 0 && !peers.get(h.sender)?.uniqueName) return `its sender (peer ${h.sender}) was not taken over`;
  for (const fd of h.fds ?? []) {
    try {
      fs.fstatSync(fd);
    } catch {
      return `fd ${fd} was not inherited`;
    }
  }
  return undefined;
}

function closeAll(fds: readonly number[] | undefined): void {
  for (const fd of fds ?? []) {
    try {
      fs.closeSync(fd);
    } catch {
      // not inherited: nothing to close
    }
  }
}
