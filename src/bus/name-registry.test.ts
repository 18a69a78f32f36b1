import { describe, expect, it } from 'vitest';
import { NameRegistry, type NameOwnerChange } from './name-registry.js';
import { Peer } from './peer.js';
import { USER } from './testing.js';

const ALLOW = 1;
const REPLACE = 2;
const NO_QUEUE = 4;
const [PRIMARY, IN_QUEUE, EXISTS, ALREADY] = [1, 2, 3, 4];
const [RELEASED, NON_EXISTENT, NOT_OWNER] = [1, 2, 3];

function peers(n: number): Peer[] {
  return Array.from({ length: n }, (_, i) => {
    const p = new Peer(i + 1, USER);
    p.uniqueName = `:1.${i + 1}`;
    return p;
  });
}

const changes = (cs: NameOwnerChange[]) =>
  cs.map((c) => [c.name, c.oldOwner?.uniqueName ?? '', c.newOwner?.uniqueName ?? '']);
const queueOf = (r: NameRegistry, name: string) => r.queue(name).map((o) => o.peer.uniqueName);

describe('NameRegistry.request', () => {
  it('makes the first requester primary owner and reports the change', () => {
    const r = new NameRegistry();
    const [a] = peers(1);
    const res = r.request(a!, 'com.x', 0);
    expect(res.reply).toBe(PRIMARY);
    expect(changes(res.changes)).toEqual([['com.x', '', ':1.1']]);
    expect(r.owner('com.x')).toBe(a);
    expect(a!.names.has('com.x')).toBe(true);
  });

  it('answers AlreadyOwner to the primary owner, changes nothing and updates its flags', () => {
    const r = new NameRegistry();
    const [a, b] = peers(2);
    r.request(a!, 'com.x', 0);
    const res = r.request(a!, 'com.x', ALLOW);
    expect(res).toEqual({ reply: ALREADY, changes: [] });
    // The new ALLOW_REPLACEMENT flag is in force: b can now take the name.
    expect(r.request(b!, 'com.x', REPLACE).reply).toBe(PRIMARY);
  });

  it('can withdraw ALLOW_REPLACEMENT by requesting again', () => {
    const r = new NameRegistry();
    const [a, b] = peers(2);
    r.request(a!, 'com.x', ALLOW);
    r.request(a!, 'com.x', 0);
    expect(r.request(b!, 'com.x', REPLACE | NO_QUEUE).reply).toBe(EXISTS);
  });

  // Every flag combination of the second requester against every flag combination of the owner.
  const expectations: Array<[owner: number, requester: number, reply: number]> = [];
  for (let owner = 0; owner < 8; owner++) {
    for (let req = 0; req < 8; req++) {
      const replaces = (req & REPLACE) !== 0 && (owner & ALLOW) !== 0;
      expectations.push([owner, req, replaces ? PRIMARY : req & NO_QUEUE ? EXISTS : IN_QUEUE]);
    }
  }
  it.each(expectations)('owner flags %i, requester flags %i → reply %i', (ownerFlags, reqFlags, reply) => {
    const r = new NameRegistry();
    const [a, b] = peers(2);
    r.request(a!, 'com.x', ownerFlags);
    const res = r.request(b!, 'com.x', reqFlags);
    expect(res.reply).toBe(reply);
    if (reply === PRIMARY) {
      expect(changes(res.changes)).toEqual([['com.x', ':1.1', ':1.2']]);
      // The replaced owner waits right behind the new one unless it asked not to be queued.
      expect(queueOf(r, 'com.x')).toEqual(ownerFlags & NO_QUEUE ? [':1.2'] : [':1.2', ':1.1']);
      expect(a!.names.has('com.x')).toBe((ownerFlags & NO_QUEUE) === 0);
    } else {
      expect(res.changes).toEqual([]);
      expect(queueOf(r, 'com.x')).toEqual(reply === IN_QUEUE ? [':1.1', ':1.2'] : [':1.1']);
      expect(b!.names.has('com.x')).toBe(reply === IN_QUEUE);
    }
  });

  it('puts the replaced owner second, ahead of owners that were already queued (as dbus-daemon does)', () => {
    const r = new NameRegistry();
    const [a, b, c] = peers(3);
    r.request(a!, 'com.x', ALLOW);
    r.request(b!, 'com.x', 0);
    r.request(c!, 'com.x', REPLACE);
    expect(queueOf(r, 'com.x')).toEqual([':1.3', ':1.1', ':1.2']);
  });

  it('lets a queued owner replace the primary, leaving the queue without duplicates', () => {
    const r = new NameRegistry();
    const [a, b, c] = peers(3);
    r.request(a!, 'com.x', ALLOW);
    r.request(b!, 'com.x', 0);
    r.request(c!, 'com.x', 0);
    const res = r.request(c!, 'com.x', REPLACE);
    expect(res.reply).toBe(PRIMARY);
    expect(queueOf(r, 'com.x')).toEqual([':1.3', ':1.1', ':1.2']);
  });

  it('keeps a queued owner in place when it asks again, and drops it when it asks again with DO_NOT_QUEUE', () => {
    const r = new NameRegistry();
    const [a, b, c] = peers(3);
    r.request(a!, 'com.x', 0);
    r.request(b!, 'com.x', 0);
    r.request(c!, 'com.x', 0);
    expect(r.request(b!, 'com.x', 0).reply).toBe(IN_QUEUE);
    expect(queueOf(r, 'com.x')).toEqual([':1.1', ':1.2', ':1.3']);
    expect(r.request(b!, 'com.x', NO_QUEUE).reply).toBe(EXISTS);
    expect(queueOf(r, 'com.x')).toEqual([':1.1', ':1.3']);
    expect(b!.names.has('com.x')).toBe(false);
  });
});

