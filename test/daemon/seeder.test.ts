import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, symlink, truncate, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Seeder, type Announcer, type IntervalTimers, type SeederOptions } from "../../src/daemon/seeder.ts";
import { sha1 } from "../../src/dht/node.ts";
import { ContentCache } from "../../src/store/cache.ts";
import { SeedIndex } from "../../src/store/seed-index.ts";
import { hashFilePieces, PIECE_SIZE_BYTES, pieceListItem, pieceListKey } from "../../src/transfer/pieces.ts";
import { startSim, type Sim } from "../helpers/dht-sim.ts";

const REFRESH_MS = 20 * 60_000;
const RETRY_MS = 60_000;
const PORT = 6881;

let dir: string;
let cacheDir: string;
let seedDir: string;
let index: SeedIndex;
let now: number;
let logs: string[];
let seeders: Seeder[];
let sim: Sim | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-seeder-"));
  cacheDir = join(dir, "cache");
  seedDir = join(dir, "archives");
  await mkdir(join(cacheDir, "files"), { recursive: true });
  await mkdir(seedDir, { recursive: true });
  index = SeedIndex.open(join(dir, "state", "seeds.sqlite"));
  now = 1_000_000;
  logs = [];
  seeders = [];
});
afterEach(async () => {
  await Promise.all(seeders.map((s) => s.close()));
  sim?.close();
  sim = undefined;
  index.close();
  await rm(dir, { recursive: true, force: true });
});

type Outcome = "ok" | "zero" | "throw";

/** Records every call; `outcome` decides each announce's fate; `hold` parks calls until released. */
class FakeAnnouncer implements Announcer {
  announces: { key: Uint8Array; port: number; pieces?: Uint8Array }[] = [];
  items: Uint8Array[] = [];
  outcome: (key: Uint8Array) => Outcome = () => "ok";
  hold = false;
  parked: (() => void)[] = [];
  inFlight = 0;
  maxInFlight = 0;

