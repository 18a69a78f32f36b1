import { readBody, stitchSenderPieces, type Header, type Message } from '../wire/message.js';
import type { MatchTarget } from './match-rule.js';
import type { Peer } from './peer.js';
import type { PolicyMessage } from './policy.js';
import type { UnixFds } from './unix-fds.js';

/**
 * A message on its way through the router: the header parsed once, the bytes to
 * forward (sender stitched in, when first needed), and body arguments decoded
 * only if a match rule asks for them.
 */
export class RoutedMessage implements MatchTarget, PolicyMessage {
  private args: unknown[] | null | undefined;
  /** The peer the destination resolved to; set by the router before any rule is evaluated. */
  recipient: Peer | undefined;

  private stitched: readonly Buffer[] | undefined;

  constructor(
    readonly message: Message,
    /** Unique name of the sender, or org.freedesktop.DBus. */
    readonly sender: string,
    /** The bytes every receiver gets, as pieces; omitted: stitched on first delivery. */
    pieces: readonly Buffer[] | undefined,
    private readonly owns: (sender: string, name: string) => boolean,
    /** The fds that travel with it (unix fd passing), held by whoever queues it. */
    readonly fds?: UnixFds,
  ) {
    this.stitched = pieces;
  }

  /**
   * The bytes every receiver gets, as pieces written in order (sender stitched in).
   * Built on first use: a call to the driver or to a name nobody owns is never forwarded.
   */
  get pieces(): readonly Buffer[] {
    this.stitched ??= stitchSenderPieces(this.message, this.sender);
    return this.stitched;
  }

  get header(): Header {
    return this.message.header;
  }
  get type(): number {
    return this.message.header.type;
  }
  get interface(): string | undefined {
    return this.message.header.interface;
  }
  get member(): string | undefined {
    return this.message.header.member;
  }
  get path(): string | undefined {
    return this.message.header.path;
  }
  get destination(): string | undefined {
    return this.message.header.destination;
  }
  get errorName(): string | undefined {
    return this.message.header.errorName;
  }
  get isReply(): boolean {
    return this.message.header.replySerial !== undefined;
  }
  get unixFds(): number {
    return this.message.header.unixFds ?? 0;
  }

  senderOwns(name: string): boolean {
    return this.owns(this.sender, name);
  }

  addressedTo(name: string): boolean {
    const to = this.recipient?.uniqueName;
    if (to === undefined) return name === this.destination;
    return name === to || this.owns(to, name);
  }

  textArg(index: number): { value: string; code: 's' | 'o' } | undefined {
    if (this.args === undefined) {
      try {
        this.args = readBody(this.message);
      } catch {
        // A body that does not parse matches no argN rule; the bus forwards bodies unchecked.
        this.args = null;
      }
    }
    const value = this.args?.[index];
    if (typeof value !== 'string') return undefined;
    const code = this.message.header.signature[argPosition(this.message.header.signature, index)];
    return code === 's' || code === 'o' ? { value, code } : undefined;
  }
}

/** Index in the signature string where top-level argument `index` starts. */
function argPosition(sig: string, index: number): number {
  let pos = 0;
  for (let arg = 0; arg < index && pos < sig.length; arg++) pos = skipType(sig, pos);
  return pos;
}

function skipType(sig: string, pos: number): number {
  const c = sig[pos];
  if (c === 'a') return skipType(sig, pos + 1);
  if (c === '(' || c === '{') {
    const close = c === '(' ? ')' : '}';
    pos++;
    while (sig[pos] !== close && pos < sig.length) pos = skipType(sig, pos);
    return pos + 1;
  }
  return pos + 1;
}
