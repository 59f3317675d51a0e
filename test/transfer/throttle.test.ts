import { describe, expect, test } from "bun:test";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import { parseRate, THROTTLE_CHUNK_BYTES, throttleStream, TokenBucket, uploadBucket, UploadSlots } from "../../src/transfer/throttle.ts";

function clock(start = 1_000_000) {
  const c = { ms: start, now: () => c.ms };
  return c;
}

describe("TokenBucket", () => {
  test("lets a full burst go at once, then asks to wait for what exceeds it", () => {
    const c = clock();
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 5000, now: c.now });
    expect(bucket.take(5000)).toBe(0);
    expect(bucket.take(500)).toBe(500);
  });

  test("defaults the burst to one second at the rate", () => {
    const bucket = new TokenBucket({ bytesPerSecond: 2000, now: clock().now });
    expect(bucket.burstBytes).toBe(2000);
    expect(bucket.take(2000)).toBe(0);
    expect(bucket.take(1)).toBe(1);
  });

  test("refills at the rate: a steady sender waits size/rate per chunk", () => {
    const c = clock();
    const bucket = new TokenBucket({ bytesPerSecond: 10_000, burstBytes: 1000, now: c.now });
    expect(bucket.take(1000)).toBe(0);
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const wait = bucket.take(1000);
      waits.push(wait);
      c.ms += wait;
    }
    expect(waits).toEqual([100, 100, 100, 100, 100]);
  });

  test("reservations queue: a second taker waits behind the first one's debt", () => {
    const c = clock();
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 1000, now: c.now });
    expect(bucket.take(1000)).toBe(0);
    expect(bucket.take(1000)).toBe(1000);
    expect(bucket.take(1000)).toBe(2000);
    c.ms += 1500;
    expect(bucket.available()).toBe(-500);
    expect(bucket.take(0)).toBe(500);
  });

  test("never holds more than the burst after a long quiet spell", () => {
    const c = clock();
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 3000, now: c.now });
    bucket.take(3000);
    c.ms += 60_000;
    expect(bucket.available()).toBe(3000);
    expect(bucket.take(4000)).toBe(1000);
  });

  test("a clock stepped back does not drain the bucket", () => {
    const c = clock();
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 1000, now: c.now });
    c.ms -= 10_000;
    expect(bucket.take(1000)).toBe(0);
  });

  test("a piece larger than the burst is lent, not refused forever", () => {
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 100, now: clock().now });
    expect(bucket.take(1100)).toBe(1000);
  });

  test("refuses a rate that is not positive", () => {
    expect(() => new TokenBucket({ bytesPerSecond: 0, now: clock().now })).toThrow(AptP2pError);
    expect(() => new TokenBucket({ bytesPerSecond: Number.NaN, now: clock().now })).toThrow(AptP2pError);
  });

  test("uploadBucket() gives no bucket for 0 (unlimited)", () => {
    expect(uploadBucket(0, clock().now)).toBeNull();
    expect(uploadBucket(500, clock().now)?.bytesPerSecond).toBe(500);
  });
});

describe("throttleStream()", () => {
  const streamOf = (chunks: Uint8Array[]) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk);
        controller.close();
      },
    });

  test("splits chunks into pieces of at most 64 KiB and waits as the bucket says", async () => {
    const c = clock();
    const bucket = new TokenBucket({ bytesPerSecond: 64 * 1024, burstBytes: 64 * 1024, now: c.now });
    const waits: number[] = [];
    const sleep = async (ms: number) => {
      waits.push(ms);
      c.ms += ms;
    };
    const input = new Uint8Array(3 * THROTTLE_CHUNK_BYTES + 10).map((_, i) => i % 251);
    const pieces: Uint8Array[] = [];
    for await (const piece of throttleStream(streamOf([input.subarray(0, 100), input.subarray(100)]), bucket, sleep)) pieces.push(piece);
    expect(pieces.every((p) => p.length <= THROTTLE_CHUNK_BYTES)).toBe(true);
    expect(Buffer.concat(pieces).equals(Buffer.from(input))).toBe(true);
    // The first 64 KiB go from the burst; the rest wait one second per 64 KiB.
    expect(waits.reduce((a, b) => a + b, 0)).toBe(Math.ceil(((input.length - 64 * 1024) * 1000) / (64 * 1024)));
  });

  test("passes bytes through without waiting when there is no bucket", async () => {
    let slept = 0;
    const out: Uint8Array[] = [];
    for await (const piece of throttleStream(streamOf([new Uint8Array(200_000)]), null, async () => void slept++)) out.push(piece);
    expect(out.reduce((n, p) => n + p.length, 0)).toBe(200_000);
    expect(out.length).toBe(Math.ceil(200_000 / THROTTLE_CHUNK_BYTES));
    expect(slept).toBe(0);
  });

  test("cancelling the result cancels the source", async () => {
    let cancelledWith: unknown;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(10));
      },
      cancel(reason) {
        cancelledWith = reason;
      },
    });
    const reader = throttleStream(source, null, async () => {}).getReader();
    await reader.read();
    await reader.cancel("client went away");
    expect(cancelledWith).toBe("client went away");
  });

  test("takes tokens only for bytes the consumer asks for", async () => {
    const c = clock();
    const bucket = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 1_000_000, now: c.now });
    const reader = throttleStream(streamOf([new Uint8Array(THROTTLE_CHUNK_BYTES * 4)]), bucket, async () => {}).getReader();
    await reader.read();
    await Bun.sleep(0);
    expect(bucket.available()).toBe(1_000_000 - THROTTLE_CHUNK_BYTES);
    await reader.cancel();
  });

  test("a source error reaches the consumer", async () => {
    const source = new ReadableStream<Uint8Array>({
      pull() {
        throw new Error("disk read failed");
      },
    });
    const reader = throttleStream(source, null, async () => {}).getReader();
    await expect(reader.read()).rejects.toThrow("disk read failed");
  });
});

