/**
 * The parsed package indexes, stored once in SQLite so that resolving a name is an indexed lookup
 * instead of a re-parse of a 50 MB Packages file.
 *
 * Package rows belong to an *index*, keyed by the SHA-256 of its compressed file as the signed Release
 * lists it. Releases refer to indexes by that hash, so two releases listing an identical Packages file
 * share its rows, and a Packages file whose hash did not change is never imported again.
 */
import { Database, type Statement } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { AptP2pError, ErrorCode } from "../errors.ts";
import type { PackageRecord } from "./packages.ts";
import { rankSuggestions, suggestionDistance } from "./suggest.ts";

export interface ReleaseRow {
  /** Caller-chosen stable id of (uri, suite). */
  key: string;
  uri: string;
  suite: string;
  /** SHA-256 of the verified Release text. */
  releaseSha256: string;
  /** The verified Release text itself, so that an unchanged Release (304) needs no new download. */
  releaseText: string;
  /** From the mirror's response, for conditional requests. */
  lastModified?: string;
  etag?: string;
  /** Milliseconds since the epoch, given by the caller. */
  fetchedAt: number;
}

export interface IndexRef {
  component: string;
  arch: string;
  indexSha256: string;
}

export interface PackageRow extends PackageRecord {
  uri: string;
  suite: string;
  component: string;
}

const SCHEMA_VERSION = 1;
/** How long a write waits for another process's transaction before failing. */
const BUSY_TIMEOUT_MS = 5000;
/** Page cache for bulk imports: the packages table of one large index is about this size. */
const CACHE_SIZE_KIB = 32 * 1024;
const DEFAULT_SUGGESTIONS = 5;

const SCHEMA = `
  CREATE TABLE releases (
    key            TEXT PRIMARY KEY,
    uri            TEXT NOT NULL,
    suite          TEXT NOT NULL,
    release_sha256 TEXT NOT NULL,
    release_text   TEXT NOT NULL,
    last_modified  TEXT,
    etag           TEXT,
    fetched_at     INTEGER NOT NULL       -- ms since epoch
  );
  -- Which indexes a release lists. Refers to indexes by hash: a release may be stored before its indexes.
  CREATE TABLE release_indexes (
    release_key  TEXT NOT NULL,
    component    TEXT NOT NULL,
    arch         TEXT NOT NULL,
    index_sha256 TEXT NOT NULL,
    PRIMARY KEY (release_key, component, arch, index_sha256)
  ) WITHOUT ROWID;
  CREATE INDEX release_indexes_by_index ON release_indexes (index_sha256, release_key);
  -- One row per imported Packages file; a row exists only once all its packages are stored. An import
  -- appends its packages in one transaction, so they occupy the rowid range [first_row, last_row].
  CREATE TABLE indexes (
    id           INTEGER PRIMARY KEY,
    sha256       TEXT NOT NULL UNIQUE,
    record_count INTEGER NOT NULL,
    first_row    INTEGER,
    last_row     INTEGER
  );
  CREATE TABLE packages (
    id         INTEGER PRIMARY KEY,       -- explicit, so VACUUM keeps the rowid ranges of indexes
    index_id   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    arch       TEXT NOT NULL,
    filename   TEXT NOT NULL,
    basename   TEXT NOT NULL,             -- last part of filename, for .deb name lookups
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    source     TEXT,
    multi_arch TEXT
  );
  CREATE INDEX packages_by_name ON packages (name);
  CREATE INDEX packages_by_basename ON packages (basename);
`;

/** Rows of `packages` reachable from the releases in JSON array ?2, with their release and component. */
const PACKAGE_COLUMNS = `
  r.uri AS uri, r.suite AS suite, ri.component AS component, p.name AS name, p.version AS version,
  p.arch AS arch, p.filename AS filename, p.size AS size, p.sha256 AS sha256, p.source AS source,
  p.multi_arch AS multi_arch`;
const PACKAGE_JOIN = `
  JOIN indexes i ON i.id = p.index_id
  JOIN release_indexes ri ON ri.index_sha256 = i.sha256
  JOIN releases r ON r.key = ri.release_key`;

interface PackageSqlRow {
  uri: string;
  suite: string;
  component: string;
  name: string;
  version: string;
  arch: string;
  filename: string;
  size: number;
  sha256: string;
  source: string | null;
  multi_arch: string | null;
}

interface ReleaseSqlRow {
  key: string;
  uri: string;
  suite: string;
  release_sha256: string;
  release_text: string;
  last_modified: string | null;
  etag: string | null;
  fetched_at: number;
}

