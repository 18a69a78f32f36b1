/**
 * How a fresh bus's cost per message falls as it warms up: one scenario driven in consecutive
 * chunks on one fresh bus, the routing process's CPU (schedstat) per unit of each chunk.
 *
 *   npm run bench -- --curve=roundtrip-fd [--curve-steps=1,1,1,1,1,5,10,10,10,100] [--count=N]
 *                    [--buses=ferrybus,dbus-broker] [--reps=3]
 *
 * Steps are percent of the scenario's count (`--count` replaces it); the buses alternate, each
 * repetition on fresh buses. This is how the scenario counts were chosen: long enough that
 * ferrybus's JIT has settled within the first 10% (bench/README.md, "What is measured").
 * Printed only (no results file): a tool for looking, not a figure to quote.
 */
import { type BusName, startBenchBus } from './buses.js';
import type { Scenario } from './scenarios.js';
import { schedSeconds } from './proc.js';

export interface CurveOptions {
  scenario: Scenario;
  buses: readonly BusName[];
  reps: number;
  /** Percent of the count per chunk, in order. */
  steps: readonly number[];
  count: number | undefined;
  nodeFlags: string[];
}

export const DEFAULT_CURVE_STEPS = [10, 10, 10, 10, 10, 10, 10, 10, 10, 10];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function measureCurve(o: CurveOptions): Promise<void> {
  const s = o.scenario;
  const count = o.count ?? s.params.count!;
  const unit = s.unit === 'msg' ? 'µs CPU per routed message' : 'µs CPU per connection';
  console.log(`${s.id}: count ${count}, chunks of ${o.steps.join(', ')} %; ${unit} in each chunk, one fresh bus per line`);
  for (let rep = 0; rep < o.reps; rep++) {
    for (const bus of o.buses) {
      if (s.buses && !s.buses.includes(bus)) continue;
      const b = await startBenchBus(bus, { nodeFlags: o.nodeFlags, config: s.config, limits: s.limits });
      try {
        const prepared = await s.prepare(b, { ...s.params, count });
        try {
          const costs: string[] = [];
          for (const pct of o.steps) {
            const n = Math.max(1, Math.round((count * pct) / 100));
            const before = schedSeconds(b.pid);
            const r = await prepared.drive(n);
            if (r.errors.length > 0) throw new Error(`${s.id} on ${bus}: ${r.errors.join('; ')}`);
            // Let the bus finish what the clients' last bytes started.
            await sleep(100);
            costs.push(((schedSeconds(b.pid) - before) / r.units * 1e6).toFixed(s.unit === 'msg' ? 1 : 0));
          }
          console.log(`  rep ${rep + 1} ${bus.padEnd(12)} ${costs.join('  ')}`);
        } finally {
          await prepared.cleanup();
        }
      } finally {
        await b.stop();
      }
    }
  }
}
