import { Buffer } from 'node:buffer';
import type { QueuedPart } from '../transport/spooled-bytes.js';

/**
 * The handoff document: everything a new image needs to take over the bus
 * (DESIGN.md §3). Versioned; file descriptors are referred to by number and checked
 * against what was actually inherited.
 *
 * Format 2 is one file: a fixed header (DOCUMENT_MAGIC, the format, the lengths of the two
 * parts), the JSON document, then one binary section holding every byte the document carries
 * (queued outbound bytes, half-received inbound bytes, held messages) back to back; the JSON
 * names them as {offset, length} ranges of that section. Format 1 (read still: an older image
 * hands off to this one) is the JSON alone, bytes as base64.
 *
 * Format 3 is format 2 where queued outbound bytes may stay in a file written
 * before (a spool file written as the handoff started, or an earlier document): the bus keeps
 * it open across exec, `files` names it by fd, and a range {file, offset, length} points into
 * it (offset: from the file's start). A connection's
 * outbound is then a list of ranges, in order. The reader does not read outbound bytes at all:
 * the new image sends them from the file (src/transport/spooled-bytes.ts). An image whose
 * target reads no format 3 writes format 2, the spooled bytes read back into the section.
 *
 * Format 4 (written now) is format 3 with the connections as a table: `connectionTable`, seven
 * integers per connection (CONNECTION_ROW), and `connectionDetails`, one object for each
 * connection that has more than those (authentication state, credentials read since, match
 * rules, bytes or fds in flight), naming its row by `at`. Most connections of a busy bus are
 * idle between messages: a thousand of them parse into one array, not seven thousand objects
 * (their parse and check took 15 ms of a handoff's pause, half of it first touches of memory).
 */
export const HANDOFF_FORMAT = 4;
/** Format 3: every connection one JSON object (written for a target that reads no 4). */
export const HANDOFF_FORMAT_SPOOLED = 3;
/** Format 2: every byte in the document's own section (written for a target that reads no 3). */
export const HANDOFF_FORMAT_BINARY = 2;
/** Format 1: JSON text, bytes in base64 (read only). */
export const HANDOFF_FORMAT_JSON = 1;
/** Formats this image can read: the current one and those before it. */
export const READABLE_FORMATS: readonly number[] = [HANDOFF_FORMAT, HANDOFF_FORMAT_SPOOLED, HANDOFF_FORMAT_BINARY, HANDOFF_FORMAT_JSON];
/** Formats this image can write, preferred first. */
export const WRITABLE_FORMATS: readonly number[] = [HANDOFF_FORMAT, HANDOFF_FORMAT_SPOOLED, HANDOFF_FORMAT_BINARY];
/** A document larger than this is refused before parsing (queues are bounded well below). */
export const MAX_DOCUMENT_BYTES = 1024 * 1024 * 1024;

/**
 * The first bytes of a format-2 file. Its first byte is not one JSON text can start with, so a
 * reader tells the two formats apart by it; the rest catches a file that only looks like one.
 */
export const DOCUMENT_MAGIC = Buffer.from([0x89, 0x46, 0x42, 0x48, 0x4f, 0x46, 0x46, 0x0a]); // \x89 "FBHOFF" \n
/** magic (8), format (u32 LE), JSON length (u32 LE), binary section length (u64 LE). */
export const DOCUMENT_HEADER_BYTES = 24;

/**
 * A format-4 connection row: fd, peer id, the peer's pid, uid and gid, the number of its unique
 * name (":1.N"; 0: none yet), flags (CONNECTION_UNIX_FDS).
 */
export const CONNECTION_ROW = 7;
/** Row flag: the client negotiated unix fd passing. */
export const CONNECTION_UNIX_FDS = 1;

/** Where a field's bytes are: in the binary section (formats 2, 3), or in an inherited file (3). */
export interface ByteRange {
  offset: number;
  length: number;
  /** Format 3: index into `files`; the offset is then from that file's start. */
  file?: number;
}

/** An earlier document's file, still holding queued bytes (format 3): open, by fd. */
export interface SpoolFileDoc {
  fd: number;
}

/** A document as snapshot() takes it, or as the bus reads it: outbound bytes in their parts. */
export type SnapshotDocument = HandoffDocument;

/**
 * A peer's credentials as far as they were read (src/transport/socket-credentials.ts): pid,
 * uid and gid always; format 3 leaves out groups not read yet, and has the label as a string,
 * null for none, or absent when not read yet (the new image reads them from the socket).
 * Formats 1 and 2 always carry groups, and an absent label there means none.
 */