type InsertArgs = [number, string, string, string, string, string, number, string, string | null, string | null];

interface Statements {
  getRelease: Statement<ReleaseSqlRow, [string]>;
  upsertRelease: Statement<unknown, [string, string, string, string, string, string | null, string | null, number]>;
  clearReleaseIndexes: Statement<unknown, [string]>;
  addReleaseIndex: Statement<unknown, [string, string, string, string]>;
  indexCount: Statement<{ record_count: number }, [string]>;
  nextIndexId: Statement<{ id: number }, []>;
  insertPackage: Statement<unknown, InsertArgs>;
  insertIndex: Statement<unknown, [number, string, number, number | null, number | null]>;
  orphanIndexes: Statement<{ id: number; first_row: number | null; last_row: number | null }, []>;
  indexBySha: Statement<{ id: number; first_row: number | null; last_row: number | null }, [string]>;
  deletePackages: Statement<unknown, [number, number]>;
  deleteIndex: Statement<unknown, [number]>;
  byName: Statement<PackageSqlRow, [string, string, string]>;
  byBasename: Statement<PackageSqlRow, [string, string]>;
  names: Statement<{ name: string }, [string, string, number, number]>;
}

export class IndexStore {
  private db: Database | null;
  private readonly sql: Statements;
  /** Imports run one at a time: each holds the connection's write transaction across awaits. */
  private importQueue: Promise<unknown> = Promise.resolve();
  private importing = false;

  private constructor(db: Database) {
    this.db = db;
    this.sql = prepare(db);
  }

  /** Opens (creating if needed) the store at `dbPath`; ":memory:" gives a private in-memory store. */
  static open(dbPath: string): IndexStore {
    if (dbPath !== ":memory:") mkdirSync(dirname(dbPath), { recursive: true });
    const db = new Database(dbPath, { create: true });
    try {
      db.exec(
        `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS};` +
          ` PRAGMA temp_store = MEMORY; PRAGMA cache_size = -${CACHE_SIZE_KIB};`,
      );
      migrate(db, dbPath);
      return new IndexStore(db);
    } catch (err) {
      db.close(false);
      throw err;
    }
  }

  /** Closes the database; later calls do nothing. An import still running fails and stores nothing. */
  close(): void {
    if (this.db === null) return;
    const db = this.db;
    this.db = null;
    for (const statement of Object.values(this.sql) as Statement[]) statement.finalize();
    db.close(false);
  }

  getRelease(key: string): ReleaseRow | null {
    this.database();
    const row = this.sql.getRelease.get(key);
    if (row === null) return null;
    const release: ReleaseRow = {
      key: row.key,
      uri: row.uri,
      suite: row.suite,
      releaseSha256: row.release_sha256,
      releaseText: row.release_text,
      fetchedAt: row.fetched_at,
    };
    if (row.last_modified !== null) release.lastModified = row.last_modified;
    if (row.etag !== null) release.etag = row.etag;
    return release;
  }

  /** Stores the release and replaces the set of package indexes that belong to it. */
  setRelease(row: ReleaseRow, indexes: IndexRef[]): void {
    const db = this.writable("store the release " + row.key);
    db.transaction(() => {
      this.sql.upsertRelease.run(
        row.key,
        row.uri,
        row.suite,
        row.releaseSha256,
        row.releaseText,
        row.lastModified ?? null,
        row.etag ?? null,
        row.fetchedAt,
      );
      this.sql.clearReleaseIndexes.run(row.key);
      for (const ref of indexes) this.sql.addReleaseIndex.run(row.key, ref.component, ref.arch, ref.indexSha256);
    })();
  }

  /** Whether the index with this SHA-256 (of its compressed file, as listed in Release) is imported. */
  hasIndex(indexSha256: string): boolean {
    this.database();
    return this.sql.indexCount.get(indexSha256) !== null;
  }

  /**
   * Stores one Packages index in a single transaction and returns its number of records. If the
   * records fail midway nothing of the index is stored. An index already present is not read again.
   */
  importIndex(indexSha256: string, records: AsyncIterable<PackageRecord[]> | AsyncIterable<PackageRecord>): Promise<number> {
    const run = this.importQueue.then(() => this.runImport(indexSha256, records));
    this.importQueue = run.catch(() => undefined); // the caller sees the failure through `run`
    return run;
  }

