import { describe, expect, it } from 'vitest';
import { encodeMessage, MessageFlag, MessageType, parseMessage } from '../wire/message.js';
import { UnixFds } from './unix-fds.js';
import type { ServiceCatalog, ServiceEntry, ServiceLauncher } from './activation.js';
import { SYSTEMD_NAME } from './activation.js';
import { BUS_NAME, BUS_PATH, type Bus } from './bus.js';
import { DBusErrorName } from './errors.js';
import type { Peer } from './peer.js';
import { callDriver, connect, newBus, send, show, type MemorySink } from './testing.js';
import { parseConfig } from '../supervisor/config.js';
import { BusError } from './errors.js';
import { BusPolicy } from './policy.js';

const E = DBusErrorName;

class FakeCatalog implements ServiceCatalog {
  readonly entries = new Map<string, ServiceEntry>();
  add(name: string, extra: Partial<ServiceEntry> = {}): void {
    this.entries.set(name, { name, exec: `/usr/bin/${name}-daemon`, file: `/s/${name}.service`, ...extra });
  }
  lookup(name: string) {
    return this.entries.get(name);
  }
  names() {
    return [...this.entries.keys()];
  }
}

class FakeLauncher implements ServiceLauncher {
  readonly started: Array<{ name: string; pid: number; env: Map<string, string> }> = [];
  readonly killed: number[] = [];
  private nextPid = 100;
  failWith: Error | undefined;
  launch(entry: ServiceEntry, environment: ReadonlyMap<string, string>): number {
    if (this.failWith) throw this.failWith;
    const pid = this.nextPid++;
    this.started.push({ name: entry.name, pid, env: new Map(environment) });
    return pid;
  }
  kill(pid: number): void {
    this.killed.push(pid);
  }
}

function activatingBus(limits = {}, kind = 'session') {
  const { bus, sink } = newBus(limits, kind);
  const catalog = new FakeCatalog();
  const launcher = new FakeLauncher();
  bus.activator.catalog = catalog;
  bus.activator.launcher = launcher;
  return { bus, sink, catalog, launcher };
}

const mail = (sink: MemorySink, p: Peer) => sink.take(p).map(show);

function call(bus: Bus, from: Peer, destination: string, member: string, args: string[] = [], flags = 0): number {
  return send(bus, from, {
    type: MessageType.MethodCall, destination, path: '/x', interface: 'com.example.X', member, flags,
    signature: args.length > 0 ? 's'.repeat(args.length) : undefined, args,
  });
}

function own(bus: Bus, sink: MemorySink, peer: Peer, name: string): void {
  expect(callDriver(bus, sink, peer, 'RequestName', 'su', [name, 4])?.args).toEqual([1]);
}

