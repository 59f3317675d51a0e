import { describe, expect, test } from "bun:test";
import { BufferPool } from "../../src/transfer/buffer-pool.ts";

describe("BufferPool", () => {
  test("take() hands back a buffer given back, whole even when a shorter view was given", () => {
    const pool = new BufferPool(16, 4);
    const first = pool.take();
    pool.give(first.subarray(0, 5));
    const again = pool.take();
    expect(again.buffer).toBe(first.buffer);
    expect(again.length).toBe(16);
  });

  test("take() allocates when none is free, and buffers beyond `keep` are not kept", () => {
    const pool = new BufferPool(8, 1);
    const a = pool.take();
    const b = pool.take();
    expect(a.buffer).not.toBe(b.buffer);
    pool.give(a);
    pool.give(b);
    expect(pool.take().buffer).toBe(a.buffer);
    expect(pool.take().buffer).not.toBe(b.buffer);
  });

  test("give() ignores views of foreign buffers or not at their start", () => {
    const pool = new BufferPool(8, 4);
    const mine = pool.take();
    pool.give(new Uint8Array(8));
    pool.give(mine.subarray(2));
    expect(pool.take().buffer).not.toBe(mine.buffer);
  });
});
