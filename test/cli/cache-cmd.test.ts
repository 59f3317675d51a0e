/** `apt-p2p cache ls|gc|verify` from the command line: output, quota from flags, exit code 13 for corrupt files. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContentCache } from "../../src/store/cache.ts";
import { jsonLines, runApt } from "../helpers/cli.ts";
import { noise } from "../helpers/repo.ts";

let dir: string;
const shas: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-cache-cmd-"));
  const cache = await ContentCache.open(dir);
  for (let i = 0; i < 3; i++) {
    const bytes = noise(10_000, 40 + 2 * i);
    const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
    const temp = cache.tempPath(`f${i}.deb`);
    await writeFile(temp, bytes);
    await cache.adopt(temp, { sha256, size: bytes.length, name: `f${i}.deb` }, 1000 + i);
    shas.push(sha256);
  }
  cache.close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("cache ls --json lists every file, least recently used first", async () => {
  const r = await runApt(["cache", "ls", "--json", "--cache-dir", dir]);
  expect(r.code).toBe(0);
  expect(jsonLines(r.stdout).map((l) => l.sha256)).toEqual(shas);
});

test("cache verify drops a corrupted file and exits 13; the next run finds nothing", async () => {
  const path = join(dir, "files", shas[1]!.slice(0, 2), shas[1]!);
  await writeFile(path, noise(10_000, 99));
  const r = await runApt(["cache", "verify", "--cache-dir", dir]);
  expect(r.code).toBe(13);
  expect(r.stdout + r.stderr).toContain(shas[1]!);
  expect(await Bun.file(path).exists()).toBe(false);
  expect((await runApt(["cache", "verify", "--cache-dir", dir])).code).toBe(0);
});

test("cache gc --cache-size evicts the least recently used down to the quota", async () => {
  const r = await runApt(["cache", "gc", "--cache-dir", dir, "--cache-size", "15000"]);
  expect(r.code).toBe(0);
  const left = jsonLines((await runApt(["cache", "ls", "--json", "--cache-dir", dir])).stdout).map((l) => l.sha256);
  expect(left).toEqual([shas[2]]);
});