describe('auto-start (Exec=)', () => {
  it('holds calls for an activatable name, starts the program once, and delivers them in order once the name is owned', () => {
    const { bus, sink, catalog, launcher } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const b = connect(bus, sink);
    call(bus, a, 'com.example.Svc', 'One');
    call(bus, b, 'com.example.Svc', 'Two');
    call(bus, a, 'com.example.Svc', 'Three');
    expect(launcher.started.map((s) => s.name)).toEqual(['com.example.Svc']);
    expect(mail(sink, a)).toEqual([]);
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    expect(mail(sink, svc)).toEqual(["signal NameAcquired('com.example.Svc')", 'call One()', 'call Two()', 'call Three()']);
    expect(bus.activator.pending.size).toBe(0);
    expect(bus.activator.heldMessages).toBe(0);
  });

  it('lets the service answer the held calls: the replies are expected', () => {
    const { bus, sink, catalog } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const serial = call(bus, a, 'com.example.Svc', 'Ping');
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    const delivered = sink.take(svc).find((m) => m.member === 'Ping')!;
    send(bus, svc, { type: MessageType.MethodReturn, destination: a.uniqueName, replySerial: delivered.serial, signature: 's', args: ['pong'] });
    expect(sink.takeReply(a, serial)).toMatchObject({ type: MessageType.MethodReturn, args: ['pong'], sender: svc.uniqueName });
    void serial;
  });

  it('answers ServiceUnknown for a name no service file provides, and NameHasNoOwner with NO_AUTO_START', () => {
    const { bus, sink, catalog, launcher } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const s1 = call(bus, a, 'com.example.Nobody', 'X');
    expect(sink.takeReply(a, s1)).toMatchObject({ errorName: E.ServiceUnknown, args: ['The name com.example.Nobody was not provided by any .service files'] });
    const s2 = call(bus, a, 'com.example.Svc', 'X', [], MessageFlag.NoAutoStart);
    expect(sink.takeReply(a, s2)).toMatchObject({ errorName: E.NameHasNoOwner, args: ['Name "com.example.Svc" does not exist'] });
    expect(launcher.started).toEqual([]);
  });

  it('ignores an exit with status 0 (a program may daemonize) and fails everyone waiting on any other exit', () => {
    const { bus, sink, catalog, launcher } = activatingBus();
    catalog.add('com.example.Svc');
    catalog.add('com.example.Alias', { exec: '/usr/bin/com.example.Svc-daemon' });
    const a = connect(bus, sink);
    const s1 = call(bus, a, 'com.example.Svc', 'X');
    const s2 = call(bus, a, 'com.example.Alias', 'Y');
    const [first] = launcher.started;
    bus.activator.childExited(first!.pid, { code: 0 });
    expect(mail(sink, a)).toEqual([]);
    expect(bus.activator.pending.size).toBe(2);
    bus.activator.childExited(launcher.started[1]!.pid, { code: 3 });
    // Every activation running the same program fails with it, as in dbus-daemon.
    expect(sink.takeReply(a, s2)).toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Spawn.ChildExited', args: ['Process com.example.Alias exited with status 3'] });
    expect(sink.takeReply(a, s1)).toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Spawn.ChildExited' });
    expect(bus.activator.pending.size).toBe(0);
  });

  it('reports a program killed by a signal as Spawn.ChildSignaled', () => {
    const { bus, sink, catalog, launcher } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const s = call(bus, a, 'com.example.Svc', 'X');
    bus.activator.childExited(launcher.started[0]!.pid, { signal: 11 });
    expect(sink.takeReply(a, s)).toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Spawn.ChildSignaled', args: ['Process com.example.Svc received signal 11'] });
  });

  it('fails with TimedOut at service_start_timeout and kills the program', () => {
    const { bus, sink, catalog, launcher } = activatingBus({ serviceStartTimeoutMs: 1000 });
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const s = call(bus, a, 'com.example.Svc', 'X');
    bus.activator.expire(Date.now() + 500);
    expect(mail(sink, a)).toEqual([]);
    bus.activator.expire(Date.now() + 1500);
    expect(sink.takeReply(a, s)).toMatchObject({
      errorName: 'org.freedesktop.DBus.Error.TimedOut',
      args: ["Failed to activate service 'com.example.Svc': timed out (service_start_timeout=1000ms)"],
    });
    expect(launcher.killed).toEqual([launcher.started[0]!.pid]);
  });

  it('refuses past max_pending_service_starts with LimitsExceeded, and counts again once delivered', () => {
    const { bus, sink, catalog } = activatingBus({ maxPendingServiceStarts: 2 });
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    call(bus, a, 'com.example.Svc', 'One');
    call(bus, a, 'com.example.Svc', 'Two');
    const s3 = call(bus, a, 'com.example.Svc', 'Three');
    expect(sink.takeReply(a, s3)).toMatchObject({ errorName: E.LimitsExceeded });
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    expect(mail(sink, svc).filter((m) => m.startsWith('call'))).toEqual(['call One()', 'call Two()']);
  });

  it('charges held bytes to the sender until they are delivered', () => {
    const { bus, sink, catalog } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    call(bus, a, 'com.example.Svc', 'Big', ['x'.repeat(10_000)]);
    expect(a.account.queuedBytes).toBeGreaterThan(10_000);
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    expect(a.account.queuedBytes).toBeGreaterThan(10_000); // now queued for the service, still the sender's
    sink.take(svc);
    expect(a.account.queuedBytes).toBe(0);
  });

  it('charges the fds of a held message to its sender, closes none while it waits, and hands them on once', () => {
    const { bus, sink, catalog } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    a.acceptsFds = true;
    const closed: number[] = [];
    const fds = new UnixFds([41, 42], (fd) => closed.push(fd));
    const msg = parseMessage(encodeMessage({ type: MessageType.MethodCall, serial: 7, destination: 'com.example.Svc', path: '/x', member: 'Take', unixFds: 2 }));
    bus.receive(a, msg, fds);
    fds.release(); // the connection's reference, as the transport releases it after routing
    expect(a.account.fds).toBe(2);
    expect(closed).toEqual([]);
    const svc = connect(bus, sink);
    svc.acceptsFds = true;
    own(bus, sink, svc, 'com.example.Svc');
    expect(mail(sink, svc)).toContain('call Take()');
    expect(a.account.fds).toBe(0);
    expect(closed).toEqual([41, 42]); // the memory sink holds no reference: delivered, then closed once
  });

  it('drops what a connection held when it leaves; the others still get theirs', () => {
    const { bus, sink, catalog } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const b = connect(bus, sink, { uid: 1001, gid: 1001, pid: 77, groups: [1001] });
    call(bus, a, 'com.example.Svc', 'FromA', ['y'.repeat(100)]);
    call(bus, b, 'com.example.Svc', 'FromB');
    bus.detach(a);
    expect(a.account.queuedBytes).toBe(0);
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    expect(mail(sink, svc).filter((m) => m.startsWith('call'))).toEqual(['call FromB()']);
  });

  it('answers a program that cannot start with its Spawn error, holding nothing', () => {
    const { bus, sink, catalog, launcher } = activatingBus();
    catalog.add('com.example.Svc');
    launcher.failWith = new BusError('org.freedesktop.DBus.Error.Spawn.ExecFailed', 'Failed to execute program com.example.Svc: No such file or directory');
    const a = connect(bus, sink);
    const s = call(bus, a, 'com.example.Svc', 'X');
    expect(sink.takeReply(a, s)).toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Spawn.ExecFailed' });
    expect(bus.activator.pending.size).toBe(0);
    expect(bus.activator.heldMessages).toBe(0);
  });

  it('needs User= on a system bus', () => {
    const { bus, sink, catalog, launcher } = activatingBus({}, 'system');
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const s = call(bus, a, 'com.example.Svc', 'X');
    expect(sink.takeReply(a, s)).toMatchObject({ errorName: 'org.freedesktop.DBus.Error.Spawn.FileInvalid' });
    catalog.add('com.example.Svc', { user: 'root' });
    call(bus, a, 'com.example.Svc', 'X');
    expect(launcher.started).toHaveLength(1);
  });

  it('delivers a held unicast signal too', () => {
    const { bus, sink, catalog } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    send(bus, a, { type: MessageType.Signal, destination: 'com.example.Svc', path: '/x', interface: 'com.example.X', member: 'Poke' });
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    expect(mail(sink, svc)).toContain('signal Poke()');
  });
});

