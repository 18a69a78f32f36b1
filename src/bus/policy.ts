// The busconfig security policy (dbus-daemon(1) "<policy>"), compiled for the router.
//
// A config's <policy> blocks are compiled once per load into rule lists: default, per uid,
// per gid, at_console and mandatory. Each connection takes a snapshot at authentication (and
// on reload) holding only the rules that can apply to it, in dbus-daemon's order: default,
// then its groups, then its user, then at_console, then mandatory. The last matching rule
// wins, so checks scan each snapshot from its end and stop at the first match.
//
// Deliberate choices (each written down because dbus-daemon or dbus-broker differ):
// - A connection's groups are the kernel's (SO_PEERGROUPS plus the primary gid), as in
//   dbus-broker; dbus-daemon asks the user database. They differ only for a process that
//   changed its groups, and the kernel's answer is the one that cannot be stale.
// - at_console="true" never matches and at_console="false" always does: Debian's dbus-daemon
//   has no console database either. Both are deprecated; the config reader warns.

import { MessageType } from '../wire/message.js';

/** A <policy> block as the config reader hands it over (plain data, also in a handoff). */
export interface PolicySource {
  readonly selector:
    | { readonly context: 'default' | 'mandatory' }
    | { readonly user: string }
    | { readonly group: string }
    | { readonly atConsole: boolean };
  readonly rules: ReadonlyArray<{
    readonly kind: 'allow' | 'deny';
    readonly attributes: Readonly<Record<string, string>>;
    readonly source: { readonly file: string; readonly line: number };
  }>;
  readonly source?: { readonly file: string; readonly line: number };
}

/** Name lookups in the user database; undefined for a name that does not exist. */
export interface IdentityLookup {
  uidOf(user: string): number | undefined;
  gidOf(group: string): number | undefined;
}

/** One <allow>/<deny> about messages: every field left undefined matches anything. */
export interface MessageRule {
  readonly allow: boolean;
  readonly type: number | undefined;
  readonly path: string | undefined;
  readonly interface: string | undefined;
  readonly member: string | undefined;
  readonly error: string | undefined;
  /** send_destination / receive_sender. */
  readonly name: string | undefined;
  /** send_destination_prefix: name is a prefix. */
  readonly namePrefix: boolean;
  /** send_broadcast: undefined = any. */
  readonly broadcast: boolean | undefined;
  readonly requestedReply: boolean;
  readonly eavesdrop: boolean;
  readonly minFds: number;
  readonly maxFds: number;
  /** log="true": an allowed message is logged. */
  readonly log: boolean;
  readonly where: string;
}

export interface OwnRule {
  readonly allow: boolean;
  /** undefined = any name (own="*"). */
  readonly name: string | undefined;
  readonly prefix: boolean;
}

interface ConnectRule {
  readonly allow: boolean;
  readonly uid?: number | '*';
  readonly gid?: number | '*';
}

interface RuleList {
  send: MessageRule[];
  receive: MessageRule[];
  own: OwnRule[];
  connect: ConnectRule[];
}

function emptyList(): RuleList {
  return { send: [], receive: [], own: [], connect: [] };
}

const TYPES: Record<string, number> = {
  method_call: MessageType.MethodCall,
  method_return: MessageType.MethodReturn,
  error: MessageType.Error,
  signal: MessageType.Signal,
};

const SEND_ATTRIBUTES = [
  'send_interface', 'send_member', 'send_error', 'send_destination', 'send_destination_prefix',
  'send_path', 'send_type', 'send_requested_reply', 'send_broadcast',
];
const RECEIVE_ATTRIBUTES = [
  'receive_interface', 'receive_member', 'receive_error', 'receive_sender', 'receive_path',
  'receive_type', 'receive_requested_reply',
];

/** The most unix fds a message may carry (the specification's limit): max_fds's default. */
const MAX_MESSAGE_FDS = 253;

export class PolicyCompileError extends Error {}

/** "*" means "any" for every field, as in dbus-daemon. */
function field(value: string | undefined): string | undefined {
  return value === undefined || value === '*' ? undefined : value;
}

function bool(value: string | undefined, fallback: boolean): boolean {
  return value === undefined ? fallback : value === 'true';
}

function fds(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 ? Math.min(n, MAX_MESSAGE_FDS) : fallback;
}

