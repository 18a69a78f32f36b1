import { sendUnixDatagram } from '../sys/libc.js';
import type { Logger } from './logger.js';

/**
 * sd_notify for Type=notify units: READY=1 once the bus serves, RELOADING=1 while
 * a handoff runs, STATUS= for `systemctl status`. A no-op outside systemd.
 * Read NOTIFY_SOCKET each time: it survives the handoff in the environment.
 */
export function notifySystemd(state: Record<string, string | number>, log?: Logger): void {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return;
  const payload = Object.entries(state).map(([k, v]) => `${k}=${v}`).join('\n');
  try {
    sendUnixDatagram(socket, Buffer.from(payload));
  } catch (err) {
    log?.warning('notify-failed', 'could not notify systemd', { socket, error: (err as Error).message });
  }
}