describe('StartServiceByName and ListActivatableNames', () => {
  it('answers SUCCESS once the name is owned, ALREADY_RUNNING when it is', () => {
    const { bus, sink, catalog } = activatingBus();
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const serial = send(bus, a, {
      type: MessageType.MethodCall, destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member: 'StartServiceByName',
      signature: 'su', args: ['com.example.Svc', 0],
    });
    expect(sink.takeReply(a, serial)).toBeUndefined();
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    expect(sink.takeReply(a, serial)).toMatchObject({ type: MessageType.MethodReturn, args: [1] });
    expect(callDriver(bus, sink, a, 'StartServiceByName', 'su', ['com.example.Svc', 0])?.args).toEqual([2]);
    expect(callDriver(bus, sink, a, 'StartServiceByName', 'su', ['com.example.None', 0])?.errorName).toBe(E.ServiceUnknown);
  });

  it('lists org.freedesktop.DBus and every service file name', () => {
    const { bus, sink, catalog } = activatingBus();
    catalog.add('com.example.A');
    catalog.add('com.example.B');
    const a = connect(bus, sink);
    expect(callDriver(bus, sink, a, 'ListActivatableNames')?.args).toEqual([[BUS_NAME, 'com.example.A', 'com.example.B']]);
  });
});

describe('systemd activation (--systemd-activation)', () => {
  function systemdBus() {
    const t = activatingBus();
    t.bus.activator.systemdActivation = true;
    t.catalog.add('com.example.Unit', { systemdService: 'dbus-com.example.Unit.service' });
    return t;
  }

  it('sends ActivationRequest(unit) to systemd when it is connected, and runs nothing itself', () => {
    const { bus, sink, launcher } = systemdBus();
    const systemd = connect(bus, sink);
    own(bus, sink, systemd, SYSTEMD_NAME);
    sink.take(systemd);
    const a = connect(bus, sink);
    call(bus, a, 'com.example.Unit', 'X');
    const got = sink.take(systemd);
    expect(got.map(show)).toEqual(["signal ActivationRequest('dbus-com.example.Unit.service')"]);
    expect(got[0]).toMatchObject({ sender: BUS_NAME, destination: SYSTEMD_NAME, path: BUS_PATH, interface: 'org.freedesktop.systemd1.Activator' });
    expect(launcher.started).toEqual([]);
  });

  it('holds the request while systemd is not on the bus, and sends it once systemd takes its name', () => {
    const { bus, sink } = systemdBus();
    const a = connect(bus, sink);
    call(bus, a, 'com.example.Unit', 'Early');
    const systemd = connect(bus, sink);
    own(bus, sink, systemd, SYSTEMD_NAME);
    expect(mail(sink, systemd)).toContain("signal ActivationRequest('dbus-com.example.Unit.service')");
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Unit');
    expect(mail(sink, svc)).toContain('call Early()');
  });

  it('fails the waiting calls on ActivationFailure from systemd, and ignores one from anybody else', () => {
    const { bus, sink } = systemdBus();
    const systemd = connect(bus, sink);
    own(bus, sink, systemd, SYSTEMD_NAME);
    const a = connect(bus, sink);
    const s = call(bus, a, 'com.example.Unit', 'X');
    const failure = (from: Peer) => send(bus, from, {
      type: MessageType.Signal, destination: BUS_NAME, path: '/org/freedesktop/systemd1', interface: 'org.freedesktop.systemd1.Activator',
      member: 'ActivationFailure', signature: 'sss', args: ['dbus-com.example.Unit.service', 'com.example.Nope', 'Computer says no'],
    });
    failure(a);
    expect(sink.takeReply(a, s)).toBeUndefined();
    expect(bus.activator.pending.size).toBe(1);
    failure(systemd);
    expect(sink.takeReply(a, s)).toMatchObject({ errorName: 'com.example.Nope', args: ['Computer says no'] });
  });

  it('passes UpdateActivationEnvironment on to systemd as SetEnvironment, held until systemd connects', () => {
    const { bus, sink } = systemdBus();
    const root = connect(bus, sink, { uid: 0, gid: 0, pid: 9, groups: [0] });
    expect(callDriver(bus, sink, root, 'UpdateActivationEnvironment', 'a{ss}', [new Map([['K', 'V']])])?.type).toBe(MessageType.MethodReturn);
    const systemd = connect(bus, sink);
    own(bus, sink, systemd, SYSTEMD_NAME);
    const got = sink.take(systemd).find((m) => m.member === 'SetEnvironment');
    expect(got).toMatchObject({ destination: SYSTEMD_NAME, path: '/org/freedesktop/systemd1', interface: 'org.freedesktop.systemd1.Manager', args: [['K=V']] });
    expect(got!.flags & MessageFlag.NoReplyExpected).toBe(MessageFlag.NoReplyExpected);
    callDriver(bus, sink, root, 'UpdateActivationEnvironment', 'a{ss}', [new Map([['A', 'B']])]);
    expect(sink.take(systemd).find((m) => m.member === 'SetEnvironment')).toMatchObject({ destination: systemd.uniqueName, args: [['A=B']] });
    expect([...bus.activator.environment]).toEqual([['K', 'V'], ['A', 'B']]);
  });

  it('answers Features with SystemdActivation', () => {
    const { bus, sink } = systemdBus();
    const a = connect(bus, sink);
    const got = callDriver(bus, sink, a, 'Get', 'ss', [BUS_NAME, 'Features'], { interface: 'org.freedesktop.DBus.Properties' });
    expect(JSON.stringify(got?.args)).toContain('SystemdActivation');
  });
});

