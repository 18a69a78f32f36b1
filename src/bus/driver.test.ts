import { describe, expect, it } from 'vitest';
import { encodeMessage, MessageFlag, MessageType, parseMessage } from '../wire/message.js';
import { Variant, type DBusValue } from '../wire/values.js';
import { BUS_NAME, BUS_PATH } from './bus.js';
import { DBusErrorName } from './errors.js';
import { callDriver, connect, newBus, send, show, USER, type MemorySink } from './testing.js';
import type { Bus } from './bus.js';
import type { Peer } from './peer.js';

const E = DBusErrorName;

/** A connection subscribed to the bus's own signals. */
function watcher(bus: Bus, sink: MemorySink): Peer {
  const w = connect(bus, sink);
  expect(callDriver(bus, sink, w, 'AddMatch', 's', ["type='signal',sender='org.freedesktop.DBus'"])?.type).toBe(MessageType.MethodReturn);
  return w;
}

const mail = (sink: MemorySink, p: Peer) => sink.take(p).map(show);

describe('Hello', () => {
  it('replies with a unique name, then announces it with NameOwnerChanged and NameAcquired', () => {
    const { bus, sink } = newBus();
    const w = watcher(bus, sink);
    const a = bus.attach(USER);
    const serial = send(bus, a, { type: MessageType.MethodCall, destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member: 'Hello' });
    const got = sink.take(a);
    expect(got.map(show)).toEqual(["return(':1.1')", "signal NameAcquired(':1.1')"]);
    expect(got[0]).toMatchObject({ replySerial: serial, sender: BUS_NAME, destination: ':1.1' });
    expect(got[1]).toMatchObject({ sender: BUS_NAME, destination: ':1.1', path: BUS_PATH, interface: BUS_NAME });
    expect(mail(sink, w)).toEqual(["signal NameOwnerChanged(':1.1', '', ':1.1')"]);
  });

  it('works without an interface field', () => {
    const { bus, sink } = newBus();
    const a = bus.attach(USER);
    send(bus, a, { type: MessageType.MethodCall, destination: BUS_NAME, path: BUS_PATH, member: 'Hello' });
    expect(mail(sink, a)[0]).toBe("return(':1.0')");
  });

  it('never reuses a unique name', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    bus.detach(a);
    const b = connect(bus, sink);
    expect([a.uniqueName, b.uniqueName]).toEqual([':1.0', ':1.1']);
  });

  it('refuses a second Hello with Failed', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'Hello')?.errorName).toBe(E.Failed);
    expect(a.uniqueName).toBe(':1.0');
  });

  it.each([
    ['another driver method', { destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member: 'ListNames' }],
    ['a call to a peer', { destination: ':1.0', path: '/', member: 'Frob' }],
  ])('disconnects a connection that sends %s before Hello', (_what, m) => {
    const { bus, sink } = newBus();
    connect(bus, sink);
    const a = bus.attach(USER);
    send(bus, a, { type: MessageType.MethodCall, ...m });
    expect(sink.disconnected.has(a)).toBe(true);
    expect(sink.take(a)).toEqual([]);
  });

  it('disconnects a connection that broadcasts a signal before Hello', () => {
    const { bus, sink } = newBus();
    const a = bus.attach(USER);
    send(bus, a, { type: MessageType.Signal, path: '/a', interface: 'com.example.I', member: 'S' });
    expect(sink.disconnected.has(a)).toBe(true);
  });
});

