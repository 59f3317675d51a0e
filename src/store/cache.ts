/**
 * The content-addressed cache: files/<aa>/<sha256>, metadata in SQLite. Only verified files enter it
 * (adopt() takes a temp file the caller has already checked); temp files live in tmp/ on the same file
 * system so that adopting is one rename.
 *
 * With a quota (limitBytes), the least recently used files are evicted whole after each adopt() and on
 * gc(), except files pinned by a reader or writer of this process. Only the cache's own files/ is ever
 * deleted: seed directories such as /var/cache/apt/archives are not the cache's to touch.
 */
import type { Database } from "bun:sqlite";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { openStore } from "./sqlite.ts";

export interface CachedFile {
  sha256: string;
  size: number;
  path: string;
}

/** A row of the cache, for `apt-p2p cache ls` and the status page. */
export interface CacheEntry {
  sha256: string;
  size: number;
  /** The archive basename it was fetched as; "" for a file found on disk without a record (see gc()). */
  name: string;
  /** ms since epoch. */
  addedAt: number;
  usedAt: number;
}

export interface ContentCacheOptions {
  /** Bytes the cache may hold; absent or null: no quota. See src/store/quota.ts. */
  limitBytes?: number | null;
  /** A file was evicted for the quota: whoever serves it should stop (the daemon unannounces it). */
  onEvicted?: (sha256: string) => void;
  /** Eviction failures that adopt() does not throw. */
  log?: (line: string) => void;
}

/** Eviction counters since open, for metrics. */
export interface EvictionStats {
  files: number;
  bytes: number;
  /** Files that could not be deleted (they stay recorded and are tried again later). */
  failures: number;
}

export interface GcResult {
  evicted: CacheEntry[];
  /** Records whose file had vanished from disk, dropped. */
  dropped: number;
  /** Files found under files/ without a record (a process killed between rename and insert), recorded. */
  recorded: number;
}

export interface VerifyResult {
  checked: number;
  /** Files whose content is not their name (or whose size is not the recorded one): removed. */
  corrupt: (CacheEntry & { why: string })[];
  /** Records whose file had vanished, dropped. */
  dropped: number;
}

const SCHEMA_VERSION = 1;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const SUBDIR = /^[0-9a-f]{2}$/;

interface Row {
  sha256: string;
  size: number;
  name: string;
  added_at: number;
  used_at: number;
}

/**
 * Temp files older than this are left-overs of a process that was killed mid-download; younger ones may
 * belong to a download running now in another process.
 */
export const STALE_TEMP_MS = 6 * 60 * 60 * 1000;

export class ContentCache {
  readonly dir: string;
  private db: Database | null;
  private tmpCounter = 0;
  private readonly limit: number | null;
  private readonly onEvicted: (sha256: string) => void;
  private readonly log: (line: string) => void;
  /** Readers and writers of each content in this process; a pinned file is never evicted. */
  private readonly pins = new Map<string, number>();
  /** Evictions run one at a time: concurrent adopts must not both delete for the same excess. */
  private evicting: Promise<unknown> = Promise.resolve();
  private readonly evictions: EvictionStats = { files: 0, bytes: 0, failures: 0 };

  private constructor(dir: string, db: Database, options: ContentCacheOptions) {
    this.dir = dir;
    this.db = db;
    this.limit = options.limitBytes ?? null;
    this.onEvicted = options.onEvicted ?? (() => undefined);
    this.log = options.log ?? (() => undefined);
  }

  static async open(dir: string, options: ContentCacheOptions = {}): Promise<ContentCache> {
    await mkdir(join(dir, "files"), { recursive: true });
    await mkdir(join(dir, "tmp"), { recursive: true });
    const db = openStore(join(dir, "cache.sqlite"), {
      version: SCHEMA_VERSION,
      sql: `
        CREATE TABLE IF NOT EXISTS files (
          sha256     TEXT PRIMARY KEY,
          size       INTEGER NOT NULL,
          name       TEXT NOT NULL,      -- the archive basename it was fetched as, for people reading the cache
          added_at   INTEGER NOT NULL,   -- ms since epoch
          used_at    INTEGER NOT NULL
        );
      `,
    });
    await removeStaleTemps(join(dir, "tmp"), Date.now() - STALE_TEMP_MS);
    return new ContentCache(dir, db, options);
  }

  /** The quota in bytes, or null when there is none. */
  get limitBytes(): number | null {
    return this.limit;
  }

  pathOf(sha256: string): string {
    return join(this.dir, "files", sha256.slice(0, 2), sha256);
  }

