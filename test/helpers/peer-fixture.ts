/**
 * The peer server's test files: served files over a map, a small (1000 bytes) and a large (three
 * throttle chunks and some) file on disk, a piece list, and the deps handlePeer() takes.
 */
import { afterEach, beforeEach } from "bun:test";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newPeerServerStats, type PeerServerDeps, type PeerServerStats } from "../../src/daemon/peer-server.ts";
import type { ServedFile, ServedFiles } from "../../src/store/served.ts";
import { pieceListItem, pieceListKey } from "../../src/transfer/pieces.ts";
import { THROTTLE_CHUNK_BYTES, UploadSlots } from "../../src/transfer/throttle.ts";

/** ServedFiles over a map, recording invalidations. */
export class FakeServed implements ServedFiles {
  readonly files = new Map<string, ServedFile>();
  readonly pieceLists = new Map<string, Uint8Array>();
  readonly invalidated: string[] = [];

  bySha256(sha256: string): ServedFile | null {
    return this.files.get(sha256) ?? null;
  }

  pieceListByKey(keyHex: string): Uint8Array | null {
    return this.pieceLists.get(keyHex) ?? null;
  }

  invalidate(sha256: string): void {
    this.invalidated.push(sha256);
    this.files.delete(sha256);
  }
}

export const sha256Hex = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
export const patterned = (size: number, seed: number) => new Uint8Array(size).map((_, i) => (i * 31 + seed) % 251);

export interface PeerFile {
  bytes: Uint8Array;
  file: ServedFile;
}

export interface PeerFixture {
  dir: string;
  served: FakeServed;
  stats: PeerServerStats;
  /** Two upload slots per address, no rate limit, sleeps that return at once. */
  deps: PeerServerDeps;
  small: PeerFile;
  large: PeerFile;
  piecesKey: string;
  piecesItem: Uint8Array;
  /** Writes a file into the fixture's directory and serves it. */
  addFile(name: string, bytes: Uint8Array): Promise<PeerFile>;
  remove(): Promise<void>;
}

export async function peerFixture(): Promise<PeerFixture> {
  const dir = await mkdtemp(join(tmpdir(), "apt-p2p-peer-"));
  const served = new FakeServed();
  const stats = newPeerServerStats();
  const addFile = async (name: string, bytes: Uint8Array): Promise<PeerFile> => {
    const path = join(dir, name);
    await writeFile(path, bytes);
    const info = await stat(path);
    const file: ServedFile = { sha256: sha256Hex(bytes), size: bytes.length, path, mtimeMs: info.mtimeMs, pieces: [] };
    served.files.set(file.sha256, file);
    return { bytes, file };
  };
  const hashes = [new Uint8Array(20).fill(1), new Uint8Array(20).fill(2)];
  const piecesItem = pieceListItem(hashes);
  const piecesKey = Buffer.from(pieceListKey(hashes)).toString("hex");
  served.pieceLists.set(piecesKey, piecesItem);
  return {
    dir,
    served,
    stats,
    deps: { served, bucket: null, slots: new UploadSlots(2), stats, sleep: async () => {} },
    small: await addFile("small.deb", patterned(1000, 7)),
    large: await addFile("large.deb", patterned(3 * THROTTLE_CHUNK_BYTES + 123, 11)),
    piecesKey,
    piecesItem,
    addFile,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * A fresh fixture for every test of the calling file (made in beforeEach, removed in afterEach); read
 * its fields inside tests, where they belong to the test running.
 */
export function usePeerFixture(): PeerFixture {
  const current = {} as PeerFixture;
  beforeEach(async () => {
    Object.assign(current, await peerFixture());
  });
  afterEach(() => current.remove());
  return current;
}