describe('RequestName and ReleaseName', () => {
  it('acquires a free name: NameAcquired precedes the reply, everyone sees NameOwnerChanged', () => {
    const { bus, sink } = newBus();
    const w = watcher(bus, sink);
    const a = connect(bus, sink);
    sink.take(w);
    const serial = send(bus, a, { type: MessageType.MethodCall, destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member: 'RequestName', signature: 'su', args: ['com.x', 0] });
    const got = sink.take(a);
    expect(got.map(show)).toEqual(["signal NameAcquired('com.x')", 'return(1)']);
    expect(got[1]!.replySerial).toBe(serial);
    expect(mail(sink, w)).toEqual(["signal NameOwnerChanged('com.x', '', ':1.1')"]);
  });

  it('replaces an owner that allows it: NameLost, NameOwnerChanged, NameAcquired; the old owner queues second', () => {
    const { bus, sink } = newBus();
    const w = watcher(bus, sink);
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.x', 1]);
    sink.take(a);
    sink.take(w);
    expect(callDriver(bus, sink, b, 'RequestName', 'su', ['com.x', 2])?.args).toEqual([1]);
    expect(mail(sink, a)).toEqual(["signal NameLost('com.x')"]);
    expect(mail(sink, b)).toEqual(["signal NameAcquired('com.x')"]);
    expect(mail(sink, w)).toEqual(["signal NameOwnerChanged('com.x', ':1.1', ':1.2')"]);
    expect(callDriver(bus, sink, w, 'ListQueuedOwners', 's', ['com.x'])?.args).toEqual([[':1.2', ':1.1']]);
  });

  it('lets a re-executed PID 1 take org.freedesktop.systemd1 before its old connection closes', () => {
    // systemd requests its name with REPLACE_EXISTING|ALLOW_REPLACEMENT (src/core/dbus.c).
    const { bus, sink } = newBus();
    const w = watcher(bus, sink);
    const old = connect(bus, sink);
    expect(callDriver(bus, sink, old, 'RequestName', 'su', ['org.freedesktop.systemd1', 3])?.args).toEqual([1]);
    const fresh = connect(bus, sink);
    sink.take(old);
    sink.take(w);
    expect(callDriver(bus, sink, fresh, 'RequestName', 'su', ['org.freedesktop.systemd1', 3])?.args).toEqual([1]);
    expect(callDriver(bus, sink, w, 'GetNameOwner', 's', ['org.freedesktop.systemd1'])?.args).toEqual([fresh.uniqueName]);
    bus.detach(old);
    expect(mail(sink, w).filter((m) => m.includes("'org.freedesktop.systemd1'"))).toEqual([
      `signal NameOwnerChanged('org.freedesktop.systemd1', '${old.uniqueName}', '${fresh.uniqueName}')`,
    ]);
    expect(callDriver(bus, sink, w, 'GetNameOwner', 's', ['org.freedesktop.systemd1'])?.args).toEqual([fresh.uniqueName]);
  });

  it('answers InQueue, Exists and AlreadyOwner without any signal', () => {
    const { bus, sink } = newBus();
    const w = watcher(bus, sink);
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.x', 0]);
    sink.take(a);
    sink.take(w);
    expect(callDriver(bus, sink, b, 'RequestName', 'su', ['com.x', 0])?.args).toEqual([2]);
    expect(callDriver(bus, sink, b, 'RequestName', 'su', ['com.x', 4])?.args).toEqual([3]);
    expect(callDriver(bus, sink, a, 'RequestName', 'su', ['com.x', 0])?.args).toEqual([4]);
    expect([...mail(sink, a), ...mail(sink, b), ...mail(sink, w)]).toEqual([]);
  });

  it.each([
    ['a unique name', ':1.4'],
    ['the bus name', 'org.freedesktop.DBus'],
    ['a single element', 'nodots'],
    ['an empty name', ''],
    ['a digit-led element', 'com.1x'],
  ])('refuses to request or release %s with InvalidArgs', (_what, name) => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'RequestName', 'su', [name, 0])?.errorName).toBe(E.InvalidArgs);
    expect(callDriver(bus, sink, a, 'ReleaseName', 's', [name])?.errorName).toBe(E.InvalidArgs);
  });

  it('enforces maxNamesPerConnection, counting the unique name and queue places, but lets an owner ask again', () => {
    // 3: the unique name and two more, as libdbus's test-dbus-daemon /limits/max-names-per-connection expects.
    const { bus, sink } = newBus({ maxNamesPerConnection: 3 });
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.queued', 0]);
    expect(callDriver(bus, sink, a, 'RequestName', 'su', ['com.one', 0])?.args).toEqual([1]);
    expect(callDriver(bus, sink, a, 'RequestName', 'su', ['com.queued', 0])?.args).toEqual([2]);
    const refused = callDriver(bus, sink, a, 'RequestName', 'su', ['com.three', 0]);
    expect(refused?.errorName).toBe(E.LimitsExceeded);
    expect(callDriver(bus, sink, a, 'RequestName', 'su', ['com.one', 0])?.args).toEqual([4]);
    expect(callDriver(bus, sink, a, 'NameHasOwner', 's', ['com.three'])?.args).toEqual([false]);
  });

  it('releases: Released promotes the next owner, NonExistent and NotOwner change nothing', () => {
    const { bus, sink } = newBus();
    const w = watcher(bus, sink);
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    const c = connect(bus, sink);
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.x', 0]);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.x', 0]);
    sink.take(a);
    sink.take(w);
    expect(callDriver(bus, sink, c, 'ReleaseName', 's', ['com.y'])?.args).toEqual([2]);
    expect(callDriver(bus, sink, c, 'ReleaseName', 's', ['com.x'])?.args).toEqual([3]);
    expect(callDriver(bus, sink, a, 'ReleaseName', 's', ['com.x'])?.args).toEqual([1]);
    expect(mail(sink, a)).toEqual(["signal NameLost('com.x')"]);
    expect(mail(sink, b)).toEqual(["signal NameAcquired('com.x')"]);
    expect(mail(sink, w)).toEqual(["signal NameOwnerChanged('com.x', ':1.1', ':1.2')"]);
    expect(callDriver(bus, sink, b, 'ReleaseName', 's', ['com.x'])?.args).toEqual([1]);
    expect(mail(sink, w)).toEqual(["signal NameOwnerChanged('com.x', ':1.2', '')"]);
  });

  it('checks the signature before the handler runs', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const reply = callDriver(bus, sink, a, 'RequestName', 's', ['com.x']);
    expect(reply?.errorName).toBe(E.InvalidArgs);
    expect(reply?.args[0]).toContain('expected su');
    expect(callDriver(bus, sink, a, 'GetNameOwner', 's', ['com.x'])?.errorName).toBe(E.NameHasNoOwner);
  });

  it('answers InvalidArgs to a body that does not match its signature', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    // A string of length 5 whose terminating byte is not NUL.
    const body = Buffer.from([5, 0, 0, 0, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66]);
    const bytes = encodeMessage({ type: MessageType.MethodCall, serial: 9, destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member: 'NameHasOwner', signature: 's', body });
    bus.receive(a, parseMessage(bytes));
    expect(sink.takeReply(a, 9)?.errorName).toBe(E.InvalidArgs);
  });
});