describe('activation under a policy', () => {
  function policyBus(rules: string) {
    const t = activatingBus();
    const config = parseConfig(`<busconfig><policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>
      <policy context="mandatory">${rules}</policy></busconfig>`, '/test.conf', { selinuxEnabled: false });
    t.bus.setPolicy(BusPolicy.compile(config.policies, { uidOf: () => undefined, gidOf: () => undefined }, 1000));
    return t;
  }

  it('refuses before activating what the sender may not send (AccessDenied, nothing started)', () => {
    const { bus, sink, catalog, launcher } = policyBus('<deny send_destination="com.example.Denied"/>');
    catalog.add('com.example.Denied');
    const a = connect(bus, sink);
    const s = call(bus, a, 'com.example.Denied', 'X');
    expect(sink.takeReply(a, s)).toMatchObject({ errorName: E.AccessDenied });
    expect(launcher.started).toEqual([]);
  });

  it('checks the receiver once it exists: a message it may not receive is refused then', () => {
    const { bus, sink, catalog } = policyBus('<deny receive_interface="com.example.X" receive_member="Call"/>');
    catalog.add('com.example.Svc');
    const a = connect(bus, sink);
    const s = call(bus, a, 'com.example.Svc', 'Call');
    const svc = connect(bus, sink);
    own(bus, sink, svc, 'com.example.Svc');
    expect(sink.takeReply(a, s)).toMatchObject({ errorName: E.AccessDenied });
    expect(mail(sink, svc).filter((m) => m.startsWith('call'))).toEqual([]);
  });
});
