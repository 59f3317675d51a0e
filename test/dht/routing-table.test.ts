import { describe, expect, test } from "bun:test";
import {
  commonPrefixBits,
  compareDistance,
  idToHex,
  randomIdWithPrefix,
  type Contact,
  type NodeId,
} from "../../src/dht/id.ts";
import {
  FAILURES_BEFORE_BAD,
  K_BUCKET_SIZE,
  PENDING_PING_EXPIRY_MS,
  QUESTIONABLE_AFTER_MS,
  REPLACEMENT_CACHE_SIZE,
  RoutingTable,
} from "../../src/dht/routing-table.ts";

const K = K_BUCKET_SIZE;
const MINUTE = 60 * 1000;

/** mulberry32: a small seeded PRNG, so every run inserts the same ids. */
function prng(seed: number) {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (below: number): number => Math.floor(next() * below),
    bytes: (n: number): Uint8Array => Uint8Array.from({ length: n }, () => Math.floor(next() * 256)),
  };
}

type Rng = ReturnType<typeof prng>;

function setup(seed = 1, bucketSize?: number) {
  const rng = prng(seed);
  const ownId = rng.bytes(20);
  const table = new RoutingTable({ ownId, now: 0, randomBytes: rng.bytes, bucketSize });
  let port = 1000;
  /** A contact sharing exactly `prefixBits` leading bits with our id. */
  const near = (prefixBits: number): Contact => ({
    id: randomIdWithPrefix(ownId, prefixBits, rng.bytes),
    address: "10.0.0.1",
    port: port++,
  });
  return { rng, ownId, table, near };
}

/** Fills the bucket of contacts sharing no prefix with our id, one contact per millisecond from `start`. */
function fillFarBucket(table: RoutingTable, near: (bits: number) => Contact, start = 0): Contact[] {
  const contacts = Array.from({ length: K }, () => near(0));
  contacts.forEach((contact, i) => expect(table.observeResponse(contact, start + i).kind).toBe("added"));
  return contacts;
}

function ids(contacts: Contact[]): string[] {
  return contacts.map((contact) => idToHex(contact.id));
}

function withFirstByte(byte: number): Contact {
  const id = new Uint8Array(20);
  id[0] = byte;
  return { id, address: "10.0.0.2", port: 6881 + byte };
}