describe('name queries', () => {
  function setup() {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const b = connect(bus, sink, { uid: 1001, gid: 100, pid: 777, groups: [100, 27], securityLabel: 'unconfined' });
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.b', 0]);
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.b', 0]);
    sink.take(b);
    return { bus, sink, a, b };
  }

  it('ListNames lists the bus, unique names and owned well-known names', () => {
    const { bus, sink, a, b } = setup();
    expect(callDriver(bus, sink, a, 'ListNames')?.args[0]).toEqual([BUS_NAME, ':1.0', ':1.1', 'com.b']);
    bus.detach(b);
    expect(callDriver(bus, sink, a, 'ListNames')?.args[0]).toEqual([BUS_NAME, ':1.0', 'com.b']);
  });

  it('ListActivatableNames lists only the bus', () => {
    const { bus, sink, a } = setup();
    expect(callDriver(bus, sink, a, 'ListActivatableNames')?.args).toEqual([[BUS_NAME]]);
  });

  it('NameHasOwner knows unique names, owned names and the bus', () => {
    const { bus, sink, a } = setup();
    const has = (n: string) => callDriver(bus, sink, a, 'NameHasOwner', 's', [n])?.args[0];
    expect([has(':1.1'), has('com.b'), has(BUS_NAME), has(':1.8'), has('com.none'), has('not a name')]).toEqual([true, true, true, false, false, false]);
  });

  it('GetNameOwner resolves names, and answers NameHasNoOwner otherwise', () => {
    const { bus, sink, a } = setup();
    const owner = (n: string) => callDriver(bus, sink, a, 'GetNameOwner', 's', [n]);
    expect(owner('com.b')?.args).toEqual([':1.1']);
    expect(owner(':1.0')?.args).toEqual([':1.0']);
    expect(owner(BUS_NAME)?.args).toEqual([BUS_NAME]);
    expect(owner('com.none')?.errorName).toBe(E.NameHasNoOwner);
    expect(owner(':1.41')?.errorName).toBe(E.NameHasNoOwner);
    expect(owner('@@')?.errorName).toBe(E.NameHasNoOwner);
  });

  it('ListQueuedOwners lists the queue, a unique name itself, the bus itself', () => {
    const { bus, sink, a } = setup();
    const q = (n: string) => callDriver(bus, sink, a, 'ListQueuedOwners', 's', [n]);
    expect(q('com.b')?.args).toEqual([[':1.1', ':1.0']]);
    expect(q(':1.0')?.args).toEqual([[':1.0']]);
    expect(q(BUS_NAME)?.args).toEqual([[BUS_NAME]]);
    expect(q('com.none')?.errorName).toBe(E.NameHasNoOwner);
  });

  it('GetConnectionUnixUser and GetConnectionUnixProcessID answer for peers and for the bus', () => {
    const { bus, sink, a } = setup();
    expect(callDriver(bus, sink, a, 'GetConnectionUnixUser', 's', ['com.b'])?.args).toEqual([1001]);
    expect(callDriver(bus, sink, a, 'GetConnectionUnixUser', 's', [':1.0'])?.args).toEqual([1000]);
    expect(callDriver(bus, sink, a, 'GetConnectionUnixProcessID', 's', ['com.b'])?.args).toEqual([777]);
    expect(callDriver(bus, sink, a, 'GetConnectionUnixProcessID', 's', [BUS_NAME])?.args).toEqual([1]);
    expect(callDriver(bus, sink, a, 'GetConnectionUnixUser', 's', ['com.none'])?.errorName).toBe(E.NameHasNoOwner);
    expect(callDriver(bus, sink, a, 'GetConnectionUnixProcessID', 's', [':1.8'])?.errorName).toBe(E.NameHasNoOwner);
  });

  it('GetConnectionCredentials returns uid, pid, groups and the security label with its NUL', () => {
    const { bus, sink, a } = setup();
    const creds = callDriver(bus, sink, a, 'GetConnectionCredentials', 's', ['com.b'])?.args[0] as Map<string, Variant>;
    expect(Object.fromEntries([...creds].map(([k, v]) => [k, v.value]))).toEqual({
      UnixUserID: 1001,
      UnixGroupIDs: [100, 27],
      ProcessID: 777,
      LinuxSecurityLabel: Buffer.from('unconfined\0'),
    });
    const own = callDriver(bus, sink, a, 'GetConnectionCredentials', 's', [':1.0'])?.args[0] as Map<string, Variant>;
    expect(own.has('LinuxSecurityLabel')).toBe(false);
    expect(callDriver(bus, sink, a, 'GetConnectionCredentials', 's', ['com.none'])?.errorName).toBe(E.NameHasNoOwner);
  });

  it('GetAdtAuditSessionData and GetConnectionSELinuxSecurityContext report unknown data, or an unknown name', () => {
    const { bus, sink, a } = setup();
    expect(callDriver(bus, sink, a, 'GetAdtAuditSessionData', 's', ['com.b'])?.errorName).toBe(E.AdtAuditDataUnknown);
    expect(callDriver(bus, sink, a, 'GetAdtAuditSessionData', 's', ['com.none'])?.errorName).toBe(E.NameHasNoOwner);
    expect(callDriver(bus, sink, a, 'GetConnectionSELinuxSecurityContext', 's', [BUS_NAME])?.errorName).toBe(E.SELinuxSecurityContextUnknown);
    expect(callDriver(bus, sink, a, 'GetConnectionSELinuxSecurityContext', 's', [':1.8'])?.errorName).toBe(E.NameHasNoOwner);
  });
});

