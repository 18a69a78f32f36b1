import winston from 'winston';
import { StderrOrKmsgTransport } from './log-transport.js';

/**
 * Structured logs on stderr, one line per event, each with a stable event id.
 * Lines start with a syslog priority prefix (`<6>`) that journald reads
 * (SyslogLevelPrefix=), so levels survive in the initrd and on the real root;
 * when journald is gone (late shutdown) they fall back to /dev/kmsg.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(event: string, message: string, fields?: LogFields): void;
  info(event: string, message: string, fields?: LogFields): void;
  notice(event: string, message: string, fields?: LogFields): void;
  warning(event: string, message: string, fields?: LogFields): void;
  error(event: string, message: string, fields?: LogFields): void;
}

const PRIORITY: Record<string, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };

function render(fields: LogFields): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(`${k}=${/[\s"=]/.test(text) ? JSON.stringify(text) : text}`);
  }
  return parts.join(' ');
}

export function createLogger(options: { level?: string; prefix?: boolean } = {}): Logger {
  const prefix = options.prefix ?? !process.stderr.isTTY;
  const line = winston.format.printf((info) => {
    const { level, message, event, fields } = info as unknown as { level: string; message: string; event: string; fields?: LogFields };
    const extra = fields ? render(fields) : '';
    const head = prefix ? `<${PRIORITY[level] ?? 6}>` : '';
    return `${head}ferrybus[${process.pid}]: ${event}: ${message}${extra ? ' ' + extra : ''}`;
  });
  const logger = winston.createLogger({
    levels: winston.config.syslog.levels,
    level: options.level ?? process.env.FERRYBUS_LOG_LEVEL ?? 'info',
    format: line,
    transports: [new StderrOrKmsgTransport()],
  });
  const at = (level: string) => (event: string, message: string, fields?: LogFields) => {
    // Cheap when filtered out: client connect/disconnect events are frequent and debug-level.
    if (logger.isLevelEnabled(level)) logger.log({ level, message, event, fields });
  };
  return { debug: at('debug'), info: at('info'), notice: at('notice'), warning: at('warning'), error: at('error') };
}
