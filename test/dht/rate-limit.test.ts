/** Per-address token buckets, with time passed in. */
import { describe, expect, test } from "bun:test";
import { DEFAULT_RATE_LIMIT, RateLimiter } from "../../src/dht/rate-limit.ts";

const T0 = 1_700_000_000_000;

/** How many of `n` queries at one instant are allowed. */
function allowedOf(limiter: RateLimiter, address: string, n: number, now: number): number {
  let allowed = 0;
  for (let i = 0; i < n; i++) if (limiter.allow(address, now)) allowed++;
  return allowed;
}

describe("RateLimiter", () => {
  test("a new address may send its burst at once, and no more", () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 5 });
    expect(allowedOf(limiter, "a", 20, T0)).toBe(5);
  });

  test("the defaults allow a burst of 300 and 100 per second", () => {
    const limiter = new RateLimiter();
    expect(DEFAULT_RATE_LIMIT).toMatchObject({ perSecond: 100, burst: 300 });
    expect(allowedOf(limiter, "a", 400, T0)).toBe(300);
    expect(allowedOf(limiter, "a", 400, T0 + 1_000)).toBe(100);
  });

  const refills: { afterMs: number; allowed: number }[] = [
    { afterMs: 0, allowed: 0 },
    { afterMs: 99, allowed: 0 },
    { afterMs: 100, allowed: 1 },
    { afterMs: 250, allowed: 2 },
    { afterMs: 1_000, allowed: 5 }, // capped at the burst
    { afterMs: 3_600_000, allowed: 5 },
  ];
  for (const { afterMs, allowed } of refills) {
    test(`drained at 10/s, burst 5: ${afterMs} ms later ${allowed} more are allowed`, () => {
      const limiter = new RateLimiter({ perSecond: 10, burst: 5 });
      allowedOf(limiter, "a", 5, T0);
      expect(allowedOf(limiter, "a", 20, T0 + afterMs)).toBe(allowed);
    });
  }

  test("addresses have separate buckets", () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 3 });
    expect(allowedOf(limiter, "10.0.0.1", 10, T0)).toBe(3);
    expect(allowedOf(limiter, "10.0.0.2", 10, T0)).toBe(3);
    expect(limiter.tracked).toBe(2);
  });

  test("refused queries take no tokens: a flooder recovers at the sustained rate", () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 5 });
    let allowed = 0;
    for (let ms = 0; ms < 2_000; ms++) if (limiter.allow("flood", T0 + ms)) allowed++; // 1000 queries/s
    expect(allowed).toBe(5 + 19); // the burst, then one every 100 ms after the first 100 ms
  });

  test("a clock that steps backwards does not lock an address out", () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 5 });
    allowedOf(limiter, "a", 5, T0);
    const stepped = T0 - 3_600_000; // the wall clock was set back an hour
    expect(allowedOf(limiter, "a", 5, stepped)).toBe(0);
    expect(allowedOf(limiter, "a", 5, stepped + 1_000)).toBe(5);
  });

  test("at most maxAddresses are tracked, the least recently active forgotten first", () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 2, maxAddresses: 100 });
    allowedOf(limiter, "drained-then-forgotten", 2, T0);
    allowedOf(limiter, "drained-and-active", 2, T0);
    for (let i = 0; i < 1_000; i++) {
      limiter.allow(`10.1.${i >> 8}.${i & 255}`, T0);
      if (i % 50 === 0) limiter.allow("drained-and-active", T0); // refused, but active
      expect(limiter.tracked).toBeLessThanOrEqual(100);
    }
    expect(limiter.tracked).toBe(100);
    // Forgotten: it starts again with a full bucket. Remembered: still empty.
    expect(allowedOf(limiter, "drained-then-forgotten", 5, T0)).toBe(2);
    expect(allowedOf(limiter, "drained-and-active", 5, T0)).toBe(0);
  });
});
