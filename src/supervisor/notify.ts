import { Buffer } from 'node:buffer';
import { sendDatagram } from '../sys/libc.js';
import { anchors, dropNotifySocket } from './anchors.js';
import type { Logger } from './logger.js';

/**
 * The receiver of the notify socket is gone for good: PID 1 exec'd systemd-shutdown (which
 * reads no notifications) at the end of shutdown, or the service manager exited. Not a fault
 * of the bus, and nobody is left to tell: said once, informational, then no more notifying.
 */
const RECEIVER_GONE = new Set(['ECONNREFUSED', 'ENOTCONN']);

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
    const code = (err as { code?: string }).code;
    if (code !== undefined && RECEIVER_GONE.has(code)) {
      dropNotifySocket();
      log?.info('notify-gone', 'the service manager no longer reads notifications (systemd-shutdown runs, or it exited): not notifying any more', { error: code });
      return;
    }
    log?.warning('notify-failed', 'could not notify systemd', { error: (err as Error).message });
  }
}
