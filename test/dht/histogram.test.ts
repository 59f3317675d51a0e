import { describe, expect, test } from "bun:test";
import { DurationHistogram } from "../../src/dht/histogram.ts";

describe("DurationHistogram", () => {
  test("observe() counts a value in the first bucket whose bound is at or above it; above every bound goes last", () => {
    const h = new DurationHistogram([10, 100]);
    for (const ms of [0, 10, 10.5, 100, 101, 5_000]) h.observe(ms);
    expect(h.snapshot()).toEqual({ boundsMs: [10, 100], counts: [2, 2, 2], sumMs: 5_221.5, count: 6 });
  });

  test("snapshot() is a copy", () => {
    const h = new DurationHistogram([10]);
    const before = h.snapshot();
    h.observe(1);
    expect(before.counts).toEqual([0, 0]);
  });
});
