import { describe, expect, it } from 'vitest';
import { MessageType } from '../wire/message.js';
import { DBusErrorName } from './errors.js';
import type { Peer } from './peer.js';
import { callDriver, connect, newBus, send, USER, type MemorySink } from './testing.js';
import type { Bus } from './bus.js';

const ALICE = { ...USER, uid: 1001, gid: 1001, groups: [1001] };
const BOB = { ...USER, uid: 1002, gid: 1002, groups: [1002] };
const CAROL = { ...USER, uid: 1003, gid: 1003, groups: [1003] };

function usage(bus: Bus, uid: number) {
  const a = bus.accounts.account(uid);
  return { connections: a.connections, names: a.names, matchRules: a.matchRules, pendingReplies: a.pendingReplies, queuedBytes: a.queuedBytes };
}

function call(bus: Bus, from: Peer, to: Peer, bytes = 0): number {
  return send(bus, from, {
    type: MessageType.MethodCall, destination: to.uniqueName, path: '/obj', interface: 'com.example.Iface', member: 'Frob',
    ...(bytes > 0 ? { signature: 's', args: ['x'.repeat(bytes)] } : {}),
  });
}

function broadcast(bus: Bus, from: Peer, bytes: number): void {
  send(bus, from, { type: MessageType.Signal, path: '/obj', interface: 'com.example.Iface', member: 'Changed', signature: 's', args: ['x'.repeat(bytes)] });
}

function replyTo(sink: MemorySink, caller: Peer, serial: number) {
  return sink.takeReply(caller, serial);
}

describe('per-uid accounting', () => {
  it('charges each connection, name, match rule and pending call to its uid and releases it when it goes', () => {
    const { bus, sink } = newBus();
    const a1 = connect(bus, sink, ALICE);
    const a2 = connect(bus, sink, ALICE);
    const b = connect(bus, sink, BOB);
    callDriver(bus, sink, a1, 'RequestName', 'su', ['com.example.One', 0]);
    callDriver(bus, sink, a2, 'RequestName', 'su', ['com.example.One', 0]); // queued: still held
    callDriver(bus, sink, a2, 'AddMatch', 's', ["type='signal'"]);
    callDriver(bus, sink, a2, 'AddMatch', 's', ["type='signal',member='X'"]);
    call(bus, a1, b);
    for (const p of [a1, a2, b]) sink.take(p); // everything read: no bytes queued
    expect(usage(bus, ALICE.uid)).toEqual({ connections: 2, names: 2, matchRules: 2, pendingReplies: 1, queuedBytes: 0 });
    expect(usage(bus, BOB.uid)).toMatchObject({ connections: 1, names: 0, matchRules: 0, pendingReplies: 0 });

    callDriver(bus, sink, a2, 'RemoveMatch', 's', ["type='signal',member='X'"]);
    callDriver(bus, sink, a1, 'ReleaseName', 's', ['com.example.One']); // a2 becomes the owner
    expect(usage(bus, ALICE.uid)).toMatchObject({ names: 1, matchRules: 1, pendingReplies: 1 });

    bus.detach(b); // the call to b is answered NoReply by the bus: no longer pending
    bus.detach(a2);
    expect(usage(bus, ALICE.uid)).toMatchObject({ connections: 1, names: 0, matchRules: 0, pendingReplies: 0 });
    bus.detach(a1);
    for (const p of [a1, a2, b]) sink.take(p); // a real transport drops a closed connection's queue
    expect(bus.accounts.active().map((a) => a.uid)).toEqual([]);
  });

  it('refuses a connection beyond max_connections_per_user to that uid only', () => {
    const { bus } = newBus({ maxConnectionsPerUser: 2 });
    bus.attach(ALICE);
    bus.attach(ALICE);
    expect(() => bus.attach(ALICE)).toThrow('The maximum number of active connections for UID 1001 has been reached');
    expect(() => bus.attach(BOB)).not.toThrow();
    expect(() => bus.attach(ALICE, undefined, true)).not.toThrow(); // inherited across a handoff: kept
    expect(usage(bus, ALICE.uid).connections).toBe(3);
  });

  it('a uid whose connections never read fills its own account, not its senders\'', () => {
    const { bus, sink } = newBus({ maxOutgoingBytes: 4000 });
    const sender = connect(bus, sink, ALICE);
    const stuck = [connect(bus, sink, BOB), connect(bus, sink, BOB)];
    const reader = connect(bus, sink, CAROL);
    for (const p of [...stuck, reader]) callDriver(bus, sink, p, 'AddMatch', 's', ["type='signal'"]);
    let read = 0;
    for (let i = 0; i < 10; i++) {
      broadcast(bus, sender, 700);
      read += sink.take(reader).length;
    }
    // Broadcasts are charged to their receivers: Bob's two queues share his 4000 bytes.
    expect(usage(bus, BOB.uid).queuedBytes).toBeLessThanOrEqual(4000);
    const bobQueued = sink.take(stuck[0]!).length + sink.take(stuck[1]!).length;
    expect(bobQueued).toBeLessThan(6);
    expect(read).toBe(10);
    expect(usage(bus, ALICE.uid).queuedBytes).toBe(0);
  });

  it('calls to a reader that does not read are charged to the caller: a flooding uid is refused, others are not', () => {
    const { bus, sink } = newBus({ maxOutgoingBytes: 4000 });
    const flooder = connect(bus, sink, ALICE);
    const other = connect(bus, sink, CAROL);
    const service = connect(bus, sink, BOB);
    const answers: Array<string | undefined> = [];
    for (let i = 0; i < 8; i++) {
      const serial = call(bus, flooder, service, 700);
      answers.push(replyTo(sink, flooder, serial)?.errorName);
    }
    expect(answers.filter((e) => e === DBusErrorName.LimitsExceeded).length).toBeGreaterThan(0);
    const refusal = sink.take(flooder).length; // nothing else queued for the flooder
    expect(refusal).toBe(0);
    expect(usage(bus, ALICE.uid).queuedBytes).toBeLessThanOrEqual(4000);
    const serial = call(bus, other, service, 700);
    expect(replyTo(sink, other, serial)).toBeUndefined(); // delivered: no error
    expect(usage(bus, CAROL.uid).queuedBytes).toBeGreaterThan(700);
    // Once the service reads, the flooder's account is free again.
    sink.take(service);
    expect(usage(bus, ALICE.uid).queuedBytes).toBe(0);
  });

  it('the refusal names the uid and max_outgoing_bytes', () => {
    const { bus, sink } = newBus({ maxOutgoingBytes: 2000 });
    const flooder = connect(bus, sink, ALICE);
    const service = connect(bus, sink, BOB);
    call(bus, flooder, service, 1500);
    const serial = call(bus, flooder, service, 1500);
    const error = replyTo(sink, flooder, serial);
    expect(error?.errorName).toBe(DBusErrorName.LimitsExceeded);
    expect(String(error?.args[0])).toMatch(/uid 1001 has max_outgoing_bytes \(2000\) queued/);
  });

  it('keeps the highest usage each uid reached', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink, ALICE);
    for (let i = 0; i < 3; i++) callDriver(bus, sink, a, 'AddMatch', 's', [`member='M${i}'`]);
    bus.detach(a);
    const account = bus.accounts.account(ALICE.uid);
    expect(account.matchRules).toBe(0);
    expect(account.peak.matchRules).toBe(3);
  });
});
