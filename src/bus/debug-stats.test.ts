import { describe, expect, it } from 'vitest';
import { MessageType } from '../wire/message.js';
import { Variant, type DBusValue } from '../wire/values.js';
import { BUS_NAME } from './bus.js';
import { DBusErrorName } from './errors.js';
import { callDriver, connect, newBus, type MemorySink } from './testing.js';
import type { Bus } from './bus.js';
import type { Peer } from './peer.js';

const STATS = { interface: 'org.freedesktop.DBus.Debug.Stats' };

function stats(bus: Bus, sink: MemorySink, peer: Peer, member: string, sig = '', args: DBusValue[] = []): Record<string, DBusValue> {
  const reply = callDriver(bus, sink, peer, member, sig, args, STATS);
  expect(reply?.type, String(reply?.errorName)).toBe(MessageType.MethodReturn);
  const out: Record<string, DBusValue> = {};
  for (const [k, v] of reply!.args[0] as Map<string, Variant>) {
    expect(v.signature).toBe(k === 'UniqueName' ? 's' : 'u');
    out[k] = v.value;
  }
  return out;
}

const getStats = (bus: Bus, sink: MemorySink, peer: Peer) => stats(bus, sink, peer, 'GetStats');
const connStats = (bus: Bus, sink: MemorySink, peer: Peer, name: string) => stats(bus, sink, peer, 'GetConnectionStats', 's', [name]);

describe('Debug.Stats GetStats', () => {
  it('answers dbus-daemon\'s keys in its order, less the allocator ones', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(Object.keys(getStats(bus, sink, a))).toEqual([
      'Serial', 'ActiveConnections', 'IncompleteConnections', 'MatchRules', 'PeakMatchRules',
      'PeakMatchRulesPerConnection', 'BusNames', 'PeakBusNames', 'PeakBusNamesPerConnection',
    ]);
  });

  it('counts a serial per call from 0', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect([0, 1, 2].map(() => getStats(bus, sink, a).Serial)).toEqual([0, 1, 2]);
  });

  it('counts unique names, owned and queued names; peaks stay after a release', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    expect(getStats(bus, sink, a)).toMatchObject({ ActiveConnections: 2, BusNames: 2, PeakBusNames: 2, PeakBusNamesPerConnection: 1 });
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.example.A', 0]);
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.example.B', 0]);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.example.A', 0]); // queued
    expect(getStats(bus, sink, a)).toMatchObject({ BusNames: 5, PeakBusNames: 5, PeakBusNamesPerConnection: 3 });
    callDriver(bus, sink, a, 'ReleaseName', 's', ['com.example.B']);
    bus.detach(b);
    expect(getStats(bus, sink, a)).toMatchObject({ ActiveConnections: 1, BusNames: 2, PeakBusNames: 5, PeakBusNamesPerConnection: 3 });
  });

  it('counts match rules across connections, with their peaks', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    for (const p of [a, a, b]) callDriver(bus, sink, p, 'AddMatch', 's', ["type='signal'"]);
    expect(getStats(bus, sink, a)).toMatchObject({ MatchRules: 3, PeakMatchRules: 3, PeakMatchRulesPerConnection: 2 });
    callDriver(bus, sink, a, 'RemoveMatch', 's', ["type='signal'"]);
    bus.detach(b);
    expect(getStats(bus, sink, a)).toMatchObject({ MatchRules: 1, PeakMatchRules: 3, PeakMatchRulesPerConnection: 2 });
  });

  it('counts a connection that has not said Hello as incomplete', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    bus.attach({ uid: 1000, gid: 1000, pid: 7, groups: [] });
    expect(getStats(bus, sink, a)).toMatchObject({ ActiveConnections: 1, IncompleteConnections: 1 });
  });

  it('notices the name a replaced owner loses', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    // ALLOW_REPLACEMENT | DO_NOT_QUEUE, then REPLACE_EXISTING: a is out of the queue.
    callDriver(bus, sink, a, 'RequestName', 'su', ['com.example.A', 0x5]);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.example.A', 0x2]);
    expect(getStats(bus, sink, a)).toMatchObject({ BusNames: 3, PeakBusNames: 3 });
  });

  it('leaves a monitor out of the names and counts its rules, an empty list as one, like dbus-daemon', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const m = connect(bus, sink);
    const n = connect(bus, sink);
    callDriver(bus, sink, m, 'AddMatch', 's', ["type='signal'"]);
    callDriver(bus, sink, m, 'BecomeMonitor', 'asu', [[], 0], { interface: 'org.freedesktop.DBus.Monitoring' });
    callDriver(bus, sink, n, 'BecomeMonitor', 'asu', [["type='signal'", "type='error'"], 0], { interface: 'org.freedesktop.DBus.Monitoring' });
    expect(getStats(bus, sink, a)).toMatchObject({ ActiveConnections: 3, BusNames: 1, MatchRules: 3 });
  });
});

