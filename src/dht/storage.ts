/**
 * What a DHT node stores for others: peer values under keys (BEP 5 announce_peer, several values per
 * key, each with apt-p2p's optional piece information) and BEP 44 immutable items. Pure: every call takes
 * `now` (ms); nothing here reads a clock or sets a timer. Memory is bounded by StorageLimits whatever
 * the input, and expired entries are never returned, whether or not expire() has run since.
 *
 * Expiry is exclusive at the boundary: an entry announced at `t` is live for `now < t + ttl` and gone
 * at `now === t + ttl`.
 *
 * Order doubles as expiry order. Every TTL is the same, so the entry refreshed longest ago is the one
 * closest to expiry; entries are kept in insertion order (Map/Set) and moved to the end on refresh,
 * which makes "evict the one closest to expiry" and "drop the expired ones" O(1) per entry. (If `now`
 * ever went backwards the order would be approximate; expire() scans everything, so it stays exact.)
 */
import { ID_BYTES, type NodeId, idToHex } from "./id.ts";
import { BEP44_MAX_VALUE_BYTES, MAX_PIECE_INFO_BYTES, type PeerValue } from "./messages.ts";

export interface StorageLimits {
  /** A peer value lives this long unless re-announced (ms). */
  valueTtlMs: number;
  /** Values under one key; when full, the value closest to expiry is replaced by the newcomer. */
  maxValuesPerKey: number;
  /** Keys held; when full, announces for new keys are refused, those for held keys still refresh. */
  maxKeys: number;
  /** Values held over all keys; when full, the value closest to expiry anywhere is replaced. */
  maxTotalValues: number;
  /** A BEP 44 item lives this long unless put again (ms). */
  itemTtlMs: number;
  /** BEP 44 items held; when full, the item closest to expiry is replaced by the newcomer. */
  maxItems: number;
}

const MINUTE_MS = 60 * 1000;

export const DEFAULT_LIMITS: StorageLimits = {
  // 30 minutes, as BitTorrent DHT nodes commonly keep peers. apt-p2p re-announces what it holds well
  // before this (every 15 minutes or so), so one lost announce does not drop a peer from the key.
  valueTtlMs: 30 * MINUTE_MS,
  // Lookups need a handful of peers per file; 512 (at most ~85 KB with full piece information) lets
  // a very popular package keep a large, churning population while bounding what one key costs.
  maxValuesPerKey: 512,
  // Keys are replicated on the k = 8 closest nodes, so a node holds about 8 / N of all announced
  // files: 1000 nodes caching 2000 files each put ~16 000 values on each node. The caps leave several
  // times that as headroom. Measured in Bun: ~0.45 KB per value, ~0.65 KB with full piece
  // information, ~0.25 KB more per key, so the worst case at these caps is ~75 MB, typical load ~10 MB.
  maxKeys: 50_000,
  maxTotalValues: 100_000,
  // BEP 44: "Without re-announcement these items MAY expire in 2 hours."
  itemTtlMs: 120 * MINUTE_MS,
  // At most 1000 bytes each (BEP44_MAX_VALUE_BYTES): 10 000 items are at most ~10 MB.
  maxItems: 10_000,
};

export type StoreResult = "stored" | "refreshed" | "refused";

interface ValueEntry {
  keyHex: string;
  /** "address:port", unique within the key (the port, last, contains no colon). */
  slot: string;
  address: string;
  port: number;
  pieces: Uint8Array | undefined;
  expiresAt: number;
}

interface Bucket {
  /** By slot, in refresh order: the first entry is the closest to expiry. */
  entries: Map<string, ValueEntry>;
  /** Round-robin position for peers() when the key has more live values than asked for. */
  cursor: number;
}

interface ItemEntry {
  value: Uint8Array;
  expiresAt: number;
}