describe('other org.freedesktop.DBus methods', () => {
  it('GetId returns the bus GUID; ReloadConfig acknowledges', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'GetId')?.args).toEqual(['f'.repeat(32)]);
    expect(callDriver(bus, sink, a, 'ReloadConfig')).toMatchObject({ type: MessageType.MethodReturn, signature: '' });
  });

  it('StartServiceByName answers AlreadyRunning for owned names and the bus, ServiceUnknown otherwise', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.x', 0]);
    expect(callDriver(bus, sink, a, 'StartServiceByName', 'su', ['com.x', 0])?.args).toEqual([2]);
    expect(callDriver(bus, sink, a, 'StartServiceByName', 'su', [':1.0', 0])?.args).toEqual([2]);
    expect(callDriver(bus, sink, a, 'StartServiceByName', 'su', [BUS_NAME, 0])?.args).toEqual([2]);
    expect(callDriver(bus, sink, a, 'StartServiceByName', 'su', ['com.none', 0])?.errorName).toBe(E.ServiceUnknown);
  });

  it('UpdateActivationEnvironment is for the bus owner and root on a session bus only', () => {
    const { bus, sink } = newBus();
    const env: [string, DBusValue[]] = ['a{ss}', [new Map([['FOO', 'bar']])]];
    const owner = connect(bus, sink);
    const root = connect(bus, sink, { uid: 0, gid: 0, pid: 3, groups: [] });
    const other = connect(bus, sink, { uid: 1001, gid: 1001, pid: 3, groups: [] });
    expect(callDriver(bus, sink, owner, 'UpdateActivationEnvironment', ...env)?.type).toBe(MessageType.MethodReturn);
    expect(callDriver(bus, sink, root, 'UpdateActivationEnvironment', ...env)?.type).toBe(MessageType.MethodReturn);
    expect(callDriver(bus, sink, other, 'UpdateActivationEnvironment', ...env)?.errorName).toBe(E.AccessDenied);
    const system = newBus({}, 'system');
    const r = connect(system.bus, system.sink, { uid: 0, gid: 0, pid: 3, groups: [] });
    expect(callDriver(system.bus, system.sink, r, 'UpdateActivationEnvironment', ...env)?.errorName).toBe(E.AccessDenied);
  });

  it('answers UnknownMethod for an unknown member, UnknownInterface for an unknown interface', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'Frobnicate')?.errorName).toBe(E.UnknownMethod);
    expect(callDriver(bus, sink, a, 'ListNames', '', [], { interface: 'com.example.Nope' })?.errorName).toBe(E.UnknownInterface);
    expect(callDriver(bus, sink, a, 'Ping', '', [], { interface: BUS_NAME })?.errorName).toBe(E.UnknownMethod);
    // Without an interface the member alone finds the method, in any driver interface.
    expect(callDriver(bus, sink, a, 'Ping', '', [], { interface: undefined })?.type).toBe(MessageType.MethodReturn);
    expect(callDriver(bus, sink, a, 'ListNames', '', [], { interface: undefined })?.type).toBe(MessageType.MethodReturn);
  });

  it('serves older methods at any object path, newer ones and the Properties and Monitoring interfaces only at /org/freedesktop/DBus (spec, dbus-daemon)', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const at = { path: '/' };
    expect(callDriver(bus, sink, a, 'GetNameOwner', 's', [BUS_NAME], at)?.args).toEqual([BUS_NAME]);
    expect(callDriver(bus, sink, a, 'Introspect', '', [], { ...at, interface: 'org.freedesktop.DBus.Introspectable' })?.type).toBe(MessageType.MethodReturn);
    const env: DBusValue[] = [new Map([['A', 'b']])];
    expect(callDriver(bus, sink, a, 'UpdateActivationEnvironment', 'a{ss}', env, at)?.errorName).toBe(E.AccessDenied);
    // Properties and Monitoring do not exist elsewhere (libdbus's test-dbus-daemon /properties/*-invalid-path, test-monitor /monitor/invalid).
    expect(callDriver(bus, sink, a, 'Get', 'ss', [BUS_NAME, 'Features'], { ...at, interface: 'org.freedesktop.DBus.Properties' })?.errorName).toBe(E.UnknownInterface);
    expect(callDriver(bus, sink, a, 'GetAll', 's', [BUS_NAME], { ...at, interface: 'org.freedesktop.DBus.Properties' })?.errorName).toBe(E.UnknownInterface);
    expect(callDriver(bus, sink, a, 'GetAll', 's', [BUS_NAME], { ...at, interface: undefined })?.errorName).toBe(E.UnknownMethod);
    expect(callDriver(bus, sink, a, 'BecomeMonitor', 'asu', [[], 0], { ...at, interface: 'org.freedesktop.DBus.Monitoring' })?.errorName).toBe(E.UnknownInterface);
    expect(a.isMonitor).toBe(false);
  });

  it('sends no reply and no error when the call says NO_REPLY_EXPECTED, but still acts', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const quiet = { flags: MessageFlag.NoReplyExpected };
    expect(callDriver(bus, sink, a, 'RequestName', 'su', ['com.x', 0], quiet)).toBeUndefined();
    expect(callDriver(bus, sink, a, 'Frobnicate', '', [], quiet)).toBeUndefined();
    expect(mail(sink, a)).toEqual(["signal NameAcquired('com.x')"]);
  });
});

