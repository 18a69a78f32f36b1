#!/usr/bin/env node
// A load-generating bus peer, one per process so the bus sees independent clients.
//
//   load-client.mjs --lib raw|next --role service|caller|emitter|subscriber --address ADDR
//                   [--name N] [--targets N1,N2] [--window W] [--split-writes yes]
//
// --split-writes yes (raw only): every write ends in a partial message whose tail follows 1 ms
// later, so a handoff almost always finds half-received bytes from this client.
// --payload-every N --payload-bytes B (emitter): every Nth Tick carries B bytes, each (seq & 0xff).
// --stall-ms S (raw subscriber): every S ms, stops reading for S/2 ms.
//
// service:    owns --name, answers Echo(u seq) with (u seq); checks seq is consecutive per caller.
// caller:     keeps --window Echo calls in flight, round-robin over --targets, consecutive seq per
//             target; checks every reply matches its call, once.
// emitter:    emits Tick(u seq, ay payload) continuously; every 16 signals a driver round trip (at most two
//             outstanding) bounds how far it runs ahead of the bus.
// subscriber: matches every Tick; checks seq is consecutive per sender (exactly once, in order).
//
// Every peer also watches NameOwnerChanged for org.ferrybus.Load.* and its own NameLost/NameAcquired.
// Output on stdout, one line each: `ready {json}` once serving; on SIGHUP it starts recording
// name changes and prints `watching` (the test sends it once every peer has started); on SIGUSR2 it stops starting new
// work, waits for everything outstanding, makes a final driver round trip (which arrives after
// everything the bus queued for it earlier), prints `report {json}` and stays connected until
// SIGTERM. A connection lost before SIGTERM prints `lost {json}` and exits 3.
import { connectPeer, DRIVER, TYPE } from './peer.mjs';

const DRAIN_DEADLINE_MS = 20_000;
const EMPTY = Buffer.alloc(0);
const LOAD_IFACE = 'org.ferrybus.Load';
const LOAD_PATH = '/org/ferrybus/Load';
const NAME_PREFIX = 'org.ferrybus.Load';

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else out[a.slice(2)] = argv[++i];
  }
  return out;
}

const TIMED_OUT = Symbol('timed out');
/** Resolves with the promise's value, or TIMED_OUT when it takes longer than `ms`. */
function within(ms, promise) {
  let timer;
  const expired = new Promise((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms)));
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

const args = parseArgs(process.argv.slice(2));
const role = args.role;
const windowSize = Number(args.window ?? 16);
const errors = [];
const problem = (text) => {
  if (errors.length < 20) errors.push(text);
};
const events = { nameOwnerChanged: [], nameLost: [], nameAcquired: [] };
/** Name changes are recorded from SIGHUP on: the test sends it once every peer has started. */
let watching = false;
let finishing = false;
let terminating = false;

const peer = await connectPeer(args.lib, args.address, { splitWrites: args['split-writes'] === 'yes' });
peer.onClose((why) => {
  if (terminating) process.exit(0);
  process.stdout.write(`lost ${JSON.stringify({ uniqueName: peer.uniqueName, why })}\n`);
  process.exit(3);
});
process.on('SIGTERM', () => {
  terminating = true;
  peer.close();
  setImmediate(() => process.exit(0));
});

const driver = (member, signature = '', body = []) => peer.call({ ...DRIVER, member, signature, body });
const [busId] = (await driver('GetId')).body;

peer.onSignal((m) => {
  if (m.sender !== 'org.freedesktop.DBus' || !watching) return;
  if (m.member === 'NameOwnerChanged' && m.body[0].startsWith(NAME_PREFIX)) events.nameOwnerChanged.push(m.body);
  if (m.member === 'NameLost') events.nameLost.push(m.body[0]);
  if (m.member === 'NameAcquired' && m.body[0] !== peer.uniqueName) events.nameAcquired.push(m.body[0]);
});
await driver('AddMatch', 's', [
  `type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0namespace='${NAME_PREFIX}'`,
]);

const roles = { service, caller, emitter, subscriber };
if (!roles[role]) throw new Error(`unknown --role ${role}`);
const work = await roles[role]();

process.on('SIGHUP', async () => {
  // Whatever the bus queued for us before this round trip has arrived by its reply.
  await driver('GetId');
  watching = true;
  process.stdout.write('watching\n');
});

process.on('SIGUSR2', async () => {
  if (finishing) return;
  finishing = true;
  try {
    // A lost reply would make draining wait forever: give up after a deadline and report it.
    const drained = await within(DRAIN_DEADLINE_MS, work.drain?.() ?? Promise.resolve());
    if (drained === TIMED_OUT) problem(`still waiting for replies ${DRAIN_DEADLINE_MS} ms after the load stopped`);
    const final = await within(DRAIN_DEADLINE_MS, driver('GetId'));
    if (final === TIMED_OUT) throw new Error('the final GetId got no reply');
    const [endBusId] = final.body;
    const extra = work.report();
    if (role === 'service') {
      const [owner] = (await driver('GetNameOwner', 's', [args.name])).body;
      extra.ownerNow = owner;
    }
    const report = {
      uniqueName: peer.uniqueName, role, lib: args.lib, busId, endBusId, seconds: (Date.now() - started) / 1000,
      unexpectedReplies: peer.unexpectedReplies, errors, events, ...extra,
    };
    process.stdout.write(`report ${JSON.stringify(report)}\n`);
  } catch (err) {
    process.stdout.write(`report ${JSON.stringify({ uniqueName: peer.uniqueName, role, fatal: String(err?.stack ?? err) })}\n`);
  }
});