/** Turns one <allow>/<deny> into the rule it means (which kind follows dbus-daemon's reading). */
function compileRule(
  rule: PolicySource['rules'][number],
  ids: IdentityLookup,
  warn: (message: string) => void,
): { send?: MessageRule; receive?: MessageRule; own?: OwnRule; connect?: ConnectRule } {
  const a = rule.attributes;
  const allow = rule.kind === 'allow';
  const where = `${rule.source.file}:${rule.source.line}`;
  const isSend = SEND_ATTRIBUTES.some((k) => a[k] !== undefined);
  // <allow eavesdrop="true"/> alone means <allow receive_sender="*" eavesdrop="true"/>.
  const isReceive = RECEIVE_ATTRIBUTES.some((k) => a[k] !== undefined) ||
    (!isSend && (a.eavesdrop !== undefined || a.min_fds !== undefined || a.max_fds !== undefined));
  if (isSend || isReceive) {
    const p = isSend ? 'send_' : 'receive_';
    const typeName = field(a[`${p}type`]);
    const prefix = isSend ? a.send_destination_prefix : undefined;
    const message: MessageRule = {
      allow,
      type: typeName === undefined ? undefined : TYPES[typeName],
      path: field(a[`${p}path`]),
      interface: field(a[`${p}interface`]),
      member: field(a[`${p}member`]),
      error: field(a[`${p}error`]),
      name: prefix ?? field(isSend ? a.send_destination : a.receive_sender),
      namePrefix: prefix !== undefined,
      broadcast: isSend && a.send_broadcast !== undefined ? a.send_broadcast === 'true' : undefined,
      // Allow rules apply to requested replies only, deny rules to unrequested ones, by default.
      requestedReply: bool(a[`${p}requested_reply`], allow),
      eavesdrop: bool(a.eavesdrop, false),
      minFds: fds(a.min_fds, 0),
      maxFds: fds(a.max_fds, MAX_MESSAGE_FDS),
      log: bool(a.log, false),
      where,
    };
    if (typeName !== undefined && message.type === undefined) {
      throw new PolicyCompileError(`unknown message type "${typeName}" (${where})`);
    }
    return isSend ? { send: message } : { receive: message };
  }
  if (a.own !== undefined || a.own_prefix !== undefined) {
    if (a.own_prefix !== undefined) return { own: { allow, name: a.own_prefix, prefix: true } };
    return { own: { allow, name: field(a.own), prefix: false } };
  }
  if (a.user !== undefined) {
    if (a.user === '*') return { connect: { allow, uid: '*' } };
    const uid = ids.uidOf(a.user);
    if (uid === undefined) {
      warn(`unknown user "${a.user}" in <${rule.kind} user=…>; the rule is ignored (${where})`);
      return {};
    }
    return { connect: { allow, uid } };
  }
  if (a.group !== undefined) {
    if (a.group === '*') return { connect: { allow, gid: '*' } };
    const gid = ids.gidOf(a.group);
    if (gid === undefined) {
      warn(`unknown group "${a.group}" in <${rule.kind} group=…>; the rule is ignored (${where})`);
      return {};
    }
    return { connect: { allow, gid } };
  }
  throw new PolicyCompileError(`<${rule.kind}> names nothing to allow or deny (${where})`);
}

function addTo(list: RuleList, compiled: ReturnType<typeof compileRule>): void {
  if (compiled.send) list.send.push(compiled.send);
  if (compiled.receive) list.receive.push(compiled.receive);
  if (compiled.own) list.own.push(compiled.own);
  if (compiled.connect) list.connect.push(compiled.connect);
}

/** Who is connecting, as the kernel reported it. */
export interface PolicySubject {
  readonly uid: number;
  readonly groups: readonly number[];
}

/** The message facts every check needs (the router builds one per message). */
export interface PolicyMessage {
  readonly type: number;
  readonly path: string | undefined;
  readonly interface: string | undefined;
  readonly member: string | undefined;
  readonly errorName: string | undefined;
  readonly destination: string | undefined;
  readonly sender: string;
  readonly isReply: boolean;
  readonly unixFds: number;
}

/** The names a connection answers to: its unique name and every name it owns or queues for. */
export interface NameHolder {
  readonly uniqueName: string | undefined;
  readonly names: ReadonlySet<string>;
}

function holds(holder: NameHolder, name: string, prefix: boolean): boolean {
  if (!prefix) return holder.uniqueName === name || holder.names.has(name);
  for (const owned of holder.names) {
    if (owned === name || (owned.startsWith(name) && owned.charCodeAt(name.length) === 46 /* . */)) return true;
  }
  return false;
}

