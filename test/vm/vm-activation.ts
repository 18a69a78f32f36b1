// Service activation checks of the VM boot test (real root, after daemon-reexec):
//
//   realroot-activation-systemd  hostnamectl starts systemd-hostnamed on demand: the bus asks
//                                PID 1 (SystemdService=dbus-org.freedesktop.hostname1.service)
//   realroot-activation-exec     the first call to org.ferrybus.VmTestActivated starts its Exec=
//                                program; the calls sent meanwhile are answered, in order

import { execFileSync } from 'node:child_process';
import { call, check, nameOwner, type Bus } from './vm-bus.js';
import { showProperty } from './vm-system.js';

const ACTIVATED = { destination: 'org.ferrybus.VmTestActivated', path: '/org/ferrybus/VmTestActivated', interface: 'org.ferrybus.VmTestActivated' };

export async function runActivationChecks(bus: Bus): Promise<void> {
  const wasActive = showProperty('systemd-hostnamed.service', 'ActiveState');
  let hostname = '';
  try {
    hostname = execFileSync('hostnamectl', ['status'], { encoding: 'utf8', timeout: 60_000 }).split('\n').find((l) => /Static hostname/.test(l))?.trim() ?? '';
  } catch (e) {
    hostname = `failed: ${(e as Error).message}`;
  }
  const nowActive = showProperty('systemd-hostnamed.service', 'ActiveState');
  const owner = await nameOwner(bus, 'org.freedesktop.hostname1');
  check('realroot-activation-systemd', wasActive !== 'active' && nowActive === 'active' && owner !== '' && hostname.includes('ferrybus-vm'),
    `systemd-hostnamed ${wasActive} -> ${nowActive}; org.freedesktop.hostname1 owner=${owner || '(none)'}; hostnamectl: ${hostname}`);

  const before = await nameOwner(bus, ACTIVATED.destination);
  const replies = await Promise.all([1, 2, 3].map((i) => call(bus, ACTIVATED, 'Ping', 's', [`call-${i}`]).then((b) => String(b[0]), (e: Error) => `error ${e.message}`)));
  check('realroot-activation-exec', before === '' && replies.join(',') === '1:call-1,2:call-2,3:call-3',
    `owner before=${before || '(none)'} replies=${replies.join(',')}`);
}
