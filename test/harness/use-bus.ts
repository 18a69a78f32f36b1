import { afterAll, afterEach, beforeAll } from 'vitest';
import type { RunningBus } from './running-bus.js';
import { startBus } from './start-bus.js';

/**
 * Registers beforeAll/afterAll hooks that give the calling test file its own bus, and returns a
 * getter for it. One bus per file keeps files independent when vitest runs them in parallel.
 */
export function useBus(): () => RunningBus {
  let bus: RunningBus | undefined;
  beforeAll(async () => {
    bus = await startBus();
  });
  afterAll(async () => {
    await bus?.stop();
  });
  return () => {
    if (!bus) throw new Error('the test bus is not running (did beforeAll fail?)');
    return bus;
  };
}

/**
 * Returns `defer(fn)`: fn runs after the current test, last deferred first. Used to stop the
 * clients a test started even when an assertion fails halfway.
 */
export function useCleanup(): (fn: () => unknown) => void {
  const pending: Array<() => unknown> = [];
  afterEach(async () => {
    const errors: unknown[] = [];
    while (pending.length > 0) {
      try {
        await pending.pop()!();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  });
  return (fn) => {
    pending.push(fn);
  };
}
