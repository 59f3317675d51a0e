/** Adaptive query timeouts (RFC 6298 per node, a percentile for unmeasured nodes) as tables, time injected. */
import { describe, expect, test } from "bun:test";
import { INITIAL_TIMEOUT_MS, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, RttTracker } from "../../src/dht/rtt.ts";

/** RFC 6298 by hand, for the expected values. */
function rfc6298(samples: number[]): { srtt: number; rttvar: number } {
  let srtt = samples[0]!;
  let rttvar = samples[0]! / 2;
  for (const r of samples.slice(1)) {
    rttvar = 0.75 * rttvar + 0.25 * Math.abs(srtt - r);
    srtt = 0.875 * srtt + 0.125 * r;
  }
  return { srtt, rttvar };
}

describe("RttTracker.timeoutFor()", () => {
  test("before any sample, every node gets the cold-start timeout", () => {
    const rtt = new RttTracker();
    expect(rtt.timeoutFor("10.0.0.1:1")).toBe(INITIAL_TIMEOUT_MS);
    expect(rtt.median()).toBeUndefined();
  });

  const cases: { name: string; samples: number[] }[] = [
    { name: "one sample: srtt + 4 * rtt/2 = 3 * rtt", samples: [100] },
    { name: "steady samples shrink the variance", samples: [100, 100, 100, 100, 100, 100] },
    { name: "a jump raises both mean and variance", samples: [80, 80, 400] },
    { name: "a noisy node", samples: [60, 200, 90, 300, 70, 150] },
  ];
  for (const { name, samples } of cases) {
    test(`measured node, ${name}`, () => {
      const rtt = new RttTracker({ minTimeoutMs: 1, maxTimeoutMs: 100_000 });
      for (const s of samples) rtt.sample("n", s);
      const { srtt, rttvar } = rfc6298(samples);
      expect(rtt.estimateFor("n")).toBeCloseTo(srtt + 4 * rttvar, 9);
      // The first send waits at most what recent answers from anyone took (2 × p90); the resend, at least.
      const global = 2 * rtt.percentile(0.9)!;
      expect(rtt.timeoutFor("n", 1)).toBeCloseTo(Math.min(srtt + 4 * rttvar, global), 9);
      expect(rtt.timeoutFor("n", 2)).toBeCloseTo(Math.max(srtt + 4 * rttvar, global), 9);
    });
  }

  test("timeouts are clamped to [MIN_TIMEOUT_MS, MAX_TIMEOUT_MS]", () => {
    const rtt = new RttTracker();
    rtt.sample("fast", 1);
    rtt.sample("slow", 5_000);
    expect(rtt.timeoutFor("fast")).toBe(MIN_TIMEOUT_MS);
    expect(rtt.timeoutFor("slow")).toBe(MAX_TIMEOUT_MS);
    const custom = new RttTracker({ minTimeoutMs: 7, maxTimeoutMs: 70 });
    custom.sample("fast", 1);
    custom.sample("slow", 5_000);
    expect(custom.timeoutFor("fast")).toBe(7);
    expect(custom.timeoutFor("slow")).toBe(70);
  });

  test("an unmeasured node gets twice the 90th percentile of recent samples", () => {
    const rtt = new RttTracker({ minTimeoutMs: 1 });
    for (let i = 1; i <= 100; i++) rtt.sample(`n${i}`, i); // 1..100 ms
    expect(rtt.percentile(0.9)).toBe(91);
    expect(rtt.timeoutFor("never-seen")).toBe(182);
    expect(rtt.median()).toBe(51);
  });

  test("a negative sample (clock step) counts as zero", () => {
    const rtt = new RttTracker({ minTimeoutMs: 0 });
    rtt.sample("n", -500);
    expect(rtt.timeoutFor("n")).toBe(0);
    expect(rtt.median()).toBe(0);
  });
});

describe("RttTracker.timeoutFor() with a stale estimate", () => {
  test("a node measured slow while the network was busy is not waited on longer than recent answers took, on the first send", () => {
    const rtt = new RttTracker({ minTimeoutMs: 1 });
    rtt.sample("was-busy", 600);
    for (let i = 0; i < 100; i++) rtt.sample(`quick${i}`, 10);
    expect(rtt.estimateFor("was-busy")).toBe(1800);
    expect(rtt.timeoutFor("was-busy", 1)).toBe(20); // 2 × p90 of recent answers
    expect(rtt.timeoutFor("was-busy", 2)).toBe(1800);
  });
});

describe("RttTracker memory bounds", () => {
  test("the global estimate follows the most recent 256 samples", () => {
    const rtt = new RttTracker();
    for (let i = 0; i < 256; i++) rtt.sample(`old${i}`, 900);
    expect(rtt.median()).toBe(900);
    for (let i = 0; i < 256; i++) rtt.sample(`new${i}`, 20);
    expect(rtt.median()).toBe(20);
    expect(rtt.percentile(1)).toBe(20);
  });

  test("per-node estimates are bounded, forgetting the least recently measured node first", () => {
    const rtt = new RttTracker();
    rtt.sample("forgotten", 3_000);
    rtt.sample("kept", 3_000);
    expect(rtt.estimateFor("forgotten")).toBe(9_000);
    for (let i = 0; i < 10_000; i++) {
      rtt.sample(`flood${i}`, 5);
      if (i % 1_000 === 0) rtt.sample("kept", 3_000); // kept recently measured
    }
    // Forgotten: now an unmeasured node, whose timeout comes from the (fast) recent samples.
    expect(rtt.estimateFor("forgotten")).toBeUndefined();
    expect(rtt.timeoutFor("forgotten", 2)).toBe(MIN_TIMEOUT_MS);
    expect(rtt.estimateFor("kept")).toBeGreaterThan(MAX_TIMEOUT_MS);
    expect(rtt.timeoutFor("kept", 2)).toBe(MAX_TIMEOUT_MS);
    expect(rtt.timeoutFor("flood9999")).toBe(MIN_TIMEOUT_MS);
  });
});
