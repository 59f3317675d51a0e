import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HotFiles } from "../../src/daemon/hot-files.ts";

const sha256Hex = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
const filled = (size: number, value: number) => new Uint8Array(size).fill(value);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-hot-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function onDisk(name: string, bytes: Uint8Array): Promise<{ path: string; sha256: string; bytes: Uint8Array }> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return { path, sha256: sha256Hex(bytes), bytes };
}

describe("HotFiles", () => {
  test("load() holds a file whose bytes hash to its content's SHA-256, and get() then answers from memory", async () => {
    const hot = new HotFiles();
    const file = await onDisk("a.deb", filled(1000, 1));
    expect(hot.get(file.sha256)).toBeUndefined();
    expect(hot.load(file)).toEqual(file.bytes);
    await rm(file.path);
    expect(hot.get(file.sha256)).toEqual(file.bytes);
    expect(hot.stats()).toEqual({ files: 1, bytes: 1000, hits: 1, loads: 1 });
  });

  test("load() refuses a file that no longer hashes to the content, or is gone, and holds nothing", async () => {
    const hot = new HotFiles();
    const file = await onDisk("a.deb", filled(1000, 1));
    await writeFile(file.path, filled(1000, 2));
    expect(hot.load(file)).toBeUndefined();
    expect(hot.load({ path: join(dir, "missing.deb"), sha256: file.sha256 })).toBeUndefined();
    expect(hot.get(file.sha256)).toBeUndefined();
    expect(hot.stats().files).toBe(0);
  });

  test("admits() takes files up to the per-file bound only", () => {
    const hot = new HotFiles({ maxFileBytes: 100, maxBytes: 1000 });
    expect(hot.admits(100)).toBe(true);
    expect(hot.admits(101)).toBe(false);
    expect(hot.admits(0)).toBe(false);
  });

  test("past the byte bound the least recently used files go first", async () => {
    const hot = new HotFiles({ maxBytes: 2500, maxFileBytes: 1000 });
    const [a, b, c] = await Promise.all([1, 2, 3].map((v) => onDisk(`${v}.deb`, filled(1000, v))));
    hot.load(a!);
    hot.load(b!);
    hot.get(a!.sha256); // a is now more recent than b
    hot.load(c!);
    expect(hot.get(b!.sha256)).toBeUndefined();
    expect(hot.get(a!.sha256)).toEqual(a!.bytes);
    expect(hot.get(c!.sha256)).toEqual(c!.bytes);
    expect(hot.stats().bytes).toBe(2000);
  });

  test("sweep() empties the memory only after the idle time without a request", async () => {
    const clock = { ms: 0 };
    const hot = new HotFiles({ idleMs: 60_000, now: () => clock.ms });
    const file = await onDisk("a.deb", filled(1000, 1));
    hot.load(file);
    clock.ms = 59_000;
    hot.sweep();
    expect(hot.get(file.sha256)).toEqual(file.bytes);
    clock.ms = 59_000 + 59_999;
    hot.sweep();
    expect(hot.stats().files).toBe(1);
    clock.ms = 59_000 + 60_000;
    hot.sweep();
    expect(hot.stats()).toMatchObject({ files: 0, bytes: 0 });
  });

  test("drop() forgets one content and its bytes", async () => {
    const hot = new HotFiles();
    const file = await onDisk("a.deb", filled(1000, 1));
    hot.load(file);
    hot.drop(file.sha256);
    expect(hot.get(file.sha256)).toBeUndefined();
    expect(hot.stats().bytes).toBe(0);
  });
});
