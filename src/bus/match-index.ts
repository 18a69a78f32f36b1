import type { MatchRule, MatchTarget } from './match-rule.js';

/** One rule and whose it is. */
export interface IndexedRule<P> {
  readonly owner: P;
  readonly rule: MatchRule;
}

// The fields rules are indexed by; a rule's shape is the set of them it names exactly.
const INTERFACE = 1;
const MEMBER = 2;
const PATH = 4;
const ARG0 = 8;
const SHAPES = 16;

/** The exact arg0='…' a rule names (a string argument); arg0path and arg0namespace are not keys. */
function arg0Of(rule: MatchRule): string | undefined {
  for (const arg of rule.args) if (arg.index === 0 && !arg.path) return arg.value;
  return undefined;
}

function shapeOf(rule: MatchRule): number {
  return (
    (rule.interface !== undefined ? INTERFACE : 0) |
    (rule.member !== undefined ? MEMBER : 0) |
    (rule.path !== undefined ? PATH : 0) |
    (arg0Of(rule) !== undefined ? ARG0 : 0)
  );
}

/**
 * The bucket key: the shape, then the values it names, NUL-separated. Names and paths never
 * contain NUL and arg0 (which could hold anything else) comes last, so keys cannot collide.
 */
function keyOf(shape: number, iface: string | undefined, member: string | undefined, path: string | undefined, arg0: string | undefined): string {
  const parts: string[] = [String.fromCharCode(65 + shape)];
  if (shape & INTERFACE) parts.push(iface!);
  if (shape & MEMBER) parts.push(member!);
  if (shape & PATH) parts.push(path!);
  if (shape & ARG0) parts.push(arg0!);
  // join() makes one flat string: a key built by += would be kept as a chain of pieces.
  return parts.join('\0');
}

/**
 * Match rules indexed by the exact interface, member, path and arg0 they name, so a broadcast
 * checks only the rules that could match it instead of every rule on the bus: for each shape of
 * rule present (which of the four fields it names), one lookup by the message's values. A bus
 * whose clients subscribe to specific signals then pays per broadcast for the rules that care,
 * not for the rules held (dbus-broker indexes likewise). One map entry per distinct rule keeps
 * it small; every candidate is still checked in full by matchRuleMatches.
 */
export class MatchIndex<P> {
  private readonly buckets = new Map<string, Array<IndexedRule<P>>>();
  /** Rules held per shape: only shapes in use are looked up. */
  private readonly perShape = new Uint32Array(SHAPES);
  private size = 0;

  get count(): number {
    return this.size;
  }

  add(owner: P, rule: MatchRule): void {
    const shape = shapeOf(rule);
    const key = keyOf(shape, rule.interface, rule.member, rule.path, arg0Of(rule));
    const bucket = this.buckets.get(key);
    if (bucket) bucket.push({ owner, rule });
    else this.buckets.set(key, [{ owner, rule }]);
    this.perShape[shape]!++;
    this.size++;
  }

  /** Removes one entry of `owner` holding `rule` (the same object that was added). */
  remove(owner: P, rule: MatchRule): void {
    const shape = shapeOf(rule);
    const key = keyOf(shape, rule.interface, rule.member, rule.path, arg0Of(rule));
    const bucket = this.buckets.get(key);
    const at = bucket ? bucket.findIndex((e) => e.owner === owner && e.rule === rule) : -1;
    if (at < 0) return;
    // Order does not matter: the last entry fills the hole.
    bucket![at] = bucket![bucket!.length - 1]!;
    bucket!.pop();
    if (bucket!.length === 0) this.buckets.delete(key);
    this.perShape[shape]!--;
    this.size--;
  }

  /** Calls `visit` for every rule that could match `m` (each rule once). */
  candidates(m: MatchTarget, visit: (entry: IndexedRule<P>) => void): void {
    if (this.size === 0) return;
    const { interface: iface, member, path } = m;
    let arg0: string | undefined;
    let arg0Read = false;
    for (let shape = 0; shape < SHAPES; shape++) {
      if (this.perShape[shape] === 0) continue;
      if ((shape & INTERFACE && iface === undefined) || (shape & MEMBER && member === undefined) || (shape & PATH && path === undefined)) continue;
      if (shape & ARG0) {
        // The body is read only when some rule names an arg0.
        if (!arg0Read) {
          arg0Read = true;
          const a = m.textArg(0);
          arg0 = a?.code === 's' ? a.value : undefined;
        }
        if (arg0 === undefined) continue;
      }
      const bucket = this.buckets.get(keyOf(shape, iface, member, path, arg0));
      if (bucket) for (let n = 0; n < bucket.length; n++) visit(bucket[n]!);
    }
  }
}
