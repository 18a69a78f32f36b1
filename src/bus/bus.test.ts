import { describe, expect, it } from 'vitest';
import { MessageFlag, MessageType } from '../wire/message.js';
import type { DBusValue } from '../wire/values.js';
import { BUS_NAME, BUS_PATH, type Bus } from './bus.js';
import { BusError, DBusErrorName } from './errors.js';
import type { Peer } from './peer.js';
import { callDriver, connect, newBus, send, show, USER, type MemorySink } from './testing.js';

const E = DBusErrorName;
const IFACE = 'com.example.Iface';

function call(bus: Bus, from: Peer, to: string, extra: { flags?: number; sender?: string; args?: DBusValue[]; signature?: string; member?: string } = {}): number {
  return send(bus, from, { type: MessageType.MethodCall, destination: to, path: '/obj', interface: IFACE, member: extra.member ?? 'Frob', ...extra });
}
function reply(bus: Bus, from: Peer, to: string, replySerial: number, type = MessageType.MethodReturn): number {
  return send(bus, from, { type, destination: to, replySerial, ...(type === MessageType.Error ? { errorName: 'com.example.Error.Oops' } : {}) });
}
function signal(bus: Bus, from: Peer, extra: { destination?: string; sender?: string; member?: string; path?: string; args?: DBusValue[]; signature?: string } = {}): number {
  return send(bus, from, { type: MessageType.Signal, path: extra.path ?? '/obj', interface: IFACE, member: extra.member ?? 'Changed', ...extra });
}
function addMatch(bus: Bus, sink: MemorySink, p: Peer, rule: string): void {
  const r = callDriver(bus, sink, p, 'AddMatch', 's', [rule]);
  expect(r?.type, r?.args.join()).toBe(MessageType.MethodReturn);
}
const mail = (sink: MemorySink, p: Peer) => sink.take(p).map(show);

describe('unicast routing', () => {
  it('delivers to a unique name with SENDER stitched in', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    const serial = call(bus, a, ':1.1', { signature: 's', args: ['hi'] });
    const got = sink.take(b);
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ type: MessageType.MethodCall, serial, sender: ':1.0', destination: ':1.1', member: 'Frob', args: ['hi'] });
  });

  it('delivers to the primary owner of a well-known name', () => {
    const { bus, sink } = newBus();
    const [a, b, c] = [connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.b', 0]);
    callDriver(bus, sink, c, 'RequestName', 'su', ['com.b', 0]);
    sink.take(b);
    call(bus, a, 'com.b');
    expect(sink.take(b).map((m) => m.destination)).toEqual(['com.b']);
    expect(sink.take(c)).toEqual([]);
  });

  it('replaces a forged SENDER', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    call(bus, a, ':1.1', { sender: 'org.freedesktop.DBus' });
    signal(bus, a, { destination: ':1.1', sender: ':1.1' });
    expect(sink.take(b).map((m) => m.sender)).toEqual([':1.0', ':1.0']);
  });

  it('answers ServiceUnknown for a missing name, NameHasNoOwner with NO_AUTO_START', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const s1 = call(bus, a, 'com.missing');
    const s2 = call(bus, a, ':1.98', { flags: MessageFlag.NoAutoStart });
    const got = sink.take(a);
    expect(got.map((m) => [m.errorName, m.replySerial, m.sender])).toEqual([
      [E.ServiceUnknown, s1, BUS_NAME],
      [E.NameHasNoOwner, s2, BUS_NAME],
    ]);
  });

  it('sends no error for a missing name when no reply is expected, nor for a signal', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    call(bus, a, 'com.missing', { flags: MessageFlag.NoReplyExpected });
    signal(bus, a, { destination: 'com.missing' });
    expect(sink.take(a)).toEqual([]);
  });

  it('delivers unicast signals to their destination only', () => {
    const { bus, sink } = newBus();
    const [a, b, c] = [connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    addMatch(bus, sink, c, "type='signal'");
    signal(bus, a, { destination: ':1.1' });
    expect(mail(sink, b)).toEqual(['signal Changed()']);
    expect(sink.take(c)).toEqual([]);
  });

  it('disconnects a peer using the reserved local path or interface, or unix fds', () => {
    const { bus, sink } = newBus();
    const [a, b, c] = [connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    send(bus, a, { type: MessageType.Signal, path: '/org/freedesktop/DBus/Local', interface: IFACE, member: 'X' });
    send(bus, b, { type: MessageType.Signal, path: '/obj', interface: 'org.freedesktop.DBus.Local', member: 'Disconnected' });
    send(bus, c, { type: MessageType.MethodCall, destination: ':1.0', path: '/obj', member: 'X', unixFds: 1 });
    expect([...sink.disconnected.keys()]).toEqual([a, b, c]);
  });
});

