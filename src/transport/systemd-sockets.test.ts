import { describe, expect, it } from 'vitest';
import { chooseSystemdSockets, readListenEnvironment } from './systemd-sockets.js';

// The fds named here need not be open: readListenEnvironment only reads the environment.
const PID = 4242;

describe('readListenEnvironment (sd_listen_fds_with_names)', () => {
  it('takes the sockets meant for this process, from fd 3 on, and removes the variables', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_FDS: '2', LISTEN_PID: String(PID), KEEP: 'x' };
    expect(readListenEnvironment(env, PID)).toEqual({ sockets: [{ fd: 3, name: '' }, { fd: 4, name: '' }], ignored: [] });
    expect(env).toEqual({ KEEP: 'x' });
  });

  it('serves only the sockets named dbus.socket when one is, and reports the others as ignored', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_FDS: '3', LISTEN_PID: String(PID), LISTEN_FDNAMES: 'extra.socket:dbus.socket:varlink' };
    expect(readListenEnvironment(env, PID)).toEqual({
      sockets: [{ fd: 4, name: 'dbus.socket' }],
      ignored: [{ fd: 3, name: 'extra.socket' }, { fd: 5, name: 'varlink' }],
    });
    expect(env.LISTEN_FDNAMES).toBeUndefined();
  });

  it('serves every socket when none is named dbus.socket (a unit of another name, systemd-socket-activate)', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_FDS: '2', LISTEN_PID: String(PID), LISTEN_FDNAMES: 'my-bus.socket:my-bus.socket' };
    expect(readListenEnvironment(env, PID).sockets.map((s) => s.fd)).toEqual([3, 4]);
  });

  it('says why there are no sockets: unset, another process, not a number, zero, names that do not match the count', () => {
    expect(readListenEnvironment({}, PID).missing).toBe('LISTEN_FDS unset');
    expect(readListenEnvironment({ LISTEN_FDS: '1' }, PID).missing).toBe('LISTEN_PID unset');
    expect(readListenEnvironment({ LISTEN_FDS: '1', LISTEN_PID: '1' }, PID).missing).toBe(`LISTEN_PID=1 is not this process, ${PID}`);
    expect(readListenEnvironment({ LISTEN_FDS: 'two', LISTEN_PID: String(PID) }, PID).missing).toBe('LISTEN_FDS=two is not a number');
    expect(readListenEnvironment({ LISTEN_FDS: '0', LISTEN_PID: String(PID) }, PID).missing).toBe('LISTEN_FDS=0');
    const mismatch = readListenEnvironment({ LISTEN_FDS: '1', LISTEN_PID: String(PID), LISTEN_FDNAMES: 'dbus.socket:other' }, PID);
    expect(mismatch).toEqual({ sockets: [], ignored: [], missing: 'LISTEN_FDNAMES names 2 sockets ("dbus.socket:other") but LISTEN_FDS=1' });
  });
});

describe('chooseSystemdSockets', () => {
  it('keeps several dbus.socket listeners (a socket unit may listen on more than one path)', () => {
    const passed = [{ fd: 3, name: 'dbus.socket' }, { fd: 4, name: 'dbus.socket' }, { fd: 5, name: 'other' }];
    expect(chooseSystemdSockets(passed)).toEqual({ sockets: passed.slice(0, 2), ignored: passed.slice(2) });
  });
});
