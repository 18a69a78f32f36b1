import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MatchIndex } from './match-index.js';
import { matchRuleMatches, parseMatchRule, type MatchRule, type MatchTarget } from './match-rule.js';

const IFACES = ['a.B', 'a.C', 'x.Y'];
const MEMBERS = ['Ping', 'Pong', 'Changed'];

function signal(iface: string | undefined, member: string | undefined, type = 4): MatchTarget {
  return {
    type,
    sender: ':1.1',
    interface: iface,
    member,
    path: '/p',
    senderOwns: () => false,
    addressedTo: () => false,
    textArg: () => undefined,
  };
}

const ruleText = fc
  .record({
    iface: fc.option(fc.constantFrom(...IFACES), { nil: undefined }),
    member: fc.option(fc.constantFrom(...MEMBERS), { nil: undefined }),
    type: fc.option(fc.constantFrom('signal', 'method_call'), { nil: undefined }),
    path: fc.option(fc.constantFrom('/p', '/q'), { nil: undefined }),
  })
  .map(({ iface, member, type, path }) =>
    [iface && `interface='${iface}'`, member && `member='${member}'`, type && `type='${type}'`, path && `path='${path}'`].filter(Boolean).join(','),
  );

describe('MatchIndex', () => {
  it('offers every rule that matches a message among its candidates, whatever the rules (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(5), ruleText), { maxLength: 30 }),
        fc.nat(),
        fc.option(fc.constantFrom(...IFACES), { nil: undefined }),
        fc.option(fc.constantFrom(...MEMBERS), { nil: undefined }),
        (entries, removeEvery, iface, member) => {
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
          const m = signal(iface, member);
          const offered = new Set<MatchRule>();
          index.candidates(iface, member, ({ rule }) => offered.add(rule));
          for (const { rule } of live) if (matchRuleMatches(rule, m)) expect(offered.has(rule)).toBe(true);
          // Nothing removed is offered.
          for (const rule of offered) expect(live.some((e) => e.rule === rule)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('does not offer rules naming another interface or member', () => {
    const index = new MatchIndex<string>();
    index.add('p1', parseMatchRule("interface='a.B',member='Ping'"));
    index.add('p2', parseMatchRule("interface='x.Y'"));
    index.add('p3', parseMatchRule("member='Pong'"));
    index.add('p4', parseMatchRule("type='signal'"));
    const owners: string[] = [];
    index.candidates('a.B', 'Ping', ({ owner }) => owners.push(owner));
    expect(owners.sort()).toEqual(['p1', 'p4']);
  });
});
