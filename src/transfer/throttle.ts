/**
 * Upload bounds ("no undue burden on any peer"): a global token bucket for the bytes we send, a stream
 * wrapper that paces a body by it, the parser for rates given on the command line, and a cap on
 * concurrent uploads per remote address. The bucket and the slots are pure: time is passed in, and
 * waiting is done by whoever holds the stream (an injected `sleep`).
 */
import { AptP2pError, ErrorCode } from "../errors.ts";

/**
 * Largest piece a throttled body hands on at once. Small enough that a low rate is paced smoothly
 * (a 64 KiB piece is 1/16 s at 1 MiB/s) and large enough that a fast rate costs few wake-ups.
 */
export const THROTTLE_CHUNK_BYTES = 64 * 1024;

export interface TokenBucketOptions {
  /** Sustained rate; must be positive (no bucket at all means unlimited, see `uploadBucket`). */
  bytesPerSecond: number;
  /** Bytes that may go at once after a quiet spell. Default: one second's worth at the rate. */
  burstBytes?: number;
  /** Clock in milliseconds. */
  now: () => number;
}

/**
 * A token bucket that lends: `take()` always reserves the bytes, letting the balance go negative, and
 * says how long to wait until that debt is paid back. Later callers queue behind earlier reservations,
 * so concurrent uploads share the rate instead of all waking at once.
 */
export class TokenBucket {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  readonly #now: () => number;
  #tokens: number;
  #at: number;

  constructor(options: TokenBucketOptions) {
    if (!(options.bytesPerSecond > 0) || !Number.isFinite(options.bytesPerSecond)) {
      throw new AptP2pError(ErrorCode.Usage, `Invalid upload rate ${options.bytesPerSecond}: expected a positive number of bytes per second`);
    }
    const burst = options.burstBytes ?? options.bytesPerSecond;
    if (!(burst > 0) || !Number.isFinite(burst)) {
      throw new AptP2pError(ErrorCode.Usage, `Invalid upload burst ${burst}: expected a positive number of bytes`);
    }
    this.bytesPerSecond = options.bytesPerSecond;
    this.burstBytes = burst;
    this.#now = options.now;
    this.#tokens = burst;
    this.#at = options.now();
  }

  /** Reserves `bytes`; returns the milliseconds to wait before sending them (0: send now). */
  take(bytes: number): number {
    this.#refill();
    this.#tokens -= bytes;
    if (this.#tokens >= 0) return 0;
    return Math.ceil((-this.#tokens * 1000) / this.bytesPerSecond);
  }

  /** Tokens available now (negative while reservations are outstanding). */
  available(): number {
    this.#refill();
    return this.#tokens;
  }

  #refill(): void {
    const now = this.#now();
    // A clock stepped back must not drain the bucket: elapsed time is never negative.
    const elapsedMs = Math.max(0, now - this.#at);
    this.#at = now;
    this.#tokens = Math.min(this.burstBytes, this.#tokens + (elapsedMs * this.bytesPerSecond) / 1000);
  }
}

/** The bucket for a configured rate, or null for 0 (unlimited). */
export function uploadBucket(bytesPerSecond: number, now: () => number): TokenBucket | null {
  return bytesPerSecond === 0 ? null : new TokenBucket({ bytesPerSecond, now });
}

/**
 * Paces `body` by `bucket` (no pacing when null): hands on pieces of at most THROTTLE_CHUNK_BYTES,
 * each after the wait the bucket asks for. Reads the source only when the consumer asks for more, so
 * tokens are taken for bytes actually on their way. Cancelling the result cancels the source.
 */
export function throttleStream(
  body: ReadableStream<Uint8Array>,
  bucket: TokenBucket | null,
  sleep: (ms: number) => Promise<void>,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let rest: Uint8Array = new Uint8Array(0);
  let cancelled = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        while (rest.length === 0) {
          const next = await reader.read();
          if (next.done) {
            controller.close();
            return;
          }
          rest = next.value;
        }
        const piece = rest.subarray(0, THROTTLE_CHUNK_BYTES);
        rest = rest.subarray(piece.length);
        const waitMs = bucket === null ? 0 : bucket.take(piece.length);
        if (waitMs > 0) await sleep(waitMs);
        if (!cancelled) controller.enqueue(piece);
      },
      async cancel(reason) {
        cancelled = true;
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

const RATE_MULTIPLIERS: Record<string, number> = {
  "": 1,
  k: 1000,
  m: 1000 ** 2,
  g: 1000 ** 3,
  ki: 1024,
  mi: 1024 ** 2,
  gi: 1024 ** 3,
};

/**
 * "2MB/s", "500KB/s", "10MiB/s", "1.5M", "800k", "1000" → bytes per second; "0" or "unlimited" → 0.
 * K, M, G are decimal (1000), Ki, Mi, Gi binary (1024). A lower-case "b" (bits) is refused rather than
 * read as bytes, since guessing wrong would be off by a factor of eight.
 */
export function parseRate(text: string): number {
  const trimmed = text.trim();
  if (/^unlimited$/i.test(trimmed)) return 0;
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]i?)?(B|b)?(\/s)?$/i.exec(trimmed);
  const bad = (why: string) =>
    new AptP2pError(ErrorCode.Usage, `Invalid rate '${text}': ${why}`, {
      hints: ["Write a rate such as 2MB/s, 500KB/s, 10MiB/s or 800k (bytes per second), or 0 for unlimited."],
    });
  if (match === null) throw bad("expected a number of bytes per second, such as 2MB/s");
  const [, number = "", prefix = "", unit = ""] = match;
  if (unit === "b") throw bad("'b' means bits; write B for bytes");
  const bytes = Number(number) * (RATE_MULTIPLIERS[prefix.toLowerCase()] ?? Number.NaN);
  if (!Number.isFinite(bytes) || bytes > Number.MAX_SAFE_INTEGER) throw bad("too large");
  if (bytes === 0) return 0;
  if (bytes < 1) throw bad("expected 0 (unlimited) or at least 1 byte per second");
  return Math.round(bytes);
}

/** A cap on concurrent uploads per remote address. */
export class UploadSlots {
  readonly maxPerAddress: number;
  readonly #active = new Map<string, number>();
  #total = 0;

  constructor(maxPerAddress: number) {
    if (!Number.isInteger(maxPerAddress) || maxPerAddress < 1) {
      throw new AptP2pError(ErrorCode.Usage, `Invalid upload slots per address ${maxPerAddress}: expected a whole number from 1`);
    }
    this.maxPerAddress = maxPerAddress;
  }

  /**
   * Takes a slot for `address`: returns its release function (calling it more than once is harmless),
   * or null when the address already has maxPerAddress uploads.
   */
  acquire(address: string): (() => void) | null {
    const active = this.#active.get(address) ?? 0;
    if (active >= this.maxPerAddress) return null;
    this.#active.set(address, active + 1);
    this.#total += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total -= 1;
      const left = (this.#active.get(address) ?? 1) - 1;
      if (left === 0) this.#active.delete(address);
      else this.#active.set(address, left);
    };
  }

  active(address: string): number {
    return this.#active.get(address) ?? 0;
  }

  total(): number {
    return this.#total;
  }
}
