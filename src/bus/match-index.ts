import type { MatchRule } from './match-rule.js';

/** One rule and whose it is. */
export interface IndexedRule<P> {
  readonly owner: P;
  readonly rule: MatchRule;
}

const ANY = '';

/**
 * Match rules indexed by the interface and member they name, so a broadcast checks only the
 * rules that could match it — those naming its interface and member, either one, or neither —
 * instead of every rule on the bus. A bus whose clients subscribe to specific signals then pays
 * per broadcast for the rules that care, not for the rules held (dbus-broker indexes likewise).
 */
export class MatchIndex<P> {
  private readonly buckets = new Map<string, Array<IndexedRule<P>>>();
  private size = 0;

  get count(): number {
    return this.size;
  }

  add(owner: P, rule: MatchRule): void {
    const key = keyOf(rule.interface ?? ANY, rule.member ?? ANY);
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = []));
    bucket.push({ owner, rule });
    this.size++;
  }

  /** Removes one entry of `owner` holding `rule` (the same object that was added). */
  remove(owner: P, rule: MatchRule): void {
    const key = keyOf(rule.interface ?? ANY, rule.member ?? ANY);
    const bucket = this.buckets.get(key);
    if (!bucket) return;
    const at = bucket.findIndex((e) => e.owner === owner && e.rule === rule);
    if (at < 0) return;
    // Order within a bucket does not matter: the last entry fills the hole.
    bucket[at] = bucket[bucket.length - 1]!;
    bucket.pop();
    if (bucket.length === 0) this.buckets.delete(key);
    this.size--;
  }

  /** Calls `visit` for every rule that could match a message with this interface and member. */
  candidates(iface: string | undefined, member: string | undefined, visit: (entry: IndexedRule<P>) => void): void {
    const i = iface ?? ANY;
    const m = member ?? ANY;
    this.visitBucket(keyOf(i, m), visit);
    if (m !== ANY) this.visitBucket(keyOf(i, ANY), visit);
    if (i !== ANY) {
      this.visitBucket(keyOf(ANY, m), visit);
      if (m !== ANY) this.visitBucket(keyOf(ANY, ANY), visit);
    }
  }

  private visitBucket(key: string, visit: (entry: IndexedRule<P>) => void): void {
    const bucket = this.buckets.get(key);
    if (bucket) for (let n = 0; n < bucket.length; n++) visit(bucket[n]!);
  }
}

// Interfaces and members never contain a newline: the key cannot be ambiguous.
function keyOf(iface: string, member: string): string {
  return iface + '\n' + member;
}