describe('AddMatch and RemoveMatch', () => {
  it('rejects an invalid rule with MatchRuleInvalid', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'AddMatch', 's', ["type='nope'"])?.errorName).toBe(E.MatchRuleInvalid);
    expect(callDriver(bus, sink, a, 'RemoveMatch', 's', ['bogus'])?.errorName).toBe(E.MatchRuleInvalid);
  });

  it('enforces maxMatchRulesPerConnection', () => {
    const { bus, sink } = newBus({ maxMatchRulesPerConnection: 2 });
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'AddMatch', 's', ["member='A'"])?.type).toBe(MessageType.MethodReturn);
    expect(callDriver(bus, sink, a, 'AddMatch', 's', ["member='A'"])?.type).toBe(MessageType.MethodReturn);
    expect(callDriver(bus, sink, a, 'AddMatch', 's', ["member='B'"])?.errorName).toBe(E.LimitsExceeded);
    callDriver(bus, sink, a, 'RemoveMatch', 's', ["member='A'"]);
    expect(callDriver(bus, sink, a, 'AddMatch', 's', ["member='B'"])?.type).toBe(MessageType.MethodReturn);
  });

  it('removes one copy per RemoveMatch, comparing rules by value, then MatchRuleNotFound', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    callDriver(bus, sink, a, 'AddMatch', 's', ["type='signal',member='icecream'"]);
    callDriver(bus, sink, a, 'AddMatch', 's', ["type='signal',member='icecream'"]);
    expect(callDriver(bus, sink, a, 'RemoveMatch', 's', ["member=ice'cream',type=signal"])?.type).toBe(MethodReturn);
    expect(a.matches).toHaveLength(1);
    expect(callDriver(bus, sink, a, 'RemoveMatch', 's', ["member='icecream',type='signal'"])?.type).toBe(MethodReturn);
    expect(callDriver(bus, sink, a, 'RemoveMatch', 's', ["member='icecream',type='signal'"])?.errorName).toBe(E.MatchRuleNotFound);
    expect(callDriver(bus, sink, a, 'RemoveMatch', 's', ["member='other'"])?.errorName).toBe(E.MatchRuleNotFound);
  });

  it('lets only the bus owner and root add eavesdrop=true rules (dbus-daemon)', () => {
    const { bus, sink } = newBus();
    const owner = connect(bus, sink);
    const root = connect(bus, sink, { uid: 0, gid: 0, pid: 3, groups: [] });
    const other = connect(bus, sink, { uid: 1001, gid: 1001, pid: 3, groups: [] });
    const rule = ["type='method_call',eavesdrop='true'"];
    expect(callDriver(bus, sink, owner, 'AddMatch', 's', rule)?.type).toBe(MethodReturn);
    expect(callDriver(bus, sink, root, 'AddMatch', 's', rule)?.type).toBe(MethodReturn);
    expect(callDriver(bus, sink, other, 'AddMatch', 's', rule)?.errorName).toBe(E.AccessDenied);
    expect(callDriver(bus, sink, other, 'AddMatch', 's', ["type='method_call',eavesdrop='false'"])?.type).toBe(MethodReturn);
  });
});

