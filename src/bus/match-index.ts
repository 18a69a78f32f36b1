import type { MatchRule, MatchTarget } from './match-rule.js';

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
 * The bucket key within a shape: the values it names, NUL-separated. Names and paths never
 * contain NUL and arg0 (which could hold anything else) comes last, so keys cannot collide.
 */
function keyOf(shape: number, iface: string | undefined, member: string | undefined, path: string | undefined, arg0: string | undefined): string {
  const parts: string[] = [];
  if (shape & INTERFACE) parts.push(iface!);
  if (shape & MEMBER) parts.push(member!);
  if (shape & PATH) parts.push(path!);
  if (shape & ARG0) parts.push(arg0!);
  // A single value is its own key: a rule's key is then its own string, nothing is built.
  // join() makes one flat string: a key built by += would be kept as a chain of pieces.
  return parts.length === 1 ? parts[0]! : parts.join('\0');
}

/**
 * Match rules indexed by the exact interface, member, path and arg0 they name, so a broadcast
 * checks only the rules that could match it instead of every rule on the bus: for each shape of
 * rule present (which of the four fields it names), one lookup by the message's values. A bus
 * whose clients subscribe to specific signals then pays per broadcast for the rules that care,
 * not for the rules held (dbus-broker indexes likewise). A bucket is a ring of the rules
 * themselves (MatchRule.next, each with its owner): one map entry per distinct rule and nothing
 * per rule besides the rule keeps it small. Every candidate is still checked in full by
 * matchRuleMatches. A rule object is in at most one index at a time.
 */
export class MatchIndex<P> {
  /**
   * Per shape, bucket key → the bucket's last rule, whose `next` is its first (a ring): adding is
   * O(1) and candidates come in the order their rules were added. Undefined while no rule has the shape.
   */
  private readonly buckets: Array<Map<string, MatchRule> | undefined> = new Array(SHAPES).fill(undefined);
  private size = 0;

  get count(): number {
    return this.size;
  }

  add(owner: P, rule: MatchRule): void {
    // Linked into a second bucket, its chain would break.
    if (rule.owner !== undefined) throw new Error('match rule is indexed already');
    const shape = shapeOf(rule);
    const key = keyOf(shape, rule.interface, rule.member, rule.path, arg0Of(rule));
    let buckets = this.buckets[shape];
    if (buckets === undefined) buckets = this.buckets[shape] = new Map();
    const last = buckets.get(key);
    rule.owner = owner;
    if (last === undefined) rule.next = rule;
    else {
      rule.next = last.next;
      last.next = rule;
    }
    buckets.set(key, rule);
    this.size++;
  }

  /** Removes one entry of `owner` holding `rule` (the same object that was added). */
  remove(owner: P, rule: MatchRule): void {
    if (rule.owner !== owner) return;
    const shape = shapeOf(rule);
    const buckets = this.buckets[shape];
    const key = keyOf(shape, rule.interface, rule.member, rule.path, arg0Of(rule));
    const last = buckets?.get(key);
    if (last === undefined) return;
    let before = last;
    while (before.next !== rule) {
      before = before.next!;
      if (before === last) return; // not in this bucket
    }
    if (before === rule) buckets!.delete(key); // its only rule
    else {
      before.next = rule.next;
      if (rule === last) buckets!.set(key, before);
    }
    rule.owner = undefined;
    rule.next = undefined;
    // No empty map is kept: churn leaves nothing behind.
    if (buckets!.size === 0) this.buckets[shape] = undefined;
    this.size--;
  }

  /** Calls `visit` for every rule that could match `m` (each rule once), with its owner. */
  candidates(m: MatchTarget, visit: (owner: P, rule: MatchRule) => void): void {
    if (this.size === 0) return;
    const { interface: iface, member, path } = m;
    let arg0: string | undefined;
    let arg0Read = false;
    for (let shape = 0; shape < SHAPES; shape++) {
      const buckets = this.buckets[shape];
      if (buckets === undefined) continue;
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
      const last = buckets.get(keyOf(shape, iface, member, path, arg0));
      if (last === undefined) continue;
      let rule = last;
      do {
        const next = rule.next;
        // Removed while visited (a visit never disconnects today): its ring is left, not followed.
        if (next === undefined) break;
        rule = next;
        visit(rule.owner as P, rule);
      } while (rule !== last);
    }
  }
}
