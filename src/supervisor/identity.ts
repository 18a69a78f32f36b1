import { randomBytes } from '../sys/libc.js';
import * as fs from 'node:fs';

/** A fresh bus GUID: 128 random bits as 32 hex digits (the GUID format of the specification). */
export function newBusGuid(): string {
  return randomBytes(16).toString('hex');
}

/**
 * The machine id for Peer.GetMachineId, where systemd and libdbus keep it.
 * Without one (a bare initrd), a random id is used and the caller is told.
 */
export function readMachineId(): { id: string; source: string } {
  for (const file of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const id = fs.readFileSync(file, 'utf8').trim();
      if (/^[0-9a-f]{32}$/.test(id)) return { id, source: file };
    } catch {
      // try the next place
    }
  }
  return { id: newBusGuid(), source: 'random' };
}