function matchesCommon(rule: MessageRule, m: PolicyMessage): boolean {
  if (rule.type !== undefined && rule.type !== m.type) return false;
  if (rule.path !== undefined && m.path !== undefined && rule.path !== m.path) return false;
  // A message without interface: allow rules naming one skip it, deny rules naming one apply.
  if (rule.interface !== undefined && (m.interface === undefined ? rule.allow : rule.interface !== m.interface)) return false;
  if (rule.member !== undefined && m.member !== undefined && rule.member !== m.member) return false;
  if (rule.error !== undefined && m.errorName !== undefined && rule.error !== m.errorName) return false;
  if (m.unixFds < rule.minFds || m.unixFds > rule.maxFds) return false;
  return true;
}

/** The requested_reply conditions, shared by send and receive (dbus-daemon's semantics). */
function skipsForReply(rule: MessageRule, m: PolicyMessage, requestedReply: boolean): boolean {
  if (!m.isReply) return false;
  if (!requestedReply && rule.allow && rule.requestedReply && !rule.eavesdrop) return true;
  if (requestedReply && !rule.allow && !rule.requestedReply) return true;
  return false;
}

export function sendRuleMatches(
  rule: MessageRule,
  m: PolicyMessage,
  receiver: NameHolder | undefined,
  requestedReply: boolean,
): boolean {
  if (!matchesCommon(rule, m) || skipsForReply(rule, m, requestedReply)) return false;
  if (rule.name !== undefined) {
    if (receiver !== undefined) {
      if (!holds(receiver, rule.name, rule.namePrefix)) return false;
    } else if (m.destination === undefined) {
      return false;
    } else if (rule.namePrefix) {
      const d = m.destination;
      if (!(d === rule.name || (d.startsWith(rule.name) && d.charCodeAt(rule.name.length) === 46))) return false;
    } else if (m.destination !== rule.name) {
      return false;
    }
  }
  if (rule.broadcast !== undefined) {
    const isBroadcast = m.destination === undefined && m.type === MessageType.Signal;
    if (isBroadcast !== rule.broadcast) return false;
  }
  return true;
}

export function receiveRuleMatches(
  rule: MessageRule,
  m: PolicyMessage,
  sender: NameHolder | undefined,
  requestedReply: boolean,
  eavesdropping: boolean,
): boolean {
  if (!matchesCommon(rule, m)) return false;
  // Allow rules without eavesdrop="true" do not let a connection overhear; deny rules with it
  // apply only to overhearing.
  if (eavesdropping && rule.allow && !rule.eavesdrop) return false;
  if (!eavesdropping && !rule.allow && rule.eavesdrop) return false;
  if (skipsForReply(rule, m, requestedReply)) return false;
  if (rule.name !== undefined) {
    if (sender !== undefined) {
      if (!holds(sender, rule.name, false)) return false;
    } else if (m.sender !== rule.name) {
      return false;
    }
  }
  return true;
}

/** The outcome of a check: allowed or not, and the rule that decided (for logs). */
export interface Verdict {
  readonly allowed: boolean;
  readonly rule: MessageRule | undefined;
}

const DENIED_BY_DEFAULT: Verdict = { allowed: false, rule: undefined };

/**
 * One connection's rules: built at authentication and on reload, checked per message.
 * Scanned from the end because the last matching rule wins.
 */
export class PeerPolicy {
  constructor(
    readonly send: readonly MessageRule[],
    readonly receive: readonly MessageRule[],
    readonly own: readonly OwnRule[],
  ) {}

  checkSend(m: PolicyMessage, receiver: NameHolder | undefined, requestedReply: boolean): Verdict {
    const rules = this.send;
    for (let i = rules.length - 1; i >= 0; i--) {
      const rule = rules[i]!;
      if (sendRuleMatches(rule, m, receiver, requestedReply)) return rule.allow ? { allowed: true, rule } : { allowed: false, rule };
    }
    return DENIED_BY_DEFAULT;
  }

  checkReceive(m: PolicyMessage, sender: NameHolder | undefined, requestedReply: boolean, eavesdropping: boolean): Verdict {
    const rules = this.receive;
    for (let i = rules.length - 1; i >= 0; i--) {
      const rule = rules[i]!;
      if (receiveRuleMatches(rule, m, sender, requestedReply, eavesdropping)) {
        return rule.allow ? { allowed: true, rule } : { allowed: false, rule };
      }
    }
    return DENIED_BY_DEFAULT;
  }

