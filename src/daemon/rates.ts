/**
 * Transfer rates over the last hour, for the status page's chart: the daemon samples its cumulative byte
 * counters every few seconds and this keeps one rate per interval in a ring buffer. Pure: the caller
 * passes the time and the counters.
 */

/** How often the daemon samples: 720 points an hour, enough for a phone-wide chart and small as JSON. */
export const RATE_SAMPLE_MS = 5_000;
/** How far back the chart looks. */
export const RATE_WINDOW_MS = 60 * 60_000;

/** Cumulative bytes since the daemon started (they only grow). */
export interface ByteCounters {
  mirror: number;
  peer: number;
  upload: number;
}

/** Bytes per second over the interval ending at `at` (ms since epoch). */
export interface RateSample {
  at: number;
  mirror: number;
  peer: number;
  upload: number;
}

export class RateHistory {
  private readonly ring: (RateSample | undefined)[];
  private next = 0;
  private last: { at: number; counters: ByteCounters } | undefined;

  constructor(
    readonly intervalMs: number = RATE_SAMPLE_MS,
    readonly windowMs: number = RATE_WINDOW_MS,
  ) {
    this.ring = new Array<RateSample | undefined>(Math.max(1, Math.ceil(windowMs / intervalMs)));
  }

  /**
   * Records the counters at `now`. The first call only sets the baseline. A counter that went down (it
   * cannot, short of a restart) counts as no traffic rather than a negative rate.
   */
  sample(now: number, counters: ByteCounters): void {
    const last = this.last;
    this.last = { at: now, counters: { ...counters } };
    if (last === undefined || now <= last.at) return;
    const seconds = (now - last.at) / 1000;
    const rate = (key: keyof ByteCounters) => Math.max(0, counters[key] - last.counters[key]) / seconds;
    this.ring[this.next] = { at: now, mirror: rate("mirror"), peer: rate("peer"), upload: rate("upload") };
    this.next = (this.next + 1) % this.ring.length;
  }

  /** The samples of the window ending at `now`, oldest first. */
  samples(now: number): RateSample[] {
    const ordered = [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    return ordered.filter((s): s is RateSample => s !== undefined && s.at > now - this.windowMs && s.at <= now);
  }
}
