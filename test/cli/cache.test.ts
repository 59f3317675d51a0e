import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCacheGc, runCacheLs, runCacheVerify } from "../../src/cli/cache.ts";
import { EXIT_CODES } from "../../src/cli/exit-codes.ts";
import { reportError } from "../../src/cli/main.ts";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import { ContentCache } from "../../src/store/cache.ts";
import { jsonLines, memoryIO } from "../helpers/cli.ts";

const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");


let dir: string;
let cacheDir: string;
let seedDir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-cache-cli-"));
  cacheDir = join(dir, "cache");
  seedDir = join(dir, "archives");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Puts files in the cache as downloads would, each used at the given time. */
async function fill(files: [name: string, content: string, usedAt: number][]): Promise<void> {
  const cache = await ContentCache.open(cacheDir);
  try {
    for (const [name, content, usedAt] of files) {
      const temp = cache.tempPath(name);
      await writeFile(temp, content);
      await cache.adopt(temp, { sha256: sha256(content), size: content.length, name }, usedAt);
    }
  } finally {
    cache.close();
  }
}

const pathOf = (content: string) => join(cacheDir, "files", sha256(content).slice(0, 2), sha256(content));
const T1 = Date.UTC(2024, 4, 1, 12, 0, 0);
const T2 = Date.UTC(2024, 4, 2, 8, 30, 15);

describe("apt-p2p cache ls", () => {
  test("lists each file with its size, last use, name and hash, least recently used first, then the total", async () => {
    await fill([
      ["hello_2.10-3_amd64.deb", "h".repeat(2500), T2],
      ["tiny_1.0_all.deb", "tiny", T1],
    ]);
    const io = memoryIO();
    const entries = await runCacheLs({ cacheDir, json: false }, io);
    expect(entries.map((e) => e.name)).toEqual(["tiny_1.0_all.deb", "hello_2.10-3_amd64.deb"]);
    const lines = io.out.trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\s*SIZE\s+LAST USED\s+NAME\s+SHA-256$/);
    expect(lines[1]).toMatch(new RegExp(`^\\s*4 B  2024-05-01 12:00:00Z  tiny_1\\.0_all\\.deb\\s+${sha256("tiny")}$`));
    expect(lines[2]).toMatch(new RegExp(`^\\s*2\\.5 kB  2024-05-02 08:30:15Z  hello_2\\.10-3_amd64\\.deb  ${sha256("h".repeat(2500))}$`));
    expect(lines[3]).toBe(`2 files, 2.5 kB (2504 bytes) in ${cacheDir}`);
  });

  test("--json prints one object per file with exact sizes and paths", async () => {
    await fill([["a.deb", "aaa", T1]]);
    const io = memoryIO();
    await runCacheLs({ cacheDir, json: true }, io);
    expect(jsonLines(io.out)).toEqual([{ sha256: sha256("aaa"), size: 3, name: "a.deb", addedAt: T1, usedAt: T1, path: pathOf("aaa") }]);
  });

  test("an empty cache lists nothing but its total", async () => {
    const io = memoryIO();
    expect(await runCacheLs({ cacheDir, json: false }, io)).toEqual([]);
    expect(io.out).toBe(`0 files, 0 B (0 bytes) in ${cacheDir}\n`);
  });
});

describe("apt-p2p cache gc", () => {
  test("evicts the least recently used files down to --cache-size and reports them", async () => {
    await fill([
      ["old.deb", "o".repeat(400), T1],
      ["new.deb", "n".repeat(400), T2],
      ["mid.deb", "m".repeat(400), T1 + 1000],
    ]);
    const io = memoryIO();
    const result = await runCacheGc({ cacheDir, cacheSize: { kind: "bytes", bytes: 500 } }, io);
    expect(result.evicted.map((e) => e.name)).toEqual(["old.deb", "mid.deb"]);
    expect(io.out).toContain("evicted old.deb (400 B, last used 2024-05-01 12:00:00Z)\n");
    expect(io.out).toContain("evicted mid.deb (400 B, last used 2024-05-01 12:00:01Z)\n");
    expect(io.out).toContain("Evicted 2 file(s), 800 B; the cache now holds 1 file(s), 400 B; quota 500 B\n");
    expect(await Bun.file(pathOf("o".repeat(400))).exists()).toBe(false);
    expect(await Bun.file(pathOf("n".repeat(400))).exists()).toBe(true);
  });

  test("a percentage is of the disk holding the cache: 100% evicts nothing", async () => {
    await fill([["a.deb", "aaa", T1]]);
    const io = memoryIO();
    const result = await runCacheGc({ cacheDir, cacheSize: { kind: "percent", percent: 100 } }, io);
    expect(result.evicted).toEqual([]);
    expect(await Bun.file(pathOf("aaa")).exists()).toBe(true);
  });

  test("without --cache-size nothing is evicted", async () => {
    await fill([["a.deb", "aaa", T1]]);
    const io = memoryIO();
    expect((await runCacheGc({ cacheDir }, io)).evicted).toEqual([]);
    expect(io.out).toContain("no quota given (--cache-size): nothing to evict");
    expect(await Bun.file(pathOf("aaa")).exists()).toBe(true);
  });

  test("never deletes files outside the cache's files/, such as a seed directory's copy of a cached file", async () => {
    await fill([["a_1_all.deb", "aaa", T1]]);
    await Bun.write(join(seedDir, "a_1_all.deb"), "aaa");
    await runCacheGc({ cacheDir, cacheSize: { kind: "bytes", bytes: 1 } }, memoryIO());
    expect(await Bun.file(pathOf("aaa")).exists()).toBe(false);
    expect(await readdir(seedDir)).toEqual(["a_1_all.deb"]);
  });
});

describe("apt-p2p cache verify", () => {
  test("all files intact: reports the count and succeeds", async () => {
    await fill([
      ["a.deb", "aaa", T1],
      ["b.deb", "bbb", T2],
    ]);
    const io = memoryIO();
    const result = await runCacheVerify({ cacheDir }, io);
    expect(result.checked).toBe(2);
    expect(io.out).toBe(`Checked 2 file(s) in ${cacheDir}: 0 corrupt\n`);
  });

  test("a corrupted file is reported and removed, and the command fails with its own exit code", async () => {
    await fill([
      ["good.deb", "good", T1],
      ["bad.deb", "bad!", T2],
    ]);
    await writeFile(pathOf("bad!"), "BAD!");
    const io = memoryIO();
    let error: unknown;
    await runCacheVerify({ cacheDir }, io).catch((err: unknown) => {
      error = err;
    });
    expect(error).toBeInstanceOf(AptP2pError);
    expect((error as AptP2pError).code).toBe(ErrorCode.CacheCorrupt);
    expect(io.out).toContain(`corrupt bad.deb ${sha256("bad!")}: content hashes to ${sha256("BAD!")}; removed\n`);
    expect(io.out).toContain(`Checked 2 file(s) in ${cacheDir}: 1 corrupt\n`);
    expect(await Bun.file(pathOf("bad!")).exists()).toBe(false);
    expect(await Bun.file(pathOf("good")).exists()).toBe(true);

    const code = reportError(error, io);
    expect(code).toBe(13);
    expect(code).not.toBe(EXIT_CODES.INTERNAL);
    expect(io.err).toContain(`E: Found 1 corrupt file(s) in the cache ${cacheDir}: removed them`);

    // What is left is intact: a second run succeeds.
    const again = memoryIO();
    expect((await runCacheVerify({ cacheDir }, again)).checked).toBe(1);
  });
});
