import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import { ContentCache, type ContentCacheOptions } from "../../src/store/cache.ts";
import { cacheLimitBytes, diskBytesOf, parseCacheSize, resolveCacheLimit } from "../../src/store/quota.ts";

const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");
/** 100 bytes whose hash depends on `label`. */
const content = (label: string) => label.padEnd(100, ".");

let dir: string;
let cache: ContentCache;
/** Every cache a test opened, closed after it (closing twice is harmless). */
let opened: ContentCache[];
let evicted: string[];

async function openCache(options: ContentCacheOptions = {}): Promise<ContentCache> {
  opened.forEach((c) => c.close());
  cache = await ContentCache.open(dir, { onEvicted: (sha) => evicted.push(sha), ...options });
  opened.push(cache);
  return cache;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-quota-"));
  evicted = [];
  opened = [];
});
afterEach(async () => {
  opened.forEach((c) => c.close());
  await rm(dir, { recursive: true, force: true });
});

/** Adopts `content(label)` as `<label>.deb`, used at `now`; resolves with its hash. */
async function put(label: string, now: number, text = content(label)): Promise<string> {
  const temp = cache.tempPath(`${label}.deb`);
  await writeFile(temp, text);
  await cache.adopt(temp, { sha256: sha256(text), size: text.length, name: `${label}.deb` }, now);
  return sha256(text);
}

async function onDisk(): Promise<string[]> {
  const out: string[] = [];
  for (const sub of await readdir(join(dir, "files"))) out.push(...(await readdir(join(dir, "files", sub))));
  return out.sort();
}

describe("parseCacheSize()", () => {
  test.each([
    ["10G", 10_000_000_000],
    ["2GB", 2_000_000_000],
    ["500MiB", 500 * 1024 ** 2],
    ["5gi", 5 * 1024 ** 3],
    ["1.5T", 1_500_000_000_000],
    ["64 KiB", 64 * 1024],
    ["800000", 800_000],
    [" 3M ", 3_000_000],
  ])("reads %p as %p bytes", (text, bytes) => {
    expect(parseCacheSize(text)).toEqual({ kind: "bytes", bytes });
  });

  test("reads a percentage of the disk and 'unlimited'", () => {
    expect(parseCacheSize("5%")).toEqual({ kind: "percent", percent: 5 });
    expect(parseCacheSize("2.5 %")).toEqual({ kind: "percent", percent: 2.5 });
    expect(parseCacheSize("100%")).toEqual({ kind: "percent", percent: 100 });
    expect(parseCacheSize("Unlimited")).toEqual({ kind: "unlimited" });
  });

  test.each([
    ["", /expected a number of bytes/],
    ["lots", /expected a number of bytes/],
    ["-5G", /expected a number of bytes/],
    ["10X", /expected a number of bytes/],
    ["10Gb", /'b' means bits/],
    ["0", /at least 1 byte/],
    ["0%", /above 0%/],
    ["150%", /at most 100%/],
    ["99999999999T", /too large/],
  ])("refuses %p with a usage error naming the value and the accepted forms", (text, why) => {
    let error: unknown;
    try {
      parseCacheSize(text);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AptP2pError);
    const e = error as AptP2pError;
    expect(e.code).toBe(ErrorCode.Usage);
    expect(e.message).toStartWith(`Invalid cache size '${text}': `);
    expect(e.message).toMatch(why);
    expect(e.hints.join(" ")).toContain("10G, 500MiB or 2GB");
    expect(e.hints.join(" ")).toContain("5%");
  });
});

describe("cacheLimitBytes()", () => {
  test("a byte size is itself, a percentage is that share of the disk, unlimited is no limit", () => {
    expect(cacheLimitBytes({ kind: "bytes", bytes: 1234 }, 1_000_000)).toBe(1234);
    expect(cacheLimitBytes({ kind: "percent", percent: 5 }, 1_000_000)).toBe(50_000);
    expect(cacheLimitBytes({ kind: "percent", percent: 2.5 }, 1_000_001)).toBe(25_000);
    expect(cacheLimitBytes({ kind: "unlimited" }, 1_000_000)).toBeNull();
  });

  test("resolveCacheLimit() takes a percentage of the file system holding the cache, even before it exists", async () => {
    const info = await statfs(dir);
    const disk = info.blocks * ((info as { frsize?: number }).frsize ?? info.bsize);
    expect(disk).toBeGreaterThan(0);
    expect(await diskBytesOf(join(dir, "not", "yet"))).toBe(disk);
    expect(await resolveCacheLimit({ kind: "percent", percent: 5 }, join(dir, "not", "yet"))).toBe(Math.floor(disk * 0.05));
    expect(await resolveCacheLimit({ kind: "bytes", bytes: 10 }, dir)).toBe(10);
  });
});

