import { describe, expect, it } from 'vitest';
import { formatHandoffPhases, handoffPhases, type HandoffMarks } from './handoff-phases.js';

const ms = (x: number) => BigInt(Math.round(x * 1e6));
const marks: HandoffMarks = {
  stoppedNs: ms(1000),
  execNs: ms(1010),
  loaderNs: ms(1040),
  programNs: ms(1052),
  adoptNs: ms(1057),
  documentNs: ms(1066),
  coreNs: ms(1073),
  doneNs: ms(1086),
};

describe('handoffPhases', () => {
  it('splits the pause at every mark, in the order the phases run, and the phases add up to the pause', () => {
    const phases = handoffPhases(marks);
    expect(phases).toEqual([
      ['old image', 10_000],
      ['node start-up', 30_000],
      ['program loaded', 12_000],
      ['program started', 5_000],
      ['document read', 9_000],
      ['core built', 7_000],
      ['connections restored', 13_000],
    ]);
    expect(phases.reduce((a, [, us]) => a + us, 0)).toBe(86_000);
    expect(formatHandoffPhases(phases)).toBe(
      'old image 10.0, node start-up 30.0, program loaded 12.0, program started 5.0, document read 9.0, core built 7.0, connections restored 13.0',
    );
  });

  it('counts the phase of a missing mark in the next one (no loader when run from dist/, no exec time from an older image)', () => {
    const phases = handoffPhases({ ...marks, loaderNs: undefined, execNs: undefined });
    expect(phases.slice(0, 2)).toEqual([
      ['old image + node start-up + program loaded', 52_000],
      ['program started', 5_000],
    ]);
    expect(phases.reduce((a, [, us]) => a + us, 0)).toBe(86_000);
  });

  it('skips a mark that is out of order (another clock, a garbled command line) instead of reporting a negative phase', () => {
    for (const execNs of [ms(999), ms(5000)]) {
      const phases = handoffPhases({ ...marks, execNs });
      expect(phases[0]).toEqual(['old image + node start-up', 40_000]);
      expect(phases.every(([, us]) => us >= 0)).toBe(true);
      expect(phases.reduce((a, [, us]) => a + us, 0)).toBe(86_000);
    }
  });
});