export interface CredentialsDoc {
  uid: number;
  gid: number;
  pid: number;
  groups?: number[];
  securityLabel?: string | null;
}

export interface SaslDoc {
  phase: string;
  buffer: string;
  total: number;
  rejections: number;
  uid: number;
  /** NEGOTIATE_UNIX_FD was agreed. */
  unixFds?: boolean;
}

export interface ConnectionDoc {
  fd: number;
  peerId: number;
  credentials: CredentialsDoc;
  /** Set while the client is still authenticating. */
  sasl?: SaslDoc;
  uniqueName?: string;
  /** The client negotiated unix fd passing. */
  unixFds?: boolean;
  /** Received bytes that do not form a complete message yet. */
  inbound: Buffer;
  /** Fds (inherited, by number) received with `inbound`, in arrival order. */
  inboundFds?: number[];
  /**
   * Accepted bytes the kernel has not taken yet, in order, in the parts they are queued in
   * (written as they are, never gathered): bytes in memory, or ranges of a spool file.
   */
  outbound: readonly QueuedPart[];
  /** Where in `outbound` each message with fds starts, and its fds (inherited, by number). */
  outboundFds?: Array<{ at: number; fds: number[] }>;
  matches: string[];
  /** Present when the connection is a monitor: its rules. */
  monitorRules?: string[];
}

export interface ListenerDoc {
  fd: number;
  /** Socket path ('\0'-prefixed for abstract sockets) and the address clients use. */
  path: string;
  address: string;
}

export interface NameDoc {
  name: string;
  /** Primary owner first. */
  queue: Array<{ peerId: number; flags: number }>;
}

export interface PendingCallDoc {
  caller: number;
  serial: number;
  callee: number;
  /** When the bus answers NoReply itself (reply_timeout), ms since the epoch; absent: never. */
  expiresAt?: number;
}

/** A message (or StartServiceByName) waiting for a service to start. */
export interface HeldMessageDoc {
  /** The sender's peer id; 0 for the bus itself (a request waiting for systemd). */
  sender: number;
  /** StartServiceByName, answered once the name has an owner. */
  start: boolean;
  /** The message as it will be delivered (sender stitched in). */
  message: Buffer;
  /** Fds travelling with it (inherited, by number). */
  fds?: number[];
}

/** One service being started (src/bus/activation.ts). */
export interface PendingActivationDoc {
  name: string;
  via: 'exec' | 'systemd' | 'await-systemd';
  /** service_start_timeout's deadline, ms since the epoch. */
  deadline: number;
  /** The program started for it, still running: the new image keeps watching it. */
  pid?: number;
  /** The service file it was started from, as read then. */
  entry?: { exec: string; user?: string; systemdService?: string; file: string };
  held: HeldMessageDoc[];
}

export interface ActivationDoc {
  /** UpdateActivationEnvironment's variables. */
  environment: Array<[string, string]>;
  pending: PendingActivationDoc[];
  /** Every program the bus started that still runs (its children): the new image reaps them. */
  children?: number[];
}

export interface HandoffDocument {
  format: number;
  /** Random, also given to the new image on its command line: a stale file never matches. */
  nonce: string;
  pid: number;
  /** Generation that wrote the document; the reader is generation + 1. */
  generation: number;
  /** CLOCK_MONOTONIC (process.hrtime) in ns when serving stopped, for the pause. */
  stoppedAtNs: string;
  writtenAt: string;
  bus: {
    guid: string;
    machineId: string;
    kind: string;
    nextUniqueId: number;
    nextPeerId: number;
    driverSerial: number;
    startedAt: string;
  };
  settings: unknown;
  listeners: ListenerDoc[];
  connections: ConnectionDoc[];
  names: NameDoc[];
  pendingCalls: PendingCallDoc[];
  /** Handoff requests to answer once the new image serves: caller peer id + call serial. */
  handoffCallers: Array<{ peerId: number; serial: number }>;
  /** History for the CLI: when handoffs happened and how long they paused. */
  lastHandoff?: { at: string; pauseUs: number; root: string };
  /** Services being started and what waits for them; absent when nothing is. */
  activation?: ActivationDoc;
  /**
   * Format 3: the old image's epoll set, handed over open (its fd on the command line): which
   * of the handed-over fds are registered in it, and which of those for writability too.
   */
  poller?: { watched: number[]; writable: number[] };
}
