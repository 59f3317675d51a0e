/** Seeded randomness for the simulator: every run with the same seed is the same run. */

/** A small seeded PRNG (splitmix32) giving floats in [0, 1). */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

/** Random bytes from a seeded source (node ids, transaction ids, token secrets). */
export function bytesFrom(random: () => number): (n: number) => Uint8Array {
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
    return out;
  };
}

/** An exponential draw with the given median. */
export function exponential(random: () => number, median: number): number {
  return (-Math.log(1 - random()) * median) / Math.LN2;
}

/** Fisher–Yates shuffle in place: the swarm's own (it shuffles the peers it is given). */
export { shuffle } from "../../src/transfer/scheduler.ts";

/** The p-quantile (0..1) of values, nearest rank; NaN when empty. */
export function quantile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}
