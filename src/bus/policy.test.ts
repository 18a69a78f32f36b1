import { describe, expect, it } from 'vitest';
import { parseConfig } from '../supervisor/config.js';
import { MessageType } from '../wire/message.js';
import { Bus } from './bus.js';
import { DBusErrorName } from './errors.js';
import type { Credentials, Peer } from './peer.js';
import { BusPolicy, type IdentityLookup } from './policy.js';
import { BUS_SELF, callDriver, MemorySink, send, show } from './testing.js';

const IDS: IdentityLookup = {
  uidOf: (name) => ({ root: 0, alice: 1000, bob: 1001 } as Record<string, number>)[name],
  gidOf: (name) => ({ root: 0, wheel: 10, staff: 50 } as Record<string, number>)[name],
};
const ROOT: Credentials = { uid: 0, gid: 0, pid: 10, groups: [0] };
const ALICE: Credentials = { uid: 1000, gid: 1000, pid: 11, groups: [1000, 10] };
const BOB: Credentials = { uid: 1001, gid: 1001, pid: 12, groups: [1001] };

function compile(policyXml: string): BusPolicy {
  const config = parseConfig(`<busconfig>${policyXml}</busconfig>`, '/test/policy.conf', { selinuxEnabled: false });
  return BusPolicy.compile(config.policies, IDS, BUS_SELF.uid);
}

function busWith(policyXml: string): { bus: Bus; sink: MemorySink } {
  const sink = new MemorySink();
  const bus = new Bus(sink, {
    guid: 'f'.repeat(32), machineId: 'a'.repeat(32), kind: 'system', self: BUS_SELF, policy: compile(policyXml),
  });
  return { bus, sink };
}

function join(bus: Bus, sink: MemorySink, who: Credentials): Peer {
  const peer = bus.attach(who);
  callDriver(bus, sink, peer, 'Hello');
  sink.take(peer);
  return peer;
}

function own(bus: Bus, sink: MemorySink, peer: Peer, name: string): string {
  const r = callDriver(bus, sink, peer, 'RequestName', 'su', [name, 0])!;
  return r.type === MessageType.Error ? `${r.errorName}: ${String(r.args[0])}` : `reply ${String(r.args[0])}`;
}

function call(bus: Bus, from: Peer, to: string, iface: string | undefined, member = 'Frob'): number {
  return send(bus, from, { type: MessageType.MethodCall, destination: to, path: '/obj', interface: iface, member });
}

/** The stock system.conf default context, trimmed to what these tests exercise. */
const SYSTEM_DEFAULT = `
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <policy user="root">
    <allow own="com.example.Service"/>
    <allow send_destination="com.example.Service"/>
  </policy>
  <policy context="default">
    <allow send_destination="com.example.Service" send_interface="com.example.Public"/>
  </policy>`;

