/**
 * How every small apt-p2p store opens its SQLite file: write-ahead log (readers never wait for the
 * writer), NORMAL sync (a crash may lose the last commits, never corrupt the file), a busy timeout for a
 * second process on the same file, and the schema applied when the file's user_version is older.
 */
import { Database } from "bun:sqlite";

/** `schema` holds CREATE ... IF NOT EXISTS statements, so applying it to a partly built file is safe. */
export function openStore(path: string, schema: { version: number; sql: string }): Database {
  const db = new Database(path, { create: true });
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
  const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  if (version < schema.version) db.exec(`${schema.sql}\nPRAGMA user_version = ${schema.version};`);
  return db;
}