describe('Debug.Stats GetConnectionStats', () => {
  it('answers dbus-daemon\'s keys in its order for a unique or well-known name', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    callDriver(bus, sink, b, 'RequestName', 'su', ['com.example.B', 0]);
    callDriver(bus, sink, b, 'AddMatch', 's', ["type='signal'"]);
    callDriver(bus, sink, b, 'AddMatch', 's', ["member='X'"]);
    callDriver(bus, sink, b, 'RemoveMatch', 's', ["member='X'"]);
    const got = connStats(bus, sink, a, 'com.example.B');
    expect(Object.keys(got)).toEqual([
      'Serial', 'MatchRules', 'PeakMatchRules', 'BusNames', 'PeakBusNames', 'UniqueName',
      'IncomingMessages', 'IncomingBytes', 'IncomingFDs', 'PeakIncomingBytes', 'PeakIncomingFDs',
      'OutgoingMessages', 'OutgoingBytes', 'OutgoingFDs', 'PeakOutgoingBytes', 'PeakOutgoingFDs',
    ]);
    expect(got).toMatchObject({ Serial: 0, UniqueName: b.uniqueName, MatchRules: 1, PeakMatchRules: 2, BusNames: 2, PeakBusNames: 2, IncomingFDs: 0, OutgoingFDs: 0 });
    expect(connStats(bus, sink, a, b.uniqueName!).Serial).toBe(1);
  });

  it('counts the call being answered among the bytes the bus holds from the caller', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(connStats(bus, sink, a, a.uniqueName!).IncomingBytes).toBeGreaterThan(0);
  });

  it('answers NameHasNoOwner for a name nobody has and InvalidArgs for the bus itself, as dbus-daemon', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const err = (name: string) => callDriver(bus, sink, a, 'GetConnectionStats', 's', [name], STATS);
    expect(err('com.example.Nobody')).toMatchObject({ errorName: DBusErrorName.NameHasNoOwner, args: ["Could not get statistics of name 'com.example.Nobody': no such name"] });
    expect(err(':1.99')?.errorName).toBe(DBusErrorName.NameHasNoOwner);
    expect(err('not..valid')?.errorName).toBe(DBusErrorName.NameHasNoOwner);
    expect(err(BUS_NAME)?.errorName).toBe(DBusErrorName.InvalidArgs);
  });
});

describe('Debug.Stats GetAllMatchRules', () => {
  it('lists every unique name with its rules as dbus-daemon prints them', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    callDriver(bus, sink, b, 'AddMatch', 's', ["type='signal'"]);
    callDriver(bus, sink, b, 'AddMatch', 's', ["sender='org.freedesktop.DBus',interface='a.b',type='signal',arg0='it'\\''s'"]);
    callDriver(bus, sink, b, 'AddMatch', 's', ["path_namespace='/q'"]);
    const reply = callDriver(bus, sink, a, 'GetAllMatchRules', '', [], STATS);
    expect(reply?.signature).toBe('a{sas}');
    expect([...(reply!.args[0] as Map<string, string[]>)]).toEqual([
      [a.uniqueName, []],
      [b.uniqueName, ["path_namespace='/q'", "type='signal',interface='a.b',sender='org.freedesktop.DBus',arg0='it'\\''s'", "type='signal'"]],
    ]);
  });
});

describe('Debug.Stats on the driver', () => {
  it('exists only at /org/freedesktop/DBus, like dbus-daemon', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'GetStats', '', [], { ...STATS, path: '/' })?.errorName).toBe(DBusErrorName.UnknownInterface);
  });

  it('has no properties', () => {
    const { bus, sink } = newBus();
    const a = connect(bus, sink);
    const all = callDriver(bus, sink, a, 'GetAll', 's', [STATS.interface], { interface: 'org.freedesktop.DBus.Properties' });
    expect((all?.args[0] as Map<string, Variant>).size).toBe(0);
  });
});