describe('send and own under a default-deny policy', () => {
  it('lets root own a name the policy gives it, and refuses everyone else with dbus-daemon\'s text', () => {
    const { bus, sink } = busWith(SYSTEM_DEFAULT);
    const root = join(bus, sink, ROOT);
    const alice = join(bus, sink, ALICE);
    expect(own(bus, sink, root, 'com.example.Service')).toBe('reply 1');
    expect(own(bus, sink, alice, 'com.example.Other')).toBe(
      `${DBusErrorName.AccessDenied}: Connection "${alice.uniqueName}" is not allowed to own the service "com.example.Other" due to security policies in the configuration file`,
    );
  });

  it('delivers an allowed call and its reply, refuses a denied call with AccessDenied naming the rule count', () => {
    const { bus, sink } = busWith(SYSTEM_DEFAULT);
    const root = join(bus, sink, ROOT);
    const alice = join(bus, sink, ALICE);
    own(bus, sink, root, 'com.example.Service');
    sink.take(root);

    const allowed = call(bus, alice, 'com.example.Service', 'com.example.Public');
    expect(sink.take(root).map(show)).toEqual(['call Frob()']);
    send(bus, root, { type: MessageType.MethodReturn, destination: alice.uniqueName, replySerial: allowed });
    expect(sink.take(alice).map(show)).toEqual(['return()']);

    const denied = call(bus, alice, 'com.example.Service', 'com.example.Private');
    expect(sink.take(root)).toEqual([]);
    const error = sink.takeReply(alice, denied)!;
    expect(error.errorName).toBe(DBusErrorName.AccessDenied);
    expect(String(error.args[0])).toBe(
      `Rejected send message, 1 matched rules; type="method_call", sender="${alice.uniqueName}" (uid=1000 pid=11) ` +
      `interface="com.example.Private" member="Frob" error name="(unset)" requested_reply="0" ` +
      `destination="com.example.Service" (uid=0 pid=10)`,
    );
  });

  it('applies send_destination to every name the receiver owns or queues for', () => {
    const { bus, sink } = busWith(`${SYSTEM_DEFAULT}
      <policy context="default"><allow own="*"/><allow send_destination="com.example.Queued"/></policy>`);
    const root = join(bus, sink, ROOT);
    const alice = join(bus, sink, ALICE);
    own(bus, sink, root, 'com.example.Service');
    own(bus, sink, root, 'com.example.Queued');
    sink.take(root);
    // Addressed by its other name, the receiver still owns com.example.Queued: allowed.
    call(bus, alice, 'com.example.Service', 'com.example.Anything');
    expect(sink.take(root).map(show)).toEqual(['call Frob()']);
  });

  it('skips an allow rule naming an interface for a message without one, but applies such a deny rule', () => {
    const { bus, sink } = busWith(`${SYSTEM_DEFAULT}
      <policy context="default"><allow own="*"/><allow send_destination="com.example.Open"/>
        <deny send_destination="com.example.Open" send_interface="com.example.Secret"/></policy>`);
    const service = join(bus, sink, BOB);
    const alice = join(bus, sink, ALICE);
    own(bus, sink, service, 'com.example.Open');
    own(bus, sink, service, 'com.example.Service');
    sink.take(service);
    // No interface: the deny rule naming an interface applies.
    const noInterface = call(bus, alice, 'com.example.Open', undefined);
    expect(sink.takeReply(alice, noInterface)?.errorName).toBe(DBusErrorName.AccessDenied);
    // The allow rule for com.example.Public (with an interface) does not let an interface-less call through.
    const toService = call(bus, alice, 'com.example.Service', undefined);
    expect(sink.takeReply(alice, toService)?.errorName).toBe(DBusErrorName.AccessDenied);
    expect(sink.take(service)).toEqual([]);
  });

  it('orders mandatory over user over group over default, the last matching rule winning within each', () => {
    const policy = compile(`
      <policy context="default"><allow own="a.b"/></policy>
      <policy group="wheel"><deny own="a.b"/></policy>
      <policy user="alice"><allow own="a.b"/><deny own_prefix="a"/></policy>
      <policy context="mandatory"><allow own="a.b.c"/></policy>`);
    const alice = policy.forPeer(ALICE);
    expect(alice.canOwn('a.b')).toBe(false); // user's own_prefix deny comes last
    expect(alice.canOwn('a.b.c')).toBe(true); // mandatory wins
    expect(alice.canOwn('ab')).toBe(false); // a prefix matches at a dot only: nothing matched, denied
    const bob = policy.forPeer(BOB);
    expect(bob.canOwn('a.b')).toBe(true); // default only
    expect(policy.forPeer({ ...BOB, groups: [10] }).canOwn('a.b')).toBe(false); // wheel's deny
  });

  it('asks for a peer\'s groups only when a <policy group=…> could change its rules', () => {
    let reads = 0;
    const counting = (who: Credentials): Credentials => ({
      uid: who.uid, gid: who.gid, pid: who.pid,
      get groups() { reads++; return who.groups; },
    });
    const userOnly = compile(`
      <policy context="default"><allow own="a.b"/></policy>
      <policy user="alice"><deny own="a.b"/></policy>`);
    expect(userOnly.forPeer(counting(ALICE)).canOwn('a.b')).toBe(false);
    expect(userOnly.forPeer(counting(BOB)).canOwn('a.b')).toBe(true);
    expect(reads).toBe(0);
    const withGroup = compile(`
      <policy context="default"><allow own="a.b"/></policy>
      <policy group="wheel"><deny own="a.b"/></policy>`);
    expect(withGroup.forPeer(counting(ALICE)).canOwn('a.b')).toBe(false); // alice is in wheel
    expect(withGroup.forPeer(counting(BOB)).canOwn('a.b')).toBe(true);
    expect(reads).toBe(2);
  });
});

describe('receive rules', () => {
  const POLICY = `
    <policy context="default">
      <allow user="*"/><allow own="*"/>
      <allow send_destination="*"/>
      <allow receive_type="*"/>
    </policy>
    <policy user="bob"><deny receive_interface="com.example.Noise"/></policy>`;

  it('skips a receiver that may not receive a broadcast, silently, and still delivers to the others', () => {
    const { bus, sink } = busWith(POLICY);
    const alice = join(bus, sink, ALICE);
    const bob = join(bus, sink, BOB);
    const root = join(bus, sink, ROOT);
    for (const p of [alice, bob]) callDriver(bus, sink, p, 'AddMatch', 's', ["type='signal',interface='com.example.Noise'"]);
    send(bus, root, { type: MessageType.Signal, path: '/obj', interface: 'com.example.Noise', member: 'Beep' });
    expect(sink.take(alice).map(show)).toEqual(['signal Beep()']);
    expect(sink.take(bob)).toEqual([]);
    expect(sink.take(root)).toEqual([]);
  });

  it('refuses a call the receiver may not receive with "Rejected receive message"', () => {
    const { bus, sink } = busWith(POLICY);
    const alice = join(bus, sink, ALICE);
    const bob = join(bus, sink, BOB);
    const serial = call(bus, alice, bob.uniqueName!, 'com.example.Noise');
    const error = sink.takeReply(alice, serial)!;
    expect(error.errorName).toBe(DBusErrorName.AccessDenied);
    expect(String(error.args[0])).toMatch(/^Rejected receive message, 2 matched rules; type="method_call"/);
    expect(sink.take(bob)).toEqual([]);
  });

  it('lets an eavesdropper overhear only with an eavesdrop="true" rule', () => {
    for (const [extra, overhears] of [['', false], ['<allow eavesdrop="true"/>', true]] as const) {
      const { bus, sink } = busWith(`${POLICY}<policy user="alice">${extra}</policy>`);
      const alice = join(bus, sink, ALICE);
      const bob = join(bus, sink, BOB);
      const root = join(bus, sink, ROOT);
      const r = callDriver(bus, sink, alice, 'AddMatch', 's', ["eavesdrop='true',type='method_call'"]);
      expect(r?.type).toBe(MessageType.MethodReturn);
      call(bus, root, bob.uniqueName!, 'com.example.Talk');
      expect(sink.take(bob).map(show)).toEqual(['call Frob()']);
      expect(sink.take(alice).map(show)).toEqual(overhears ? ['call Frob()'] : []);
    }
  });
});