export class ValueStore {
  readonly limits: Readonly<StorageLimits>;
  readonly #buckets = new Map<string, Bucket>();
  /** Every value, in refresh order over all keys: the first is the closest to expiry. */
  readonly #byAge = new Set<ValueEntry>();
  /** BEP 44 items by hex target, in refresh order. */
  readonly #items = new Map<string, ItemEntry>();

  constructor(limits: Partial<StorageLimits> = {}) {
    const resolved = { ...DEFAULT_LIMITS, ...limits };
    for (const [name, value] of Object.entries(resolved)) {
      if (!Number.isFinite(value) || value <= 0) throw new RangeError(`StorageLimits.${name} must be positive: ${value}`);
    }
    this.limits = Object.freeze(resolved);
  }

  /**
   * Stores or refreshes the value of (key, address, port). The stored address is the caller's business
   * (the node passes the packet's source). The newest announce's pieces replace the stored ones, and an
   * announce without pieces removes them. Refused: pieces longer than MAX_PIECE_INFO_BYTES, a port
   * outside 1–65535, an empty address, a key that is not 20 bytes, or a new key while maxKeys are held.
   */
  announce(key: NodeId, peer: PeerValue, now: number): StoreResult {
    if (key.length !== ID_BYTES || !isPort(peer.port) || peer.address.length === 0) return "refused";
    if (peer.pieces !== undefined && peer.pieces.length > MAX_PIECE_INFO_BYTES) return "refused";
    this.#dropExpiredValues(now);

    const keyHex = idToHex(key);
    const slot = `${peer.address}:${peer.port}`;
    const pieces = peer.pieces?.slice(); // our own copy: the caller's buffer may be reused
    const expiresAt = now + this.limits.valueTtlMs;
    const existing = this.#buckets.get(keyHex)?.entries.get(slot);
    if (existing !== undefined && existing.expiresAt > now) {
      existing.pieces = pieces;
      existing.expiresAt = expiresAt;
      this.#moveToEnd(existing);
      return "refreshed";
    }
    if (existing !== undefined) this.#remove(existing); // expired but not yet dropped: store anew
    if (!this.#buckets.has(keyHex) && this.#buckets.size >= this.limits.maxKeys) return "refused";

    const bucket = this.#buckets.get(keyHex);
    if (bucket !== undefined && bucket.entries.size >= this.limits.maxValuesPerKey) {
      this.#remove(first(bucket.entries.values())!);
    } else if (this.#byAge.size >= this.limits.maxTotalValues) {
      this.#remove(first(this.#byAge.values())!);
    }
    let target = this.#buckets.get(keyHex); // the eviction may have emptied and removed the bucket
    if (target === undefined) {
      target = { entries: new Map(), cursor: 0 };
      this.#buckets.set(keyHex, target);
    }
    const entry: ValueEntry = { keyHex, slot, address: peer.address, port: peer.port, pieces, expiresAt };
    target.entries.set(slot, entry);
    this.#byAge.add(entry);
    return "stored";
  }

  /**
   * Up to `max` live values under the key. When there are more, successive calls take successive
   * windows of the values (a round-robin cursor), so every announcer is handed out in turn.
   */
  peers(key: NodeId, now: number, max: number): PeerValue[] {
    const bucket = this.#buckets.get(idToHex(key));
    if (bucket === undefined || max <= 0) return [];
    const live: ValueEntry[] = [];
    for (const entry of bucket.entries.values()) if (entry.expiresAt > now) live.push(entry);
    if (live.length <= max) return live.map(toPeerValue);
    const start = bucket.cursor % live.length;
    bucket.cursor = (start + max) % live.length;
    const out: PeerValue[] = [];
    for (let i = 0; i < max; i++) out.push(toPeerValue(live[(start + i) % live.length]!));
    return out;
  }

  /** Number of live values under the key. */
  count(key: NodeId, now: number): number {
    const bucket = this.#buckets.get(idToHex(key));
    if (bucket === undefined) return 0;
    let live = 0;
    for (const entry of bucket.entries.values()) if (entry.expiresAt > now) live++;
    return live;
  }

  /**
   * Stores or refreshes an immutable item. The caller has checked that target = SHA-1(value); a put of
   * a held target only extends its life. Refused: a value empty or over BEP44_MAX_VALUE_BYTES, or a
   * target that is not 20 bytes. When maxItems are held, the item closest to expiry makes room.
   */
  putItem(target: NodeId, value: Uint8Array, now: number): StoreResult {
    if (target.length !== ID_BYTES || value.length === 0 || value.length > BEP44_MAX_VALUE_BYTES) return "refused";
    this.#dropExpiredItems(now);
    const hex = idToHex(target);
    const expiresAt = now + this.limits.itemTtlMs;
    const existing = this.#items.get(hex);
    if (existing !== undefined && existing.expiresAt > now) {
      this.#items.delete(hex);
      this.#items.set(hex, { value: existing.value, expiresAt });
      return "refreshed";
    }
    this.#items.delete(hex);
    if (this.#items.size >= this.limits.maxItems) this.#items.delete(first(this.#items.keys())!);
    this.#items.set(hex, { value: value.slice(), expiresAt });
    return "stored";
  }

  /** The live item stored under `target` (a copy), or undefined. */
  getItem(target: NodeId, now: number): Uint8Array | undefined {
    const item = this.#items.get(idToHex(target));
    return item !== undefined && item.expiresAt > now ? item.value.slice() : undefined;
  }

  /** Drops every expired value and item; returns how many. The node calls it periodically. */
  expire(now: number): number {
    let dropped = 0;
    for (const entry of this.#byAge) {
      if (entry.expiresAt <= now) {
        this.#remove(entry);
        dropped++;
      }
    }
    for (const [hex, item] of this.#items) {
      if (item.expiresAt <= now) {
        this.#items.delete(hex);
        dropped++;
      }
    }
    return dropped;
  }

  /** What is held: everything stored, or with `now` only what is live then (keys with a live value). */
  stats(now?: number): { keys: number; values: number; items: number } {
    if (now === undefined) return { keys: this.#buckets.size, values: this.#byAge.size, items: this.#items.size };
    const liveKeys = new Set<string>();
    let values = 0;
    for (const entry of this.#byAge) {
      if (entry.expiresAt > now) {
        values++;
        liveKeys.add(entry.keyHex);
      }
    }
    let items = 0;
    for (const item of this.#items.values()) if (item.expiresAt > now) items++;
    return { keys: liveKeys.size, values, items };
  }

  /** Drops expired values from the old end, so that they never count against a limit. */
  #dropExpiredValues(now: number): void {
    for (const entry of this.#byAge) {
      if (entry.expiresAt > now) return;
      this.#remove(entry);
    }
  }

  #dropExpiredItems(now: number): void {
    for (const [hex, item] of this.#items) {
      if (item.expiresAt > now) return;
      this.#items.delete(hex);
    }
  }

  #moveToEnd(entry: ValueEntry): void {
    const bucket = this.#buckets.get(entry.keyHex)!;
    bucket.entries.delete(entry.slot);
    bucket.entries.set(entry.slot, entry);
    this.#byAge.delete(entry);
    this.#byAge.add(entry);
  }

  #remove(entry: ValueEntry): void {
    this.#byAge.delete(entry);
    const bucket = this.#buckets.get(entry.keyHex);
    if (bucket === undefined) return;
    bucket.entries.delete(entry.slot);
    if (bucket.entries.size === 0) this.#buckets.delete(entry.keyHex);
  }
}

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

function first<T>(iterator: Iterator<T>): T | undefined {
  const next = iterator.next();
  return next.done === true ? undefined : next.value;
}

function toPeerValue(entry: ValueEntry): PeerValue {
  return entry.pieces === undefined
    ? { address: entry.address, port: entry.port }
    : { address: entry.address, port: entry.port, pieces: entry.pieces.slice() };
}
