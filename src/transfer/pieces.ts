/**
 * Pieces of a file (512 KiB) and where their hashes travel (DESIGN.md, "Pieces"). A piece hash is the
 * first 20 bytes of the piece's SHA-256. Piece hashes come from peers and are untrusted: they let a
 * downloader blame a peer for a bad piece early; the whole file is still checked against the SHA-256 from
 * the signed index. Pure, except hashFilePieces which reads a file.
 */
import { createReadStream } from "node:fs";
import { ID_BYTES, type NodeId } from "../dht/id.ts";

export const PIECE_SIZE_BYTES = 512 * 1024;

/**
 * How many peers a DHT lookup for a file of `size` bytes may stop at: a file of one piece has no piece
 * list to agree on and is checked whole, so the first answer naming peers is enough; a larger file's
 * lookup runs to the end (undefined), for more sources and the consensus on its piece list.
 */
export function peersEnough(size: number): number | undefined {
  return size <= PIECE_SIZE_BYTES ? 1 : undefined;
}
export const PIECE_HASH_BYTES = 20;
/** Up to this many piece hashes ride inline on the announce (4 × 20 = 80 bytes). */
export const MAX_INLINE_PIECES = 4;
/**
 * Up to this many fit a BEP 44 item: the item is the bencoded byte string of the concatenated hashes,
 * "980:" plus 980 bytes = 984 ≤ 1000 bytes for 49; 50 would need 1004.
 */
export const MAX_ITEM_PIECES = 49;

export type PieceTier = "single" | "inline" | "item" | "http";

export function pieceCount(size: number): number {
  return Math.max(1, Math.ceil(size / PIECE_SIZE_BYTES));
}

/** Half-open byte range of a piece. */
export function pieceRange(index: number, size: number): { start: number; end: number } {
  const start = index * PIECE_SIZE_BYTES;
  return { start, end: Math.min(size, start + PIECE_SIZE_BYTES) };
}

export function tierOf(pieces: number): PieceTier {
  if (pieces <= 1) return "single";
  if (pieces <= MAX_INLINE_PIECES) return "inline";
  if (pieces <= MAX_ITEM_PIECES) return "item";
  return "http";
}

export function hashPiece(bytes: Uint8Array): Uint8Array {
  return truncate(new Bun.CryptoHasher("sha256").update(bytes).digest());
}

/** One pass over a file: its SHA-256 and its piece hashes. */
export async function hashFilePieces(path: string): Promise<{ sha256: string; size: number; pieces: Uint8Array[] }> {
  const whole = new Bun.CryptoHasher("sha256");
  const pieces: Uint8Array[] = [];
  let piece = new Bun.CryptoHasher("sha256");
  let inPiece = 0;
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    let bytes = chunk as Buffer;
    whole.update(bytes);
    size += bytes.length;
    while (bytes.length > 0) {
      const take = Math.min(bytes.length, PIECE_SIZE_BYTES - inPiece);
      piece.update(bytes.subarray(0, take));
      inPiece += take;
      bytes = bytes.subarray(take);
      if (inPiece === PIECE_SIZE_BYTES) {
        pieces.push(truncate(piece.digest()));
        piece = new Bun.CryptoHasher("sha256");
        inPiece = 0;
      }
    }
  }
  if (inPiece > 0 || pieces.length === 0) pieces.push(truncate(piece.digest()));
  return { sha256: whole.digest("hex"), size, pieces };
}

/** The BEP 44 item (and HTTP piece list) for a file: the bencoded byte string of the concatenated hashes. */
export function pieceListItem(hashes: Uint8Array[]): Uint8Array {
  const body = concat(hashes);
  const prefix = new TextEncoder().encode(`${body.length}:`);
  return concat([prefix, body]);
}

/** The key a piece list is found under: the SHA-1 of its item, as BEP 44 computes an item's target. */
export function pieceListKey(hashes: Uint8Array[]): NodeId {
  const digest = new Bun.CryptoHasher("sha1").update(pieceListItem(hashes)).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, ID_BYTES);
}

/** Reads a piece-list item back into hashes; null when it is not one for a file of `pieces` pieces. */
export function parsePieceListItem(item: Uint8Array, pieces: number): Uint8Array[] | null {
  const text = new TextDecoder("latin1").decode(item.subarray(0, 12));
  const colon = text.indexOf(":");
  if (colon <= 0 || !/^[1-9]\d*$/.test(text.slice(0, colon))) return null;
  const length = Number(text.slice(0, colon));
  if (length !== pieces * PIECE_HASH_BYTES || item.length !== colon + 1 + length) return null;
  return split(item.subarray(colon + 1), pieces);
}

/** What a seeder attaches to its announce: nothing, the hashes themselves, or the piece-list key. */
export function announceInfo(hashes: Uint8Array[]): Uint8Array | undefined {
  const tier = tierOf(hashes.length);
  if (tier === "single") return undefined;
  if (tier === "inline") return concat(hashes);
  return pieceListKey(hashes);
}

export type AnnouncedPieces =
  | { kind: "none" }
  | { kind: "hashes"; hashes: Uint8Array[] }
  /** Fetch the list as a BEP 44 item (tier "item") or over HTTP (tier "http"), and check it hashes to key. */
  | { kind: "key"; key: NodeId; tier: "item" | "http" };

/** Interprets a peer's announced piece information for a file of `size` bytes; null when it does not fit. */
export function parseAnnounceInfo(info: Uint8Array | undefined, size: number): AnnouncedPieces | null {
  const pieces = pieceCount(size);
  const tier = tierOf(pieces);
  if (tier === "single") return info === undefined || info.length === 0 ? { kind: "none" } : null;
  if (info === undefined) return null;
  if (tier === "inline") {
    return info.length === pieces * PIECE_HASH_BYTES ? { kind: "hashes", hashes: split(info, pieces) } : null;
  }
  return info.length === ID_BYTES ? { kind: "key", key: info.slice(), tier } : null;
}

function split(bytes: Uint8Array, count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => bytes.slice(i * PIECE_HASH_BYTES, (i + 1) * PIECE_HASH_BYTES));
}

function truncate(digest: Uint8Array): Uint8Array {
  return new Uint8Array(digest.buffer, digest.byteOffset, PIECE_HASH_BYTES).slice();
}

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Bun.concatArrayBuffers(parts));
}
