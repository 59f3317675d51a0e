/**
 * What survives a restart: the node id and the routing table's contacts, in SQLite in the state dir,
 * so that a restarted node rejoins through its old contacts without a bootstrap node.
 */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ID_BYTES, type Contact, type NodeId } from "./id.ts";

/** The file in the state dir. */
export const DHT_STATE_FILE = "dht.sqlite";

export class DhtState {
  private db: Database | null;

  private constructor(db: Database) {
    this.db = db;
  }

  static open(stateDir: string): DhtState {
    mkdirSync(stateDir, { recursive: true });
    const db = new Database(join(stateDir, DHT_STATE_FILE), { create: true });
    db.exec(`
      PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS node (key TEXT PRIMARY KEY, value BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS contacts (
        id BLOB PRIMARY KEY, address TEXT NOT NULL, port INTEGER NOT NULL, seen_at INTEGER NOT NULL
      );
    `);
    return new DhtState(db);
  }

  /** The saved node id, or a new one from `fresh()` saved for next time. */
  nodeId(fresh: () => NodeId): NodeId {
    const db = this.database();
    const row = db.query("SELECT value FROM node WHERE key = 'id'").get() as { value: Uint8Array } | null;
    if (row !== null && row.value.length === ID_BYTES) return new Uint8Array(row.value);
    const id = fresh();
    db.query("INSERT OR REPLACE INTO node (key, value) VALUES ('id', ?)").run(id);
    return id;
  }

  contacts(): Contact[] {
    const rows = this.database().query("SELECT id, address, port FROM contacts ORDER BY seen_at DESC").all() as {
      id: Uint8Array;
      address: string;
      port: number;
    }[];
    return rows.filter((r) => r.id.length === ID_BYTES).map((r) => ({ id: new Uint8Array(r.id), address: r.address, port: r.port }));
  }

  /** Replaces the saved contacts. */
  saveContacts(contacts: Contact[], now: number): void {
    const db = this.database();
    const insert = db.query("INSERT OR REPLACE INTO contacts (id, address, port, seen_at) VALUES (?, ?, ?, ?)");
    db.transaction(() => {
      db.exec("DELETE FROM contacts");
      contacts.forEach((c, i) => insert.run(c.id, c.address, c.port, now - i));
    })();
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }

  private database(): Database {
    if (this.db === null) throw new Error("DhtState is closed");
    return this.db;
  }
}
