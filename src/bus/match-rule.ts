import { Buffer } from 'node:buffer';
import { isValidBusName, isValidInterfaceName, isValidMemberName, isValidObjectPath } from '../wire/names.js';
import { BusError, DBusErrorName } from './errors.js';

/**
 * Match rules ("Match Rules" in the D-Bus specification): parsed once on AddMatch,
 * evaluated against each routed message. Evaluation needs the body only for argN
 * keys, and gets it lazily through the MatchTarget.
 */
export interface MatchRule {
  /** The rule as the client sent it; RemoveMatch compares canonical forms. */
  readonly text: string;
  readonly canonical: string;
  // Every key is present, undefined when the rule does not name it: all rules share one
  // hidden class, so each is one compact object and the reads in matchRuleMatches stay monomorphic.
  readonly type: number | undefined;
  readonly sender: string | undefined;
  readonly interface: string | undefined;
  readonly member: string | undefined;
  readonly path: string | undefined;
  readonly pathNamespace: string | undefined;
  readonly destination: string | undefined;
  readonly args: ReadonlyArray<MatchArg>;
  readonly arg0namespace: string | undefined;
  readonly eavesdrop: boolean;
  /**
   * Set by MatchIndex while the rule is indexed: whose it is and the next rule in its bucket.
   * Rules link themselves, so the index needs no entry object or array per rule.
   */
  owner: unknown;
  next: MatchRule | undefined;
}

/** argN='…' or argNpath='…'. */
export interface MatchArg {
  readonly index: number;
  readonly value: string;
  readonly path: boolean;
}

/** What a rule is evaluated against. */
export interface MatchTarget {
  type: number;
  /** Unique name of the sender, or org.freedesktop.DBus. */
  sender: string;
  interface?: string;
  member?: string;
  path?: string;
  destination?: string;
  /** True when the sender is the primary owner of this well-known name. */
  senderOwns(name: string): boolean;
  /**
   * True when `name` denotes the addressed recipient: its unique name or a name it owns
   * (dbus-daemon's rule); the destination as written when no peer receives it (the driver).
   */
  addressedTo(name: string): boolean;
  /** Body argument N when it is a string ('s') or object path ('o'), else undefined. */
  textArg(index: number): { value: string; code: 's' | 'o' } | undefined;
}

const TYPES = new Map([
  ['method_call', 1],
  ['method_return', 2],
  ['error', 3],
  ['signal', 4],
]);
/** TYPES backwards, indexed by message type. */
const TYPE_NAMES: ReadonlyArray<string | undefined> = [undefined, 'method_call', 'method_return', 'error', 'signal'];
export const MAX_MATCH_RULE_LENGTH = 1024;
const MAX_ARG_INDEX = 63;

function invalid(rule: string, why: string): never {
  throw new BusError(DBusErrorName.MatchRuleInvalid, `invalid match rule "${rule}": ${why}`);
}

/**
 * Splits `key='value',key2=value2` per the specification's quoting rules. A value is built from
 * slices of the rule text, usually a single one: V8 keeps a long slice as a reference into the
 * text, which the rule keeps anyway, instead of a copy.
 */
function tokenize(rule: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  let i = 0;
  while (i < rule.length) {
    while (i < rule.length && isSpace(rule.charCodeAt(i))) i++;
    if (i >= rule.length) break;
    const eq = rule.indexOf('=', i);
    if (eq < 0) invalid(rule, 'expected key=value');
    const key = rule.slice(i, eq).trim();
    if (key === '') invalid(rule, 'empty key');
    i = eq + 1;
    let value = '';
    // The run of characters taken as they are, from `run` to `i`: quotes and \' end it.
    let run = i;
    for (; i < rule.length; i++) {
      const c = rule.charCodeAt(i);
      if (c === QUOTE) {
        // Quoted: everything up to the next quote, as it is (no escapes inside quotes).
        const close = rule.indexOf("'", i + 1);
        if (close < 0) invalid(rule, 'unterminated quote');
        value += rule.slice(run, i) + rule.slice(i + 1, close);
        i = close;
        run = close + 1;
      } else if (c === BACKSLASH && rule.charCodeAt(i + 1) === QUOTE) {
        value += rule.slice(run, i) + "'";
        i++;
        run = i + 1;
      } else if (c === COMMA) break;
    }
    value += rule.slice(run, i);
    pairs.push([key, value]);
    if (rule.charCodeAt(i) === COMMA) i++; // a trailing comma is accepted, as dbus-daemon does
  }
  return pairs;
}

const QUOTE = 0x27;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