  /** A fresh temp path in the cache's tmp/ directory (same file system as files/). */
  tempPath(label: string): string {
    return join(this.dir, "tmp", `${process.pid}-${Date.now()}-${this.tmpCounter++}-${label.replace(/[^\w.+-]/g, "_")}`);
  }

  /** The cached file if it is present with the right size; a row whose file vanished is dropped. */
  async lookup(sha256: string): Promise<CachedFile | null> {
    const row = this.database().query("SELECT size FROM files WHERE sha256 = ?").get(sha256) as { size: number } | null;
    if (row === null) return null;
    const path = this.pathOf(sha256);
    const info = await stat(path).catch(() => null);
    if (info === null || info.size !== row.size) {
      await this.forget(sha256);
      return null;
    }
    return { sha256, size: row.size, path };
  }

  /**
   * Moves a verified temp file into the cache, then evicts down to the quota. The file just adopted is
   * never evicted by its own adopt (its caller is about to read it), even if it alone exceeds the quota.
   */
  async adopt(tempPath: string, file: { sha256: string; size: number; name: string }, now: number): Promise<CachedFile> {
    const path = this.pathOf(file.sha256);
    await mkdir(join(this.dir, "files", file.sha256.slice(0, 2)), { recursive: true });
    await rename(tempPath, path);
    this.database()
      .query(
        `INSERT INTO files (sha256, size, name, added_at, used_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (sha256) DO UPDATE SET used_at = ?4`,
      )
      .run(file.sha256, file.size, file.name, now);
    const limit = this.limit;
    if (limit !== null && this.usage().bytes > limit) {
      // The file is in the cache whatever happens here: an eviction failure is logged, not thrown.
      await this.serialized(() => this.evictDownTo(limit, file.sha256)).catch((err: unknown) => {
        this.evictions.failures++;
        this.log(`Cannot evict from the cache ${this.dir}: ${message(err)}`);
      });
    }
    return { sha256: file.sha256, size: file.size, path };
  }

  /**
   * Keeps `sha256` from eviction until the returned function is called (calling it again is harmless).
   * Pins are counted, so several readers may hold one; pinning a content not (yet) cached is allowed,
   * and a reader should pin before lookup() so that the file cannot go between the two.
   */
  pin(sha256: string): () => void {
    this.pins.set(sha256, (this.pins.get(sha256) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.pins.get(sha256) ?? 1) - 1;
      if (left === 0) this.pins.delete(sha256);
      else this.pins.set(sha256, left);
    };
  }

  isPinned(sha256: string): boolean {
    return this.pins.has(sha256);
  }

  /** What the cache holds by its records. */
  usage(): { bytes: number; files: number } {
    return this.database().query("SELECT COALESCE(SUM(size), 0) AS bytes, COUNT(*) AS files FROM files").get() as { bytes: number; files: number };
  }

  /** Every recorded file, least recently used (next to be evicted) first. */
  list(): CacheEntry[] {
    return (this.database().query("SELECT * FROM files ORDER BY used_at, added_at, sha256").all() as Row[]).map(toEntry);
  }

  evictionStats(): EvictionStats {
    return { ...this.evictions };
  }

  /**
   * Brings the records in step with files/ (drops records of vanished files, records unknown files with
   * their mtime as last use), then evicts down to `limitBytes` (default: the quota given at open).
   */
  async gc(options: { limitBytes?: number | null } = {}): Promise<GcResult> {
    const limit = options.limitBytes === undefined ? this.limit : options.limitBytes;
    return this.serialized(async () => {
      const { dropped, recorded } = await this.reconcile();
      const evicted = limit === null ? [] : await this.evictDownTo(limit);
      return { evicted, dropped, recorded };
    });
  }

  /**
   * Rehashes every file (after the same reconciling as gc()) and removes those whose content does not
   * match their name. `onChecked` is called after each file, for progress.
   */
  async verify(onChecked?: (entry: CacheEntry, ok: boolean) => void): Promise<VerifyResult> {
    const { dropped } = await this.serialized(() => this.reconcile());
    const result: VerifyResult = { checked: 0, corrupt: [], dropped };
    for (const entry of this.list()) {
      const why = await this.check(entry);
      if (why === "missing") {
        this.database().query("DELETE FROM files WHERE sha256 = ?").run(entry.sha256);
        result.dropped++;
        continue;
      }
      result.checked++;
      if (why !== null) {
        await this.forget(entry.sha256);
        result.corrupt.push({ ...entry, why });
      }
      onChecked?.(entry, why === null);
    }
    return result;
  }

  touch(sha256: string, now: number): void {
    this.database().query("UPDATE files SET used_at = ? WHERE sha256 = ?").run(now, sha256);
  }