describe("RoutingTable", () => {
  test("closest() orders contacts by XOR distance to the target", () => {
    const table = new RoutingTable({ ownId: new Uint8Array(20).fill(0xff), now: 0, randomBytes: prng(2).bytes });
    for (const byte of [0x01, 0x80, 0x02, 0x03, 0x40]) table.observeResponse(withFirstByte(byte), 0);
    const target = withFirstByte(0x03).id;
    expect(table.closest(target).map((c) => c.id[0])).toEqual([0x03, 0x02, 0x01, 0x40, 0x80]);
    expect(table.closest(target, 2).map((c) => c.id[0])).toEqual([0x03, 0x02]);
    expect(table.closest(target, 0)).toEqual([]);
  });

  test("observeResponse() ignores a contact with our own id", () => {
    const { table, ownId } = setup();
    const self = { id: ownId.slice(), address: "10.0.0.9", port: 1 };
    expect(table.observeResponse(self, 0)).toEqual({ kind: "ignored", reason: "own-id" });
    expect(table.size()).toBe(0);
    expect(table.shouldPing(self, 0)).toBe(false);
  });

  test("only the bucket holding our own id splits: far buckets stop at K, near ones keep splitting", () => {
    const { table, near } = setup(3);
    for (let prefix = 0; prefix <= 5; prefix++) {
      for (let i = 0; i < K + 3; i++) table.observeResponse(near(prefix), 0);
    }
    expect(table.buckets().map((b) => [b.depth, b.contacts, b.replacements])).toEqual([
      [0, K, 3], [1, K, 3], [2, K, 3], [3, K, 3], [4, K, 3], [5, K, 3], [6, 0, 0],
    ]);
    for (let i = 0; i < K + 1; i++) table.observeResponse(near(20), 0);
    const buckets = table.buckets();
    expect(buckets).toHaveLength(22);
    expect(buckets[20]).toMatchObject({ depth: 20, contacts: K, replacements: 1 });
    expect(buckets.slice(6, 20).every((b) => b.contacts === 0)).toBe(true);
    expect(buckets[21]).toMatchObject({ depth: 21, contacts: 0 });
    expect(table.size()).toBe(7 * K);
  });

  test("a full bucket of good contacts sends a newcomer to its bounded replacement cache", () => {
    const { table, near } = setup();
    const members = fillFarBucket(table, near);
    expect(table.observeResponse(near(0), K)).toEqual({ kind: "cached" });
    for (let i = 0; i < REPLACEMENT_CACHE_SIZE + 5; i++) table.observeResponse(near(0), K);
    expect(table.buckets()[0]).toMatchObject({ depth: 0, contacts: K, replacements: REPLACEMENT_CACHE_SIZE });
    expect(members.every((m) => table.state(m.id, K) === "good")).toBe(true);
  });

  test("a questionable least-recently-seen contact is pinged, once per bucket, before eviction", () => {
    const { table, near } = setup();
    const members = fillFarBucket(table, near);
    const later = QUESTIONABLE_AFTER_MS + 100;
    const first = near(0);
    expect(table.observeResponse(first, later)).toEqual({ kind: "ping", contact: members[0]! });
    const second = near(0);
    expect(table.observeResponse(second, later + 1)).toEqual({ kind: "cached" });
    expect(table.has(members[0]!.id)).toBe(true);
    expect(table.has(first.id)).toBe(false);

    // Dead: evicted, the freshest replacement takes the slot, and the next questionable contact is asked for.
    expect(table.pingResult(members[0]!.id, false, later + 2)).toEqual({ kind: "ping", contact: members[1]! });
    expect(table.has(members[0]!.id)).toBe(false);
    expect(table.has(second.id)).toBe(true);
    expect(table.has(first.id)).toBe(false);
    expect(table.buckets()[0]).toMatchObject({ contacts: K, replacements: 1 });
  });

  test("a contact that answers the ping is kept and becomes the most recently seen", () => {
    const { table, near } = setup();
    const members = fillFarBucket(table, near);
    const later = QUESTIONABLE_AFTER_MS + 100;
    const newcomer = near(0);
    expect(table.observeResponse(newcomer, later)).toEqual({ kind: "ping", contact: members[0]! });
    let request = table.pingResult(members[0]!.id, true, later + 1);
    expect(table.get(members[0]!.id)).toMatchObject({ lastSeen: later + 1, failures: 0 });
    expect(table.state(members[0]!.id, later + 1)).toBe("good");
    // The refreshed contact is no longer the least recently seen: the next one is asked for.
    expect(request).toEqual({ kind: "ping", contact: members[1]! });
    for (let i = 1; i < K; i++) {
      request = table.pingResult(members[i]!.id, true, later + 1 + i);
      expect(request).toEqual(i < K - 1 ? { kind: "ping", contact: members[i + 1]! } : null);
    }
    expect(table.has(newcomer.id)).toBe(false);
    expect(table.observeResponse(near(0), later + K + 1)).toEqual({ kind: "cached" });
  });

  test("a ping never reported on stops blocking its bucket after PENDING_PING_EXPIRY_MS", () => {
    const { table, near } = setup();
    const members = fillFarBucket(table, near);
    const later = QUESTIONABLE_AFTER_MS + 100;
    expect(table.observeResponse(near(0), later).kind).toBe("ping");
    expect(table.observeResponse(near(0), later + PENDING_PING_EXPIRY_MS - 1).kind).toBe("cached");
    const afterExpiry = later + PENDING_PING_EXPIRY_MS;
    expect(table.observeResponse(near(0), afterExpiry)).toEqual({ kind: "ping", contact: members[0]! });
  });

  test(`a contact becomes bad after ${FAILURES_BEFORE_BAD} failures and a newcomer takes its slot`, () => {
    const { table, near } = setup();
    const members = fillFarBucket(table, near);
    const victim = members[3]!;
    table.observeFailure(victim.id, K);
    expect(table.state(victim.id, K)).toBe("good");
    table.observeFailure(victim.id, K);
    expect(table.state(victim.id, K)).toBe("bad");
    // Kept while nobody needs the slot, but never handed out or saved.
    expect(table.has(victim.id)).toBe(true);
    expect(ids(table.closest(victim.id, 100))).not.toContain(idToHex(victim.id));
    expect(ids(table.contacts())).not.toContain(idToHex(victim.id));
    const newcomer = near(0);
    expect(table.observeResponse(newcomer, K + 1)).toEqual({ kind: "added" });
    expect(table.has(victim.id)).toBe(false);
    expect(table.has(newcomer.id)).toBe(true);
  });

  test("a contact turning bad is replaced at once by the freshest replacement", () => {
    const { table, near } = setup();
    const members = fillFarBucket(table, near);
    const older = near(0);
    const fresher = near(0);
    table.observeResponse(older, K);
    table.observeResponse(fresher, K + 1);
    for (let i = 0; i < FAILURES_BEFORE_BAD; i++) table.observeFailure(members[5]!.id, K + 2);
    expect(table.has(members[5]!.id)).toBe(false);
    expect(table.has(fresher.id)).toBe(true);
    expect(table.has(older.id)).toBe(false);
    // Seen again, the older one moves to the front of the cache and is promoted next.
    table.observeResponse(near(0), K + 3);
    table.observeResponse(older, K + 4);
    for (let i = 0; i < FAILURES_BEFORE_BAD; i++) table.observeFailure(members[6]!.id, K + 5);
    expect(table.has(older.id)).toBe(true);
  });

  test("a response resets the failure count", () => {
    const { table, near } = setup();
    const contact = near(4);
    table.observeResponse(contact, 0);
    table.observeFailure(contact.id, 1);
    expect(table.get(contact.id)?.failures).toBe(1);
    expect(table.observeResponse(contact, 2)).toEqual({ kind: "refreshed" });
    table.observeFailure(contact.id, 3);
    expect(table.get(contact.id)).toMatchObject({ failures: 1, lastSeen: 2 });
    expect(table.state(contact.id, 3)).toBe("good");
  });

  test("a known id answering from another address keeps the old address unless the old one is bad", () => {
    const { table, near } = setup();
    const contact = near(2);
    table.observeResponse(contact, 0);
    const moved = { ...contact, address: "192.0.2.66" };
    expect(table.observeResponse(moved, 1)).toEqual({ kind: "ignored", reason: "address-conflict" });
    expect(table.get(contact.id)).toMatchObject({ contact: { address: "10.0.0.1" }, lastSeen: 0 });
    for (let i = 0; i < FAILURES_BEFORE_BAD; i++) table.observeFailure(contact.id, 2);
    expect(table.observeResponse(moved, 3)).toEqual({ kind: "refreshed" });
    expect(table.get(contact.id)).toMatchObject({ contact: { address: "192.0.2.66" }, failures: 0 });
  });

  describe("shouldPing()", () => {
    test("is true for an unknown contact whose bucket has room, once while the ping is pending", () => {
      const { table, near } = setup();
      const stranger = near(1);
      expect(table.shouldPing(stranger, 0)).toBe(true);
      expect(table.shouldPing(stranger, 1)).toBe(false);
      table.observeFailure(stranger.id, 2);
      expect(table.shouldPing(stranger, 3)).toBe(true);
      expect(table.shouldPing(stranger, 3 + PENDING_PING_EXPIRY_MS)).toBe(true);
      table.observeResponse(stranger, 4 + PENDING_PING_EXPIRY_MS);
      expect(table.shouldPing(stranger, 5 + PENDING_PING_EXPIRY_MS)).toBe(false);
    });

    test("is true when the full bucket can split", () => {
      const { table, near } = setup(5);
      for (let i = 0; i < K; i++) table.observeResponse(near(3), 0);
      expect(table.buckets()).toHaveLength(1);
      expect(table.shouldPing(near(0), 0)).toBe(true);
    });

    test("is false when the bucket is full of good contacts and cannot split", () => {
      const { table, near } = setup();
      fillFarBucket(table, near);
      expect(table.buckets()).toHaveLength(1);
      table.observeResponse(near(0), K); // splits; the far bucket keeps K
      expect(table.shouldPing(near(0), K)).toBe(false);
    });

    test("is true when the full bucket holds a questionable or a bad contact", () => {
      const { table, near } = setup();
      const members = fillFarBucket(table, near);
      table.observeResponse(near(1), K); // splits; the far bucket is full and cannot split
      expect(table.buckets()[0]).toMatchObject({ contacts: K, replacements: 0 });
      expect(table.shouldPing(near(0), K)).toBe(false);
      expect(table.shouldPing(near(0), QUESTIONABLE_AFTER_MS)).toBe(true);
      for (const member of members) table.observeResponse(member, QUESTIONABLE_AFTER_MS);
      expect(table.shouldPing(near(0), QUESTIONABLE_AFTER_MS + 1)).toBe(false);
      for (let i = 0; i < FAILURES_BEFORE_BAD; i++) table.observeFailure(members[1]!.id, QUESTIONABLE_AFTER_MS + 2);
      expect(table.shouldPing(near(0), QUESTIONABLE_AFTER_MS + 3)).toBe(true);
    });

    test("is false for a contact already in the table", () => {
      const { table, near } = setup();
      const contact = near(7);
      table.observeResponse(contact, 0);
      expect(table.shouldPing(contact, 1)).toBe(false);
    });
  });

  test("refreshTargets() returns a target inside each idle bucket and none for fresh ones", () => {
    const { table, near, ownId } = setup(9);
    for (let prefix = 0; prefix <= 3; prefix++) {
      for (let i = 0; i < K + 1; i++) table.observeResponse(near(prefix), 0);
    }
    const depths = table.buckets().map((b) => b.depth);
    expect(depths).toEqual([0, 1, 2, 3, 4]);
    expect(table.refreshTargets(10 * MINUTE)).toEqual([]);
    const now = 20 * MINUTE;
    table.touched(near(2).id, now - MINUTE);
    table.observeResponse(near(4), now - MINUTE);
    const idle = [0, 1, 3];
    const targets = table.refreshTargets(now);
    expect(targets.map((t) => Math.min(commonPrefixBits(ownId, t), depths.length - 1))).toEqual(idle);
    expect(targets.map((t) => commonPrefixBits(ownId, t))).toEqual(idle);
    expect(table.refreshTargets(now, 30 * MINUTE)).toEqual([]);
  });

  test("closest() can leave out questionable contacts", () => {
    const { table, near } = setup();
    const stale = near(1);
    const fresh = near(1);
    table.observeResponse(stale, 0);
    table.observeResponse(fresh, QUESTIONABLE_AFTER_MS);
    const target = stale.id;
    expect(table.closest(target).length).toBe(2);
    const good = table.closest(target, K, { excludeQuestionable: true, now: QUESTIONABLE_AFTER_MS });
    expect(ids(good)).toEqual(ids([fresh]));
  });

  test("remove() frees the slot for the freshest replacement", () => {
    const { table, near } = setup();
    const members = fillFarBucket(table, near);
    const waiting = near(0);
    table.observeResponse(waiting, K);
    expect(table.remove(members[0]!.id)).toBe(true);
    expect(table.has(waiting.id)).toBe(true);
    expect(table.remove(members[0]!.id)).toBe(false);
    expect(table.size()).toBe(K);
  });

  test("keeps its invariants through 2,000 random contacts, failures and pings", () => {
    const { table, ownId, rng } = setup(2024);
    const seen = new Map<string, Contact>();
    const pendingPings: { id: NodeId }[] = [];
    let now = 0;
    let port = 1;
    const randomContact = (r: Rng): Contact => {
      // Half uniformly random, half near our id, so deep buckets fill too.
      const id = r.next() < 0.5 ? r.bytes(20) : randomIdWithPrefix(ownId, r.int(24), r.bytes);
      return { id, address: "10.1.0.1", port: port++ };
    };
    for (let step = 0; step < 2000; step++) {
      now += rng.int(2000);
      const contact = randomContact(rng);
      seen.set(idToHex(contact.id), contact);
      const outcome = table.observeResponse(contact, now);
      if (outcome.kind === "ping") pendingPings.push(outcome.contact);
      const known = [...seen.values()];
      const roll = rng.next();
      const members = table.contacts();
      const again = known[rng.int(known.length)]!;
      if (roll < 0.1) table.observeFailure(again.id, now);
      else if (roll < 0.2) table.observeFailure(members[rng.int(members.length)]!.id, now);
      else if (roll < 0.25) table.remove(again.id);
      else if (roll < 0.35) table.observeResponse(again, now);
      else if (roll < 0.4) table.observeResponse({ ...again, address: "192.0.2.1" }, now);
      if (pendingPings.length > 0 && rng.next() < 0.5) {
        const ping = pendingPings.splice(rng.int(pendingPings.length), 1)[0]!;
        const next = table.pingResult(ping.id, rng.next() < 0.5, now);
        if (next) pendingPings.push(next.contact);
      }
    }

    // The deepest bucket has room and no replacements, so a contact failing there stays in the table, bad.
    const deep = { id: randomIdWithPrefix(ownId, 60, rng.bytes), address: "10.1.0.1", port: port++ };
    seen.set(idToHex(deep.id), deep);
    expect(table.observeResponse(deep, now)).toEqual({ kind: "added" });
    for (let i = 0; i < FAILURES_BEFORE_BAD; i++) table.observeFailure(deep.id, now);

    const buckets = table.buckets();
    const last = buckets.length - 1;
    expect(last).toBeGreaterThan(8);
    for (const bucket of buckets) {
      expect(bucket.contacts).toBeLessThanOrEqual(K);
      expect(bucket.replacements).toBeLessThanOrEqual(REPLACEMENT_CACHE_SIZE);
      if (bucket.contacts < K) expect(bucket.replacements).toBe(0);
    }
    // has() looks only in the bucket whose range holds the id, so this finds every contact in its bucket.
    const inTable = [...seen.values()].map((c) => c.id).filter((id) => table.has(id));
    expect(inTable.length).toBe(table.size());
    const perBucket = buckets.map(() => 0);
    for (const id of inTable) perBucket[Math.min(commonPrefixBits(ownId, id), last)]!++;
    expect(perBucket).toEqual(buckets.map((b) => b.contacts));

    const usable = inTable.filter((id) => table.state(id, now) !== "bad");
    expect(usable.length).toBeGreaterThan(K);
    expect(usable.length).toBeLessThan(inTable.length);
    expect(ids(table.contacts()).sort()).toEqual(usable.map(idToHex).sort());
    const good = usable.filter((id) => table.state(id, now) === "good");
    expect(good.length).toBeGreaterThan(K);
    expect(good.length).toBeLessThan(usable.length);
    for (let i = 0; i < 200; i++) {
      const target = i % 2 === 0 ? rng.bytes(20) : randomIdWithPrefix(ownId, rng.int(30), rng.bytes);
      const count = [1, K, 20][i % 3]!;
      const bruteForce = (pool: NodeId[]) =>
        [...pool].sort((a, b) => compareDistance(target, a, b)).slice(0, count).map(idToHex);
      expect(ids(table.closest(target, count))).toEqual(bruteForce(usable));
      expect(ids(table.closest(target, count, { excludeQuestionable: true, now }))).toEqual(bruteForce(good));
    }
  });
});