describe('NameRegistry.release', () => {
  it('reports NonExistent for a name nobody holds', () => {
    const r = new NameRegistry();
    const [a] = peers(1);
    expect(r.release(a!, 'com.x')).toEqual({ reply: NON_EXISTENT, changes: [] });
  });

  it('reports NotOwner to a peer neither owning nor queued', () => {
    const r = new NameRegistry();
    const [a, b] = peers(2);
    r.request(a!, 'com.x', 0);
    expect(r.release(b!, 'com.x')).toEqual({ reply: NOT_OWNER, changes: [] });
    expect(r.owner('com.x')).toBe(a);
  });

  it('frees the name when the only owner releases it', () => {
    const r = new NameRegistry();
    const [a] = peers(1);
    r.request(a!, 'com.x', 0);
    const res = r.release(a!, 'com.x');
    expect(res.reply).toBe(RELEASED);
    expect(changes(res.changes)).toEqual([['com.x', ':1.1', '']]);
    expect(r.owner('com.x')).toBeUndefined();
    expect([...r.ownedNames()]).toEqual([]);
    expect(a!.names.size).toBe(0);
  });

  it('promotes the next queued owner', () => {
    const r = new NameRegistry();
    const [a, b, c] = peers(3);
    r.request(a!, 'com.x', 0);
    r.request(b!, 'com.x', 0);
    r.request(c!, 'com.x', 0);
    const res = r.release(a!, 'com.x');
    expect(changes(res.changes)).toEqual([['com.x', ':1.1', ':1.2']]);
    expect(queueOf(r, 'com.x')).toEqual([':1.2', ':1.3']);
  });

  it('removes a queued owner without any change of primary owner', () => {
    const r = new NameRegistry();
    const [a, b] = peers(2);
    r.request(a!, 'com.x', 0);
    r.request(b!, 'com.x', 0);
    expect(r.release(b!, 'com.x')).toEqual({ reply: RELEASED, changes: [] });
    expect(queueOf(r, 'com.x')).toEqual([':1.1']);
    expect(b!.names.size).toBe(0);
  });
});

describe('NameRegistry.releaseAll', () => {
  it('drops every ownership and queue place, reporting only primary-owner changes', () => {
    const r = new NameRegistry();
    const [a, b] = peers(2);
    r.request(a!, 'com.one', 0);
    r.request(a!, 'com.two', 0);
    r.request(b!, 'com.two', 0);
    r.request(b!, 'com.three', 0);
    r.request(a!, 'com.three', 0);
    const cs = r.releaseAll(a!);
    expect(changes(cs)).toEqual([
      ['com.one', ':1.1', ''],
      ['com.two', ':1.1', ':1.2'],
    ]);
    expect(a!.names.size).toBe(0);
    expect(queueOf(r, 'com.three')).toEqual([':1.2']);
    expect([...r.ownedNames()].sort()).toEqual(['com.three', 'com.two']);
  });

  it('restores a queue verbatim and keeps the peers\' name sets in step', () => {
    const r = new NameRegistry();
    const [a, b] = peers(2);
    r.restore('com.x', [{ peer: a!, flags: ALLOW }, { peer: b!, flags: 0 }]);
    expect(queueOf(r, 'com.x')).toEqual([':1.1', ':1.2']);
    expect(b!.names.has('com.x')).toBe(true);
    expect(r.request(b!, 'com.x', REPLACE).reply).toBe(PRIMARY);
  });
});
