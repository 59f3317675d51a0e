/**
 * The cache quota as given on the command line (--cache-size): a number of bytes ("10G", "500MiB",
 * "2GB") or a share of the disk holding the cache ("5%"). Parsing is pure; only `diskBytesOf` and
 * `resolveCacheLimit` touch the file system, to turn a share into bytes.
 */
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { AptP2pError, ErrorCode } from "../errors.ts";

export type CacheSizeSpec =
  | { kind: "bytes"; bytes: number }
  /** Percent (0 < percent ≤ 100) of the total size of the file system holding the cache. */
  | { kind: "percent"; percent: number }
  | { kind: "unlimited" };

/** The same conventions as the rates of src/transfer/throttle.ts parseRate, plus terabytes for disks. */
const SIZE_MULTIPLIERS: Record<string, number> = {
  "": 1,
  k: 1000,
  m: 1000 ** 2,
  g: 1000 ** 3,
  t: 1000 ** 4,
  ki: 1024,
  mi: 1024 ** 2,
  gi: 1024 ** 3,
  ti: 1024 ** 4,
};

const ACCEPTED = "Write a size such as 10G, 500MiB or 2GB (K, M, G, T are powers of 1000; Ki, Mi, Gi, Ti of 1024), a share of the disk such as 5%, or 'unlimited'.";

/**
 * "10G", "500MiB", "2GB", "1.5T", "800000" → bytes; "5%" → that share of the disk; "unlimited" → no
 * quota. "0" is refused rather than read as "keep nothing" or "no limit": either guess could surprise.
 * A lower-case "b" (bits) is refused as parseRate does.
 */
export function parseCacheSize(text: string): CacheSizeSpec {
  const trimmed = text.trim();
  const bad = (why: string) => new AptP2pError(ErrorCode.Usage, `Invalid cache size '${text}': ${why}`, { hints: [ACCEPTED] });
  if (/^unlimited$/i.test(trimmed)) return { kind: "unlimited" };
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(trimmed);
  if (percent !== null) {
    const value = Number(percent[1]);
    if (!(value > 0) || value > 100) throw bad("expected a share of the disk above 0% and at most 100%");
    return { kind: "percent", percent: value };
  }
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]i?)?(B|b)?$/i.exec(trimmed);
  if (match === null) throw bad("expected a number of bytes with an optional unit, or a percentage of the disk");
  const [, number = "", prefix = "", unit = ""] = match;
  if (unit === "b") throw bad("'b' means bits; write B for bytes");
  const bytes = Number(number) * (SIZE_MULTIPLIERS[prefix.toLowerCase()] ?? Number.NaN);
  if (!Number.isFinite(bytes) || bytes > Number.MAX_SAFE_INTEGER) throw bad("too large");
  if (bytes < 1) throw bad("expected at least 1 byte (write 'unlimited' for no quota)");
  return { kind: "bytes", bytes: Math.floor(bytes) };
}

/** The quota in bytes for a disk of `diskBytes`, or null for no quota. */
export function cacheLimitBytes(spec: CacheSizeSpec, diskBytes: number): number | null {
  switch (spec.kind) {
    case "bytes":
      return spec.bytes;
    case "percent":
      return Math.floor((diskBytes * spec.percent) / 100);
    case "unlimited":
      return null;
  }
}

/** Total size of the file system holding `path` (or its nearest existing ancestor: the cache may not exist yet). */
export async function diskBytesOf(path: string): Promise<number> {
  for (let at = path; ; at = dirname(at)) {
    try {
      const info = await statfs(at);
      // POSIX counts blocks in fragment-size units; Node's typings omit frsize, which Bun provides.
      const unit = (info as { frsize?: number }).frsize ?? info.bsize;
      return info.blocks * unit;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || dirname(at) === at) throw err;
    }
  }
}

/** The quota in bytes for the cache at `cacheDir`; the disk is looked at only for a percentage. */
export async function resolveCacheLimit(spec: CacheSizeSpec, cacheDir: string): Promise<number | null> {
  return cacheLimitBytes(spec, spec.kind === "percent" ? await diskBytesOf(cacheDir) : 0);
}
