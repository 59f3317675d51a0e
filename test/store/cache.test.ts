import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm, truncate, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContentCache, STALE_TEMP_MS } from "../../src/store/cache.ts";

const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");

let dir: string;
let cache: ContentCache;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-cache-"));
  cache = await ContentCache.open(dir);
});
afterEach(async () => {
  cache.close();
  await rm(dir, { recursive: true, force: true });
});

async function put(text: string) {
  const temp = cache.tempPath("x.deb");
  await writeFile(temp, text);
  return cache.adopt(temp, { sha256: sha256(text), size: text.length, name: "x.deb" }, 1000);
}

describe("ContentCache", () => {
  test("adopt() moves a temp file to files/<aa>/<sha256> and lookup() finds it", async () => {
    const file = await put("hello");
    const hash = sha256("hello");
    expect(file.path).toBe(join(dir, "files", hash.slice(0, 2), hash));
    expect(await cache.lookup(hash)).toEqual({ sha256: hash, size: 5, path: file.path });
    expect(await readdir(join(dir, "tmp"))).toEqual([]);
  });

  test("lookup() misses an unknown hash", async () => {
    expect(await cache.lookup(sha256("nothing"))).toBeNull();
  });

  test("a file whose size changed on disk is dropped, not served", async () => {
    const file = await put("hello world");
    await truncate(file.path, 3);
    expect(await cache.lookup(sha256("hello world"))).toBeNull();
    expect(await readdir(join(dir, "files", sha256("hello world").slice(0, 2)))).toEqual([]);
  });

  test("a file deleted behind the cache's back is forgotten", async () => {
    const file = await put("gone");
    await rm(file.path);
    expect(await cache.lookup(sha256("gone"))).toBeNull();
  });

  test("the metadata survives reopening", async () => {
    await put("kept");
    cache.close();
    cache = await ContentCache.open(dir);
    expect((await cache.lookup(sha256("kept")))?.size).toBe(4);
  });

  test("forget() removes the file and its row", async () => {
    const file = await put("bye");
    await cache.forget(sha256("bye"));
    expect(await cache.lookup(sha256("bye"))).toBeNull();
    expect(await Bun.file(file.path).exists()).toBe(false);
  });

  test("tempPath() gives distinct paths inside tmp/", () => {
    const a = cache.tempPath("a/b.deb");
    const b = cache.tempPath("a/b.deb");
    expect(a).not.toBe(b);
    expect(a.startsWith(join(dir, "tmp") + "/")).toBe(true);
    expect(a.slice(join(dir, "tmp").length + 1)).not.toContain("/");
  });

  test("open() removes temp files left by a killed process, but not recent ones", async () => {
    const old = cache.tempPath("old.deb");
    const young = cache.tempPath("young.deb");
    await writeFile(old, "partial");
    await writeFile(young, "partial");
    const longAgo = new Date(Date.now() - STALE_TEMP_MS - 60_000);
    await utimes(old, longAgo, longAgo);
    cache.close();
    cache = await ContentCache.open(dir);
    expect(await readdir(join(dir, "tmp"))).toEqual([young.split("/").pop()!]);
  });

  test("close() is idempotent", () => {
    cache.close();
    expect(() => cache.close()).not.toThrow();
  });
});