// Signal handlers are in place before `ready`: the test may signal as soon as it reads it.
const started = Date.now();
process.stdout.write(`ready ${JSON.stringify({ uniqueName: peer.uniqueName, busId, role, lib: args.lib })}\n`);
work.start?.();

async function service() {
  const [r] = (await driver('RequestName', 'su', [args.name, 4])).body;
  if (r !== 1) throw new Error(`RequestName(${args.name}) answered ${r}`);
  const lastSeq = new Map();
  let answered = 0;
  peer.onCall((m) => {
    if (m.interface !== LOAD_IFACE || m.member !== 'Echo') return false;
    const seq = m.body[0];
    const last = lastSeq.get(m.sender) ?? 0;
    if (seq !== last + 1) problem(`call from ${m.sender}: seq ${seq} after ${last}`);
    lastSeq.set(m.sender, seq);
    answered++;
    peer.reply(m, 'u', [seq]);
    return true;
  });
  return { report: () => ({ name: args.name, answered, callers: Object.fromEntries(lastSeq) }) };
}

async function caller() {
  const targets = args.targets.split(',');
  const nextSeq = new Map(targets.map((t) => [t, 0]));
  let turn = 0;
  let inFlight = 0;
  let sent = 0;
  let replied = 0;
  let idle;
  const one = () => {
    const target = targets[turn++ % targets.length];
    const seq = nextSeq.get(target) + 1;
    nextSeq.set(target, seq);
    inFlight++;
    sent++;
    peer.call({ destination: target, path: LOAD_PATH, interface: LOAD_IFACE, member: 'Echo', signature: 'u', body: [seq] }).then(
      (r) => {
        inFlight--;
        replied++;
        if (r.type !== TYPE.RETURN) problem(`Echo(${seq}) to ${target}: ${r.errorName} ${r.body?.[0] ?? ''}`);
        else if (r.body[0] !== seq) problem(`Echo(${seq}) to ${target} answered ${r.body[0]}`);
        if (!finishing) one();
        else if (inFlight === 0) idle?.();
      },
      (err) => problem(`Echo(${seq}) to ${target}: ${err.message}`),
    );
  };
  return {
    start: () => {
      for (let i = 0; i < windowSize; i++) one();
    },
    drain: () => new Promise((resolve) => {
      idle = resolve;
      if (inFlight === 0) resolve();
    }),
    report: () => ({ sent, replied, inFlight, perTarget: Object.fromEntries(nextSeq) }),
  };
}

async function emitter() {
  const payloadEvery = Number(args['payload-every'] ?? 0);
  const payloadBytes = Number(args['payload-bytes'] ?? 0);
  let payloadSent = 0;
  let seq = 0;
  let barriers = 0;
  let idle;
  const pump = () => {
    while (!finishing && barriers < 2) {
      for (let i = 0; i < 16; i++) {
        seq++;
        const payload = payloadEvery > 0 && seq % payloadEvery === 0 ? Buffer.alloc(payloadBytes, seq & 0xff) : EMPTY;
        payloadSent += payload.length;
        peer.signal({ path: LOAD_PATH, interface: LOAD_IFACE, member: 'Tick', signature: 'uay', body: [seq, payload] });
      }
      barriers++;
      driver('GetId').then(
        () => {
          barriers--;
          if (!finishing) pump();
          else if (barriers === 0) idle?.();
        },
        (err) => problem(`GetId barrier: ${err.message}`),
      );
    }
  };
  return {
    start: pump,
    drain: () => new Promise((resolve) => {
      idle = resolve;
      if (barriers === 0) resolve();
    }),
    report: () => ({ emitted: seq, payloadBytes: payloadSent }),
  };
}

async function subscriber() {
  const lastSeq = new Map();
  let received = 0;
  let payloadBytes = 0;
  peer.onSignal((m) => {
    if (m.interface !== LOAD_IFACE || m.member !== 'Tick') return;
    const [seq, payload] = m.body;
    const last = lastSeq.get(m.sender) ?? 0;
    if (seq !== last + 1) problem(`Tick from ${m.sender}: seq ${seq} after ${last}`);
    if (payload.some((b) => b !== (seq & 0xff))) problem(`Tick ${seq} from ${m.sender}: payload damaged`);
    lastSeq.set(m.sender, seq);
    payloadBytes += payload.length;
    received++;
  });
  await driver('AddMatch', 's', [`type='signal',interface='${LOAD_IFACE}',member='Tick'`]);
  // A reader that stops reading for a while: the bus's writes to it back up in the kernel and
  // in libuv, so a handoff finds bytes handed to socket.write and not yet sent.
  const stallMs = Number(args['stall-ms'] ?? 0);
  const stalls = stallMs > 0 ? setInterval(() => peer.stallReads(stallMs / 2), stallMs) : undefined;
  return {
    drain: () => clearInterval(stalls),
    report: () => ({ received, payloadBytes, senders: Object.fromEntries(lastSeq) }),
  };
}