describe("parseRate()", () => {
  const cases: [string, number][] = [
    ["2MB/s", 2_000_000],
    ["500KB/s", 500_000],
    ["10MiB/s", 10 * 1024 * 1024],
    ["1.5M", 1_500_000],
    ["800k", 800_000],
    ["1.5KiB", 1536],
    ["1G", 1_000_000_000],
    ["2GiB/s", 2 * 1024 ** 3],
    ["1000", 1000],
    ["1000B/s", 1000],
    [" 3 MB/s ", 3_000_000],
    ["0", 0],
    ["0MB/s", 0],
    ["unlimited", 0],
    ["Unlimited", 0],
  ];
  for (const [text, expected] of cases) {
    test(`${JSON.stringify(text)} → ${expected} bytes per second`, () => {
      expect(parseRate(text)).toBe(expected);
    });
  }

  const errors = ["", "fast", "-1MB/s", "2Mb/s", "2 mb/s", "1e6", "2TB/s", "0.5", "1,5M", "MB/s", "2MB/h"];
  for (const text of errors) {
    test(`${JSON.stringify(text)} is a usage error naming the value`, () => {
      let caught: unknown;
      try {
        parseRate(text);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(AptP2pError);
      expect((caught as AptP2pError).code).toBe(ErrorCode.Usage);
      expect((caught as AptP2pError).message).toContain(`'${text}'`);
    });
  }

  test("explains that a lower-case b means bits", () => {
    expect(() => parseRate("8mb/s")).toThrow("'b' means bits");
  });
});

describe("UploadSlots", () => {
  test("gives each address at most maxPerAddress slots, independently of other addresses", () => {
    const slots = new UploadSlots(2);
    const a1 = slots.acquire("10.0.0.1");
    const a2 = slots.acquire("10.0.0.1");
    expect(a1).not.toBeNull();
    expect(a2).not.toBeNull();
    expect(slots.acquire("10.0.0.1")).toBeNull();
    expect(slots.acquire("10.0.0.2")).not.toBeNull();
    expect(slots.active("10.0.0.1")).toBe(2);
    expect(slots.active("10.0.0.2")).toBe(1);
    expect(slots.total()).toBe(3);
  });

  test("a released slot can be taken again; releasing twice frees only one", () => {
    const slots = new UploadSlots(2);
    const first = slots.acquire("a")!;
    slots.acquire("a");
    first();
    first();
    expect(slots.active("a")).toBe(1);
    expect(slots.total()).toBe(1);
    expect(slots.acquire("a")).not.toBeNull();
    expect(slots.acquire("a")).toBeNull();
  });

  test("forgets an address once its last slot is released", () => {
    const slots = new UploadSlots(1);
    const release = slots.acquire("a")!;
    release();
    expect(slots.active("a")).toBe(0);
    expect(slots.total()).toBe(0);
  });

  test("refuses a cap below one", () => {
    expect(() => new UploadSlots(0)).toThrow(AptP2pError);
    expect(() => new UploadSlots(1.5)).toThrow(AptP2pError);
  });
});
