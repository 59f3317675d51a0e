/**
 * A fixed-bucket histogram of durations, as Prometheus histograms count them: how many observations fell
 * at or below each bound, their sum and count. Pure: the caller measures the time.
 */

/**
 * Lookup duration bounds: from a loopback round trip (a few ms) to the original apt-p2p's 17 s average in
 * the wild; the target of well under a second sits in the middle.
 */
export const LOOKUP_BOUNDS_MS = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000];

export interface HistogramSnapshot {
  /** Upper bounds (inclusive), ascending. */
  boundsMs: number[];
  /** Observations per bucket: counts[i] ≤ boundsMs[i] and > boundsMs[i-1]; the last entry is above every bound. */
  counts: number[];
  sumMs: number;
  count: number;
}

export class DurationHistogram {
  private readonly counts: number[];
  private sumMs = 0;
  private count = 0;

  constructor(private readonly boundsMs: number[] = LOOKUP_BOUNDS_MS) {
    this.counts = new Array<number>(boundsMs.length + 1).fill(0);
  }

  observe(ms: number): void {
    let bucket = this.boundsMs.findIndex((bound) => ms <= bound);
    if (bucket < 0) bucket = this.boundsMs.length;
    this.counts[bucket]! += 1;
    this.sumMs += ms;
    this.count += 1;
  }

  snapshot(): HistogramSnapshot {
    return { boundsMs: [...this.boundsMs], counts: [...this.counts], sumMs: this.sumMs, count: this.count };
  }
}
