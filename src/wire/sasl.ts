import { Buffer } from 'node:buffer';
/**
 * The server side of D-Bus authentication (SASL, "Authentication Protocol" in the
 * specification) as a pure state machine: bytes in, bytes out. It never sees a
 * socket; the peer's uid comes from SO_PEERCRED and is given to the constructor.
 *
 * Supported: the leading NUL credentials byte, EXTERNAL (with or without an
 * initial response), DATA, CANCEL, ERROR, NEGOTIATE_UNIX_FD (AGREE_UNIX_FD when the
 * transport passes fds, else ERROR) and BEGIN pipelined with the first message.
 */
export type SaslResult =
  | { state: 'continue'; reply: string }
  | { state: 'authenticated'; reply: string; uid: number; rest: Buffer }
  | { state: 'failed'; reply: string; reason: string };

export interface SaslOptions {
  /** The uid the kernel reports for the peer (SO_PEERCRED). */
  peerUid: number;
  /** The bus GUID sent with OK. */
  guid: string;
  /** Mechanisms offered in REJECTED; only EXTERNAL is implemented. */
  mechanisms?: readonly string[];
  /** Whether unix fd passing may be negotiated. */
  unixFds?: boolean;
  /** Rejections before the connection is closed. */
  maxRejections?: number;
  /** The connect check (the policy's <allow user=…>); a refused uid is REJECTED like a bad credential. */
  allowUid?: (uid: number) => boolean;
}

const MAX_LINE = 16 * 1024;
const MAX_TOTAL = 64 * 1024;

type Phase = 'nul' | 'auth' | 'data' | 'begin' | 'done' | 'failed';

export interface SaslState {
  phase: string;
  buffer: string;
  total: number;
  rejections: number;
  uid: number;
  /** NEGOTIATE_UNIX_FD was agreed (absent: not). */
  unixFds?: boolean;
}

export class SaslServer {
  private phase: Phase = 'nul';
  private buffer = '';
  private total = 0;
  private rejections = 0;
  private uid = -1;
  unixFdsNegotiated = false;

  constructor(private readonly opts: SaslOptions) {}

  /** The conversation so far, for a handoff in the middle of authentication. */
  exportState(): SaslState {
    return {
      phase: this.phase, buffer: this.buffer, total: this.total, rejections: this.rejections, uid: this.uid,
      ...(this.unixFdsNegotiated ? { unixFds: true } : {}),
    };
  }

  /** Continues a conversation exported by an earlier image; unknown phases restart it. */
  static fromState(opts: SaslOptions, state: SaslState): SaslServer {
    const server = new SaslServer(opts);
    const phases: readonly string[] = ['nul', 'auth', 'data', 'begin'];
    server.phase = phases.includes(state.phase) ? (state.phase as Phase) : 'nul';
    server.buffer = state.buffer.slice(0, MAX_LINE);
    server.total = Math.min(state.total, MAX_TOTAL);
    server.rejections = state.rejections;
    server.uid = state.uid;
    server.unixFdsNegotiated = state.unixFds === true && opts.unixFds === true;
    return server;
  }

  /** Feeds received bytes. The reply (possibly empty) must be written to the peer. */
  feed(chunk: Buffer): SaslResult {
    let reply = '';
    let i = 0;
    if (this.phase === 'nul' && chunk.length > 0) {
      if (chunk[0] !== 0) return this.fail('', 'first byte is not NUL');
      this.phase = 'auth';
      i = 1;
    }
    while (i < chunk.length) {
      const nl = chunk.indexOf(0x0a, i);
      const end = nl < 0 ? chunk.length : nl + 1;
      const piece = chunk.toString('latin1', i, end);
      this.total += end - i;
      i = end;
      this.buffer += piece;
      if (this.buffer.length > MAX_LINE || this.total > MAX_TOTAL) {
        return this.fail(reply, 'authentication line too long');
      }
      if (nl < 0) break;
      const line = this.buffer;
      this.buffer = '';
      if (!line.endsWith('\r\n')) return this.fail(reply, 'line not terminated by CRLF');
      const step = this.handle(line.slice(0, -2));
      reply += step.reply;
      if (step.failed) return this.fail(reply, step.failed);
      if (this.phase === 'done') {
        return { state: 'authenticated', reply, uid: this.uid, rest: chunk.subarray(i) };
      }
    }
    return { state: 'continue', reply };
  }

