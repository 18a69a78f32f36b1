import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MessageType } from '../wire/message.js';
import type { Bus } from './bus.js';
import type { Peer } from './peer.js';
import { connect, newBus, send, type MemorySink } from './testing.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/**
 * Heap and ArrayBuffer memory in use after a full collection, code excepted: the optimizing
 * compiler adds code to the heap whenever it gets to a hot function (on a loaded machine, later
 * than the warm-up: ~1 MiB of it seen in the measured part), which is no client's memory.
 */
function retained(): number {
  gc();
  const data = v8.getHeapSpaceStatistics()
    .filter((s) => !s.space_name.startsWith('code_'))
    .reduce((sum, s) => sum + s.space_used_size, 0);
  return data + process.memoryUsage().arrayBuffers;
}

/** `n` clients, one after another: each connects, makes a call to `service`, and leaves. */
function comeAndGo(bus: Bus, sink: MemorySink, service: Peer, n: number): void {
  for (let i = 0; i < n; i++) {
    const client = connect(bus, sink);
    send(bus, client, { type: MessageType.MethodCall, destination: service.uniqueName!, path: '/obj', interface: 'com.example.Iface', member: 'Frob' });
    expect(sink.take(service)).toHaveLength(1);
    bus.detach(client);
  }
}

describe('clients that have left', () => {
  // A system bus sees a client come and go for every busctl or dbus-send run: nothing of theirs
  // may stay behind (an encoded SENDER field per name once kept ~8 KiB each alive).
  it('leave no memory behind: 20 000 short-lived clients that each sent a message, three times over', () => {
    const { bus, sink } = newBus();
    const service = connect(bus, sink);
    comeAndGo(bus, sink, service, 2000);
    // What a client leaves behind grows in every round; what the runtime adds once (compiler
    // metadata, a larger hash table) grows in some. So the smallest of three rounds must stay small:
    // 1 MiB over 20 000 clients is ~52 bytes each.
    const grownPerRound: number[] = [];
    for (let round = 0; round < 3; round++) {
      const before = retained();
      comeAndGo(bus, sink, service, 20_000);
      grownPerRound.push(retained() - before);
    }
    const grown = Math.min(...grownPerRound);
    const kib = grownPerRound.map((g) => (g / 1024).toFixed(0)).join(', ');
    expect(grown, `${kib} KiB more after each round of 20 000 clients`).toBeLessThan(1024 * 1024);
  });
});
