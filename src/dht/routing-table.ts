/**
 * The Kademlia routing table of BEP 5, as a pure structure: no sockets, timers or clock reads. Time comes
 * in as `now` (ms) on every call and randomness as an injected `randomBytes`. The table never pings; it
 * says what it wants done and the node does the network work (as tristanls/k-bucket's `ping` event):
 *
 * - A contact answered one of our queries: `observeResponse(contact, now)`. This is the only way in. When
 *   the outcome is `{ kind: "ping", contact }`, ping that contact and report `pingResult(id, alive, now)`;
 *   that may ask for the next ping in turn.
 * - A contact we do not know queried us: if `shouldPing(contact, now)`, ping it; an answer goes to
 *   `observeResponse`, a timeout to `observeFailure`.
 * - Any other query of ours timed out: `observeFailure(id, now)`.
 * - A lookup of a target finished: `touched(target, now)`. Every few minutes run a find_node lookup for
 *   each of `refreshTargets(now)`.
 *
 * Buckets split on our own id only (classic BEP 5): bucket `i` of `n` holds the contacts sharing exactly
 * `i` leading bits with our id, and the last bucket those sharing at least `n - 1`; only the last one
 * splits. Within a bucket contacts are kept least recently seen first.
 *
 * Only responses refresh a contact: a query can carry a spoofed source address, so unlike BEP 5 a query
 * from a known contact does not keep it good.
 */
import { ID_BITS, commonPrefixBits, compareDistance, idToHex, idsEqual, randomIdWithPrefix } from "./id.ts";
import type { Contact, NodeId } from "./id.ts";

/** Contacts per bucket: BEP 5's K. */
export const K_BUCKET_SIZE = 8;
/** Contacts that answered while their bucket was full, kept per bucket to fill slots that free up. */
export const REPLACEMENT_CACHE_SIZE = 8;
/** BEP 5: a contact is good while it answered within the last 15 minutes, then questionable. */
export const QUESTIONABLE_AFTER_MS = 15 * 60 * 1000;
/**
 * Consecutive failed queries that make a contact bad. Two, not one: a single lost UDP datagram is common
 * and must not throw out a good contact; BEP 5 says "multiple", and most implementations use 2 to 5.
 */
export const FAILURES_BEFORE_BAD = 2;
/** BEP 5: a bucket not changed or looked up for 15 minutes is refreshed. */
export const BUCKET_REFRESH_MS = 15 * 60 * 1000;
/**
 * A ping the table asked for (or allowed) that the node never reported on is forgotten after this, so a
 * lost report cannot block a bucket forever. Well above the transport's longest query timeout.
 */
export const PENDING_PING_EXPIRY_MS = 60 * 1000;
/** At most this many pings to unknown contacts outstanding: a flood of queries must not become a flood of pings. */
export const MAX_PENDING_CANDIDATE_PINGS = 64;

export type ContactState = "good" | "questionable" | "bad";

/** What the table knows about a contact in it. */
export interface ContactRecord {
  contact: Contact;
  /** When it last answered us (ms). */
  lastSeen: number;
  /** Consecutive failed queries since its last answer. */
  failures: number;
}

/** The node should ping `contact` and report the answer with `pingResult`. */
export interface PingRequest {
  kind: "ping";
  contact: Contact;
}

export type ObserveOutcome =
  | { kind: "added" }
  | { kind: "refreshed" }
  /** The bucket is full: the contact waits in its replacement cache. */
  | { kind: "cached" }
  /** Cached, and the bucket's least recently seen contact is questionable: ping it. */
  | PingRequest
  | { kind: "ignored"; reason: "own-id" | "address-conflict" };

export type ClosestOptions = { excludeQuestionable?: false } | { excludeQuestionable: true; now: number };

export interface BucketStats {
  /** Leading bits its contacts share with our id (exactly; for the last bucket, at least). */
  depth: number;
  contacts: number;
  replacements: number;
  lastChanged: number;
}

export interface RoutingTableOptions {
  ownId: NodeId;
  /** The current time (ms): buckets count as changed now. */
  now: number;
  randomBytes: (n: number) => Uint8Array;
  /** K; tests use small buckets. */
  bucketSize?: number;
  replacementCacheSize?: number;
}

interface Bucket {
  /** Least recently seen first. */
  entries: ContactRecord[];
  /** Freshest first. */
  replacements: ContactRecord[];
  lastChanged: number;
  /** The contact we asked the node to ping before evicting it, and when. At most one per bucket. */
  pendingPing: { id: NodeId; since: number } | null;
}