describe('replies', () => {
  it('routes a reply that answers a pending call, once', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    const serial = call(bus, a, ':1.1');
    expect(a.pendingCalls).toBe(1);
    reply(bus, b, ':1.0', serial);
    reply(bus, b, ':1.0', serial);
    const got = sink.take(a);
    expect(got.map((m) => [m.type, m.replySerial, m.sender])).toEqual([[MessageType.MethodReturn, serial, ':1.1']]);
    expect(a.pendingCalls).toBe(0);
  });

  it('routes error replies too, and accepts a reply addressed to a well-known name of the caller', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.a', 0]);
    sink.take(a);
    const serial = call(bus, a, ':1.1');
    reply(bus, b, 'com.a', serial, MessageType.Error);
    expect(sink.take(a).map((m) => m.errorName)).toEqual(['com.example.Error.Oops']);
  });

  it('drops replies nobody asked for: unknown serial, wrong replier, unknown destination', () => {
    const { bus, sink } = newBus();
    const [a, b, c] = [connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    const serial = call(bus, a, ':1.1');
    reply(bus, b, ':1.0', serial + 100);
    reply(bus, c, ':1.0', serial);
    reply(bus, b, ':1.76', serial);
    expect(sink.take(a)).toEqual([]);
    expect([sink.take(b).length, sink.take(c)]).toEqual([1, []]);
    reply(bus, b, ':1.0', serial);
    expect(sink.take(a)).toHaveLength(1);
  });

  it('records no pending reply for NO_REPLY_EXPECTED calls, so their replies are dropped', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    const serial = call(bus, a, ':1.1', { flags: MessageFlag.NoReplyExpected });
    expect(sink.take(b)[0]!.flags & MessageFlag.NoReplyExpected).toBe(MessageFlag.NoReplyExpected);
    expect(a.pendingCalls).toBe(0);
    reply(bus, b, ':1.0', serial);
    expect(sink.take(a)).toEqual([]);
  });

  it('sends NoReply to callers when the callee disconnects; the callee gets no NameLost', () => {
    const { bus, sink } = newBus();
    const [a, b, c] = [connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    const s1 = call(bus, a, ':1.1');
    const s2 = call(bus, c, ':1.1');
    call(bus, b, ':1.0');
    expect(sink.take(a).map(show)).toEqual(['call Frob()']);
    bus.detach(b);
    expect(sink.take(a).map((m) => [m.errorName, m.replySerial])).toEqual([[E.NoReply, s1]]);
    expect(sink.take(c).map((m) => [m.errorName, m.replySerial])).toEqual([[E.NoReply, s2]]);
    expect(a.pendingCalls).toBe(0);
    // b's own pending call to a is forgotten: a's late reply goes nowhere.
    expect(bus.replies.all().next().done).toBe(true);
  });

  it('enforces maxRepliesPerConnection with LimitsExceeded, not delivering the call', () => {
    const { bus, sink } = newBus({ maxRepliesPerConnection: 1 });
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    const s1 = call(bus, a, ':1.1');
    const s2 = call(bus, a, ':1.1');
    expect(sink.take(a).map((m) => [m.errorName, m.replySerial])).toEqual([[E.LimitsExceeded, s2]]);
    expect(sink.take(b).map((m) => m.serial)).toEqual([s1]);
    // Calls that expect no reply are not counted.
    call(bus, a, ':1.1', { flags: MessageFlag.NoReplyExpected });
    expect(sink.take(b)).toHaveLength(1);
    reply(bus, b, ':1.0', s1);
    sink.take(a);
    call(bus, a, ':1.1');
    expect(sink.take(b)).toHaveLength(1);
  });

  it('answers LimitsExceeded when the receiver refuses the bytes (quota), and expects no reply', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    sink.full.add(b);
    const serial = call(bus, a, ':1.1');
    expect(sink.take(a).map((m) => [m.errorName, m.replySerial])).toEqual([[E.LimitsExceeded, serial]]);
    expect(a.pendingCalls).toBe(0);
    sink.full.delete(b);
    reply(bus, b, ':1.0', serial);
    expect(sink.take(a)).toEqual([]);
  });
});

