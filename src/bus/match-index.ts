import type { MatchRule, MatchTarget } from './match-rule.js';

/** One rule and whose it is. */
export interface IndexedRule<P> {
  readonly owner: P;
  readonly rule: MatchRule;
}

/** The fields rules are indexed by, in the order of the tree's levels. */
const LEVELS = 4; // interface, member, path, arg0

/** One level of the tree: children by the exact value a rule names, and for rules naming none. */
interface Node<P> {
  byValue: Map<string, Node<P>> | undefined;
  any: Node<P> | undefined;
  /** At the last level: the rules. */
  rules: Array<IndexedRule<P>> | undefined;
}

const newNode = <P>(): Node<P> => ({ byValue: undefined, any: undefined, rules: undefined });

/** The exact value `rule` requires at a level, or undefined when it takes any. */
function ruleKey(rule: MatchRule, level: number): string | undefined {
  switch (level) {
    case 0: return rule.interface;
    case 1: return rule.member;
    case 2: return rule.path;
    default: {
      // Only an exact arg0='…' (a string argument) is a key; arg0path and arg0namespace are not.
      for (const arg of rule.args) if (arg.index === 0 && !arg.path) return arg.value;
      return undefined;
    }
  }
}

/**
 * Match rules indexed by the exact interface, member, path and arg0 they name, so a broadcast
 * checks only the rules that could match it instead of every rule on the bus: per level, the
 * rules naming the message's value and the rules naming none. A bus whose clients subscribe to
 * specific signals then pays per broadcast for the rules that care, not for the rules held
 * (dbus-broker indexes likewise). Every candidate is still checked in full by matchRuleMatches.
 */
export class MatchIndex<P> {
  private readonly root: Node<P> = newNode();
  private size = 0;

  get count(): number {
    return this.size;
  }

  add(owner: P, rule: MatchRule): void {
    let node = this.root;
    for (let level = 0; level < LEVELS; level++) {
      const key = ruleKey(rule, level);
      if (key === undefined) {
        node = node.any ??= newNode();
      } else {
        node.byValue ??= new Map();
        let child = node.byValue.get(key);
        if (!child) node.byValue.set(key, (child = newNode()));
        node = child;
      }
    }
    (node.rules ??= []).push({ owner, rule });
    this.size++;
  }

  /** Removes one entry of `owner` holding `rule` (the same object that was added). */
  remove(owner: P, rule: MatchRule): void {
    const path: Array<{ parent: Node<P>; key: string | undefined }> = [];
    let node: Node<P> | undefined = this.root;
    for (let level = 0; level < LEVELS && node; level++) {
      const key = ruleKey(rule, level);
      path.push({ parent: node, key });
      node = key === undefined ? node.any : node.byValue?.get(key);
    }
    const rules = node?.rules;
    if (!rules) return;
    const at = rules.findIndex((e) => e.owner === owner && e.rule === rule);
    if (at < 0) return;
    // Order does not matter: the last entry fills the hole.
    rules[at] = rules[rules.length - 1]!;
    rules.pop();
    this.size--;
    // Prune nodes left empty, from the leaf up, so churn leaves no garbage behind.
    for (let level = LEVELS - 1; level >= 0; level--) {
      const { parent, key } = path[level]!;
      const child = key === undefined ? parent.any : parent.byValue?.get(key);
      if (!child || !isEmpty(child)) break;
      if (key === undefined) parent.any = undefined;
      else {
        parent.byValue!.delete(key);
        if (parent.byValue!.size === 0) parent.byValue = undefined;
      }
    }
  }

  /** Calls `visit` for every rule that could match `m` (each rule once). */
  candidates(m: MatchTarget, visit: (entry: IndexedRule<P>) => void): void {
    let arg0: string | undefined;
    let arg0Read = false;
    const valueAt = (level: number): string | undefined => {
      switch (level) {
        case 0: return m.interface;
        case 1: return m.member;
        case 2: return m.path;
        default:
          if (!arg0Read) {
            arg0Read = true;
            const a = m.textArg(0);
            arg0 = a?.code === 's' ? a.value : undefined;
          }
          return arg0;
      }
    };
    const walk = (node: Node<P>, level: number): void => {
      if (level === LEVELS) {
        const rules = node.rules;
        if (rules) for (let n = 0; n < rules.length; n++) visit(rules[n]!);
        return;
      }
      if (node.byValue) {
        // The body is read for arg0 only when some rule here names an arg0.
        const value = valueAt(level);
        const child = value === undefined ? undefined : node.byValue.get(value);
        if (child) walk(child, level + 1);
      }
      if (node.any) walk(node.any, level + 1);
    };
    walk(this.root, 0);
  }
}

function isEmpty<P>(node: Node<P>): boolean {
  return !node.byValue && !node.any && (!node.rules || node.rules.length === 0);
}
