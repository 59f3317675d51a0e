/**
 * What the peer server may hand out: files we hashed ourselves (the cache and the seed directories),
 * by SHA-256, and the piece lists of the large ones. The seeder keeps it; the peer server reads it.
 */

export interface ServedFile {
  /** Lower-case hex SHA-256 of the whole file, computed by us. */
  sha256: string;
  size: number;
  /** Where the bytes are on disk. */
  path: string;
  /** Modification time (ms) when hashed: a file changed since must not be served under the old hash. */
  mtimeMs: number;
  /** 20-byte piece hashes (see src/transfer/pieces.ts). */
  pieces: Uint8Array[];
}

export interface ServedFiles {
  /** A file we serve, or null. */
  bySha256(sha256: string): ServedFile | null;
  /** The piece-list item (src/transfer/pieces.ts pieceListItem) whose key (hex SHA-1 of it) is given, or null. */
  pieceListByKey(keyHex: string): Uint8Array | null;
  /** The file at `sha256` changed or vanished on disk: stop serving it until it is hashed again. */
  invalidate(sha256: string): void;
}
