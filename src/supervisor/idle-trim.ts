/**
 * Memory the bus has freed goes back to the system once the bus is idle. The optimizing
 * compiler's work areas and a burst of connections leave megabytes free inside the C library's
 * heap, which keeps them for reuse (at 1 000 connections, ~2 MiB of a 66 MiB resident set);
 * malloc_trim(0) returns those pages.
 *
 * Looked at on every sweep of the daemon (a quarter second): the trim runs when a sweep finds no
 * poller turn since the one before, after sweeps that did, and the resident set has grown by
 * TRIM_AFTER_GROWTH since the last trim (or start). So never during traffic, once per burst at
 * most, and not at all for a bus whose footprint is steady.
 */
export const TRIM_AFTER_GROWTH = 1024 * 1024;

export interface IdleTrimProbes {
  /** The poller's turn counter. */
  turns(): number;
  /** Resident set size, bytes; undefined when it cannot be read (a root without procfs). */
  rss(): number | undefined;
  /** Releases free memory; true when some was released. */
  trim(): boolean;
}

export class IdleTrim {
  private lastTurns: number;
  private activeSinceLook = false;
  private rssAfterTrim: number | undefined;
  /** How many trims ran. */
  trims = 0;
  /** Whether the last sweep saw no poller turn since the one before (the bus was idle). */
  quiet = false;

  constructor(private readonly probes: IdleTrimProbes) {
    this.lastTurns = probes.turns();
    this.rssAfterTrim = probes.rss();
  }

  /** One sweep. Returns whether it trimmed. */
  sweep(): boolean {
    const turns = this.probes.turns();
    const quiet = turns === this.lastTurns;
    this.quiet = quiet;
    this.lastTurns = turns;
    if (!quiet) {
      this.activeSinceLook = true;
      return false;
    }
    if (!this.activeSinceLook) return false;
    this.activeSinceLook = false;
    // Without a reading (now or at the last trim) the growth is unknown: no trim.
    const rss = this.probes.rss();
    if (rss === undefined || this.rssAfterTrim === undefined) {
      this.rssAfterTrim ??= rss;
      return false;
    }
    if (rss < this.rssAfterTrim + TRIM_AFTER_GROWTH) return false;
    this.probes.trim();
    this.trims++;
    this.rssAfterTrim = this.probes.rss();
    return true;
  }
}
