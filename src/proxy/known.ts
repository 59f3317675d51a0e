/**
 * What the proxy knows about the files APT may ask for next: URL → SHA-256 and size, learned only from
 * signed data — a Release whose signature gpgv accepted, and the Packages and Sources indexes that Release
 * lists (each checked against its hash before it is read). A URL found here is fetched by its hash, from
 * peers and the mirror, and verified; any other URL is passed through from the mirror.
 *
 * Kept in SQLite in the state directory, so that `apt-get install` after a daemon restart still goes
 * through the swarm without another `apt-get update`.
 */
import type { Database } from "bun:sqlite";
import type { Release } from "../debian/release.ts";
import { openStore } from "../store/sqlite.ts";

export interface KnownFile {
  sha256: string;
  size: number;
}

/** 2 added the releases table (every statement is CREATE ... IF NOT EXISTS, so 1 → 2 just adds it). */
const SCHEMA_VERSION = 2;
/** Rows are inserted in transactions of this many (a Packages index has tens of thousands). */
const BATCH_ROWS = 5_000;
const BY_HASH = /\/by-hash\/SHA256\/([0-9a-f]{64})$/;
/** Index files the proxy reads to learn the hashes of the files they list. */
const PACKAGES_INDEX = /(?:^|\/)Packages(?:\.xz|\.gz)?$/;
const SOURCES_INDEX = /(?:^|\/)Sources(?:\.xz|\.gz)?$/;

export type IndexKind = "packages" | "sources";

export class KnownFiles {
  private db: Database | null;

  private constructor(db: Database) {
    this.db = db;
  }

  static open(path: string): KnownFiles {
    const db = openStore(path, {
      version: SCHEMA_VERSION,
      sql: `
        CREATE TABLE IF NOT EXISTS files (
          url        TEXT PRIMARY KEY,   -- as the proxy forwards it: scheme://host[:port]/path
          sha256     TEXT NOT NULL,
          size       INTEGER NOT NULL,
          index_kind TEXT,               -- 'packages' or 'sources' for an index the proxy reads; else NULL
          learned_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
        CREATE TABLE IF NOT EXISTS read_indexes (
          sha256     TEXT NOT NULL,
          root       TEXT NOT NULL,      -- the archive root its paths are relative to
          read_at    INTEGER NOT NULL,
          PRIMARY KEY (sha256, root)
        );
        CREATE TABLE IF NOT EXISTS releases (
          dir        TEXT PRIMARY KEY,   -- URL of the directory holding the verified Release
          learned_at INTEGER NOT NULL
        );
      `,
    });
    return new KnownFiles(db);
  }

  /** The signed hash of `url`: listed by a Release or an index, or named in a by-hash URL we know. */
  lookup(url: string): KnownFile | null {
    const db = this.database();
    const row = db.query("SELECT sha256, size FROM files WHERE url = ?").get(urlKey(url)) as KnownFile | null;
    if (row !== null) return row;
    const byHash = BY_HASH.exec(url);
    if (byHash === null) return null;
    return db.query("SELECT sha256, size FROM files WHERE sha256 = ? LIMIT 1").get(byHash[1]!) as KnownFile | null;
  }

  /**
   * Which index `url` is, if it is one the proxy reads, and the name it is listed under in the Release
   * (which tells its compression; a by-hash URL does not).
   */
  indexOf(url: string): { kind: IndexKind; listedAs: string } | null {
    const byHash = BY_HASH.exec(url);
    if (byHash === null) {
      const kind = kindOfIndexPath(url);
      return kind === null ? null : { kind, listedAs: url };
    }
    const row = this.database().query("SELECT url, index_kind FROM files WHERE sha256 = ? AND index_kind IS NOT NULL LIMIT 1").get(byHash[1]!) as {
      url: string;
      index_kind: IndexKind;
    } | null;
    return row === null ? null : { kind: row.index_kind, listedAs: row.url };
  }

  /**
   * Records the files listed by a verified Release found at `dir` (the URL of the directory holding it):
   * each index by its path, and the archive root it belongs to.
   */
  learnRelease(dir: string, release: Release, now: number): void {
    const rows = [...release.files].map(([path, entry]) => ({ url: `${dir}/${path}`, sha256: entry.sha256, size: entry.size, kind: kindOfIndexPath(path) }));
    this.insert(rows, now);
    this.database().query("INSERT OR REPLACE INTO releases (dir, learned_at) VALUES (?, ?)").run(urlKey(dir), now);
  }

