/**
 * `apt-p2p cache ls|gc|verify`: look at, trim and check the content cache directly on disk. They work
 * whether or not a daemon runs: a file they delete is noticed by the daemon's peer server (it checks
 * the file before serving) and dropped from its seed index at the next rescan. Only the cache's own
 * files/ is touched; seed directories such as /var/cache/apt/archives never are.
 */
import { AptP2pError, ErrorCode, asDestinationError } from "../errors.ts";
import { ContentCache, type CacheEntry, type GcResult, type VerifyResult } from "../store/cache.ts";
import { resolveCacheLimit, type CacheSizeSpec } from "../store/quota.ts";
import type { CliIO } from "./io.ts";
import { formatBytes } from "./progress.ts";

export interface CacheLsConfig {
  cacheDir: string;
  /** One JSON object per file instead of a table. */
  json: boolean;
}

export interface CacheGcConfig {
  cacheDir: string;
  /** The quota to evict down to (--cache-size); absent: nothing is evicted, the records are only tidied. */
  cacheSize?: CacheSizeSpec;
}

export interface CacheVerifyConfig {
  cacheDir: string;
}

/** Lists the cached files, least recently used (next to be evicted) first. */
export async function runCacheLs(config: CacheLsConfig, io: CliIO): Promise<CacheEntry[]> {
  return withCache(config.cacheDir, async (cache) => {
    const entries = cache.list();
    if (config.json) {
      for (const e of entries) io.stdout(`${JSON.stringify({ ...e, path: cache.pathOf(e.sha256) })}\n`);
      return entries;
    }
    const sizes = entries.map((e) => formatBytes(e.size));
    const sizeWidth = Math.max(4, ...sizes.map((s) => s.length));
    const names = entries.map(nameOf);
    const nameWidth = Math.max(4, ...names.map((n) => n.length));
    if (entries.length > 0) io.stdout(`${"SIZE".padStart(sizeWidth)}  LAST USED             ${"NAME".padEnd(nameWidth)}  SHA-256\n`);
    entries.forEach((e, i) => {
      io.stdout(`${sizes[i]!.padStart(sizeWidth)}  ${when(e.usedAt)}  ${names[i]!.padEnd(nameWidth)}  ${e.sha256}\n`);
    });
    const { bytes, files } = cache.usage();
    io.stdout(`${files} file${files === 1 ? "" : "s"}, ${formatBytes(bytes)} (${bytes} bytes) in ${config.cacheDir}\n`);
    return entries;
  });
}

/** Tidies the records and evicts least recently used files down to --cache-size. */
export async function runCacheGc(config: CacheGcConfig, io: CliIO): Promise<GcResult> {
  const limit = config.cacheSize === undefined ? null : await resolveCacheLimit(config.cacheSize, config.cacheDir);
  return withCache(config.cacheDir, async (cache) => {
    const result = await cache.gc({ limitBytes: limit });
    for (const e of result.evicted) io.stdout(`evicted ${nameOf(e)} (${formatBytes(e.size)}, last used ${when(e.usedAt)})\n`);
    if (result.dropped > 0) io.stdout(`dropped ${result.dropped} record(s) of files no longer on disk\n`);
    if (result.recorded > 0) io.stdout(`recorded ${result.recorded} file(s) found on disk without a record\n`);
    const { bytes, files } = cache.usage();
    const evictedBytes = result.evicted.reduce((sum, e) => sum + e.size, 0);
    const quota = limit === null ? "no quota given (--cache-size): nothing to evict" : `quota ${formatBytes(limit)}`;
    io.stdout(
      `Evicted ${result.evicted.length} file(s), ${formatBytes(evictedBytes)}; the cache now holds ${files} file(s), ${formatBytes(bytes)}; ${quota}\n`,
    );
    if (limit !== null && bytes > limit) {
      io.stderr(`W: the cache is still over its quota: the files left are in use by this process\n`);
    }
    return result;
  });
}

/**
 * Rehashes every cached file and removes the corrupt ones. Throws ErrorCode.CacheCorrupt (its own exit
 * code) after reporting them, so that a script can tell "all good" from "something was wrong".
 */
export async function runCacheVerify(config: CacheVerifyConfig, io: CliIO): Promise<VerifyResult> {
  const result = await withCache(config.cacheDir, (cache) => cache.verify());
  for (const e of result.corrupt) io.stdout(`corrupt ${nameOf(e)} ${e.sha256}: ${e.why}; removed\n`);
  if (result.dropped > 0) io.stdout(`dropped ${result.dropped} record(s) of files no longer on disk\n`);
  io.stdout(`Checked ${result.checked} file(s) in ${config.cacheDir}: ${result.corrupt.length} corrupt\n`);
  if (result.corrupt.length > 0) {
    throw new AptP2pError(ErrorCode.CacheCorrupt, `Found ${result.corrupt.length} corrupt file(s) in the cache ${config.cacheDir}: removed them`, {
      hints: ["They are downloaded again when next needed. Corruption that comes back points at a failing disk or memory."],
    });
  }
  return result;
}

async function withCache<T>(dir: string, work: (cache: ContentCache) => Promise<T>): Promise<T> {
  const cache = await ContentCache.open(dir).catch((err: unknown) => {
    throw asDestinationError(dir, err);
  });
  try {
    return await work(cache);
  } finally {
    cache.close();
  }
}

function nameOf(entry: CacheEntry): string {
  return entry.name === "" ? "(unknown)" : entry.name;
}

/** UTC to the second: "2024-05-01 12:00:00Z". */
function when(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
