import { Buffer } from 'node:buffer';
import { MessageType, readBody, type Message } from '../wire/message.js';
import { Variant, type DBusValue } from '../wire/values.js';
import { BusCallError, BusClient } from './bus-client.js';
import { CliError, EXIT_USAGE } from './cli-error.js';
import { explainCallError, type BusArgs } from './supervisor-client.js';

export interface MonitorArgs extends BusArgs {
  /** Match rules; none means every message. */
  rules: string[];
  json?: boolean;
  /** Decode and print each message's arguments too. */
  body?: boolean;
}

const TYPE_NAMES: Record<number, string> = {
  [MessageType.MethodCall]: 'method_call',
  [MessageType.MethodReturn]: 'method_return',
  [MessageType.Error]: 'error',
  [MessageType.Signal]: 'signal',
};

/** A D-Bus value as JSON: 64-bit integers as numbers when exact, else strings; bytes as hex. */
export function toJsonValue(v: DBusValue): unknown {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (v instanceof Variant) return toJsonValue(v.value);
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, val] of v) o[String(toJsonValue(k))] = toJsonValue(val);
    return o;
  }
  if (Array.isArray(v)) return v.map(toJsonValue);
  return v;
}

interface MonitoredMessage {
  time: string;
  type: string;
  sender: string | null;
  destination: string | null;
  serial: number;
  replySerial: number | null;
  path: string | null;
  interface: string | null;
  member: string | null;
  signature: string;
  errorName: string | null;
  flags: number;
  size: number;
  body?: unknown;
  bodyError?: string;
}

function describe(msg: Message, withBody: boolean): MonitoredMessage {
  const h = msg.header;
  const out: MonitoredMessage = {
    time: new Date().toISOString(),
    type: TYPE_NAMES[h.type] ?? `type-${h.type}`,
    sender: h.sender ?? null,
    destination: h.destination ?? null,
    serial: h.serial,
    replySerial: h.replySerial ?? null,
    path: h.path ?? null,
    interface: h.interface ?? null,
    member: h.member ?? null,
    signature: h.signature,
    errorName: h.errorName ?? null,
    flags: h.flags,
    size: msg.bytes.length,
  };
  if (withBody) {
    try {
      out.body = readBody(msg).map(toJsonValue);
    } catch (err) {
      out.bodyError = (err as Error).message;
    }
  }
  return out;
}

/** One line: time, type, sender → destination, serial, path, interface.member, signature, error. */
export function formatLine(m: MonitoredMessage): string {
  const parts = [
    m.time.slice(11, 23),
    m.type.padEnd(13), // 'method_return': the types line up
    `${m.sender ?? '(no sender)'} → ${m.destination ?? (m.type === 'signal' ? '(broadcast)' : '(bus)')}`,
    `serial=${m.serial}`,
  ];
  if (m.replySerial !== null) parts.push(`reply_serial=${m.replySerial}`);
  if (m.path !== null) parts.push(`path=${m.path}`);
  if (m.member !== null) parts.push(m.interface !== null ? `${m.interface}.${m.member}` : m.member);
  parts.push(`sig="${m.signature}"`);
  if (m.errorName !== null) parts.push(`error=${m.errorName}`);
  if (m.body !== undefined) parts.push(`body=${JSON.stringify(m.body)}`);
  if (m.bodyError !== undefined) parts.push(`body=(unreadable: ${m.bodyError})`);
  return parts.join('  ');
}

/**
 * `ferrybus monitor [RULE...]`: BecomeMonitor with the rules, then one line (or one JSON
 * object) per message until Ctrl-C. Needs uid 0 or the bus's user, as dbus-monitor does.
 */
export async function runMonitorCommand(args: MonitorArgs): Promise<void> {
  const client = await BusClient.connect(args.address, { timeoutMs: args.timeoutMs, source: args.addressSource });
  const self = client.uniqueName;
  let stopping = false;
  const stop = (code: number) => {
    stopping = true;
    client.close();
    process.exit(code);
  };
  // Ctrl-C is the normal way to stop; handlers are in place before anyone is told we monitor.
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  // `ferrybus monitor | head` closes our stdout: that is a normal way to stop too.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => stop(err.code === 'EPIPE' ? 0 : 1));
  const seen: Message[] = [];
  let ready = false;
  const print = (msg: Message) => {
    // What the bus tells us about ourselves (NameLost of our unique name) is bookkeeping.
    if (msg.header.destination === self) return;
    const m = describe(msg, args.body === true);
    process.stdout.write((args.json ? JSON.stringify(m) : formatLine(m)) + '\n');
  };
  client.onMessage = (msg) => (ready ? print(msg) : seen.push(msg));
  client.onClose = (why) => {
    if (stopping) return;
    process.stderr.write(`ferrybus: monitoring stopped: ${why} (${client.where})\n`);
    stop(1);
  };
  try {
    await client.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.Monitoring', 'BecomeMonitor', 'asu', [args.rules, 0], args.timeoutMs);
  } catch (err) {
    client.close();
    if (err instanceof BusCallError && err.errorName === 'org.freedesktop.DBus.Error.MatchRuleInvalid') {
      throw new CliError(`invalid match rule: ${err.text}`, EXIT_USAGE);
    }
    throw explainCallError(err, client, 'org.freedesktop.DBus.Monitoring.BecomeMonitor');
  }
  ready = true;
  for (const msg of seen.splice(0)) print(msg);
  process.stderr.write(
    `ferrybus: monitoring ${client.where}${args.rules.length ? ` (${args.rules.length} rule${args.rules.length === 1 ? '' : 's'})` : ''}; Ctrl-C stops\n`,
  );
  // The socket keeps the process alive until a signal or the bus ends it.
}