  /** Removes a file (for example one found corrupt on disk). */
  async forget(sha256: string): Promise<void> {
    this.database().query("DELETE FROM files WHERE sha256 = ?").run(sha256);
    await rm(this.pathOf(sha256), { force: true });
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }

  private database(): Database {
    if (this.db === null) throw new Error("ContentCache is closed");
    return this.db;
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.evicting.then(work);
    this.evicting = run.catch(() => undefined);
    return run;
  }

  /** Evicts least recently used unpinned files (never `keep`) until the records total at most `limit` bytes. */
  private async evictDownTo(limit: number, keep?: string): Promise<CacheEntry[]> {
    const evicted: CacheEntry[] = [];
    for (const entry of this.list()) {
      if (this.usage().bytes <= limit) break;
      if (entry.sha256 === keep || this.pins.has(entry.sha256)) continue;
      // The record goes first, in the same tick as the pin check: a reader that pins and looks up after
      // this finds no record and fetches again. A file used since the list was read is left for now.
      const gone = this.database().query("DELETE FROM files WHERE sha256 = ? AND used_at = ?").run(entry.sha256, entry.usedAt);
      if (gone.changes === 0) continue;
      try {
        await rm(this.pathOf(entry.sha256), { force: true });
      } catch (err) {
        // Still on disk, so still counted: record it again and try the next file.
        this.database()
          .query("INSERT OR IGNORE INTO files (sha256, size, name, added_at, used_at) VALUES (?, ?, ?, ?, ?)")
          .run(entry.sha256, entry.size, entry.name, entry.addedAt, entry.usedAt);
        this.evictions.failures++;
        this.log(`Cannot evict ${this.pathOf(entry.sha256)} from the cache: ${message(err)}`);
        continue;
      }
      this.evictions.files++;
      this.evictions.bytes += entry.size;
      evicted.push(entry);
      this.onEvicted(entry.sha256);
    }
    return evicted;
  }

  /** Drops records whose file vanished; records files of files/ that have none. */
  private async reconcile(): Promise<{ dropped: number; recorded: number }> {
    const recorded = new Map(this.list().map((e) => [e.sha256, e]));
    let dropped = 0;
    let added = 0;
    const onDisk = new Set<string>();
    const filesDir = join(this.dir, "files");
    for (const sub of await readdir(filesDir, { withFileTypes: true })) {
      if (!sub.isDirectory() || !SUBDIR.test(sub.name)) continue;
      for (const name of await readdir(join(filesDir, sub.name))) {
        if (!SHA256_HEX.test(name) || !name.startsWith(sub.name)) continue;
        onDisk.add(name);
        if (recorded.has(name)) continue;
        const info = await stat(join(filesDir, sub.name, name)).catch(() => null);
        if (info === null || !info.isFile()) continue;
        const at = Math.floor(info.mtimeMs);
        this.database()
          .query("INSERT OR IGNORE INTO files (sha256, size, name, added_at, used_at) VALUES (?, ?, '', ?, ?)")
          .run(name, info.size, at, at);
        added++;
      }
    }
    for (const sha256 of recorded.keys()) {
      // Checked again on disk: the listing may predate an adopt() that ran meanwhile.
      if (onDisk.has(sha256) || (await stat(this.pathOf(sha256)).catch(() => null)) !== null) continue;
      this.database().query("DELETE FROM files WHERE sha256 = ?").run(sha256);
      dropped++;
    }
    return { dropped, recorded: added };
  }

  /** Why the file of `entry` is not what its record says, "missing", or null when it is intact. */
  private async check(entry: CacheEntry): Promise<string | null> {
    const path = this.pathOf(entry.sha256);
    const info = await stat(path).catch(() => null);
    if (info === null) return "missing";
    if (info.size !== entry.size) return `size ${info.size} bytes, recorded as ${entry.size}`;
    const hasher = new Bun.CryptoHasher("sha256");
    for await (const chunk of Bun.file(path).stream()) hasher.update(chunk);
    const actual = hasher.digest("hex");
    return actual === entry.sha256 ? null : `content hashes to ${actual}`;
  }
}

function toEntry(row: Row): CacheEntry {
  return { sha256: row.sha256, size: row.size, name: row.name, addedAt: row.added_at, usedAt: row.used_at };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function removeStaleTemps(tmpDir: string, olderThan: number): Promise<void> {
  for (const name of await readdir(tmpDir)) {
    const path = join(tmpDir, name);
    const info = await stat(path).catch(() => null);
    if (info !== null && info.mtimeMs < olderThan) await rm(path, { force: true, recursive: true });
  }
}
