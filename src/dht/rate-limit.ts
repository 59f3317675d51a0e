/**
 * Per-address query rate limits: a token bucket per IP, in a bounded map so that a flood from many
 * addresses cannot grow memory without bound. Pure: time is passed in.
 */

export interface RateLimitOptions {
  /** Sustained queries per second per address. */
  perSecond: number;
  /** Burst allowed above the sustained rate. */
  burst: number;
  /** Addresses tracked at once; the least recently active are forgotten first. */
  maxAddresses: number;
}

/**
 * A node sends one or two queries per lookup to any one node, but an `apt upgrade` runs hundreds of
 * lookups in a few seconds, and in a small network (a LAN of a dozen daemons) they all reach the same
 * nodes: 100/s sustained with a burst of 300 lets that through (about 10 kB/s of queries) while still
 * cutting floods.
 */
export const DEFAULT_RATE_LIMIT: RateLimitOptions = { perSecond: 100, burst: 300, maxAddresses: 10_000 };

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly options: RateLimitOptions;

  constructor(options: Partial<RateLimitOptions> = {}) {
    this.options = { ...DEFAULT_RATE_LIMIT, ...options };
  }

  /** True when a query from `address` may be handled now (and takes a token). */
  allow(address: string, now: number): boolean {
    const { perSecond, burst, maxAddresses } = this.options;
    let bucket = this.buckets.get(address);
    if (bucket === undefined) {
      bucket = { tokens: burst, at: now };
      if (this.buckets.size >= maxAddresses) this.buckets.delete(this.buckets.keys().next().value!);
    } else {
      // A clock stepped back (the node passes wall-clock time) must not drain the bucket below zero
      // and lock the address out for as long as the step: elapsed time is never negative.
      const elapsedMs = Math.max(0, now - bucket.at);
      bucket.tokens = Math.min(burst, bucket.tokens + (elapsedMs / 1000) * perSecond);
      bucket.at = now;
      this.buckets.delete(address);
    }
    this.buckets.set(address, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  get tracked(): number {
    return this.buckets.size;
  }
}