  /** How many send rules matched (dbus-daemon names the count in its AccessDenied text). */
  countSendMatches(m: PolicyMessage, receiver: NameHolder | undefined, requestedReply: boolean): number {
    return this.send.filter((rule) => sendRuleMatches(rule, m, receiver, requestedReply)).length;
  }

  countReceiveMatches(m: PolicyMessage, sender: NameHolder | undefined, requestedReply: boolean, eavesdropping: boolean): number {
    return this.receive.filter((rule) => receiveRuleMatches(rule, m, sender, requestedReply, eavesdropping)).length;
  }

  canOwn(name: string): boolean {
    const rules = this.own;
    for (let i = rules.length - 1; i >= 0; i--) {
      const rule = rules[i]!;
      if (rule.name === undefined) return rule.allow;
      if (rule.prefix ? name === rule.name || (name.startsWith(rule.name) && name.charCodeAt(rule.name.length) === 46)
        : name === rule.name) {
        return rule.allow;
      }
    }
    return false;
  }

  /** Plain data for inspection: how many rules of each kind this connection carries. */
  get size(): { send: number; receive: number; own: number } {
    return { send: this.send.length, receive: this.receive.length, own: this.own.length };
  }
}

/** A send rule that decides every message it sees: the rules before it can never win. */
function decidesAllSends(rule: MessageRule): boolean {
  return rule.type === undefined && rule.path === undefined && rule.interface === undefined &&
    rule.member === undefined && rule.error === undefined && rule.name === undefined &&
    rule.broadcast === undefined && rule.minFds === 0 && rule.maxFds === MAX_MESSAGE_FDS &&
    (rule.allow ? !rule.requestedReply || rule.eavesdrop : rule.requestedReply);
}

function decidesAllReceives(rule: MessageRule): boolean {
  return rule.type === undefined && rule.path === undefined && rule.interface === undefined &&
    rule.member === undefined && rule.error === undefined && rule.name === undefined &&
    rule.minFds === 0 && rule.maxFds === MAX_MESSAGE_FDS &&
    (rule.allow ? rule.eavesdrop : !rule.eavesdrop && rule.requestedReply);
}

/** Drops every rule that precedes one that decides all messages (it could never be the last match). */
function fromLastCatchAll<T>(rules: T[], decidesAll: (rule: T) => boolean): T[] {
  for (let i = rules.length - 1; i >= 0; i--) if (decidesAll(rules[i]!)) return rules.slice(i);
  return rules;
}

/**
 * A loaded configuration's policy: the rule lists by selector. Compiled once per config
 * load; `forPeer` builds a connection's snapshot.
 */
export class BusPolicy {
  private readonly byUid = new Map<number, RuleList>();
  private readonly byGid = new Map<number, RuleList>();
  private readonly defaults = emptyList();
  private readonly mandatory = emptyList();
  private readonly atConsoleFalse = emptyList();
  /** Snapshots shared by connections with the same uid and groups (most of a system bus). */
  private readonly cache = new Map<string, PeerPolicy>();
  /** The same by uid alone, for a policy without group rules. */
  private readonly cacheByUid = new Map<number, PeerPolicy>();

  private constructor(
    /** The uid the bus runs as: it may connect unless a rule says otherwise. */
    private readonly busUid: number,
    readonly warnings: readonly string[],
    /** A stable text of the compiled rules: two configs meaning the same compile to the same. */
    readonly fingerprint: string,
  ) {}

