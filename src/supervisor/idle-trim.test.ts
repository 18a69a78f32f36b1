import { describe, expect, it } from 'vitest';
import { IdleTrim, TRIM_AFTER_GROWTH } from './idle-trim.js';

/** A bus as the sweeps see it: turns, a resident set, and what a trim gives back. */
function fakeBus(rss: number) {
  const bus = { turns: 0, rss, released: 0, trims: 0 };
  const trim = new IdleTrim({
    turns: () => bus.turns,
    rss: () => bus.rss,
    trim: () => {
      bus.trims++;
      bus.rss -= bus.released;
      return bus.released > 0;
    },
  });
  return { bus, trim };
}

describe('IdleTrim', () => {
  it('tells whether the last sweep found the bus idle (no poller turn since the sweep before)', () => {
    const { bus, trim } = fakeBus(50 << 20);
    expect(trim.quiet).toBe(false);
    trim.sweep();
    expect(trim.quiet).toBe(true);
    bus.turns++;
    trim.sweep();
    expect(trim.quiet).toBe(false);
    trim.sweep();
    expect(trim.quiet).toBe(true);
  });

  it('does not trim, nor fail, while the resident set cannot be read (a root without procfs)', () => {
    const bus = { turns: 0, readable: false, trims: 0 };
    const trim = new IdleTrim({
      turns: () => bus.turns,
      rss: () => (bus.readable ? 80 << 20 : undefined),
      trim: () => Boolean(++bus.trims),
    });
    bus.turns++;
    trim.sweep();
    expect(trim.sweep()).toBe(false);
    // Readable again: growth is counted from the first reading, not from nothing.
    bus.readable = true;
    bus.turns++;
    trim.sweep();
    expect(trim.sweep()).toBe(false);
    expect(bus.trims).toBe(0);
  });

  it('trims once, at the first quiet sweep after a burst that grew the resident set', () => {
    const { bus, trim } = fakeBus(50 << 20);
    bus.turns += 40;
    bus.rss += 3 * TRIM_AFTER_GROWTH;
    bus.released = 2 * TRIM_AFTER_GROWTH;
    expect(trim.sweep()).toBe(false); // still busy
    expect(trim.sweep()).toBe(true); // quiet now
    expect(bus.trims).toBe(1);
    expect(trim.sweep()).toBe(false);
    expect(trim.sweep()).toBe(false);
    expect(bus.trims).toBe(1);
  });

  it('never trims while every sweep sees traffic', () => {
    const { bus, trim } = fakeBus(50 << 20);
    for (let i = 0; i < 20; i++) {
      bus.turns++;
      bus.rss += TRIM_AFTER_GROWTH;
      expect(trim.sweep()).toBe(false);
    }
    expect(bus.trims).toBe(0);
  });

  it('does not trim after bursts that left the footprint as it was', () => {
    const { bus, trim } = fakeBus(50 << 20);
    for (let i = 0; i < 10; i++) {
      bus.turns += 5;
      trim.sweep();
      trim.sweep();
    }
    expect(bus.trims).toBe(0);
  });

  it('measures growth from the last trim: a second burst must grow again', () => {
    const { bus, trim } = fakeBus(50 << 20);
    bus.released = TRIM_AFTER_GROWTH / 2;
    bus.turns++;
    bus.rss += 2 * TRIM_AFTER_GROWTH;
    trim.sweep();
    expect(trim.sweep()).toBe(true);
    // After the trim: 51.5 MiB. A burst adding half a MiB is not enough…
    bus.turns++;
    bus.rss += TRIM_AFTER_GROWTH / 2;
    trim.sweep();
    expect(trim.sweep()).toBe(false);
    // …another half is.
    bus.turns++;
    bus.rss += TRIM_AFTER_GROWTH / 2;
    trim.sweep();
    expect(trim.sweep()).toBe(true);
    expect(bus.trims).toBe(2);
  });
});