  /** Deletes indexes no release refers to any more, with their packages; returns how many. */
  pruneIndexes(): number {
    const db = this.writable("prune indexes");
    return db.transaction(() => {
      const orphans = this.sql.orphanIndexes.all();
      for (const { id, first_row, last_row } of orphans) {
        if (first_row !== null && last_row !== null) this.sql.deletePackages.run(first_row, last_row);
        this.sql.deleteIndex.run(id);
      }
      return orphans.length;
    })();
  }

  /** Deletes one index and its packages (to import it again, e.g. on --refresh); false if absent. */
  dropIndex(indexSha256: string): boolean {
    const db = this.writable("drop the index " + indexSha256);
    return db.transaction(() => {
      const index = this.sql.indexBySha.get(indexSha256);
      if (index === null) return false;
      if (index.first_row !== null && index.last_row !== null) this.sql.deletePackages.run(index.first_row, index.last_row);
      this.sql.deleteIndex.run(index.id);
      return true;
    })();
  }

  /** Entries named exactly `name` in the given releases whose Architecture is one of `arches`. */
  findByName(name: string, releaseKeys: string[], arches: string[]): PackageRow[] {
    this.database();
    return this.sql.byName.all(name, JSON.stringify(releaseKeys), JSON.stringify(arches)).map(toPackageRow);
  }

  /** Entries whose Filename equals `suffix` or ends with "/" + suffix (a .deb basename or pool path). */
  findByFilename(suffix: string, releaseKeys: string[]): PackageRow[] {
    this.database();
    const basename = suffix.slice(suffix.lastIndexOf("/") + 1);
    if (basename === "") return [];
    return this.sql.byBasename
      .all(basename, JSON.stringify(releaseKeys))
      .filter((row) => row.filename === suffix || row.filename.endsWith("/" + suffix))
      .map(toPackageRow);
  }

  /**
   * Up to `limit` other package names close to `name`, best first, for "did you mean": small edit
   * distance first, then names that contain it or that it starts with.
   */
  suggestNames(name: string, releaseKeys: string[], limit = DEFAULT_SUGGESTIONS): string[] {
    this.database();
    const wanted = name.toLowerCase();
    if (wanted === "" || limit <= 0) return [];
    const maxDistance = suggestionDistance(wanted);
    const candidates = this.sql.names.all(
      wanted,
      JSON.stringify(releaseKeys),
      Math.max(1, wanted.length - maxDistance),
      wanted.length + maxDistance,
    );
    return rankSuggestions(wanted, candidates.map((c) => c.name), maxDistance, limit);
  }

  private async runImport(
    indexSha256: string,
    records: AsyncIterable<PackageRecord[]> | AsyncIterable<PackageRecord>,
  ): Promise<number> {
    const db = this.writable(`import index ${indexSha256}`);
    const existing = this.sql.indexCount.get(indexSha256);
    if (existing !== null) return existing.record_count;

    this.importing = true;
    db.run("BEGIN IMMEDIATE");
    try {
      // Packages rows get their index id now, but the index row itself is written last: until then
      // no query joins to them, so a read between two awaits never sees a half-imported index.
      const id = this.sql.nextIndexId.get()!.id;
      let count = 0;
      let firstRow: number | null = null;
      let lastRow: number | null = null;
      for await (const item of records) {
        if (this.db === null) throw storeClosed(`import index ${indexSha256}`);
        const batch = Array.isArray(item) ? item : [item as PackageRecord];
        for (const record of batch) {
          lastRow = this.insert(id, record);
          firstRow ??= lastRow;
        }
        count += batch.length;
      }
      if (this.db === null) throw storeClosed(`import index ${indexSha256}`);
      this.sql.insertIndex.run(id, indexSha256, count, firstRow, lastRow);
      db.run("COMMIT");
      return count;
    } catch (err) {
      if (this.db !== null) db.run("ROLLBACK");
      throw err;
    } finally {
      this.importing = false;
    }
  }

  /** Inserts one package row and returns its rowid. */
  private insert(indexId: number, r: PackageRecord): number {
    const basename = r.filename.slice(r.filename.lastIndexOf("/") + 1);
    return this.sql.insertPackage.run(
      indexId,
      r.package,
      r.version,
      r.architecture,
      r.filename,
      basename,
      r.size,
      r.sha256,
      r.source ?? null,
      r.multiArch ?? null,
    ).lastInsertRowid as number;
  }

  private database(): Database {
    if (this.db === null) throw storeClosed("read the index store");
    return this.db;
  }