describe('messages without destination', () => {
  it('answers org.freedesktop.DBus.Peer calls itself and UnknownMethod to anything else', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const ping = send(bus, a, { type: MessageType.MethodCall, path: '/', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' });
    const id = send(bus, a, { type: MessageType.MethodCall, path: '/', member: 'GetMachineId' });
    const other = send(bus, a, { type: MessageType.MethodCall, path: '/', interface: BUS_NAME, member: 'ListNames' });
    expect(sink.take(a).map((m) => [m.replySerial, show(m)])).toEqual([
      [ping, 'return()'],
      [id, `return('${'a'.repeat(32)}')`],
      [other, `error ${E.UnknownMethod}`],
    ]);
  });

  it('broadcasts no method calls or replies', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    addMatch(bus, sink, b, '');
    send(bus, a, { type: MessageType.MethodCall, path: '/obj', interface: IFACE, member: 'Frob', flags: MessageFlag.NoReplyExpected });
    send(bus, a, { type: MessageType.MethodReturn, replySerial: 5 });
    send(bus, a, { type: MessageType.Error, replySerial: 5, errorName: 'com.example.Error.Oops' });
    expect(sink.take(b)).toEqual([]);
    expect(sink.take(a)).toEqual([]);
  });
});

describe('broadcast signals', () => {
  it('reach matching subscribers only, each once even with two matching rules', () => {
    const { bus, sink } = newBus();
    const [a, b, c, d] = [connect(bus, sink), connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    addMatch(bus, sink, b, `type='signal',interface='${IFACE}'`);
    addMatch(bus, sink, b, "member='Changed'");
    addMatch(bus, sink, c, "member='Other'");
    addMatch(bus, sink, a, "path_namespace='/obj'");
    signal(bus, a);
    expect(mail(sink, b)).toEqual(['signal Changed()']);
    expect(sink.take(c)).toEqual([]);
    expect(sink.take(d)).toEqual([]);
    // The sender's own matching rule applies to it too.
    expect(mail(sink, a)).toEqual(['signal Changed()']);
  });

  it('stop after RemoveMatch and after the subscriber leaves', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    addMatch(bus, sink, b, "member='Changed'");
    callDriver(bus, sink, b, 'RemoveMatch', 's', ["member='Changed'"]);
    signal(bus, a);
    expect(sink.take(b)).toEqual([]);
  });

  it('match arguments and sender by well-known name', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.a', 0]);
    addMatch(bus, sink, b, "sender='com.a',arg0='yes',arg1path='/x/'");
    signal(bus, a, { signature: 'so', args: ['yes', '/x/y'] });
    signal(bus, a, { signature: 'so', args: ['no', '/x/y'] });
    signal(bus, a, { signature: 'so', args: ['yes', '/y'] });
    expect(sink.take(b).map((m) => m.args)).toEqual([['yes', '/x/y']]);
  });

  it('the bus driver broadcasts NameOwnerChanged as sender org.freedesktop.DBus', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    addMatch(bus, sink, a, "sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='com.x'");
    const b = connect(bus, sink);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.x', 0]);
    const got = sink.take(a);
    expect(got.map(show)).toEqual(["signal NameOwnerChanged('com.x', '', ':1.1')"]);
    expect(got[0]).toMatchObject({ sender: BUS_NAME, path: BUS_PATH });
    expect(got[0]!.destination).toBeUndefined();
  });
});