function quote(value: string): string {
  return value.includes("'") ? `'${value.replace(/'/g, `'\\''`)}'` : `'${value}'`;
}

/** Whether one of the first `before` pairs has this key (a rule has a handful: no Set needed). */
function keyBefore(pairs: ReadonlyArray<[string, string]>, before: number, key: string): boolean {
  for (let i = 0; i < before; i++) if (pairs[i]![0] === key) return true;
  return false;
}

/** The args of every rule that names none: one shared array, frozen so that no rule can change it. */
const NO_ARGS: ReadonlyArray<MatchArg> = Object.freeze([]);

export function parseMatchRule(text: string): MatchRule {
  if (Buffer.byteLength(text) > MAX_MATCH_RULE_LENGTH) {
    // dbus-daemon reports an over-long rule as a limit, not as a malformed rule.
    throw new BusError(DBusErrorName.LimitsExceeded, `match rule is over ${MAX_MATCH_RULE_LENGTH} bytes`);
  }
  let type: number | undefined;
  let sender: string | undefined;
  let iface: string | undefined;
  let member: string | undefined;
  let path: string | undefined;
  let pathNamespace: string | undefined;
  let destination: string | undefined;
  let arg0namespace: string | undefined;
  let eavesdrop = false;
  const args: MatchArg[] = [];
  // Plain loops and arrays: rules are parsed on AddMatch and, by the thousand, while a handoff
  // restores them, before V8 has optimized anything.
  const pairs = tokenize(text);
  for (let p = 0; p < pairs.length; p++) {
    const [key, value] = pairs[p]!;
    // eavesdrop may repeat (the last wins): tools such as dbus-monitor append it to rules they are given.
    if (key !== 'eavesdrop' && keyBefore(pairs, p, key)) invalid(text, `key "${key}" appears twice`);
    switch (key) {
      case 'type':
        type = TYPES.get(value);
        if (type === undefined) invalid(text, `unknown message type "${value}"`);
        break;
      case 'sender':
        if (!isValidBusName(value) && value !== 'org.freedesktop.DBus') invalid(text, `invalid sender "${value}"`);
        sender = value;
        break;
      case 'interface':
        if (!isValidInterfaceName(value)) invalid(text, `invalid interface "${value}"`);
        iface = value;
        break;
      case 'member':
        if (!isValidMemberName(value)) invalid(text, `invalid member "${value}"`);
        member = value;
        break;
      case 'path':
        if (!isValidObjectPath(value)) invalid(text, `invalid path "${value}"`);
        path = value;
        break;
      case 'path_namespace':
        if (!isValidObjectPath(value)) invalid(text, `invalid path_namespace "${value}"`);
        pathNamespace = value;
        break;
      case 'destination':
        if (!isValidBusName(value)) invalid(text, `invalid destination "${value}"`);
        destination = value;
        break;
      case 'arg0namespace':
        if (!isValidArg0Namespace(value)) invalid(text, `invalid arg0namespace "${value}"`);
        arg0namespace = value;
        break;
      case 'eavesdrop':
        if (value !== 'true' && value !== 'false') invalid(text, 'eavesdrop must be true or false');
        eavesdrop = value === 'true';
        break;
      default: {
        const m = /^arg([0-9]{1,2})(path)?$/.exec(key);
        if (!m) invalid(text, `unknown key "${key}"`);
        const index = Number(m[1]);
        if (index > MAX_ARG_INDEX) invalid(text, `arg index ${index} above ${MAX_ARG_INDEX}`);
        if (args.some((a) => a.index === index)) invalid(text, `arg${index} given twice`);
        args.push({ index, value, path: m[2] !== undefined });
      }
    }
  }
  if (path !== undefined && pathNamespace !== undefined) invalid(text, 'path and path_namespace together');
  if (arg0namespace !== undefined && args.some((a) => a.index === 0)) {
    invalid(text, 'arg0 and arg0namespace together');
  }
  args.sort((a, b) => a.index - b.index);
  const rule: { -readonly [K in keyof MatchRule]: MatchRule[K] } = {
    text,
    canonical: text,
    type,
    sender,
    interface: iface,
    member,
    path,
    pathNamespace,
    destination,
    // A copy holds exactly its args: push() gave the array room for 17.
    args: args.length === 0 ? NO_ARGS : args.slice(),
    arg0namespace,
    eavesdrop,
    owner: undefined,
    next: undefined,
  };
  const canonical = canonicalize(rule);
  // Most clients write rules in canonical order: then one string serves as both (memory per rule).
  rule.canonical = canonical === text ? text : canonical;
  return rule;
}

/**
 * Makes `rule` hold `like`'s strings wherever the two name the same value. A connection's rules
 * tend to repeat a sender, interface, member or path; each would otherwise keep its own copy.
 */
export function shareStrings(rule: MatchRule, like: MatchRule): void {
  const r = rule as { -readonly [K in keyof MatchRule]: MatchRule[K] };
  if (r.text === like.text) r.text = like.text;
  if (r.canonical === like.canonical) r.canonical = like.canonical;
  if (r.sender === like.sender) r.sender = like.sender;
  if (r.interface === like.interface) r.interface = like.interface;
  if (r.member === like.member) r.member = like.member;
  if (r.path === like.path) r.path = like.path;
  if (r.pathNamespace === like.pathNamespace) r.pathNamespace = like.pathNamespace;
  if (r.destination === like.destination) r.destination = like.destination;
  if (r.arg0namespace === like.arg0namespace) r.arg0namespace = like.arg0namespace;
}

function isValidArg0Namespace(value: string): boolean {
  // A bus or interface name prefix: dotted elements, a single element allowed.
  return value.length > 0 && value.length <= 255 && /^[A-Za-z_-][A-Za-z0-9_-]*(\.[A-Za-z_-][A-Za-z0-9_-]*)*$/.test(value);
}

function canonicalize(rule: MatchRule): string {
  const parts: string[] = [];
  const typeName = rule.type === undefined ? undefined : TYPE_NAMES[rule.type];
  if (typeName) parts.push(`type=${quote(typeName)}`);
  if (rule.sender !== undefined) parts.push(`sender=${quote(rule.sender)}`);
  if (rule.interface !== undefined) parts.push(`interface=${quote(rule.interface)}`);
  if (rule.member !== undefined) parts.push(`member=${quote(rule.member)}`);
  if (rule.path !== undefined) parts.push(`path=${quote(rule.path)}`);
  if (rule.pathNamespace !== undefined) parts.push(`path_namespace=${quote(rule.pathNamespace)}`);
  if (rule.destination !== undefined) parts.push(`destination=${quote(rule.destination)}`);
  if (rule.arg0namespace !== undefined) parts.push(`arg0namespace=${quote(rule.arg0namespace)}`);
  for (const a of rule.args) parts.push(`arg${a.index}${a.path ? 'path' : ''}=${quote(a.value)}`);
  if (rule.eavesdrop) parts.push(`eavesdrop='true'`);
  return parts.join(',');
}

/**
 * The rule as dbus-daemon prints it (GetAllMatchRules, its match_rule_to_string): its key
 * order differs from `canonical`, and scripts compare these strings.
 */
export function formatMatchRule(rule: MatchRule): string {
  const parts: string[] = [];
  const typeName = rule.type === undefined ? undefined : TYPE_NAMES[rule.type];
  if (typeName) parts.push(`type=${quote(typeName)}`);
  if (rule.interface !== undefined) parts.push(`interface=${quote(rule.interface)}`);
  if (rule.member !== undefined) parts.push(`member=${quote(rule.member)}`);
  if (rule.path !== undefined) parts.push(`path=${quote(rule.path)}`);
  if (rule.pathNamespace !== undefined) parts.push(`path_namespace=${quote(rule.pathNamespace)}`);
  if (rule.sender !== undefined) parts.push(`sender=${quote(rule.sender)}`);
  if (rule.destination !== undefined) parts.push(`destination=${quote(rule.destination)}`);
  if (rule.eavesdrop) parts.push(`eavesdrop='true'`);
  if (rule.arg0namespace !== undefined) parts.push(`arg0namespace=${quote(rule.arg0namespace)}`);
  for (const a of rule.args) parts.push(`arg${a.index}${a.path ? 'path' : ''}=${quote(a.value)}`);
  return parts.join(',');
}

/** argNpath: equal, or one is a '/'-terminated prefix of the other. */
function pathArgMatches(pattern: string, arg: string): boolean {
  if (pattern === arg) return true;
  if (pattern.endsWith('/') && arg.startsWith(pattern)) return true;
  return arg.endsWith('/') && pattern.startsWith(arg);
}

export function matchRuleMatches(rule: MatchRule, m: MatchTarget): boolean {
  if (rule.type !== undefined && rule.type !== m.type) return false;
  if (rule.interface !== undefined && rule.interface !== m.interface) return false;
  if (rule.member !== undefined && rule.member !== m.member) return false;
  if (rule.path !== undefined && rule.path !== m.path) return false;
  if (rule.pathNamespace !== undefined) {
    const ns = rule.pathNamespace;
    const p = m.path;
    if (p === undefined) return false;
    if (ns !== '/' && p !== ns && !p.startsWith(ns + '/')) return false;
  }
  if (rule.destination !== undefined && (m.destination === undefined || !m.addressedTo(rule.destination))) return false;
  if (rule.sender !== undefined && rule.sender !== m.sender) {
    if (rule.sender.startsWith(':') || !m.senderOwns(rule.sender)) return false;
  }
  if (rule.arg0namespace !== undefined) {
    const a = m.textArg(0);
    const ns = rule.arg0namespace;
    if (a?.code !== 's' || (a.value !== ns && !a.value.startsWith(ns + '.'))) return false;
  }
  const args = rule.args;
  for (let n = 0; n < args.length; n++) {
    const arg = args[n]!;
    const a = m.textArg(arg.index);
    if (a === undefined) return false;
    // argN compares strings only; argNpath also accepts object paths.
    if (arg.path ? !pathArgMatches(arg.value, a.value) : a.code !== 's' || a.value !== arg.value) return false;
  }
  return true;
}