describe("ContentCache quota", () => {
  test("without a quota nothing is evicted", async () => {
    await openCache();
    for (const [i, label] of ["a", "b", "c", "d"].entries()) await put(label, 1000 + i);
    expect(cache.usage()).toEqual({ bytes: 400, files: 4 });
    expect(evicted).toEqual([]);
    expect(cache.limitBytes).toBeNull();
  });

  test("filling past the quota evicts the least recently used files, reporting each", async () => {
    await openCache({ limitBytes: 300 });
    const a = await put("a", 1000);
    const b = await put("b", 2000);
    const c = await put("c", 3000);
    cache.touch(a, 4000); // a is now used more recently than b and c
    expect(evicted).toEqual([]);

    const d = await put("d", 5000);
    expect(evicted).toEqual([b]);
    const e = await put("e", 6000);
    expect(evicted).toEqual([b, c]);

    expect(cache.usage()).toEqual({ bytes: 300, files: 3 });
    expect(cache.list().map((x) => x.sha256)).toEqual([a, d, e]);
    expect(await onDisk()).toEqual([a, d, e].sort());
    expect(await cache.lookup(b)).toBeNull();
    expect(cache.evictionStats()).toEqual({ files: 2, bytes: 200, failures: 0 });
  });

  test("a pinned file stays even when it is the least recently used; released, it may go", async () => {
    await openCache({ limitBytes: 200 });
    const a = await put("a", 1000);
    const b = await put("b", 2000);
    const releaseOne = cache.pin(a);
    const releaseTwo = cache.pin(a);

    const c = await put("c", 3000);
    expect(evicted).toEqual([b]);
    expect(await cache.lookup(a)).not.toBeNull();

    // Pins are counted: one reader done, another still reading.
    releaseOne();
    releaseOne(); // a second call of the same release is harmless
    expect(cache.isPinned(a)).toBe(true);
    const d = await put("d", 4000);
    expect(evicted).toEqual([b, c]);
    expect(await cache.lookup(a)).not.toBeNull();

    releaseTwo();
    expect(cache.isPinned(a)).toBe(false);
    await put("e", 5000);
    expect(evicted).toEqual([b, c, a]);
    expect(await onDisk()).toEqual([d, sha256(content("e"))].sort());
  });

  test("a content pinned before it is cached is kept once adopted", async () => {
    await openCache({ limitBytes: 100 });
    const b = sha256(content("b"));
    const release = cache.pin(b);
    const a = await put("a", 1000);
    await put("b", 2000);
    await put("c", 3000);
    expect(evicted).toEqual([a]);
    expect(await cache.lookup(b)).not.toBeNull();
    release();
  });

  test("the file just adopted stays even if it alone is over the quota", async () => {
    await openCache({ limitBytes: 150 });
    const a = await put("a", 1000);
    const big = await put("big", 2000, "x".repeat(500));
    expect(evicted).toEqual([a]);
    expect((await cache.lookup(big))?.size).toBe(500);
    expect(cache.usage()).toEqual({ bytes: 500, files: 1 });
  });

  test("gc() evicts down to the quota given at open, or to one it is given", async () => {
    await openCache();
    const a = await put("a", 1000);
    const b = await put("b", 2000);
    const c = await put("c", 3000);
    expect((await cache.gc()).evicted).toEqual([]);
    const result = await cache.gc({ limitBytes: 150 });
    expect(result.evicted.map((e) => [e.sha256, e.name, e.size])).toEqual([
      [a, "a.deb", 100],
      [b, "b.deb", 100],
    ]);
    expect(evicted).toEqual([a, b]);
    expect(await onDisk()).toEqual([c]);

    await openCache({ limitBytes: 50 });
    const pinned = cache.pin(c);
    expect((await cache.gc()).evicted).toEqual([]);
    pinned();
    expect((await cache.gc()).evicted.map((e) => e.sha256)).toEqual([c]);
  });

  test("gc() drops records of vanished files and records files found without one", async () => {
    await openCache();
    const gone = await put("gone", 1000);
    await rm(cache.pathOf(gone));
    const stray = sha256(content("stray"));
    await mkdir(join(dir, "files", stray.slice(0, 2)), { recursive: true });
    await writeFile(cache.pathOf(stray), content("stray"));
    await writeFile(join(dir, "files", stray.slice(0, 2), "not-a-hash"), "x");

    const result = await cache.gc();
    expect(result).toEqual({ evicted: [], dropped: 1, recorded: 1 });
    expect(cache.list().map((e) => [e.sha256, e.name, e.size])).toEqual([[stray, "", 100]]);
    // A stray file counts against the quota like any other.
    expect((await cache.gc({ limitBytes: 10 })).evicted.map((e) => e.sha256)).toEqual([stray]);
    expect(await readdir(join(dir, "files", stray.slice(0, 2)))).toEqual(["not-a-hash"]);
  });

  test("list() gives sizes, names and times, least recently used first", async () => {
    await openCache();
    const a = await put("a", 1000);
    const b = await put("b", 2000, "bb");
    cache.touch(a, 3000);
    expect(cache.list()).toEqual([
      { sha256: b, size: 2, name: "b.deb", addedAt: 2000, usedAt: 2000 },
      { sha256: a, size: 100, name: "a.deb", addedAt: 1000, usedAt: 3000 },
    ]);
    expect(cache.usage()).toEqual({ bytes: 102, files: 2 });
  });

  test("verify() rehashes every file and removes those whose content is not their name", async () => {
    await openCache();
    const good = await put("good", 1000);
    const flipped = await put("flipped", 2000);
    const shrunk = await put("shrunk", 3000);
    await writeFile(cache.pathOf(flipped), content("FLIPPED")); // same size, other bytes
    await writeFile(cache.pathOf(shrunk), "short");

    const seen: [string, boolean][] = [];
    const result = await cache.verify((e, ok) => seen.push([e.name, ok]));
    expect(result.checked).toBe(3);
    expect(result.dropped).toBe(0);
    expect(result.corrupt.map((c) => [c.sha256, c.name])).toEqual([
      [flipped, "flipped.deb"],
      [shrunk, "shrunk.deb"],
    ]);
    expect(result.corrupt[0]!.why).toBe(`content hashes to ${sha256(content("FLIPPED"))}`);
    expect(result.corrupt[1]!.why).toBe("size 5 bytes, recorded as 100");
    expect(seen).toEqual([
      ["good.deb", true],
      ["flipped.deb", false],
      ["shrunk.deb", false],
    ]);
    expect(await onDisk()).toEqual([good]);
    expect(cache.list().map((e) => e.sha256)).toEqual([good]);
    // Dropped as corrupt, not evicted for the quota.
    expect(evicted).toEqual([]);
  });
});