const MethodReturn = MessageType.MethodReturn;

describe('BecomeMonitor', () => {
  it('is refused to other users, with flags, or with an invalid rule', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const other = connect(bus, sink, { uid: 1001, gid: 1001, pid: 3, groups: [] });
    expect(callDriver(bus, sink, other, 'BecomeMonitor', 'asu', [[], 0], { interface: 'org.freedesktop.DBus.Monitoring' })?.errorName).toBe(E.AccessDenied);
    expect(callDriver(bus, sink, a, 'BecomeMonitor', 'asu', [[], 1], { interface: 'org.freedesktop.DBus.Monitoring' })?.errorName).toBe(E.InvalidArgs);
    expect(callDriver(bus, sink, a, 'BecomeMonitor', 'asu', [['bogus'], 0], { interface: 'org.freedesktop.DBus.Monitoring' })?.errorName).toBe(E.MatchRuleInvalid);
    expect(a.isMonitor).toBe(false);
  });

  it('acknowledges, then releases every name with NameLost and NameOwnerChanged, unique name last', () => {
    const { bus, sink } = newBus();
    const w = watcher(bus, sink);
    const m = connect(bus, sink);
    const b = connect(bus, sink);
    callDriver(bus, sink, m, 'RequestName', 'su', ['com.m', 0]);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.m', 0]);
    callDriver(bus, sink, m, 'AddMatch', 's', ["type='signal'"]);
    sink.take(m);
    sink.take(w);
    const serial = send(bus, m, { type: MessageType.MethodCall, destination: BUS_NAME, path: BUS_PATH, interface: 'org.freedesktop.DBus.Monitoring', member: 'BecomeMonitor', signature: 'asu', args: [[], 0] });
    const got = sink.take(m);
    expect(got[0]).toMatchObject({ type: MethodReturn, replySerial: serial });
    expect(got.slice(1).map(show)).toContain("signal NameLost('com.m')");
    expect(got.slice(1).map(show)).toContain("signal NameLost(':1.1')");
    expect(mail(sink, b)).toEqual(["signal NameAcquired('com.m')"]);
    expect(mail(sink, w)).toEqual([
      "signal NameOwnerChanged('com.m', ':1.1', ':1.2')",
      "signal NameOwnerChanged(':1.1', ':1.1', '')",
    ]);
    expect(m.isMonitor).toBe(true);
    expect(callDriver(bus, sink, w, 'NameHasOwner', 's', [':1.1'])?.args).toEqual([false]);
    expect(callDriver(bus, sink, w, 'ListNames')?.args[0]).not.toContain(':1.1');
  });
});