  /** A verified Release from `dir` was learned (at any time). */
  hasRelease(dir: string): boolean {
    return this.database().query("SELECT 1 FROM releases WHERE dir = ?").get(urlKey(dir)) !== null;
  }

  /**
   * The Packages indexes of `arch` listed by the verified Releases under archive root `root` (one form
   * per index directory, the smallest to read: .xz, then .gz, then plain), whose files are not known yet.
   */
  unreadPackagesIndexes(root: string, arch: string): { url: string; sha256: string; size: number }[] {
    const rows = this.database()
      .query("SELECT url, sha256, size FROM files WHERE index_kind = 'packages' AND url LIKE ? ESCAPE '\\' AND url LIKE ? ESCAPE '\\'")
      .all(`${likeEscape(urlKey(root))}/dists/%`, `%/binary-${likeEscape(arch)}/Packages%`) as { url: string; sha256: string; size: number }[];
    const best = new Map<string, { url: string; sha256: string; size: number; rank: number }>();
    for (const row of rows) {
      if (row.url.includes("/by-hash/")) continue;
      const dir = row.url.slice(0, row.url.lastIndexOf("/"));
      const rank = row.url.endsWith(".xz") ? 0 : row.url.endsWith(".gz") ? 1 : 2;
      const held = best.get(dir);
      if (held === undefined || rank < held.rank) best.set(dir, { ...row, rank });
    }
    return [...best.values()].filter((row) => !this.hasRead(row.sha256, root)).map(({ url, sha256, size }) => ({ url, sha256, size }));
  }

  /** Records files listed by an index (paths relative to `root`, the archive root URL). */
  learnListed(root: string, files: { path: string; sha256: string; size: number }[], now: number): void {
    this.insert(
      files.map((f) => ({ url: `${root}/${f.path.replace(/^\.\//, "")}`, sha256: f.sha256, size: f.size, kind: null })),
      now,
    );
  }

  /** The index with this hash was read for `root` already (its files are known). */
  hasRead(sha256: string, root: string): boolean {
    return this.database().query("SELECT 1 FROM read_indexes WHERE sha256 = ? AND root = ?").get(sha256, urlKey(root)) !== null;
  }

  markRead(sha256: string, root: string, now: number): void {
    this.database().query("INSERT OR REPLACE INTO read_indexes (sha256, root, read_at) VALUES (?, ?, ?)").run(sha256, urlKey(root), now);
  }

  /** Rows known, for the status page. */
  count(): number {
    return (this.database().query("SELECT COUNT(*) AS n FROM files").get() as { n: number }).n;
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }

  private insert(rows: { url: string; sha256: string; size: number; kind: IndexKind | null }[], now: number): void {
    const db = this.database();
    const statement = db.query(
      `INSERT INTO files (url, sha256, size, index_kind, learned_at) VALUES (?1, ?2, ?3, ?4, ?5)
       ON CONFLICT (url) DO UPDATE SET sha256 = ?2, size = ?3, index_kind = ?4, learned_at = ?5`,
    );
    for (let at = 0; at < rows.length; at += BATCH_ROWS) {
      db.transaction(() => {
        for (const row of rows.slice(at, at + BATCH_ROWS)) statement.run(urlKey(row.url), row.sha256, row.size, row.kind, now);
      })();
    }
  }

  private database(): Database {
    if (this.db === null) throw new Error("KnownFiles is closed");
    return this.db;
  }
}

function likeEscape(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * URLs as keys: percent-escapes decoded, so that "libstdc%2b%2b6" as a client wrote it and "libstdc++6" as
 * an index lists it are one file (the proxy refuses encoded slashes and dots before it looks anything up).
 */
export function urlKey(url: string): string {
  try {
    return decodeURIComponent(url);
  } catch {
    return url;
  }
}

export function kindOfIndexPath(path: string): IndexKind | null {
  if (PACKAGES_INDEX.test(path)) return "packages";
  if (SOURCES_INDEX.test(path)) return "sources";
  return null;
}