describe('replies', () => {
  it('denies a requested reply only where a rule says send_requested_reply="true"', () => {
    const { bus, sink } = busWith(`${SYSTEM_DEFAULT}
      <policy context="default"><allow own="*"/><allow send_destination="com.example.Echo"/></policy>
      <policy user="bob"><deny send_type="method_return" send_requested_reply="true"/></policy>`);
    const alice = join(bus, sink, ALICE);
    const bob = join(bus, sink, BOB);
    const root = join(bus, sink, ROOT);
    own(bus, sink, bob, 'com.example.Echo');
    own(bus, sink, root, 'com.example.Echo2');
    sink.take(bob);
    const serial = call(bus, alice, 'com.example.Echo', 'com.example.Echo');
    expect(sink.take(bob).map(show)).toEqual(['call Frob()']);
    send(bus, bob, { type: MessageType.MethodReturn, destination: alice.uniqueName, replySerial: serial });
    expect(sink.take(alice)).toEqual([]);
  });

  it('withholds even the bus\'s replies from a connection no receive rule allows (default deny)', () => {
    const allowedPolicy = '<allow user="*"/><allow send_destination="org.freedesktop.DBus"/>';
    for (const [receive, answered] of [['', false], ['<allow receive_type="method_return"/>', true]] as const) {
      const { bus, sink } = busWith(`<policy context="default">${allowedPolicy}${receive}</policy>`);
      const alice = bus.attach(ALICE);
      callDriver(bus, sink, alice, 'Hello');
      sink.take(alice);
      expect(callDriver(bus, sink, alice, 'GetId')?.type).toBe(answered ? MessageType.MethodReturn : undefined);
    }
  });
});

describe('connect check', () => {
  it('follows <allow user>/<allow group> in default and mandatory, and lets the bus user in by default', () => {
    const policy = compile(`
      <policy context="default"><allow group="wheel"/></policy>
      <policy context="mandatory"><deny user="bob"/></policy>`);
    expect(policy.allowsConnect(ALICE)).toBe(true); // in wheel
    expect(policy.allowsConnect(BOB)).toBe(false);
    expect(policy.allowsConnect({ ...BOB, uid: 1002, groups: [] })).toBe(false);
    expect(policy.allowsConnect(BUS_SELF)).toBe(true);
    expect(compile('<policy context="default"><allow user="*"/></policy>').allowsConnect(BOB)).toBe(true);
  });

  it('warns about unknown users and groups and ignores their rules', () => {
    const policy = compile(`
      <policy user="nobody-here"><allow own="*"/></policy>
      <policy context="default"><allow user="ghost"/><allow group="phantoms"/></policy>`);
    expect(policy.warnings).toHaveLength(3);
    expect(policy.warnings[0]).toMatch(/unknown user "nobody-here".*\/test\/policy\.conf:2/);
    expect(policy.allowsConnect(BOB)).toBe(false);
  });
});

describe('reload', () => {
  it('gives every connected peer the new rules', () => {
    const { bus, sink } = busWith('<policy context="default"><allow user="*"/><allow send_destination="org.freedesktop.DBus"/><allow receive_type="*"/></policy>');
    const alice = join(bus, sink, ALICE);
    expect(own(bus, sink, alice, 'com.example.Later')).toMatch(/^org.freedesktop.DBus.Error.AccessDenied/);
    bus.setPolicy(compile('<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_type="*"/></policy>'));
    expect(own(bus, sink, alice, 'com.example.Later')).toBe('reply 1');
  });

  it('fingerprints two configs that mean the same alike, and different ones apart', () => {
    const a = compile('<policy context="default"><allow own="a"/></policy><policy user="root"><allow own="b"/></policy>');
    const b = compile('<policy user="root">\n<allow own="b"/></policy><policy context="default"><allow own="a"/></policy>');
    const c = compile('<policy context="default"><allow own="a"/></policy><policy user="alice"><allow own="b"/></policy>');
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(a.fingerprint).not.toBe(c.fingerprint);
  });
});
