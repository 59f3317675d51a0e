import { describe, expect, test } from "bun:test";
import { RateHistory } from "../../src/daemon/rates.ts";

const T0 = 1_700_000_000_000;

describe("RateHistory", () => {
  test("sample() turns growth of the counters into bytes per second over the interval", () => {
    const rates = new RateHistory(5_000, 60_000);
    rates.sample(T0, { mirror: 0, peer: 0, upload: 0 });
    rates.sample(T0 + 5_000, { mirror: 50_000, peer: 100_000, upload: 5_000 });
    rates.sample(T0 + 10_000, { mirror: 50_000, peer: 150_000, upload: 5_000 });
    expect(rates.samples(T0 + 10_000)).toEqual([
      { at: T0 + 5_000, mirror: 10_000, peer: 20_000, upload: 1_000 },
      { at: T0 + 10_000, mirror: 0, peer: 10_000, upload: 0 },
    ]);
  });

  test("the first sample is only the baseline", () => {
    const rates = new RateHistory(5_000, 60_000);
    rates.sample(T0, { mirror: 1e9, peer: 1e9, upload: 1e9 });
    expect(rates.samples(T0)).toEqual([]);
  });

  test("an irregular interval is divided by its real length", () => {
    const rates = new RateHistory(5_000, 60_000);
    rates.sample(T0, { mirror: 0, peer: 0, upload: 0 });
    rates.sample(T0 + 8_000, { mirror: 8_000, peer: 0, upload: 0 });
    expect(rates.samples(T0 + 8_000)[0]!.mirror).toBe(1_000);
  });

  test("the ring keeps one window: older samples are overwritten, oldest first in the result", () => {
    const rates = new RateHistory(1_000, 5_000);
    for (let i = 0; i <= 8; i++) rates.sample(T0 + i * 1_000, { mirror: i * 1_000, peer: 0, upload: 0 });
    const samples = rates.samples(T0 + 8_000);
    expect(samples.map((s) => s.at - T0)).toEqual([4_000, 5_000, 6_000, 7_000, 8_000]);
    expect(samples.every((s) => s.mirror === 1_000)).toBe(true);
  });

  test("samples() leaves out what is older than the window at the time asked", () => {
    const rates = new RateHistory(1_000, 5_000);
    rates.sample(T0, { mirror: 0, peer: 0, upload: 0 });
    rates.sample(T0 + 1_000, { mirror: 10, peer: 0, upload: 0 });
    expect(rates.samples(T0 + 3_000)).toHaveLength(1);
    expect(rates.samples(T0 + 6_000)).toEqual([]);
  });

  test("a counter that went down counts as no traffic, and a clock that went back adds nothing", () => {
    const rates = new RateHistory(1_000, 60_000);
    rates.sample(T0, { mirror: 5_000, peer: 0, upload: 0 });
    rates.sample(T0 + 1_000, { mirror: 1_000, peer: 0, upload: 0 });
    rates.sample(T0 + 500, { mirror: 9_000, peer: 0, upload: 0 });
    expect(rates.samples(T0 + 1_000)).toEqual([{ at: T0 + 1_000, mirror: 0, peer: 0, upload: 0 }]);
  });
});