  static compile(policies: readonly PolicySource[], ids: IdentityLookup, busUid: number): BusPolicy {
    const warnings: string[] = [];
    const draft = { defaults: emptyList(), mandatory: emptyList(), atConsoleFalse: emptyList(), byUid: new Map<number, RuleList>(), byGid: new Map<number, RuleList>() };
    const target = (selector: PolicySource['selector'], where: string): { list: RuleList } | undefined => {
      if ('context' in selector) return { list: selector.context === 'default' ? draft.defaults : draft.mandatory };
      if ('atConsole' in selector) return selector.atConsole ? undefined : { list: draft.atConsoleFalse };
      if ('user' in selector) {
        const uid = selector.user === '*' ? undefined : ids.uidOf(selector.user);
        if (uid === undefined) {
          warnings.push(`unknown user "${selector.user}" in <policy user=…>; its rules are ignored (${where})`);
          return undefined;
        }
        return { list: listFor(draft.byUid, uid) };
      }
      const gid = selector.group === '*' ? undefined : ids.gidOf(selector.group);
      if (gid === undefined) {
        warnings.push(`unknown group "${selector.group}" in <policy group=…>; its rules are ignored (${where})`);
        return undefined;
      }
      return { list: listFor(draft.byGid, gid) };
    };
    for (const block of policies) {
      const from = block.source ?? block.rules[0]?.source;
      const at = target(block.selector, from ? `${from.file}:${from.line}` : 'an empty <policy>');
      if (!at) continue;
      for (const rule of block.rules) addTo(at.list, compileRule(rule, ids, (w) => warnings.push(w)));
    }
    const fingerprint = JSON.stringify({
      default: strip(draft.defaults),
      mandatory: strip(draft.mandatory),
      atConsoleFalse: strip(draft.atConsoleFalse),
      uid: [...draft.byUid].sort(([a], [b]) => a - b).map(([k, v]) => [k, strip(v)]),
      gid: [...draft.byGid].sort(([a], [b]) => a - b).map(([k, v]) => [k, strip(v)]),
    });
    const compiled = new BusPolicy(busUid, warnings, fingerprint);
    copyInto(compiled.defaults, draft.defaults);
    copyInto(compiled.mandatory, draft.mandatory);
    copyInto(compiled.atConsoleFalse, draft.atConsoleFalse);
    for (const [uid, list] of draft.byUid) compiled.byUid.set(uid, list);
    for (const [gid, list] of draft.byGid) compiled.byGid.set(gid, list);
    return compiled;
  }

  /** The connect check at authentication: only default and mandatory user/group rules count. */
  allowsConnect(subject: PolicySubject): boolean {
    let allowed = subject.uid === this.busUid;
    for (const list of [this.defaults, this.mandatory]) {
      for (const rule of list.connect) {
        if (rule.uid !== undefined && rule.uid !== '*' && rule.uid !== subject.uid) continue;
        if (rule.gid !== undefined && rule.gid !== '*' && !subject.groups.includes(rule.gid)) continue;
        allowed = rule.allow;
      }
    }
    return allowed;
  }

  /**
   * A connection's snapshot: default, its groups, its user, at_console, mandatory. Without any
   * <policy group=…> a peer's groups cannot change it, so they are not asked for (reading them
   * is a system call per connection).
   */
  forPeer(subject: PolicySubject): PeerPolicy {
    if (this.byGid.size === 0) {
      const cached = this.cacheByUid.get(subject.uid);
      if (cached) return cached;
      const snapshot = this.snapshot(subject.uid, NO_GROUPS);
      this.cacheByUid.set(subject.uid, snapshot);
      return snapshot;
    }
    const groups = [...new Set(subject.groups)].sort((a, b) => a - b);
    const key = `${subject.uid}:${groups.join(',')}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const snapshot = this.snapshot(subject.uid, groups);
    this.cache.set(key, snapshot);
    return snapshot;
  }

  private snapshot(uid: number, groups: readonly number[]): PeerPolicy {
    const parts: RuleList[] = [this.defaults];
    for (const gid of groups) {
      const list = this.byGid.get(gid);
      if (list) parts.push(list);
    }
    const own = this.byUid.get(uid);
    if (own) parts.push(own);
    parts.push(this.atConsoleFalse, this.mandatory);
    return new PeerPolicy(
      fromLastCatchAll(parts.flatMap((p) => p.send), decidesAllSends),
      fromLastCatchAll(parts.flatMap((p) => p.receive), decidesAllReceives),
      fromLastCatchAll(parts.flatMap((p) => p.own), (rule) => rule.name === undefined),
    );
  }
}

const NO_GROUPS: readonly number[] = [];

function listFor(map: Map<number, RuleList>, id: number): RuleList {
  let list = map.get(id);
  if (!list) map.set(id, (list = emptyList()));
  return list;
}

function copyInto(to: RuleList, from: RuleList): void {
  to.send.push(...from.send);
  to.receive.push(...from.receive);
  to.own.push(...from.own);
  to.connect.push(...from.connect);
}

/** The rules without their source locations: what a fingerprint compares. */
function strip(list: RuleList): unknown {
  const noWhere = (rule: MessageRule) => ({ ...rule, where: undefined });
  return { send: list.send.map(noWhere), receive: list.receive.map(noWhere), own: list.own, connect: list.connect };
}
