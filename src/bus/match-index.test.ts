import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MatchIndex } from './match-index.js';
import { matchRuleMatches, parseMatchRule, type MatchRule, type MatchTarget } from './match-rule.js';

const IFACES = ['a.B', 'a.C', 'x.Y'];
const MEMBERS = ['Ping', 'Pong', 'Changed'];

function signal(iface: string | undefined, member: string | undefined, path = '/p', arg0?: { value: string; code: 's' | 'o' }): MatchTarget {
  return {
    type: 4,
    sender: ':1.1',
    interface: iface,
    member,
    path,
    senderOwns: () => false,
    addressedTo: () => false,
    textArg: (i) => (i === 0 ? arg0 : undefined),
  };
}

const ruleText = fc
  .record({
    iface: fc.option(fc.constantFrom(...IFACES), { nil: undefined }),
    member: fc.option(fc.constantFrom(...MEMBERS), { nil: undefined }),
    type: fc.option(fc.constantFrom('signal', 'method_call'), { nil: undefined }),
    path: fc.option(fc.constantFrom("path='/p'", "path='/q'", "path_namespace='/p'"), { nil: undefined }),
    arg0: fc.option(fc.constantFrom("arg0='x'", "arg0='y'", "arg0=''", "arg0path='/p/'", "arg0namespace='a'"), { nil: undefined }),
  })
  .map(({ iface, member, type, path, arg0 }) =>
    [iface && `interface='${iface}'`, member && `member='${member}'`, type && `type='${type}'`, path, arg0].filter(Boolean).join(','),
  );

const arg0s = fc.option(
  fc.record({ value: fc.constantFrom('x', 'y', '', '/p/q', 'a.b'), code: fc.constantFrom('s' as const, 'o' as const) }),
  { nil: undefined },
);

describe('MatchIndex', () => {
  it('offers every rule that matches a message among its candidates, whatever the rules (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(5), ruleText), { maxLength: 30 }),
        fc.nat(),
        fc.option(fc.constantFrom(...IFACES), { nil: undefined }),
        fc.option(fc.constantFrom(...MEMBERS), { nil: undefined }),
        fc.constantFrom('/p', '/q', '/p/r'),
        arg0s,
        (entries, removeEvery, iface, member, path, arg0) => {
          const index = new MatchIndex<number>();
          const live: Array<{ owner: number; rule: MatchRule }> = [];
          entries.forEach(([owner, text], i) => {
            const rule = parseMatchRule(text);
            index.add(owner, rule);
            live.push({ owner, rule });
            // Removing some rules again must take exactly those out.
            if (removeEvery > 0 && i % (removeEvery % 4 + 2) === 0) {
              index.remove(owner, rule);
              live.pop();
            }
          });
          expect(index.count).toBe(live.length);
          const m = signal(iface, member, path, arg0);
          const offered = new Set<MatchRule>();
          index.candidates(m, (_owner, rule) => {
            expect(offered.has(rule)).toBe(false);
            offered.add(rule);
          });
          for (const { rule } of live) if (matchRuleMatches(rule, m)) expect(offered.has(rule)).toBe(true);
          // Nothing removed is offered.
          for (const rule of offered) expect(live.some((e) => e.rule === rule)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('does not offer rules naming another interface, member, path or arg0', () => {
    const index = new MatchIndex<string>();
    index.add('p1', parseMatchRule("interface='a.B',member='Ping'"));
    index.add('p2', parseMatchRule("interface='x.Y'"));
    index.add('p3', parseMatchRule("member='Pong'"));
    index.add('p4', parseMatchRule("type='signal'"));
    index.add('p5', parseMatchRule("interface='a.B',path='/q'"));
    index.add('p6', parseMatchRule("interface='a.B',arg0='other'"));
    index.add('p7', parseMatchRule("interface='a.B',arg0='x'"));
    const owners: string[] = [];
    index.candidates(signal('a.B', 'Ping', '/p', { value: 'x', code: 's' }), (owner) => owners.push(owner));
    expect(owners.sort()).toEqual(['p1', 'p4', 'p7']);
  });

  it('reads the body for arg0 only when a rule names an arg0', () => {
    const index = new MatchIndex<string>();
    index.add('p1', parseMatchRule("interface='a.B'"));
    let reads = 0;
    const m = { ...signal('a.B', 'Ping'), textArg: () => (reads++, undefined) };
    index.candidates(m, () => {});
    expect(reads).toBe(0);
    index.add('p2', parseMatchRule("interface='a.B',arg0='x'"));
    index.candidates(m, () => {});
    expect(reads).toBe(1);
  });

  it('leaves nothing behind once every rule is removed', () => {
    const index = new MatchIndex<string>();
    const rules = ["interface='a.B',arg0='x'", "path='/p'", "member='M'", ''].map(parseMatchRule);
    for (const r of rules) index.add('p', r);
    for (const r of rules) index.remove('p', r);
    expect(index.count).toBe(0);
    let offered = 0;
    index.candidates(signal('a.B', 'M', '/p', { value: 'x', code: 's' }), () => offered++);
    expect(offered).toBe(0);
    // No empty bucket or map is kept: churn leaves no garbage behind.
    expect((index as unknown as { buckets: unknown[] }).buckets.every((b) => b === undefined)).toBe(true);
  });

  it('offers the rules of one bucket in the order they were added, also after one is taken out', () => {
    const index = new MatchIndex<string>();
    const rules = ['p1', 'p2', 'p3', 'p4'].map((owner) => {
      const rule = parseMatchRule("interface='a.B',member='Ping'");
      index.add(owner, rule);
      return rule;
    });
    const offered = () => {
      const owners: string[] = [];
      index.candidates(signal('a.B', 'Ping'), (owner, rule) => {
        expect(rule.owner).toBe(owner);
        owners.push(owner);
      });
      return owners;
    };
    expect(offered()).toEqual(['p1', 'p2', 'p3', 'p4']);
    index.remove('p2', rules[1]!);
    expect(offered()).toEqual(['p1', 'p3', 'p4']);
    index.remove('p4', rules[3]!);
    expect(offered()).toEqual(['p1', 'p3']);
    index.remove('p1', rules[0]!);
    expect(offered()).toEqual(['p3']);
    index.add('p5', parseMatchRule("member='Ping',interface='a.B'"));
    expect(offered()).toEqual(['p3', 'p5']);
    index.remove('p3', rules[2]!);
    expect(offered()).toEqual(['p5']);
    expect(index.count).toBe(1);
  });

  it('removes a rule only for the owner it was added for, and unlinks it so that it can be added again', () => {
    const index = new MatchIndex<string>();
    const rule = parseMatchRule("member='M'");
    index.add('p1', rule);
    index.remove('p2', rule);
    index.remove('p1', parseMatchRule("member='M'"));
    expect(index.count).toBe(1);
    index.remove('p1', rule);
    expect(index.count).toBe(0);
    expect(rule.owner).toBeUndefined();
    expect(rule.next).toBeUndefined();
    index.add('p2', rule);
    const owners: string[] = [];
    index.candidates(signal('a.B', 'M'), (owner) => owners.push(owner));
    expect(owners).toEqual(['p2']);
  });

  it('refuses a rule that is indexed already (its bucket would loop)', () => {
    const index = new MatchIndex<string>();
    const rule = parseMatchRule("member='M'");
    index.add('p1', rule);
    expect(() => index.add('p2', rule)).toThrow();
    expect(index.count).toBe(1);
  });
});
