// Hostile clients next to a well-behaved one: for each bus and each case, a victim keeps making
// round trips to the bus while one hostile client (in a child process, so that it does not
// share the victim's event loop) does its worst for a fixed time. Reported: the victim's
// latency (p50/p99/max), its failed calls, and the bus's RSS before, at its peak and after the
// hostile client is gone. A measurement, not a test: nothing is asserted.
//
//   node dist/bench/hostile.js [--buses=ferrybus,dbus-daemon,dbus-broker] [--only=flood,...] [--seconds=8]
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { permissiveConfig } from '../test/harness/buses/dbus-daemon.js';
import { BUSES, type BenchBus, type BusName, REPO_ROOT, startBenchBus, versions } from './buses.js';
import { loadAverage, memory, round } from './proc.js';
import { AUTH_LINE, BUS_NAME, BUS_PATH, RawClient } from './raw-client.js';

/** The limits every bus that reads a busconfig runs with: low enough to be reached in seconds. */
const LIMITS = `
  <limit name="max_connections_per_user">256</limit>
  <limit name="max_incomplete_connections">64</limit>
  <limit name="auth_timeout">5000</limit>
  <limit name="max_match_rules_per_connection">2048</limit>
  <limit name="max_replies_per_connection">1024</limit>
  <limit name="max_outgoing_bytes">8388608</limit>
`;
const config = (listen: string) => permissiveConfig(listen).replace('</busconfig>', `${LIMITS}</busconfig>`);