describe('Peer, Introspectable and Properties on the driver', () => {
  it('Ping acknowledges and GetMachineId returns the machine id', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'Ping', '', [], { interface: 'org.freedesktop.DBus.Peer', path: '/any/path' })).toMatchObject({ type: MethodReturn, signature: '' });
    expect(callDriver(bus, sink, a, 'GetMachineId', '', [], { interface: 'org.freedesktop.DBus.Peer' })?.args).toEqual(['a'.repeat(32)]);
  });

  it('Introspect describes every driver interface', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const xml = callDriver(bus, sink, a, 'Introspect', '', [], { interface: 'org.freedesktop.DBus.Introspectable' })?.args[0] as string;
    for (const i of ['org.freedesktop.DBus', 'org.freedesktop.DBus.Monitoring', 'org.freedesktop.DBus.Debug.Stats', 'org.freedesktop.DBus.Peer', 'org.freedesktop.DBus.Properties']) {
      expect(xml).toContain(`<interface name="${i}">`);
    }
  });

  const P = { interface: 'org.freedesktop.DBus.Properties' };

  it('Get and GetAll return Features and Interfaces', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const ifaces = callDriver(bus, sink, a, 'Get', 'ss', [BUS_NAME, 'Interfaces'], P)?.args[0] as Variant;
    expect(ifaces).toEqual(new Variant('as', ['org.freedesktop.DBus.Monitoring', 'org.freedesktop.DBus.Debug.Stats']));
    const all = callDriver(bus, sink, a, 'GetAll', 's', [BUS_NAME], P)?.args[0] as Map<string, Variant>;
    expect([...all.keys()].sort()).toEqual(['Features', 'Interfaces']);
  });

  it('answers UnknownProperty, UnknownInterface and PropertyReadOnly like dbus-daemon', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const err = (member: string, sig: string, args: DBusValue[]) => callDriver(bus, sink, a, member, sig, args, P)?.errorName;
    expect(err('Get', 'ss', [BUS_NAME, 'Nope'])).toBe(E.UnknownProperty);
    expect(err('Get', 'ss', [BUS_NAME, 'constructor'])).toBe(E.UnknownProperty);
    expect(err('Get', 'ss', ['com.example.Nope', 'Features'])).toBe(E.UnknownInterface);
    expect(err('Get', 'ss', ['org.freedesktop.DBus.Peer', 'Features'])).toBe(E.UnknownProperty);
    expect(err('GetAll', 's', ['com.example.Nope'])).toBe(E.UnknownInterface);
    expect(err('Set', 'ssv', [BUS_NAME, 'Features', new Variant('as', [])])).toBe(E.PropertyReadOnly);
    expect(err('Set', 'ssv', [BUS_NAME, 'toString', new Variant('s', '')])).toBe(E.UnknownProperty);
    expect(err('Set', 'ssv', ['com.example.Nope', 'Features', new Variant('s', '')])).toBe(E.UnknownInterface);
    // Other driver interfaces exist but have no properties.
    const peerProps = callDriver(bus, sink, a, 'GetAll', 's', ['org.freedesktop.DBus.Peer'], P)?.args[0] as Map<string, Variant>;
    expect(peerProps.size).toBe(0);
  });
});