  async announce(key: Uint8Array, port: number, pieces?: Uint8Array): Promise<{ stored: number }> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.hold) await new Promise<void>((resolve) => this.parked.push(resolve));
      this.announces.push({ key, port, pieces });
      const outcome = this.outcome(key);
      if (outcome === "throw") throw new Error("lookup timed out");
      return { stored: outcome === "ok" ? 8 : 0 };
    } finally {
      this.inFlight--;
    }
  }

  async putItem(value: Uint8Array): Promise<{ target: Uint8Array; stored: number }> {
    this.items.push(value);
    return { target: sha1(value), stored: 8 };
  }

  keysHex(): string[] {
    return this.announces.map((a) => hex(a.key));
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const sha256Of = (bytes: Uint8Array | string) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
const keyOf = (sha256: string) => sha256.slice(0, 40);

/** A sparse file of `pieces` pieces whose content (and so hash) depends on `label`. */
async function writeSized(path: string, label: string, pieces: number): Promise<void> {
  await writeFile(path, label);
  await truncate(path, (pieces - 1) * PIECE_SIZE_BYTES + 1000);
}

/** Puts `content` in the cache under its hash (or under `name`), as ContentCache.adopt() would. */
async function putCached(content: string, name = sha256Of(content)): Promise<string> {
  const path = join(cacheDir, "files", name.slice(0, 2), name);
  await mkdir(join(cacheDir, "files", name.slice(0, 2)), { recursive: true });
  await writeFile(path, content);
  return path;
}

function counter(): { calls: string[]; hashFile: typeof hashFilePieces } {
  const calls: string[] = [];
  return {
    calls,
    hashFile: (path) => {
      calls.push(path);
      return hashFilePieces(path);
    },
  };
}

/** A deterministic random source: 0, 0.37, 0.74, 0.11, … */
function steps(): () => number {
  let i = 0;
  return () => (i++ * 0.37) % 1;
}

function makeSeeder(announcer: Announcer, options: Partial<SeederOptions> = {}): Seeder {
  const seeder = new Seeder(index, announcer, {
    cacheDir,
    seedDirs: [seedDir],
    peerPort: PORT,
    clock: () => now,
    random: steps(),
    log: (line) => logs.push(line),
    ...options,
  });
  seeders.push(seeder);
  return seeder;
}

/**
 * Lets queued promise callbacks and I/O completions run until `until` holds (file hashing is real I/O,
 * slower on a loaded machine: the bound is generous and only there so that a broken seeder fails).
 */
async function settle(until: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!until() && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
}

describe("Seeder", () => {
  test("announces each tier with the right piece information", async () => {
    await writeSized(join(seedDir, "one.deb"), "one", 1);
    await writeSized(join(seedDir, "three.deb"), "three", 3);
    await writeSized(join(seedDir, "ten.deb"), "ten", 10);
    await writeSized(join(seedDir, "sixty.deb"), "sixty", 60);
    const fake = new FakeAnnouncer();
    const seeder = makeSeeder(fake);

    expect(await seeder.scan()).toEqual({ added: 4, changed: 0, removed: 0, unchanged: 0 });
    expect(await seeder.announceDue()).toBe(4);

    const byName = async (name: string) => {
      const file = await hashFilePieces(join(seedDir, name));
      const call = fake.announces.find((a) => hex(a.key) === keyOf(file.sha256));
      expect(call?.port).toBe(PORT);
      return { file, call };
    };
    const one = await byName("one.deb");
    expect(one.call?.pieces).toBeUndefined();
    const three = await byName("three.deb");
    expect(three.call?.pieces).toEqual(Buffer.concat(three.file.pieces));
    const ten = await byName("ten.deb");
    expect(ten.call?.pieces).toEqual(pieceListKey(ten.file.pieces));
    const sixty = await byName("sixty.deb");
    expect(sixty.call?.pieces).toEqual(pieceListKey(sixty.file.pieces));

    // Only the 5–49 piece file has its list put in the DHT; the 60-piece one is served over HTTP.
    expect(fake.items).toEqual([pieceListItem(ten.file.pieces)]);
    expect(index.pieceListByKey(hex(pieceListKey(sixty.file.pieces)))).toEqual(pieceListItem(sixty.file.pieces));
    expect(index.bySha256(sixty.file.sha256)?.path).toBe(join(seedDir, "sixty.deb"));
    expect(seeder.stats()).toMatchObject({ files: 4, hashed: 4, announced: 4, announceFailures: 0 });
  });

  test("serves cache files by their verified name and skips a file whose content is not its name", async () => {
    const good = await putCached("good content");
    const badName = sha256Of("what the index promised");
    const bad = await putCached("other bytes", badName);
    const { calls, hashFile } = counter();
    const seeder = makeSeeder(new FakeAnnouncer(), { hashFile });

    expect(await seeder.scan()).toMatchObject({ added: 1 });
    expect(index.paths("cache")).toEqual([good]);
    expect(index.bySha256(badName)).toBeNull();
    expect(logs.some((l) => l.includes(bad) && l.includes("not to its name"))).toBe(true);

    // The bad file is not hashed again while it stays as it is.
    await seeder.scan();
    expect(calls.filter((p) => p === bad)).toHaveLength(1);
  });

  test("reads only regular .deb files of a seed directory, skipping partial/ and unreadable files", async () => {
    await writeFile(join(seedDir, "a.deb"), "a");
    await writeFile(join(seedDir, "lock"), "");
    await mkdir(join(seedDir, "partial"));
    await writeFile(join(seedDir, "partial", "p.deb"), "half");
    await mkdir(join(seedDir, "dir.deb"));
    await writeFile(join(dir, "elsewhere.deb"), "elsewhere");
    await symlink(join(dir, "elsewhere.deb"), join(seedDir, "link.deb"));
    await writeFile(join(seedDir, "secret.deb"), "unreadable");
    const seeder = makeSeeder(new FakeAnnouncer(), {
      seedDirs: [seedDir, join(dir, "missing")],
      hashFile: async (path) => {
        if (path.endsWith("secret.deb")) throw Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
        return hashFilePieces(path);
      },
    });

    expect(await seeder.scan()).toEqual({ added: 1, changed: 0, removed: 0, unchanged: 0 });
    expect(index.paths()).toEqual([join(seedDir, "a.deb")]);
    expect(logs.some((l) => l.includes("secret.deb") && l.includes("EACCES"))).toBe(true);
  });

  test("a restart does not rehash unchanged files", async () => {
    await writeSized(join(seedDir, "a.deb"), "a", 3);
    await putCached("cached");
    const dbPath = join(dir, "state", "seeds.sqlite");
    await makeSeeder(new FakeAnnouncer()).scan();
    index.close();

    index = SeedIndex.open(dbPath);
    const { calls, hashFile } = counter();
    const seeder = makeSeeder(new FakeAnnouncer(), { hashFile });
    expect(await seeder.scan()).toEqual({ added: 0, changed: 0, removed: 0, unchanged: 2 });
    expect(calls).toEqual([]);
    expect(seeder.stats().hashed).toBe(0);
  });

  test("a changed file is rehashed and announced under its new key", async () => {
    const path = join(seedDir, "a.deb");
    await writeFile(path, "version 1");
    const fake = new FakeAnnouncer();
    const { calls, hashFile } = counter();
    const seeder = makeSeeder(fake, { hashFile });
    await seeder.scan();
    await seeder.announceDue();

    await writeFile(path, "version 2");
    await utimes(path, new Date(5_000_000), new Date(5_000_000));
    now += 1000;
    expect(await seeder.scan()).toEqual({ added: 0, changed: 1, removed: 0, unchanged: 0 });
    expect(calls).toHaveLength(2);
    expect(index.get(path)?.sha256).toBe(sha256Of("version 2"));
    expect(index.bySha256(sha256Of("version 1"))).toBeNull();
    expect(await seeder.announceDue()).toBe(1);
    expect(fake.keysHex()).toEqual([keyOf(sha256Of("version 1")), keyOf(sha256Of("version 2"))]);
  });

  test("a deleted file leaves the index and is no longer announced", async () => {
    await writeFile(join(seedDir, "a.deb"), "a");
    await writeFile(join(seedDir, "b.deb"), "b");
    const fake = new FakeAnnouncer();
    const seeder = makeSeeder(fake);
    await seeder.scan();
    await seeder.announceDue();

    await rm(join(seedDir, "a.deb"));
    expect(await seeder.scan()).toEqual({ added: 0, changed: 0, removed: 1, unchanged: 1 });
    expect(index.paths()).toEqual([join(seedDir, "b.deb")]);
    expect(index.bySha256(sha256Of("a"))).toBeNull();
    now += REFRESH_MS;
    fake.announces = [];
    await seeder.announceDue();
    expect(fake.keysHex()).toEqual([keyOf(sha256Of("b"))]);
  });

  test("content both in the cache and a seed directory is announced once", async () => {
    await putCached("shared");
    await writeFile(join(seedDir, "shared.deb"), "shared");
    const fake = new FakeAnnouncer();
    const seeder = makeSeeder(fake);
    expect(await seeder.scan()).toMatchObject({ added: 2 });
    expect(await seeder.announceDue()).toBe(1);
    expect(fake.keysHex()).toEqual([keyOf(sha256Of("shared"))]);
    expect(index.stats()).toEqual({ files: 1, bytes: 6 });
  });

  test("addCachedFile() indexes and announces a download at once, unless a copy is already announced", async () => {
    const fake = new FakeAnnouncer();
    const seeder = makeSeeder(fake);
    await writeFile(join(seedDir, "old.deb"), "old");
    await seeder.scan();
    await seeder.announceDue();

    await putCached("new");
    await seeder.addCachedFile(sha256Of("new"));
    expect(index.bySha256(sha256Of("new"))?.origin).toBe("cache");
    await putCached("old");
    await seeder.addCachedFile(sha256Of("old"));
    expect(index.bySha256(sha256Of("old"))?.origin).toBe("cache");
    expect(fake.keysHex()).toEqual([keyOf(sha256Of("old")), keyOf(sha256Of("new"))]);
    expect(await seeder.announceDue()).toBe(0);
    await expect(seeder.addCachedFile("../etc/passwd")).rejects.toThrow("SHA-256");
  });

  test("removeCachedFile() stops serving and announcing a cache file, but a seed-directory copy stays served", async () => {
    await putCached("gone");
    await putCached("shared");
    await writeFile(join(seedDir, "shared.deb"), "shared");
    const fake = new FakeAnnouncer();
    const seeder = makeSeeder(fake);
    await seeder.scan();
    expect(await seeder.announceDue()).toBe(2);
    expect(index.bySha256(sha256Of("shared"))?.origin).toBe("cache");

    // As after an eviction: the cache's files are deleted, then the seeder is told.
    for (const content of ["gone", "shared"]) {
      await rm(join(cacheDir, "files", sha256Of(content).slice(0, 2), sha256Of(content)));
      await seeder.removeCachedFile(sha256Of(content));
    }
    expect(index.bySha256(sha256Of("gone"))).toBeNull();
    expect(index.bySha256(sha256Of("shared"))?.path).toBe(join(seedDir, "shared.deb"));
    expect(index.paths("cache")).toEqual([]);
    expect(seeder.stats()).toMatchObject({ files: 1, removedFromCache: 2 });

    now += REFRESH_MS;
    fake.announces = [];
    expect(await seeder.announceDue()).toBe(1);
    expect(fake.keysHex()).toEqual([keyOf(sha256Of("shared"))]);
    expect(await seeder.scan()).toEqual({ added: 0, changed: 0, removed: 0, unchanged: 1 });
    await expect(seeder.removeCachedFile("../etc/passwd")).rejects.toThrow("SHA-256");
  });

  test("a file the cache evicts for its quota is no longer served nor announced", async () => {
    const fake = new FakeAnnouncer();
    const seeder = makeSeeder(fake);
    const unseeding: Promise<void>[] = [];
    const cache = await ContentCache.open(cacheDir, { limitBytes: 10, onEvicted: (sha) => unseeding.push(seeder.removeCachedFile(sha)) });
    try {
      const adopt = async (content: string, at: number) => {
        const temp = cache.tempPath("x.deb");
        await writeFile(temp, content);
        await cache.adopt(temp, { sha256: sha256Of(content), size: content.length, name: `${content}.deb` }, at);
        await seeder.addCachedFile(sha256Of(content));
      };
      await adopt("first!", 1);
      expect(index.bySha256(sha256Of("first!"))?.origin).toBe("cache");
      await adopt("second", 2);
      await Promise.all(unseeding);
      expect(unseeding).toHaveLength(1);
      expect(index.bySha256(sha256Of("first!"))).toBeNull();
      expect(index.bySha256(sha256Of("second"))?.origin).toBe("cache");

      now += REFRESH_MS;
      fake.announces = [];
      await seeder.announceDue();
      expect(fake.keysHex()).toEqual([keyOf(sha256Of("second"))]);
    } finally {
      cache.close();
    }
  });

  test("refresh times are spread over 80–100% of the refresh interval", async () => {
    for (let i = 0; i < 8; i++) await writeFile(join(seedDir, `f${i}.deb`), `file ${i}`);
    const seeder = makeSeeder(new FakeAnnouncer());
    await seeder.scan();
    await seeder.announceDue();
    const next = index.paths().map((p) => index.get(p)!.nextAnnounceAt);
    expect(new Set(next).size).toBe(8);
    for (const at of next) {
      expect(at).toBeGreaterThanOrEqual(now + 0.8 * REFRESH_MS);
      expect(at).toBeLessThanOrEqual(now + REFRESH_MS);
    }
    expect(await seeder.announceDue()).toBe(0);
    now += REFRESH_MS;
    expect(await seeder.announceDue()).toBe(8);
  });

  test("announceDue() keeps at most `concurrency` announces in flight and starts a bounded number per call", async () => {
    for (let i = 0; i < 10; i++) await writeFile(join(seedDir, `f${i}.deb`), `file ${i}`);
    const fake = new FakeAnnouncer();
    fake.hold = true;
    const seeder = makeSeeder(fake, { concurrency: 3, announcesPerTick: 7 });
    await seeder.scan();

    const run = seeder.announceDue();
    expect(seeder.announceDue()).toBe(run);
    let released = 0;
    for (let round = 0; round < 20 && released < 7; round++) {
      await settle(() => fake.parked.length === Math.min(3, 7 - released));
      expect(fake.inFlight).toBeLessThanOrEqual(3);
      expect(fake.parked.length).toBe(Math.min(3, 7 - released));
      fake.parked.shift()!();
      released++;
    }
    expect(await run).toBe(7);
    expect(fake.maxInFlight).toBe(3);
    expect(index.due(now, 100)).toHaveLength(3);
  });

  test("failed announces are logged and retried about a minute later", async () => {
    await writeFile(join(seedDir, "zero.deb"), "zero");
    await writeFile(join(seedDir, "throws.deb"), "throws");
    await writeFile(join(seedDir, "fine.deb"), "fine");
    const fake = new FakeAnnouncer();
    const failing = new Map<string, Outcome>([
      [keyOf(sha256Of("zero")), "zero"],
      [keyOf(sha256Of("throws")), "throw"],
    ]);
    fake.outcome = (key) => failing.get(hex(key)) ?? "ok";
    const seeder = makeSeeder(fake);
    await seeder.scan();

    expect(await seeder.announceDue()).toBe(1);
    expect(logs.some((l) => l.includes("zero.deb: no node stored the announce") && l.includes("throws.deb: lookup timed out"))).toBe(true);
    expect(seeder.stats()).toMatchObject({ announced: 1, announceFailures: 2 });
    const retryAt = index.get(join(seedDir, "zero.deb"))!.nextAnnounceAt;
    expect(retryAt).toBeGreaterThanOrEqual(now + 0.8 * RETRY_MS);
    expect(retryAt).toBeLessThanOrEqual(now + RETRY_MS);
    expect(index.get(join(seedDir, "zero.deb"))!.lastAnnouncedAt).toBeNull();

    expect(await seeder.announceDue()).toBe(0);
    failing.clear();
    now += RETRY_MS;
    fake.announces = [];
    expect(await seeder.announceDue()).toBe(2);
    expect(fake.keysHex().sort()).toEqual([keyOf(sha256Of("throws")), keyOf(sha256Of("zero"))].sort());
  });

  test("start() scans and announces, then rescans and announces on its timers until close()", async () => {
    const intervals: { fn: () => void; ms: number; cleared: boolean }[] = [];
    const timers: IntervalTimers = {
      setInterval: (fn, ms) => intervals.push({ fn, ms, cleared: false }) - 1,
      clearInterval: (handle) => {
        intervals[handle as number]!.cleared = true;
      },
    };
    await writeFile(join(seedDir, "a.deb"), "a");
    const fake = new FakeAnnouncer();
    const seeder = makeSeeder(fake, { timers, rescanMs: 300_000, tickMs: 30_000 });
    seeder.start();
    await settle(() => fake.announces.length === 1);
    expect(fake.keysHex()).toEqual([keyOf(sha256Of("a"))]);
    expect(intervals.map((i) => i.ms).sort()).toEqual([30_000, 300_000]);

    await writeFile(join(seedDir, "b.deb"), "b");
    intervals.find((i) => i.ms === 300_000)!.fn();
    await settle(() => index.paths().length === 2);
    intervals.find((i) => i.ms === 30_000)!.fn();
    await settle(() => fake.announces.length === 2);
    expect(fake.keysHex()).toEqual([keyOf(sha256Of("a")), keyOf(sha256Of("b"))]);

    await seeder.close();
    await seeder.close();
    expect(intervals.every((i) => i.cleared)).toBe(true);
  });

  test("on an in-memory DHT, other nodes find us with our piece information and the piece list", async () => {
    sim = await startSim(24, { seed: 7 });
    await writeSized(join(seedDir, "three.deb"), "three", 3);
    await writeSized(join(seedDir, "ten.deb"), "ten", 10);
    const seeder = makeSeeder(sim.nodes[0]!);
    await seeder.scan();
    expect(await seeder.announceDue()).toBe(2);

    const asker = sim.nodes[17]!;
    const three = await hashFilePieces(join(seedDir, "three.deb"));
    const found3 = await asker.getPeers(Buffer.from(keyOf(three.sha256), "hex"));
    expect(found3.peers.map((p) => ({ port: p.port, pieces: p.pieces && hex(p.pieces) }))).toEqual([
      { port: PORT, pieces: hex(Buffer.concat(three.pieces)) },
    ]);

    const ten = await hashFilePieces(join(seedDir, "ten.deb"));
    const found10 = await asker.getPeers(Buffer.from(keyOf(ten.sha256), "hex"));
    expect(found10.peers.map((p) => p.pieces && hex(p.pieces))).toEqual([hex(pieceListKey(ten.pieces))]);
    expect(await asker.getItem(pieceListKey(ten.pieces))).toEqual(pieceListItem(ten.pieces));
  });
});
