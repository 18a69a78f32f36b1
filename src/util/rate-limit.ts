/**
 * At most `burst` events per `windowMs`; the rest are counted, and the next allowed event
 * learns how many were suppressed. Keeps a hostile client from flooding the log.
 */
export class RateLimit {
  private windowStart = 0;
  private used = 0;
  private suppressed = 0;

  constructor(
    private readonly burst: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** undefined: drop this event; a number: log it, mentioning that many suppressed before it. */
  take(): number | undefined {
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used >= this.burst) {
      this.suppressed++;
      return undefined;
    }
    this.used++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    return suppressed;
  }
}
