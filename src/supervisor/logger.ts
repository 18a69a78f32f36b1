import { isTerminal } from '../sys/libc.js';
import { StderrOrKmsg } from './log-sink.js';

/**
 * Structured logs on stderr, one line per event, each with a stable event id.
 * Lines start with a syslog priority prefix (`<6>`) that journald reads
 * (SyslogLevelPrefix=), so levels survive in the initrd and on the real root;
 * when journald is gone (late shutdown) they fall back to /dev/kmsg.
 *
 * winston is the logger, but it is not loaded at start: initialising it (logform's formats,
 * readable-stream, colors) took ~17 ms of every start and so of every handoff pause, and ~1.3 MiB
 * of RSS. The first line logged once the daemon serves asks for it, and it is loaded when the
 * bus is next idle (a quarter second without a message): loading holds the event loop ~20 ms,
 * which must not fall on the clients that waited through a handoff (whose first line after
 * serving is handoff-complete). A bus that logs nothing after its start never loads it. Until
 * winston has taken over, lines are rendered by the same function winston's format calls and
 * written through the same sink, so they are the same bytes either way.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(event: string, message: string, fields?: LogFields): void;
  info(event: string, message: string, fields?: LogFields): void;
  notice(event: string, message: string, fields?: LogFields): void;
  warning(event: string, message: string, fields?: LogFields): void;
  error(event: string, message: string, fields?: LogFields): void;
}

export interface DaemonLogger extends Logger {
  /** Start-up is over: the next line logged asks for winston (loaded at the next idle()). */
  serving(): void;
  /** The bus has been idle for a while: the time to load winston, if a line asked for it. */
  idle(): void;
  /** Loads winston and logs through it from then on; resolves once it does (never rejects). */
  loadWinston(): Promise<void>;
}

const PRIORITY: Record<string, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };
/** winston.config.syslog.levels (logger.test.ts checks they agree). */
const SYSLOG_LEVELS: Readonly<Record<string, number>> = { emerg: 0, alert: 1, crit: 2, error: 3, warning: 4, notice: 5, info: 6, debug: 7 };

function render(fields: LogFields): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(`${k}=${/[\s"=]/.test(text) ? JSON.stringify(text) : text}`);
  }
  return parts.join(' ');
}

/** One line, without its newline: what winston's printf format returns. */
function formatLine(prefix: boolean, level: string, event: string, message: string, fields?: LogFields): string {
  const extra = fields ? render(fields) : '';
  const head = prefix ? `<${PRIORITY[level] ?? 6}>` : '';
  return `${head}ferrybus[${process.pid}]: ${event}: ${message}${extra ? ' ' + extra : ''}`;
}

/** winston's Logger.isLevelEnabled for one transport without a level of its own. */
function levelEnabled(configured: string, level: string): boolean {
  if (!Object.hasOwn(SYSLOG_LEVELS, configured) || !Object.hasOwn(SYSLOG_LEVELS, level)) return false;
  return SYSLOG_LEVELS[configured]! >= SYSLOG_LEVELS[level]!;
}

/** Exported for logger.test.ts. */
export { levelEnabled, SYSLOG_LEVELS };

export function createLogger(options: { level?: string; prefix?: boolean } = {}): DaemonLogger {
  // isatty(3), not process.stderr.isTTY: that getter builds node's stderr stream (~2.5 ms of
  // every start and handoff), which the sink, writing to fd 2 itself, never uses.
  const prefix = options.prefix ?? !isTerminal(2);
  const level = options.level ?? process.env.FERRYBUS_LOG_LEVEL ?? 'info';
  const sink = new StderrOrKmsg();
  let started = false;
  let wanted = false;
  let log = (lvl: string, event: string, message: string, fields?: LogFields): void => {
    // Cheap when filtered out: client connect/disconnect events are frequent and debug-level.
    if (!levelEnabled(level, lvl)) return;
    sink.write(`${formatLine(prefix, lvl, event, message, fields)}\n`);
    wanted ||= started;
  };
  let loading: Promise<void> | undefined;
  const loadWinston = () => (loading ??= startWinston(prefix, level, sink).then(
    ({ log: winstonLog, ms }) => {
      log = winstonLog;
      log('debug', 'logger-winston', 'winston has taken over the log', { loadMs: Math.round(ms * 10) / 10 });
    },
    (err: unknown) => {
      log('warning', 'logger-fallback', 'winston could not be loaded; logging without it', { error: String(err) });
    },
  ));
  const at = (lvl: string) => (event: string, message: string, fields?: LogFields) => log(lvl, event, message, fields);
  const serving = () => {
    started = true;
  };
  const idle = () => {
    if (wanted) void loadWinston();
  };
  return { debug: at('debug'), info: at('info'), notice: at('notice'), warning: at('warning'), error: at('error'), serving, idle, loadWinston };
}

/** winston's log function, and the ms from the start of its loading to its logger configured. */
async function startWinston(prefix: boolean, level: string, sink: StderrOrKmsg): Promise<{ log: (lvl: string, event: string, message: string, fields?: LogFields) => void; ms: number }> {
  // In the bundle both are required within microtasks, so this is the time the load held the
  // event loop; from dist/, node's ES module loader reads files in between.
  let started: number | undefined;
  const [{ default: winston }, { StderrOrKmsgTransport }] = await Promise.all([
    Promise.resolve().then(() => {
      started = performance.now();
      return import('winston');
    }),
    import('./log-transport.js'),
  ]);
  const line = winston.format.printf((info) => {
    const { level: lvl, message, event, fields } = info as unknown as { level: string; message: string; event: string; fields?: LogFields };
    return formatLine(prefix, lvl, event, message, fields);
  });
  const logger = winston.createLogger({
    levels: winston.config.syslog.levels,
    level,
    format: line,
    transports: [new StderrOrKmsgTransport(sink)],
  });
  const ms = performance.now() - (started ?? performance.now());
  return {
    log: (lvl, event, message, fields) => {
      if (logger.isLevelEnabled(lvl)) logger.log({ level: lvl, message, event, fields });
    },
    ms,
  };
}
