import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BEP44_MAX_VALUE_BYTES } from "../../src/dht/messages.ts";
import {
  announceInfo,
  hashFilePieces,
  hashPiece,
  MAX_INLINE_PIECES,
  MAX_ITEM_PIECES,
  parseAnnounceInfo,
  parsePieceListItem,
  PIECE_HASH_BYTES,
  PIECE_SIZE_BYTES,
  pieceCount,
  pieceListItem,
  pieceListKey,
  pieceRange,
  tierOf,
} from "../../src/transfer/pieces.ts";

const hashes = (n: number) => Array.from({ length: n }, (_, i) => new Uint8Array(PIECE_HASH_BYTES).fill(i + 1));

describe("pieces", () => {
  test.each([
    [0, 1],
    [1, 1],
    [PIECE_SIZE_BYTES, 1],
    [PIECE_SIZE_BYTES + 1, 2],
    [4 * PIECE_SIZE_BYTES, 4],
    [100 * 1024 * 1024, 200],
  ])("a file of %d bytes has %d pieces", (size, n) => {
    expect(pieceCount(size)).toBe(n);
  });

  test("the last piece's range ends at the file size", () => {
    expect(pieceRange(1, PIECE_SIZE_BYTES + 10)).toEqual({ start: PIECE_SIZE_BYTES, end: PIECE_SIZE_BYTES + 10 });
  });

  test.each([
    [1, "single"],
    [2, "inline"],
    [MAX_INLINE_PIECES, "inline"],
    [MAX_INLINE_PIECES + 1, "item"],
    [MAX_ITEM_PIECES, "item"],
    [MAX_ITEM_PIECES + 1, "http"],
  ])("%d pieces travel as tier %s", (n, tier) => {
    expect(tierOf(n)).toBe(tier as ReturnType<typeof tierOf>);
  });

  test("the largest item-tier piece list fits a BEP 44 item", () => {
    expect(pieceListItem(hashes(MAX_ITEM_PIECES)).length).toBeLessThanOrEqual(BEP44_MAX_VALUE_BYTES);
    expect(pieceListItem(hashes(MAX_ITEM_PIECES + 1)).length).toBeGreaterThan(BEP44_MAX_VALUE_BYTES);
  });

  test("announce info round-trips through parseAnnounceInfo for every tier", () => {
    expect(announceInfo(hashes(1))).toBeUndefined();
    expect(parseAnnounceInfo(undefined, 10)).toEqual({ kind: "none" });
    const inline = hashes(3);
    expect(parseAnnounceInfo(announceInfo(inline), 3 * PIECE_SIZE_BYTES)).toEqual({ kind: "hashes", hashes: inline });
    const item = hashes(10);
    expect(parseAnnounceInfo(announceInfo(item), 10 * PIECE_SIZE_BYTES)).toEqual({ kind: "key", key: pieceListKey(item), tier: "item" });
    const big = hashes(80);
    expect(parseAnnounceInfo(announceInfo(big), 80 * PIECE_SIZE_BYTES)).toEqual({ kind: "key", key: pieceListKey(big), tier: "http" });
  });

  test("announce info that does not fit the file's size is refused", () => {
    expect(parseAnnounceInfo(new Uint8Array(3), 10)).toBeNull();
    expect(parseAnnounceInfo(new Uint8Array(2 * PIECE_HASH_BYTES), 3 * PIECE_SIZE_BYTES)).toBeNull();
    expect(parseAnnounceInfo(undefined, 3 * PIECE_SIZE_BYTES)).toBeNull();
    expect(parseAnnounceInfo(new Uint8Array(19), 10 * PIECE_SIZE_BYTES)).toBeNull();
  });

  test("a piece-list item parses back only for the right number of pieces", () => {
    const list = hashes(7);
    expect(parsePieceListItem(pieceListItem(list), 7)).toEqual(list);
    expect(parsePieceListItem(pieceListItem(list), 8)).toBeNull();
    expect(parsePieceListItem(new TextEncoder().encode("garbage"), 7)).toBeNull();
  });
});

describe("hashFilePieces()", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "apt-p2p-pieces-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("gives the file's SHA-256 and one hash per 512 KiB piece, in one pass", async () => {
    const bytes = new Uint8Array(2 * PIECE_SIZE_BYTES + 1234).map((_, i) => (i * 31) & 0xff);
    await writeFile(join(dir, "f"), bytes);
    const result = await hashFilePieces(join(dir, "f"));
    expect(result.size).toBe(bytes.length);
    expect(result.sha256).toBe(new Bun.CryptoHasher("sha256").update(bytes).digest("hex"));
    expect(result.pieces).toEqual([
      hashPiece(bytes.subarray(0, PIECE_SIZE_BYTES)),
      hashPiece(bytes.subarray(PIECE_SIZE_BYTES, 2 * PIECE_SIZE_BYTES)),
      hashPiece(bytes.subarray(2 * PIECE_SIZE_BYTES)),
    ]);
  });

  test("an empty file has one piece, the hash of nothing", async () => {
    await writeFile(join(dir, "empty"), "");
    const result = await hashFilePieces(join(dir, "empty"));
    expect(result.pieces).toEqual([hashPiece(new Uint8Array(0))]);
  });
});