interface Case {
  id: string;
  title: string;
  /** Runs in the child until it is killed. */
  run(socketPath: string): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keeps trying until the bus refuses: connections, rules, calls. Errors are the point here. */
async function untilRefused(step: () => Promise<unknown>): Promise<void> {
  for (;;) {
    try {
      await step();
    } catch {
      await sleep(50); // refused: keep knocking, slower
    }
  }
}

const CASES: Case[] = [
  {
    id: 'flood',
    title: 'connection flood from one uid (connect + Hello, kept open)',
    async run(socketPath) {
      const held: RawClient[] = [];
      await untilRefused(async () => held.push(await RawClient.connect(socketPath)));
    },
  },
  {
    id: 'matches',
    title: 'match-rule flood (one connection, AddMatch with distinct rules)',
    async run(socketPath) {
      const c = await RawClient.connect(socketPath);
      let i = 0;
      await untilRefused(() => c.call(BUS_NAME, BUS_PATH, BUS_NAME, 'AddMatch', 's', [`type='signal',member='M${i++}'`]));
    },
  },
  {
    id: 'churn',
    title: 'name churn (4 connections, RequestName/ReleaseName loops)',
    async run(socketPath) {
      const loops = [0, 1, 2, 3].map(async (n) => {
        const c = await RawClient.connect(socketPath);
        for (let i = 0; ; i++) {
          const name = `com.example.Churn${n}.N${i % 100}`;
          await c.call(BUS_NAME, BUS_PATH, BUS_NAME, 'RequestName', 'su', [name, 4]);
          await c.call(BUS_NAME, BUS_PATH, BUS_NAME, 'ReleaseName', 's', [name]);
        }
      });
      await Promise.all(loops);
    },
  },
  {
    id: 'sasl',
    title: 'clients that never finish SASL (half an AUTH line, held open)',
    async run(socketPath) {
      const held: net.Socket[] = [];
      for (;;) {
        const s = net.connect({ path: socketPath });
        s.on('error', () => {});
        s.write(AUTH_LINE.slice(0, 10));
        held.push(s);
        await sleep(held.length < 200 ? 5 : 100);
      }
    },
  },
  {
    id: 'noread',
    title: 'a subscriber that never reads, 16 KiB broadcasts as fast as the bus takes them',
    async run(socketPath) {
      const sink = await RawClient.connect(socketPath);
      await sink.call(BUS_NAME, BUS_PATH, BUS_NAME, 'AddMatch', 's', ["type='signal',interface='com.example.Flood'"]);
      sink.socket.pause();
      const emitter = await RawClient.connect(socketPath);
      const { encodeWithArgs, MessageType } = await import('../src/wire/message.js');
      const body = 'x'.repeat(16 * 1024);
      for (;;) {
        const bytes = encodeWithArgs({ type: MessageType.Signal, serial: emitter.nextSerial(), path: '/f', interface: 'com.example.Flood', member: 'F', signature: 's' }, [body]);
        if (!emitter.write(bytes)) await new Promise((r) => emitter.socket.once('drain', r));
      }
    },
  },
  {
    id: 'unanswered',
    title: 'calls that are never answered (a service that never replies, one caller at its limit)',
    async run(socketPath) {
      const service = await RawClient.connect(socketPath);
      await service.call(BUS_NAME, BUS_PATH, BUS_NAME, 'RequestName', 'su', ['com.example.Silent', 4]);
      const caller = await RawClient.connect(socketPath);
      await untilRefused(async () => {
        // Fire 64 at a time without waiting: each stays pending until the bus's limit refuses more.
        const calls = Array.from({ length: 64 }, () => caller.call('com.example.Silent', '/', 'com.example.Silent', 'Wait', '', [], 600_000));
        await Promise.race([...calls, sleep(20)]);
      });
    },
  },
];

interface Row {
  bus: BusName;
  case: string;
  victimCalls: number;
  victimErrors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  rssAfterMiB: number;
  load1: number;
  hostileExit: string;
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!);
const mib = (kib: number) => round(kib / 1024, 1);

function startHostile(c: Case, bus: BenchBus): ChildProcess {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--hostile', c.id, bus.socketPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.setEncoding('utf8').on('data', () => {});
  return child;
}

async function measureCase(c: Case, busName: BusName, seconds: number): Promise<Row> {
  const bus = await startBenchBus(busName, busName === 'dbus-broker' ? {} : { config });
  try {
    const victim = await RawClient.connect(bus.socketPath);
    await sleep(300);
    const before = memory(bus.pid).rssKiB;
    let peak = before;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, memory(bus.pid).rssKiB);
      } catch { /* the bus exited: reported below */ }
    }, 100);
    const hostile = startHostile(c, bus);
    let hostileExit = 'killed at the end (still running)';
    hostile.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') hostileExit = `exited early: ${code ?? signal}`;
    });
    const latencies: number[] = [];
    let errors = 0;
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
      const t0 = performance.now();
      try {
        await victim.call(BUS_NAME, BUS_PATH, BUS_NAME, 'GetNameOwner', 's', [victim.uniqueName], 5000);
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
      await sleep(5);
    }
    hostile.kill('SIGKILL');
    await new Promise((r) => (hostile.exitCode !== null || hostile.signalCode !== null ? r(null) : hostile.once('exit', r)));
    await sleep(2000);
    clearInterval(sampler);
    const after = memory(bus.pid).rssKiB;
    // One more call: the victim must still be served once the hostile client is gone.
    try {
      await victim.call(BUS_NAME, BUS_PATH, BUS_NAME, 'GetId', '', [], 5000);
    } catch {
      errors++;
    }
    victim.close();
    latencies.sort((a, b) => a - b);
    return {
      bus: busName,
      case: c.id,
      victimCalls: latencies.length,
      victimErrors: errors,
      p50Ms: round(percentile(latencies, 0.5), 2),
      p99Ms: round(percentile(latencies, 0.99), 2),
      maxMs: round(latencies[latencies.length - 1] ?? NaN, 1),
      rssBeforeMiB: mib(before),
      rssPeakMiB: mib(peak),
      rssAfterMiB: mib(after),
      load1: loadAverage()[0],
      hostileExit,
    };
  } finally {
    await bus.stop();
  }
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--hostile') {
    const c = CASES.find((x) => x.id === argv[1]);
    if (!c) throw new Error(`unknown case ${argv[1]}`);
    await c.run(argv[2]!);
    return;
  }
  const opt = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const buses = (opt('buses')?.split(',') ?? [...BUSES]) as BusName[];
  const only = opt('only')?.split(',');
  const seconds = Number(opt('seconds') ?? 8);
  const cases = CASES.filter((c) => !only || only.includes(c.id));
  const rows: Row[] = [];
  console.log(`hostile clients: ${cases.length} cases × ${buses.length} buses, ${seconds} s each; load ${loadAverage().join(' ')}`);
  for (const c of cases) {
    console.log(`\n${c.title}`);
    console.log('  bus           victim calls  errors   p50 ms   p99 ms   max ms   RSS MiB before/peak/after   hostile');
    for (const b of buses) {
      const r = await measureCase(c, b, seconds);
      rows.push(r);
      console.log(`  ${r.bus.padEnd(12)}  ${String(r.victimCalls).padStart(12)}  ${String(r.victimErrors).padStart(6)}  ${r.p50Ms.toFixed(2).padStart(7)}  ${r.p99Ms.toFixed(2).padStart(7)}  ${r.maxMs.toFixed(1).padStart(7)}   ${`${r.rssBeforeMiB} / ${r.rssPeakMiB} / ${r.rssAfterMiB}`.padEnd(24)}  ${r.hostileExit}`);
    }
  }
  const out = path.join(REPO_ROOT, 'bench', 'results', 'hostile-latest.json');
  writeFileSync(out, JSON.stringify({ generated: new Date().toISOString(), seconds, limits: LIMITS.trim().split('\n').map((l) => l.trim()), versions: versions(), rows }, null, 2) + '\n');
  console.log(`\nresults in ${path.relative(process.cwd(), out)}`);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
