import { sendDatagram } from '../sys/libc.js';
import { anchors } from './anchors.js';
import type { Logger } from './logger.js';

/**
 * sd_notify for Type=notify units: READY=1 once the bus serves, RELOADING=1 while
 * a handoff runs, STATUS= for `systemctl status`. Sent on the notify socket
 * connected at the first start (see anchors.ts); a no-op outside systemd.
 */
export function notifySystemd(state: Record<string, string | number>, log?: Logger): void {
  const fd = anchors().notifyFd;
  if (fd === undefined) return;
  const payload = Object.entries(state).map(([k, v]) => `${k}=${v}`).join('\n');
  try {
    sendDatagram(fd, Buffer.from(payload));
  } catch (err) {
    log?.warning('notify-failed', 'could not notify systemd', { error: (err as Error).message });
  }
}