export class RoutingTable {
  readonly ownId: NodeId;
  readonly #bucketSize: number;
  readonly #replacementCacheSize: number;
  readonly #randomBytes: (n: number) => Uint8Array;
  readonly #buckets: Bucket[];
  /** Unknown contacts that shouldPing() allowed a ping to, by hex id, with when. */
  readonly #candidatePings = new Map<string, number>();

  constructor(options: RoutingTableOptions) {
    const bucketSize = options.bucketSize ?? K_BUCKET_SIZE;
    const replacementCacheSize = options.replacementCacheSize ?? REPLACEMENT_CACHE_SIZE;
    if (!Number.isInteger(bucketSize) || bucketSize < 1) throw new RangeError(`Invalid bucket size: ${bucketSize}`);
    if (!Number.isInteger(replacementCacheSize) || replacementCacheSize < 0) {
      throw new RangeError(`Invalid replacement cache size: ${replacementCacheSize}`);
    }
    this.ownId = options.ownId.slice();
    this.#bucketSize = bucketSize;
    this.#replacementCacheSize = replacementCacheSize;
    this.#randomBytes = options.randomBytes;
    this.#buckets = [emptyBucket(options.now)];
  }

  /**
   * `contact` answered one of our queries. A known id answering from another address is ignored unless
   * the contact we hold is bad: otherwise anyone could answer with a good contact's id and move it to
   * their own address. A contact cached earlier moves to the front of the replacement cache, with the
   * address it answered from this time.
   */
  observeResponse(contact: Contact, now: number): ObserveOutcome {
    if (idsEqual(contact.id, this.ownId)) return { kind: "ignored", reason: "own-id" };
    this.#candidatePings.delete(idToHex(contact.id));
    for (;;) {
      const index = this.#bucketIndex(contact.id);
      const bucket = this.#buckets[index]!;
      const existing = findRecord(bucket.entries, contact.id);
      if (existing) {
        if (!sameAddress(existing.contact, contact)) {
          if (!isBad(existing)) return { kind: "ignored", reason: "address-conflict" };
          existing.contact = { ...contact };
        }
        this.#refresh(bucket, existing, now);
        return { kind: "refreshed" };
      }
      removeRecord(bucket.replacements, contact.id);
      const record: ContactRecord = { contact: { ...contact }, lastSeen: now, failures: 0 };
      if (bucket.entries.length < this.#bucketSize) {
        insertByLastSeen(bucket.entries, record);
        bucket.lastChanged = now;
        return { kind: "added" };
      }
      const bad = bucket.entries.find(isBad);
      if (bad) {
        this.#evict(bucket, bad);
        insertByLastSeen(bucket.entries, record);
        bucket.lastChanged = now;
        return { kind: "added" };
      }
      if (this.#canSplit(index)) {
        this.#splitLast(now);
        continue;
      }
      bucket.replacements.unshift(record);
      if (bucket.replacements.length > this.#replacementCacheSize) bucket.replacements.pop();
      return this.#maybePing(bucket, now) ?? { kind: "cached" };
    }
  }

  /**
   * A query to `id` failed (timed out). Enough failures in a row make the contact bad, and a bad contact
   * is replaced at once by the freshest contact of its bucket's replacement cache, if there is one. A
   * failed contact waiting in a replacement cache is dropped from it.
   */
  observeFailure(id: NodeId, now: number): void {
    this.#candidatePings.delete(idToHex(id));
    const bucket = this.#bucketFor(id);
    const record = findRecord(bucket.entries, id);
    if (!record) {
      removeRecord(bucket.replacements, id);
      return;
    }
    record.failures++;
    if (isBad(record)) this.#replaceBad(bucket, now);
  }

  /**
   * The answer to a ping this table asked for. Alive: the contact is refreshed. Dead: it is bad, and the
   * freshest replacement takes its place. Returns the next ping wanted in that bucket, if any.
   */
  pingResult(id: NodeId, alive: boolean, now: number): PingRequest | null {
    const bucket = this.#bucketFor(id);
    if (bucket.pendingPing && idsEqual(bucket.pendingPing.id, id)) bucket.pendingPing = null;
    const record = findRecord(bucket.entries, id);
    if (record && alive) {
      this.#refresh(bucket, record, now);
    } else if (record) {
      record.failures = Math.max(record.failures + 1, FAILURES_BEFORE_BAD);
      this.#replaceBad(bucket, now);
    }
    return this.#maybePing(bucket, now);
  }

  /**
   * Whether the node should ping `contact`, which queried us, to let it in: true when it is not in the
   * table (or is there but bad), its bucket could take it (room, can split, or holds a bad or questionable
   * contact) and no ping to it is pending. True records the ping as pending until `observeResponse` or
   * `observeFailure` for that id, or PENDING_PING_EXPIRY_MS.
   */
  shouldPing(contact: Contact, now: number): boolean {
    if (idsEqual(contact.id, this.ownId)) return false;
    const hex = idToHex(contact.id);
    const pendingSince = this.#candidatePings.get(hex);
    if (pendingSince !== undefined && now - pendingSince < PENDING_PING_EXPIRY_MS) return false;
    const index = this.#bucketIndex(contact.id);
    const bucket = this.#buckets[index]!;
    const record = findRecord(bucket.entries, contact.id);
    if (record && !isBad(record)) return false;
    const couldTake =
      bucket.entries.length < this.#bucketSize ||
      this.#canSplit(index) ||
      bucket.entries.some((entry) => stateOf(entry, now) !== "good");
    if (!couldTake) return false;
    if (this.#candidatePings.size >= MAX_PENDING_CANDIDATE_PINGS) {
      for (const [key, since] of this.#candidatePings) {
        if (now - since >= PENDING_PING_EXPIRY_MS) this.#candidatePings.delete(key);
      }
      if (this.#candidatePings.size >= MAX_PENDING_CANDIDATE_PINGS) return false;
    }
    this.#candidatePings.set(hex, now);
    return true;
  }

  /**
   * Up to `count` contacts closest to `target` by XOR distance, closest first; never bad ones. Visits
   * buckets from the nearest and stops once the rest can only be farther, then sorts what it collected.
   */
  closest(target: NodeId, count: number = this.#bucketSize, options: ClosestOptions = {}): Contact[] {
    const include = (record: ContactRecord): boolean =>
      options.excludeQuestionable ? stateOf(record, options.now) === "good" : !isBad(record);
    const found: ContactRecord[] = [];
    const take = (bucket: Bucket): void => {
      for (const record of bucket.entries) if (include(record)) found.push(record);
    };
    // Contacts of the target's own bucket are closest. Next come those of the deeper buckets, all at the
    // same highest differing bit, then each shallower bucket in turn, each strictly farther than the last.
    const last = this.#buckets.length - 1;
    const home = Math.min(commonPrefixBits(this.ownId, target), last);
    take(this.#buckets[home]!);
    if (found.length < count) for (let i = home + 1; i <= last; i++) take(this.#buckets[i]!);
    for (let i = home - 1; i >= 0 && found.length < count; i--) take(this.#buckets[i]!);
    found.sort((a, b) => compareDistance(target, a.contact.id, b.contact.id));
    return found.slice(0, Math.max(0, count)).map((record) => record.contact);
  }

  /** A lookup of `target` completed: its bucket counts as fresh. */
  touched(target: NodeId, now: number): void {
    this.#bucketFor(target).lastChanged = now;
  }

  /** A random target inside each bucket idle for longer than `maxIdleMs`: run a find_node lookup for each. */
  refreshTargets(now: number, maxIdleMs: number = BUCKET_REFRESH_MS): NodeId[] {
    const targets: NodeId[] = [];
    this.#buckets.forEach((bucket, depth) => {
      if (now - bucket.lastChanged > maxIdleMs) targets.push(randomIdWithPrefix(this.ownId, depth, this.#randomBytes));
    });
    return targets;
  }

  /** Contacts in the buckets, bad ones included (replacement caches not counted). */
  size(): number {
    let total = 0;
    for (const bucket of this.#buckets) total += bucket.entries.length;
    return total;
  }

  /** A copy of what the table knows about a contact in a bucket (not in a replacement cache). */
  get(id: NodeId): ContactRecord | undefined {
    const record = this.#find(id);
    return record && { ...record };
  }

  has(id: NodeId): boolean {
    return this.#find(id) !== undefined;
  }

  state(id: NodeId, now: number): ContactState | undefined {
    const record = this.#find(id);
    return record && stateOf(record, now);
  }

  /** Removes a contact from its bucket (a replacement then takes its place) or its replacement cache. */
  remove(id: NodeId): boolean {
    this.#candidatePings.delete(idToHex(id));
    const bucket = this.#bucketFor(id);
    const record = findRecord(bucket.entries, id);
    if (record) {
      this.#evict(bucket, record);
      this.#fill(bucket);
      return true;
    }
    return removeRecord(bucket.replacements, id);
  }

  /** Every good or questionable contact, for saving across restarts. */
  contacts(): Contact[] {
    const out: Contact[] = [];
    for (const bucket of this.#buckets) {
      for (const record of bucket.entries) if (!isBad(record)) out.push(record.contact);
    }
    return out;
  }

  buckets(): BucketStats[] {
    return this.#buckets.map((bucket, depth) => ({
      depth,
      contacts: bucket.entries.length,
      replacements: bucket.replacements.length,
      lastChanged: bucket.lastChanged,
    }));
  }

  #bucketIndex(id: NodeId): number {
    return Math.min(commonPrefixBits(this.ownId, id), this.#buckets.length - 1);
  }

  #bucketFor(id: NodeId): Bucket {
    return this.#buckets[this.#bucketIndex(id)]!;
  }

  #find(id: NodeId): ContactRecord | undefined {
    return findRecord(this.#bucketFor(id).entries, id);
  }

  /** Only the last bucket, whose range holds our own id, splits; the deepest bucket holds a single id. */
  #canSplit(index: number): boolean {
    return index === this.#buckets.length - 1 && this.#buckets.length < ID_BITS;
  }

  #splitLast(now: number): void {
    const depth = this.#buckets.length - 1;
    const old = this.#buckets[depth]!;
    const next = emptyBucket(now);
    const movesDeeper = (record: ContactRecord): boolean => commonPrefixBits(this.ownId, record.contact.id) > depth;
    next.entries = old.entries.filter(movesDeeper);
    old.entries = old.entries.filter((record) => !movesDeeper(record));
    next.replacements = old.replacements.filter(movesDeeper);
    old.replacements = old.replacements.filter((record) => !movesDeeper(record));
    if (old.pendingPing && commonPrefixBits(this.ownId, old.pendingPing.id) > depth) {
      next.pendingPing = old.pendingPing;
      old.pendingPing = null;
    }
    old.lastChanged = now;
    this.#buckets.push(next);
    this.#fill(old);
    this.#fill(next);
  }

