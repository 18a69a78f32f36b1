#!/usr/bin/env node
// Connects to the bus over and over, four attempts at a time: net.connect to the socket path, SASL
// EXTERNAL, BEGIN + Hello, wait for the Hello reply, close; a random pause of up to 20 ms before
// AUTH and before BEGIN. Each attempt has a deadline; every failure is recorded by its errno code
// (ECONNREFUSED, ENOENT, …) or reason.
//
//   connect-loop.mjs --address ADDR
//
// Prints `ready {}` after the first successful Hello; on SIGUSR2 finishes the attempt in progress
// and prints `report {"attempts","helloAnswered","failures":{code:count},"examples":[…],"maxMs"}`.
import * as net from 'node:net';
import { authenticate, DRIVER, socketPathOf, TYPE } from './peer.mjs';

const DIST = new URL('../../../dist/src/wire/', import.meta.url);
const { Framer } = await import(new URL('framer.js', DIST).href);
const { encodeMessage, parseMessage, readBody } = await import(new URL('message.js', DIST).href);

const address = process.argv[process.argv.indexOf('--address') + 1];
const socketPath = socketPathOf(address);
const ATTEMPT_DEADLINE_MS = 30_000;
/** Attempts in flight at once, and the longest random pause between the steps of one. */
const CONCURRENCY = 4;
const LINGER_MS = 20;
const hello = encodeMessage({ type: TYPE.CALL, serial: 1, ...DRIVER, member: 'Hello' });

let stop = false;
let attempts = 0;
let helloAnswered = 0;
let maxMs = 0;
const failures = {};
const examples = [];
process.on('SIGUSR2', () => (stop = true));

function attempt() {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('no Hello reply in time'), { code: 'TIMEOUT' }));
    }, ATTEMPT_DEADLINE_MS);
    const fail = (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('connect', async () => {
      let rest;
      try {
        // Lingering between the steps makes a handoff meet connections in every state: accepted
        // with nothing said, in the middle of SASL, authenticated without Hello.
        await linger();
        rest = await authenticate(socket);
        await linger();
      } catch (err) {
        return fail(err);
      }
      const framer = new Framer();
      const onData = (chunk) => {
        for (const bytes of framer.push(chunk)) {
          const m = parseMessage(bytes);
          if (m.header.replySerial !== 1) continue;
          if (m.header.type !== TYPE.RETURN) return fail(Object.assign(new Error(`Hello: ${m.header.errorName}`), { code: 'HELLO_ERROR' }));
          const [name] = readBody(m);
          if (!/^:1\.[0-9]+$/.test(name)) return fail(Object.assign(new Error(`bad unique name ${name}`), { code: 'BAD_NAME' }));
          clearTimeout(timer);
          socket.off('data', onData);
          socket.destroy();
          return resolve(name);
        }
      };
      socket.on('data', onData);
      socket.once('close', () => fail(Object.assign(new Error('closed before the Hello reply'), { code: 'EOF' })));
      socket.write(Buffer.concat([Buffer.from('BEGIN\r\n'), hello]));
      if (rest.length > 0) onData(rest);
    });
  });
}

const linger = () => new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * LINGER_MS)));

let announced = false;
async function loop() {
  while (!stop) {
    attempts++;
    const t0 = performance.now();
    try {
      await attempt();
      helloAnswered++;
      maxMs = Math.max(maxMs, performance.now() - t0);
      if (!announced) {
        announced = true;
        process.stdout.write('ready {}\n');
      }
    } catch (err) {
      const code = err.code ?? 'OTHER';
      failures[code] = (failures[code] ?? 0) + 1;
      if (examples.length < 10) examples.push(`${code}: ${err.message}`);
    }
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, loop));
process.stdout.write(`report ${JSON.stringify({ attempts, helloAnswered, failures, examples, maxMs: Math.round(maxMs) })}\n`);
// Stay until the test stops us, like the other peers.
setInterval(() => {}, 1 << 30);
