/**
 * Reproducible choices for the swarm benchmark: a seeded PRNG (mulberry32), package sizes drawn from a
 * log-normal distribution, and picking which seeders hold a file. Pure: the random source is passed in.
 */
import { mulberry32 } from "../../../test/helpers/random.ts";

export const seededRandom = mulberry32;

/** A standard normal deviate by Box–Muller (uses two draws). */
export function normal(random: () => number): number {
  const u = 1 - random(); // in (0, 1], so the log is finite
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export interface LogNormalSizes {
  medianBytes: number;
  /** Standard deviation of ln(size). */
  sigma: number;
  minBytes: number;
  maxBytes: number;
}

/**
 * Debian's .deb sizes are roughly log-normal: bookworm main/amd64 has a median near 60 kB and a long
 * tail (mean several times the median). sigma 1.5 gives a mean of about 3× the median.
 */
export const DEBIAN_LIKE_SIZES: LogNormalSizes = { medianBytes: 60_000, sigma: 1.5, minBytes: 1_000, maxBytes: 4_000_000 };

export function logNormalSizes(count: number, shape: LogNormalSizes, random: () => number): number[] {
  const sizes: number[] = [];
  for (let i = 0; i < count; i++) {
    const size = Math.round(shape.medianBytes * Math.exp(shape.sigma * normal(random)));
    sizes.push(Math.min(shape.maxBytes, Math.max(shape.minBytes, size)));
  }
  return sizes;
}

/** `k` distinct indexes out of `n` (partial Fisher–Yates), in the order drawn. */
export function pickDistinct(n: number, k: number, random: () => number): number[] {
  const pool = Array.from({ length: n }, (_, i) => i);
  const picked: number[] = [];
  for (let i = 0; i < Math.min(k, n); i++) {
    const j = i + Math.floor(random() * (n - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    picked.push(pool[i]!);
  }
  return picked;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