  /** The database for a write outside an import; writes during an import would join its transaction. */
  private writable(what: string): Database {
    const db = this.database();
    if (this.importing) {
      throw new AptP2pError(ErrorCode.Internal, `Cannot ${what}: an index import is in progress on this store`);
    }
    return db;
  }
}

function storeClosed(what: string): AptP2pError {
  return new AptP2pError(ErrorCode.Internal, `Cannot ${what}: the index store is closed`);
}

function migrate(db: Database, dbPath: string): void {
  const { user_version: version } = db.query("PRAGMA user_version").get() as { user_version: number };
  if (version === SCHEMA_VERSION) return;
  if (version > SCHEMA_VERSION) {
    throw new AptP2pError(
      ErrorCode.Internal,
      `Cannot open the index store ${dbPath}: it has schema ${version}, this apt-p2p knows up to ${SCHEMA_VERSION}`,
      { hints: ["Delete the file to rebuild it (it is a cache), or use a newer apt-p2p."] },
    );
  }
  db.transaction(() => {
    db.exec(SCHEMA);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
  })();
}

function prepare(db: Database): Statements {
  const inReleases = "ri.release_key IN (SELECT value FROM json_each(?2))";
  return {
    getRelease: db.prepare("SELECT * FROM releases WHERE key = ?"),
    upsertRelease: db.prepare(
      `INSERT INTO releases (key, uri, suite, release_sha256, release_text, last_modified, etag, fetched_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
       ON CONFLICT (key) DO UPDATE SET uri = ?2, suite = ?3, release_sha256 = ?4, release_text = ?5,
         last_modified = ?6, etag = ?7, fetched_at = ?8`,
    ),
    clearReleaseIndexes: db.prepare("DELETE FROM release_indexes WHERE release_key = ?"),
    addReleaseIndex: db.prepare(
      "INSERT OR IGNORE INTO release_indexes (release_key, component, arch, index_sha256) VALUES (?, ?, ?, ?)",
    ),
    indexCount: db.prepare("SELECT record_count FROM indexes WHERE sha256 = ?"),
    nextIndexId: db.prepare("SELECT coalesce(max(id), 0) + 1 AS id FROM indexes"),
    insertPackage: db.prepare(
      `INSERT INTO packages (index_id, name, version, arch, filename, basename, size, sha256, source, multi_arch)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertIndex: db.prepare(
      "INSERT INTO indexes (id, sha256, record_count, first_row, last_row) VALUES (?, ?, ?, ?, ?)",
    ),
    orphanIndexes: db.prepare(
      `SELECT id, first_row, last_row FROM indexes
       WHERE NOT EXISTS (SELECT 1 FROM release_indexes WHERE index_sha256 = indexes.sha256)`,
    ),
    indexBySha: db.prepare("SELECT id, first_row, last_row FROM indexes WHERE sha256 = ?"),
    deletePackages: db.prepare("DELETE FROM packages WHERE id BETWEEN ? AND ?"),
    deleteIndex: db.prepare("DELETE FROM indexes WHERE id = ?"),
    byName: db.prepare(
      `SELECT ${PACKAGE_COLUMNS} FROM packages p ${PACKAGE_JOIN}
       WHERE p.name = ?1 AND ${inReleases} AND p.arch IN (SELECT value FROM json_each(?3))
       ORDER BY ri.release_key, ri.component, p.rowid`,
    ),
    byBasename: db.prepare(
      `SELECT ${PACKAGE_COLUMNS} FROM packages p ${PACKAGE_JOIN}
       WHERE p.basename = ?1 AND ${inReleases}
       ORDER BY ri.release_key, ri.component, p.rowid`,
    ),
    // Names of a plausible length, or containing / contained in the wanted name.
    names: db.prepare(
      `SELECT DISTINCT p.name AS name FROM packages p
       WHERE p.index_id IN (
         SELECT i.id FROM indexes i JOIN release_indexes ri ON ri.index_sha256 = i.sha256 WHERE ${inReleases})
       AND (length(p.name) BETWEEN ?3 AND ?4 OR instr(p.name, ?1) > 0 OR instr(?1, p.name) > 0)`,
    ),
  };
}

function toPackageRow(row: PackageSqlRow): PackageRow {
  const result: PackageRow = {
    uri: row.uri,
    suite: row.suite,
    component: row.component,
    package: row.name,
    version: row.version,
    architecture: row.arch,
    filename: row.filename,
    size: row.size,
    sha256: row.sha256,
  };
  if (row.source !== null) result.source = row.source;
  if (row.multi_arch !== null) result.multiArch = row.multi_arch;
  return result;
}