describe('eavesdropping', () => {
  it('eavesdrop=true rules see unicast traffic between others; plain rules do not', () => {
    const { bus, sink } = newBus();
    const [a, b, spy, plain] = [connect(bus, sink), connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    addMatch(bus, sink, plain, "type='method_call'");
    addMatch(bus, sink, spy, "eavesdrop='true'");
    const serial = call(bus, a, ':1.1');
    reply(bus, b, ':1.0', serial);
    signal(bus, a, { destination: ':1.1' });
    expect(mail(sink, spy)).toEqual(['call Frob()', 'return()', 'signal Changed()']);
    expect(sink.take(plain)).toEqual([]);
  });

  it('an eavesdropper addressed itself receives the message once', () => {
    const { bus, sink } = newBus();
    const [a, spy] = [connect(bus, sink), connect(bus, sink)];
    addMatch(bus, sink, spy, "eavesdrop='true'");
    addMatch(bus, sink, spy, "type='method_call',eavesdrop='true'");
    // Like dbus-daemon, the eavesdropper saw its own second AddMatch to the driver.
    expect(mail(sink, spy)).toEqual(["call AddMatch('type='method_call',eavesdrop='true'')"]);
    call(bus, a, ':1.1');
    expect(sink.take(spy)).toHaveLength(1);
  });

  it('destination in an eavesdrop rule matches the recipient by any of its names', () => {
    const { bus, sink } = newBus();
    const [a, b, spy] = [connect(bus, sink), connect(bus, sink), connect(bus, sink)];
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.b', 0]);
    addMatch(bus, sink, spy, "destination='com.b',eavesdrop='true'");
    call(bus, a, ':1.1');
    call(bus, a, 'com.b');
    call(bus, a, ':1.0');
    expect(sink.take(spy).map((m) => m.destination)).toEqual([':1.1', 'com.b']);
  });

  it('sees calls to the bus driver and its replies', () => {
    const { bus, sink } = newBus();
    const [a, spy] = [connect(bus, sink), connect(bus, sink)];
    addMatch(bus, sink, spy, "eavesdrop='true',sender=':1.0'");
    addMatch(bus, sink, spy, "eavesdrop='true',destination=':1.0'");
    callDriver(bus, sink, a, 'GetId');
    expect(mail(sink, spy)).toEqual(['call GetId()', `return('${'f'.repeat(32)}')`]);
  });
});

describe('monitors', () => {
  function monitor(bus: Bus, sink: MemorySink, rules: string[] = []): Peer {
    const m = connect(bus, sink);
    const r = callDriver(bus, sink, m, 'BecomeMonitor', 'asu', [rules, 0], { interface: 'org.freedesktop.DBus.Monitoring' });
    expect(r?.type).toBe(MessageType.MethodReturn);
    sink.take(m);
    return m;
  }

  it('see everything: calls, replies, errors, signals, driver traffic', () => {
    const { bus, sink } = newBus();
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    const m = monitor(bus, sink);
    const serial = call(bus, a, ':1.1');
    reply(bus, b, ':1.0', serial);
    signal(bus, a);
    call(bus, a, 'com.missing');
    callDriver(bus, sink, a, 'GetId');
    expect(mail(sink, m)).toEqual([
      'call Frob()',
      'return()',
      'signal Changed()',
      'call Frob()',
      `error ${E.ServiceUnknown}`,
      'call GetId()',
      `return('${'f'.repeat(32)}')`,
    ]);
  });

  it('see only what their rules select', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const m = monitor(bus, sink, ["type='signal'"]);
    call(bus, a, ':1.0', { flags: MessageFlag.NoReplyExpected });
    signal(bus, a);
    expect(mail(sink, m)).toEqual(['signal Changed()']);
  });

  it('are disconnected when they send anything', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const m = monitor(bus, sink);
    call(bus, m, ':1.0');
    expect(sink.disconnected.has(m)).toBe(true);
    expect(sink.take(a)).toEqual([]);
  });

  it('leave without a second NameOwnerChanged for their old unique name', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    addMatch(bus, sink, a, "member='NameOwnerChanged'");
    const m = monitor(bus, sink);
    sink.take(a);
    bus.detach(m);
    expect(sink.take(a)).toEqual([]);
  });
});

describe('connection lifecycle', () => {
  it('on detach announces lost names, promotes queued owners, then drops the unique name', () => {
    const { bus, sink } = newBus();
    const w = connect(bus, sink);
    addMatch(bus, sink, w, "member='NameOwnerChanged'");
    const [a, b] = [connect(bus, sink), connect(bus, sink)];
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.one', 0]);
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.two', 0]);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.two', 0]);
    sink.take(w);
    sink.take(b);
    bus.detach(a);
    expect(mail(sink, w)).toEqual([
      "signal NameOwnerChanged('com.one', ':1.1', '')",
      "signal NameOwnerChanged('com.two', ':1.1', ':1.2')",
      "signal NameOwnerChanged(':1.1', ':1.1', '')",
    ]);
    expect(mail(sink, b)).toEqual(["signal NameAcquired('com.two')"]);
    expect(bus.resolve(':1.1')).toBeUndefined();
    bus.detach(a); // twice is harmless
    expect(sink.take(w)).toEqual([]);
  });

  it('a connection that never said Hello leaves silently', () => {
    const { bus, sink } = newBus();
    const w = connect(bus, sink);
    addMatch(bus, sink, w, '');
    bus.detach(bus.attach(USER));
    expect(sink.take(w)).toEqual([]);
  });

  it('refuses connections beyond maxConnectionsPerUser', () => {
    const { bus } = newBus({ maxConnectionsPerUser: 2 });
    bus.attach(USER);
    bus.attach(USER);
    expect(() => bus.attach(USER)).toThrow(BusError);
    expect(() => bus.attach({ ...USER, uid: 7 })).not.toThrow();
  });
});
