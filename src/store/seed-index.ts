/**
 * What we serve to peers: every file of the cache and of the seed directories that we hashed ourselves,
 * with its piece hashes and when it is next announced, in SQLite. The seeder writes it; the peer server
 * reads it through ServedFiles. Rows are keyed by path: the same content may sit at two paths (a cached
 * download and a copy in /var/cache/apt/archives); it is served and announced once, from the "primary"
 * copy — the cache's if there is one, else the first path in byte order.
 */
import type { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { AptP2pError, ErrorCode } from "../errors.ts";
import { MAX_INLINE_PIECES, PIECE_HASH_BYTES, pieceCount, pieceListItem, pieceListKey } from "../transfer/pieces.ts";
import type { ServedFile, ServedFiles } from "./served.ts";
import { openStore } from "./sqlite.ts";

export type SeedOrigin = "cache" | "seed-dir";

export interface SeedEntry extends ServedFile {
  origin: SeedOrigin;
  /** When the content was last announced successfully (ms), or null if never. */
  lastAnnouncedAt: number | null;
  /** When it is due to be announced (again) (ms). */
  nextAnnounceAt: number;
}

/** What upsert() takes: the announce times default to "never announced, due at once". */
export type SeedEntryInput = Omit<SeedEntry, "lastAnnouncedAt" | "nextAnnounceAt"> &
  Partial<Pick<SeedEntry, "lastAnnouncedAt" | "nextAnnounceAt">>;

const SCHEMA_VERSION = 1;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const KEY_HEX = /^[0-9a-f]{40}$/;

interface Row {
  path: string;
  sha256: string;
  size: number;
  mtime_ms: number;
  pieces: Uint8Array;
  origin: SeedOrigin;
  last_announced_at: number | null;
  next_announce_at: number;
}

/** Orders copies of one content: the cache's first, then by path. Used as `ORDER BY ${PRIMARY_FIRST}`. */
const PRIMARY_FIRST = "(origin <> 'cache'), path";

/** Contents whose primary copy is remembered between writes at most (the peer server asks per request). */
const PRIMARY_MEMO_MAX = 4096;

export class SeedIndex implements ServedFiles {
  private db: Database | null;
  /**
   * bySha256() answers since the last write. The peer server looks a content up for every request, and
   * the query (an ORDER BY over the copies) costs more than the rest of answering a small file; any
   * write clears it, so it never outlives what it read.
   */
  private readonly primaryMemo = new Map<string, SeedEntry | null>();

  private constructor(db: Database) {
    this.db = db;
  }

  static open(dbPath: string): SeedIndex {
    mkdirSync(dirname(dbPath), { recursive: true });
    const db = openStore(dbPath, {
      version: SCHEMA_VERSION,
      sql: `
        CREATE TABLE IF NOT EXISTS seeds (
          path              TEXT PRIMARY KEY,
          sha256            TEXT NOT NULL,
          size              INTEGER NOT NULL,
          mtime_ms          REAL NOT NULL,     -- stat().mtimeMs when hashed; fractional on most file systems
          pieces            BLOB NOT NULL,     -- concatenated 20-byte piece hashes
          origin            TEXT NOT NULL CHECK (origin IN ('cache', 'seed-dir')),
          piece_list_key    TEXT,              -- hex SHA-1 of the piece-list item, for files of more than 4 pieces
          last_announced_at INTEGER,
          next_announce_at  INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS seeds_sha256 ON seeds (sha256);
        CREATE INDEX IF NOT EXISTS seeds_piece_list_key ON seeds (piece_list_key);
        CREATE INDEX IF NOT EXISTS seeds_next_announce ON seeds (next_announce_at);
      `,
    });
    return new SeedIndex(db);
  }

  close(): void {
    this.primaryMemo.clear();
    this.db?.close();
    this.db = null;
  }

  get(path: string): SeedEntry | null {
    const row = this.database().query("SELECT * FROM seeds WHERE path = ?").get(path) as Row | null;
    return row === null ? null : toEntry(row);
  }

  /** Adds or replaces the row for entry.path. */
  upsert(entry: SeedEntryInput): void {
    this.primaryMemo.clear();
    if (!SHA256_HEX.test(entry.sha256)) throw internal(`Cannot index ${entry.path}: '${entry.sha256}' is not a lower-case hex SHA-256`);
    if (entry.pieces.length !== pieceCount(entry.size) || entry.pieces.some((p) => p.length !== PIECE_HASH_BYTES)) {
      throw internal(`Cannot index ${entry.path}: ${entry.pieces.length} piece hashes do not fit a file of ${entry.size} bytes`);
    }
    const key = entry.pieces.length > MAX_INLINE_PIECES ? Buffer.from(pieceListKey(entry.pieces)).toString("hex") : null;
    this.database()
      .query(
        `INSERT OR REPLACE INTO seeds (path, sha256, size, mtime_ms, pieces, origin, piece_list_key, last_announced_at, next_announce_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        entry.path,
        entry.sha256,
        entry.size,
        entry.mtimeMs,
        concat(entry.pieces),
        entry.origin,
        key,
        entry.lastAnnouncedAt ?? null,
        entry.nextAnnounceAt ?? 0,
      );
  }

  remove(path: string): void {
    this.primaryMemo.clear();
    this.database().query("DELETE FROM seeds WHERE path = ?").run(path);
  }

  /** Every indexed path, or those of one origin, sorted. */
  paths(origin?: SeedOrigin): string[] {
    const rows = (
      origin === undefined
        ? this.database().query("SELECT path FROM seeds ORDER BY path").all()
        : this.database().query("SELECT path FROM seeds WHERE origin = ? ORDER BY path").all(origin)
    ) as { path: string }[];
    return rows.map((r) => r.path);
  }

  /**
   * Up to `limit` files due for an announce at `now`, the longest-waiting first. Only the primary copy
   * of each content is ever due, so content present twice is announced once.
   */
  due(now: number, limit: number): SeedEntry[] {
    const rows = this.database()
      .query(
        `SELECT * FROM seeds s
         WHERE s.next_announce_at <= ?1
           AND NOT EXISTS (
             SELECT 1 FROM seeds o
             WHERE o.sha256 = s.sha256 AND o.path <> s.path
               AND ((o.origin <> 'cache') < (s.origin <> 'cache')
                    OR ((o.origin <> 'cache') = (s.origin <> 'cache') AND o.path < s.path)))
         ORDER BY s.next_announce_at, s.path
         LIMIT ?2`,
      )
      .all(now, limit) as Row[];
    return rows.map(toEntry);
  }

  /** Records a successful announce of the content at `path`, for every copy of it. */
  markAnnounced(path: string, now: number, nextAt: number): void {
    this.primaryMemo.clear();
    this.database()
      .query("UPDATE seeds SET last_announced_at = ?1, next_announce_at = ?2 WHERE sha256 = (SELECT sha256 FROM seeds WHERE path = ?3)")
      .run(now, nextAt, path);
  }

  /** Moves the next announce of the content at `path` (every copy of it), as after a failed announce. */
  reschedule(path: string, nextAt: number): void {
    this.primaryMemo.clear();
    this.database()
      .query("UPDATE seeds SET next_announce_at = ?1 WHERE sha256 = (SELECT sha256 FROM seeds WHERE path = ?2)")
      .run(nextAt, path);
  }

  /** The primary copy of a content (the cache's if we have one there), or null. */
  bySha256(sha256: string): SeedEntry | null {
    const key = sha256.toLowerCase();
    const memo = this.primaryMemo.get(key);
    if (memo !== undefined) return memo;
    const row = this.database().query(`SELECT * FROM seeds WHERE sha256 = ? ORDER BY ${PRIMARY_FIRST} LIMIT 1`).get(key) as Row | null;
    const entry = row === null ? null : toEntry(row);
    if (this.primaryMemo.size >= PRIMARY_MEMO_MAX) this.primaryMemo.clear();
    this.primaryMemo.set(key, entry);
    return entry;
  }

  pieceListByKey(keyHex: string): Uint8Array | null {
    const key = keyHex.toLowerCase();
    if (!KEY_HEX.test(key)) return null;
    const row = this.database().query("SELECT pieces FROM seeds WHERE piece_list_key = ? LIMIT 1").get(key) as { pieces: Uint8Array } | null;
    return row === null ? null : pieceListItem(split(row.pieces));
  }

  /** Drops every copy of the content: the next scan hashes what is on disk again. */
  invalidate(sha256: string): void {
    this.primaryMemo.clear();
    this.database().query("DELETE FROM seeds WHERE sha256 = ?").run(sha256.toLowerCase());
  }

  /** Distinct contents served and their total size (a content present twice counts once). */
  stats(): { files: number; bytes: number } {
    return this.database()
      .query("SELECT COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes FROM (SELECT MAX(size) AS size FROM seeds GROUP BY sha256)")
      .get() as { files: number; bytes: number };
  }

  private database(): Database {
    if (this.db === null) throw internal("SeedIndex is closed");
    return this.db;
  }
}

function toEntry(row: Row): SeedEntry {
  return {
    path: row.path,
    sha256: row.sha256,
    size: row.size,
    mtimeMs: row.mtime_ms,
    pieces: split(row.pieces),
    origin: row.origin,
    lastAnnouncedAt: row.last_announced_at,
    nextAnnounceAt: row.next_announce_at,
  };
}

function internal(message: string): AptP2pError {
  return new AptP2pError(ErrorCode.Internal, message);
}

function split(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at + PIECE_HASH_BYTES <= bytes.length; at += PIECE_HASH_BYTES) out.push(bytes.slice(at, at + PIECE_HASH_BYTES));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.length * PIECE_HASH_BYTES);
  parts.forEach((p, i) => out.set(p, i * PIECE_HASH_BYTES));
  return out;
}