  private fail(reply: string, reason: string): SaslResult {
    this.phase = 'failed';
    return { state: 'failed', reply, reason };
  }

  private rejected(): { reply: string; failed?: string } {
    this.phase = 'auth';
    const reply = `REJECTED ${(this.opts.mechanisms ?? ['EXTERNAL']).join(' ')}\r\n`;
    if (++this.rejections >= (this.opts.maxRejections ?? 8)) return { reply, failed: 'too many rejected attempts' };
    return { reply };
  }

  private handle(line: string): { reply: string; failed?: string } {
    const space = line.indexOf(' ');
    const command = space < 0 ? line : line.slice(0, space);
    const arg = space < 0 ? '' : line.slice(space + 1);
    switch (this.phase) {
      case 'auth':
        if (command === 'AUTH') return this.auth(arg);
        if (command === 'BEGIN') return { reply: '', failed: 'BEGIN before authentication' };
        // CANCEL outside an AUTH conversation is an error, not a rejection (spec, WaitingForAuth).
        if (command === 'ERROR') return this.rejected();
        return { reply: 'ERROR "Unknown command"\r\n' };
      case 'data':
        if (command === 'DATA') return this.external(arg);
        if (command === 'BEGIN') return { reply: '', failed: 'BEGIN before authentication' };
        if (command === 'CANCEL' || command === 'ERROR') return this.rejected();
        // Anything else answers ERROR and keeps waiting for DATA (spec, WaitingForData).
        return { reply: 'ERROR "Unknown command"\r\n' };
      case 'begin':
        if (command === 'BEGIN') {
          this.phase = 'done';
          return { reply: '' };
        }
        if (command === 'NEGOTIATE_UNIX_FD') {
          if (this.opts.unixFds) {
            this.unixFdsNegotiated = true;
            return { reply: 'AGREE_UNIX_FD\r\n' };
          }
          return { reply: 'ERROR "Unix fd passing is not supported by this bus"\r\n' };
        }
        if (command === 'CANCEL' || command === 'ERROR') return this.rejected();
        return { reply: 'ERROR "Unknown command"\r\n' };
      default:
        return { reply: '', failed: 'authentication already finished' };
    }
  }

  private auth(arg: string): { reply: string; failed?: string } {
    const space = arg.indexOf(' ');
    const mechanism = space < 0 ? arg : arg.slice(0, space);
    const initial = space < 0 ? undefined : arg.slice(space + 1);
    const offered = this.opts.mechanisms ?? ['EXTERNAL'];
    if (mechanism !== 'EXTERNAL' || !offered.includes('EXTERNAL')) return this.rejected();
    if (initial === undefined) {
      this.phase = 'data';
      return { reply: 'DATA\r\n' };
    }
    return this.external(initial);
  }

  /** EXTERNAL: the identity is the kernel's; a claimed uid must match it. */
  private external(hex: string): { reply: string; failed?: string } {
    if (hex !== '') {
      if (!/^([0-9a-fA-F]{2})+$/.test(hex)) return this.rejected();
      const claimed = Buffer.from(hex, 'hex').toString('latin1');
      if (!/^[0-9]+$/.test(claimed) || Number(claimed) !== this.opts.peerUid) return this.rejected();
    }
    if (this.opts.allowUid && !this.opts.allowUid(this.opts.peerUid)) return this.rejected();
    this.uid = this.opts.peerUid;
    this.phase = 'begin';
    return { reply: `OK ${this.opts.guid}\r\n` };
  }
}