  #refresh(bucket: Bucket, record: ContactRecord, now: number): void {
    record.lastSeen = now;
    record.failures = 0;
    bucket.entries.splice(bucket.entries.indexOf(record), 1);
    bucket.entries.push(record);
    bucket.lastChanged = now;
    if (bucket.pendingPing && idsEqual(bucket.pendingPing.id, record.contact.id)) bucket.pendingPing = null;
  }

  #evict(bucket: Bucket, record: ContactRecord): void {
    bucket.entries.splice(bucket.entries.indexOf(record), 1);
    if (bucket.pendingPing && idsEqual(bucket.pendingPing.id, record.contact.id)) bucket.pendingPing = null;
  }

  /** Bad contacts give their slots to the freshest replacements, while there are any. */
  #replaceBad(bucket: Bucket, now: number): void {
    for (const record of bucket.entries.filter(isBad)) {
      const replacement = bucket.replacements.shift();
      if (!replacement) return;
      this.#evict(bucket, record);
      insertByLastSeen(bucket.entries, replacement);
      bucket.lastChanged = now;
    }
  }

  #fill(bucket: Bucket): void {
    while (bucket.entries.length < this.#bucketSize) {
      const replacement = bucket.replacements.shift();
      if (!replacement) return;
      insertByLastSeen(bucket.entries, replacement);
    }
  }

  /** Asks to ping the least recently seen contact when it is questionable and someone waits for its slot. */
  #maybePing(bucket: Bucket, now: number): PingRequest | null {
    if (bucket.replacements.length === 0) return null;
    if (bucket.pendingPing && now - bucket.pendingPing.since < PENDING_PING_EXPIRY_MS) return null;
    const oldest = bucket.entries[0];
    if (!oldest || stateOf(oldest, now) !== "questionable") return null;
    bucket.pendingPing = { id: oldest.contact.id, since: now };
    return { kind: "ping", contact: oldest.contact };
  }
}

export function stateOf(record: ContactRecord, now: number): ContactState {
  if (isBad(record)) return "bad";
  return now - record.lastSeen < QUESTIONABLE_AFTER_MS ? "good" : "questionable";
}

function isBad(record: ContactRecord): boolean {
  return record.failures >= FAILURES_BEFORE_BAD;
}

function emptyBucket(now: number): Bucket {
  return { entries: [], replacements: [], lastChanged: now, pendingPing: null };
}

function findRecord(records: ContactRecord[], id: NodeId): ContactRecord | undefined {
  return records.find((record) => idsEqual(record.contact.id, id));
}

function removeRecord(records: ContactRecord[], id: NodeId): boolean {
  const index = records.findIndex((record) => idsEqual(record.contact.id, id));
  if (index >= 0) records.splice(index, 1);
  return index >= 0;
}

/** Keeps `records` least recently seen first; a promoted replacement may be older than some entries. */
function insertByLastSeen(records: ContactRecord[], record: ContactRecord): void {
  let index = records.length;
  while (index > 0 && records[index - 1]!.lastSeen > record.lastSeen) index--;
  records.splice(index, 0, record);
}

function sameAddress(a: Contact, b: Contact): boolean {
  return a.address === b.address && a.port === b.port;
}
