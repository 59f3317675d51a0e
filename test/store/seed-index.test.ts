import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SeedIndex, type SeedEntryInput } from "../../src/store/seed-index.ts";
import { PIECE_SIZE_BYTES, pieceListItem, pieceListKey } from "../../src/transfer/pieces.ts";

let dir: string;
let index: SeedIndex;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-seed-index-"));
  index = SeedIndex.open(join(dir, "state", "seeds.sqlite"));
});
afterEach(async () => {
  index.close();
  await rm(dir, { recursive: true, force: true });
});

const hex = (n: number, length: number) => n.toString(16).padStart(length, "0");
const hash = (n: number) => new Uint8Array(20).fill(n);

/** An entry of `pieces` pieces whose content hash is derived from `id`. */
function entry(path: string, id: number, pieces = 1, extra: Partial<SeedEntryInput> = {}): SeedEntryInput {
  return {
    path,
    sha256: hex(id, 64),
    size: (pieces - 1) * PIECE_SIZE_BYTES + 100,
    mtimeMs: 1234.5,
    pieces: Array.from({ length: pieces }, (_, i) => hash(id + i)),
    origin: "seed-dir",
    ...extra,
  };
}

describe("SeedIndex", () => {
  test("upsert() then get() returns the entry, never announced and due at once by default", () => {
    index.upsert(entry("/a/x.deb", 1, 3));
    expect(index.get("/a/x.deb")).toEqual({ ...entry("/a/x.deb", 1, 3), lastAnnouncedAt: null, nextAnnounceAt: 0 });
    expect(index.get("/a/other.deb")).toBeNull();
  });

  test("upsert() replaces the row of the same path", () => {
    index.upsert(entry("/a/x.deb", 1));
    index.upsert(entry("/a/x.deb", 2, 2, { mtimeMs: 99 }));
    expect(index.get("/a/x.deb")?.sha256).toBe(hex(2, 64));
    expect(index.get("/a/x.deb")?.pieces.length).toBe(2);
    expect(index.paths()).toEqual(["/a/x.deb"]);
  });

  test("upsert() refuses piece hashes that do not fit the size", () => {
    expect(() => index.upsert({ ...entry("/a/x.deb", 1, 3), pieces: [hash(1)] })).toThrow("do not fit");
    expect(() => index.upsert({ ...entry("/a/x.deb", 1), sha256: "ABC" })).toThrow("SHA-256");
  });

  test("remove() drops a path and paths() lists by origin", () => {
    index.upsert(entry("/a/x.deb", 1));
    index.upsert(entry("/cache/files/00/y", 2, 1, { origin: "cache" }));
    index.upsert(entry("/a/z.deb", 3));
    index.remove("/a/z.deb");
    expect(index.paths()).toEqual(["/a/x.deb", "/cache/files/00/y"]);
    expect(index.paths("cache")).toEqual(["/cache/files/00/y"]);
    expect(index.paths("seed-dir")).toEqual(["/a/x.deb"]);
  });

  test("bySha256() prefers the cache copy of a content present twice", () => {
    index.upsert(entry("/a/x.deb", 7));
    expect(index.bySha256(hex(7, 64))?.path).toBe("/a/x.deb");
    index.upsert(entry("/cache/files/00/x", 7, 1, { origin: "cache" }));
    expect(index.bySha256(hex(7, 64))?.path).toBe("/cache/files/00/x");
    expect(index.bySha256(hex(7, 64).toUpperCase())?.path).toBe("/cache/files/00/x");
    expect(index.bySha256(hex(8, 64))).toBeNull();
  });

  test("bySha256() answers from memory between writes, and every kind of write is seen at once", () => {
    const sha = hex(7, 64);
    expect(index.bySha256(sha)).toBeNull(); // a remembered miss
    index.upsert(entry("/a/x.deb", 7));
    expect(index.bySha256(sha)?.lastAnnouncedAt).toBeNull();
    index.markAnnounced("/a/x.deb", 500, 900);
    expect(index.bySha256(sha)).toMatchObject({ lastAnnouncedAt: 500, nextAnnounceAt: 900 });
    index.reschedule("/a/x.deb", 1200);
    expect(index.bySha256(sha)?.nextAnnounceAt).toBe(1200);
    index.remove("/a/x.deb");
    expect(index.bySha256(sha)).toBeNull();
    index.upsert(entry("/a/x.deb", 7));
    expect(index.bySha256(sha)?.path).toBe("/a/x.deb");
    index.invalidate(sha);
    expect(index.bySha256(sha)).toBeNull();
  });

  test("pieceListByKey() finds the piece list of files of more than 4 pieces only", () => {
    const big = entry("/a/big.deb", 10, 60);
    const item = entry("/a/item.deb", 100, 10);
    const inline = entry("/a/inline.deb", 200, 3);
    [big, item, inline].forEach((e) => index.upsert(e));
    const keyHex = (hashes: Uint8Array[]) => Buffer.from(pieceListKey(hashes)).toString("hex");
    expect(index.pieceListByKey(keyHex(big.pieces))).toEqual(pieceListItem(big.pieces));
    expect(index.pieceListByKey(keyHex(item.pieces).toUpperCase())).toEqual(pieceListItem(item.pieces));
    expect(index.pieceListByKey(keyHex(inline.pieces))).toBeNull();
    expect(index.pieceListByKey("not a key")).toBeNull();
  });

  test("invalidate() removes every copy of the content", () => {
    index.upsert(entry("/a/x.deb", 7));
    index.upsert(entry("/cache/files/00/x", 7, 1, { origin: "cache" }));
    index.upsert(entry("/a/y.deb", 8));
    index.invalidate(hex(7, 64));
    expect(index.paths()).toEqual(["/a/y.deb"]);
    expect(index.bySha256(hex(7, 64))).toBeNull();
  });

  test("due() lists what is due, longest-waiting first, up to the limit", () => {
    index.upsert(entry("/a/1.deb", 1, 1, { nextAnnounceAt: 300 }));
    index.upsert(entry("/a/2.deb", 2, 1, { nextAnnounceAt: 100 }));
    index.upsert(entry("/a/3.deb", 3, 1, { nextAnnounceAt: 200 }));
    index.upsert(entry("/a/4.deb", 4, 1, { nextAnnounceAt: 1000 }));
    expect(index.due(300, 10).map((e) => e.path)).toEqual(["/a/2.deb", "/a/3.deb", "/a/1.deb"]);
    expect(index.due(300, 2).map((e) => e.path)).toEqual(["/a/2.deb", "/a/3.deb"]);
    expect(index.due(99, 10)).toEqual([]);
  });

  test("due() offers a content present twice once, as its cache copy", () => {
    index.upsert(entry("/a/x.deb", 7));
    index.upsert(entry("/b/x.deb", 7));
    index.upsert(entry("/cache/files/00/x", 7, 1, { origin: "cache" }));
    expect(index.due(0, 10).map((e) => e.path)).toEqual(["/cache/files/00/x"]);
    index.remove("/cache/files/00/x");
    expect(index.due(0, 10).map((e) => e.path)).toEqual(["/a/x.deb"]);
  });

  test("markAnnounced() and reschedule() move every copy of the content", () => {
    index.upsert(entry("/a/x.deb", 7));
    index.upsert(entry("/cache/files/00/x", 7, 1, { origin: "cache" }));
    index.upsert(entry("/a/y.deb", 8));
    index.markAnnounced("/cache/files/00/x", 50, 1000);
    for (const path of ["/a/x.deb", "/cache/files/00/x"]) {
      expect(index.get(path)).toMatchObject({ lastAnnouncedAt: 50, nextAnnounceAt: 1000 });
    }
    expect(index.get("/a/y.deb")).toMatchObject({ lastAnnouncedAt: null, nextAnnounceAt: 0 });
    index.reschedule("/a/x.deb", 2000);
    expect(index.get("/cache/files/00/x")).toMatchObject({ lastAnnouncedAt: 50, nextAnnounceAt: 2000 });
    expect(index.due(1999, 10).map((e) => e.path)).toEqual(["/a/y.deb"]);
  });

  test("stats() counts each content once", () => {
    index.upsert(entry("/a/x.deb", 7, 2));
    index.upsert(entry("/cache/files/00/x", 7, 2, { origin: "cache" }));
    index.upsert(entry("/a/y.deb", 8));
    expect(index.stats()).toEqual({ files: 2, bytes: PIECE_SIZE_BYTES + 100 + 100 });
  });

  test("reopening keeps every entry and its schedule", () => {
    const big = entry("/a/big.deb", 10, 60, { mtimeMs: 1700000000123.456 });
    index.upsert(big);
    index.upsert(entry("/cache/files/00/x", 7, 1, { origin: "cache" }));
    index.markAnnounced("/a/big.deb", 5, 500);
    index.close();
    index.close();
    index = SeedIndex.open(join(dir, "state", "seeds.sqlite"));
    expect(index.get("/a/big.deb")).toEqual({ ...big, lastAnnouncedAt: 5, nextAnnounceAt: 500 });
    expect(index.paths()).toEqual(["/a/big.deb", "/cache/files/00/x"]);
    expect(index.pieceListByKey(Buffer.from(pieceListKey(big.pieces)).toString("hex"))).toEqual(pieceListItem(big.pieces));
  });

  test("a closed index refuses use", () => {
    index.close();
    expect(() => index.get("/a")).toThrow("closed");
  });
});
