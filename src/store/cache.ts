/**
 * The content-addressed cache: files/<aa>/<sha256>, metadata in SQLite. Only verified files enter it
 * (adopt() takes a temp file the caller has already checked); temp files live in tmp/ on the same file
 * system so that adopting is one rename.
 */
import { Database } from "bun:sqlite";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";

export interface CachedFile {
  sha256: string;
  size: number;
  path: string;
}

const SCHEMA_VERSION = 1;

/**
 * Temp files older than this are left-overs of a process that was killed mid-download; younger ones may
 * belong to a download running now in another process.
 */
export const STALE_TEMP_MS = 6 * 60 * 60 * 1000;

export class ContentCache {
  readonly dir: string;
  private db: Database | null;
  private tmpCounter = 0;

  private constructor(dir: string, db: Database) {
    this.dir = dir;
    this.db = db;
  }

  static async open(dir: string): Promise<ContentCache> {
    await mkdir(join(dir, "files"), { recursive: true });
    await mkdir(join(dir, "tmp"), { recursive: true });
    const db = new Database(join(dir, "cache.sqlite"), { create: true });
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
    if (version < SCHEMA_VERSION) {
      db.exec(`
        CREATE TABLE IF NOT EXISTS files (
          sha256     TEXT PRIMARY KEY,
          size       INTEGER NOT NULL,
          name       TEXT NOT NULL,      -- the archive basename it was fetched as, for people reading the cache
          added_at   INTEGER NOT NULL,   -- ms since epoch
          used_at    INTEGER NOT NULL
        );
        PRAGMA user_version = ${SCHEMA_VERSION};
      `);
    }
    await removeStaleTemps(join(dir, "tmp"), Date.now() - STALE_TEMP_MS);
    return new ContentCache(dir, db);
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

  /** Moves a verified temp file into the cache. */
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
    return { sha256: file.sha256, size: file.size, path };
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
}

async function removeStaleTemps(tmpDir: string, olderThan: number): Promise<void> {
  for (const name of await readdir(tmpDir)) {
    const path = join(tmpDir, name);
    const info = await stat(path).catch(() => null);
    if (info !== null && info.mtimeMs < olderThan) await rm(path, { force: true, recursive: true });
  }
}
