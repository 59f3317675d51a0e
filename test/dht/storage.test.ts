import { describe, expect, test } from "bun:test";
import type { NodeId } from "../../src/dht/id.ts";
import { BEP44_MAX_VALUE_BYTES, MAX_PIECE_INFO_BYTES, type PeerValue } from "../../src/dht/messages.ts";
import { DEFAULT_LIMITS, ValueStore } from "../../src/dht/storage.ts";

const T0 = 1_000_000;
const TTL = DEFAULT_LIMITS.valueTtlMs;
const ITEM_TTL = DEFAULT_LIMITS.itemTtlMs;

function key(n: number): NodeId {
  const id = new Uint8Array(20);
  new DataView(id.buffer).setUint32(16, n);
  return id;
}

function peer(n: number, pieces?: Uint8Array): PeerValue {
  return pieces === undefined ? { address: `192.0.2.${n}`, port: 6881 } : { address: `192.0.2.${n}`, port: 6881, pieces };
}

function endpoints(values: PeerValue[]): string[] {
  return values.map((v) => `${v.address}:${v.port}`).sort();
}

describe("ValueStore values", () => {
  test("announce() stores several peers under one key", () => {
    const store = new ValueStore();
    expect(store.announce(key(1), peer(1), T0)).toBe("stored");
    expect(store.announce(key(1), peer(2), T0)).toBe("stored");
    expect(store.announce(key(1), { address: "192.0.2.1", port: 7000 }, T0)).toBe("stored");
    expect(store.count(key(1), T0)).toBe(3);
    expect(endpoints(store.peers(key(1), T0, 10))).toEqual(["192.0.2.1:6881", "192.0.2.1:7000", "192.0.2.2:6881"]);
    expect(store.peers(key(2), T0, 10)).toEqual([]);
    expect(store.count(key(2), T0)).toBe(0);
  });

  test("a second announce from the same address and port refreshes its one entry", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    expect(store.announce(key(1), peer(1), T0 + 1000)).toBe("refreshed");
    expect(store.count(key(1), T0 + 1000)).toBe(1);
  });

  test("a value expires exactly at its TTL: live just before, gone at the boundary", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    expect(store.count(key(1), T0 + TTL - 1)).toBe(1);
    expect(store.count(key(1), T0 + TTL)).toBe(0);
    expect(store.peers(key(1), T0 + TTL, 10)).toEqual([]);
  });

  test("a refresh keeps a value alive past its first TTL", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    store.announce(key(1), peer(1), T0 + TTL / 2);
    expect(store.count(key(1), T0 + TTL)).toBe(1);
    expect(store.count(key(1), T0 + TTL / 2 + TTL - 1)).toBe(1);
    expect(store.count(key(1), T0 + TTL / 2 + TTL)).toBe(0);
  });

  test("an announce after expiry stores the value anew", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    expect(store.announce(key(1), peer(1), T0 + TTL)).toBe("stored");
    expect(store.count(key(1), T0 + TTL)).toBe(1);
  });

  test("reads never return expired values, even before expire() runs", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    store.announce(key(1), peer(2), T0 + TTL / 2);
    const later = T0 + TTL;
    expect(endpoints(store.peers(key(1), later, 10))).toEqual(["192.0.2.2:6881"]);
    expect(store.count(key(1), later)).toBe(1);
    expect(store.stats(later)).toEqual({ keys: 1, values: 1, items: 0 });
    expect(store.stats()).toEqual({ keys: 1, values: 2, items: 0 }); // still held until expire()
  });

  test("expire() drops expired values and empty keys and returns how many it dropped", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    store.announce(key(1), peer(2), T0);
    store.announce(key(2), peer(1), T0 + TTL / 2);
    expect(store.expire(T0 + TTL - 1)).toBe(0);
    expect(store.expire(T0 + TTL)).toBe(2);
    expect(store.stats()).toEqual({ keys: 1, values: 1, items: 0 });
    expect(store.expire(T0 + TTL)).toBe(0);
  });

  test("the newest announce's pieces replace the stored ones, and an announce without pieces removes them", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1, new Uint8Array([1, 2, 3])), T0);
    expect(store.peers(key(1), T0, 1)[0]?.pieces).toEqual(new Uint8Array([1, 2, 3]));
    store.announce(key(1), peer(1, new Uint8Array([4, 5])), T0 + 1);
    expect(store.peers(key(1), T0 + 1, 1)[0]?.pieces).toEqual(new Uint8Array([4, 5]));
    store.announce(key(1), peer(1), T0 + 2);
    const [value] = store.peers(key(1), T0 + 2, 1);
    expect(value).toEqual({ address: "192.0.2.1", port: 6881 });
    expect(value && "pieces" in value).toBe(false);
  });

  test("stored pieces are copies: later changes to the caller's buffer do not leak in or out", () => {
    const store = new ValueStore();
    const pieces = new Uint8Array([1, 2, 3]);
    store.announce(key(1), peer(1, pieces), T0);
    pieces[0] = 9;
    const read = store.peers(key(1), T0, 1)[0]!.pieces!;
    read[1] = 9;
    expect(store.peers(key(1), T0, 1)[0]?.pieces).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("pieces of MAX_PIECE_INFO_BYTES are stored, longer pieces are refused", () => {
    const store = new ValueStore();
    expect(store.announce(key(1), peer(1, new Uint8Array(MAX_PIECE_INFO_BYTES)), T0)).toBe("stored");
    expect(store.announce(key(1), peer(2, new Uint8Array(MAX_PIECE_INFO_BYTES + 1)), T0)).toBe("refused");
    // A refused refresh leaves the stored value as it was.
    expect(store.announce(key(1), peer(1, new Uint8Array(MAX_PIECE_INFO_BYTES + 1)), T0 + 1)).toBe("refused");
    expect(store.count(key(1), T0 + 1)).toBe(1);
    expect(store.peers(key(1), T0 + 1, 1)[0]?.pieces?.length).toBe(MAX_PIECE_INFO_BYTES);
  });

  test("announce() refuses invalid ports, empty addresses and keys that are not 20 bytes", () => {
    const store = new ValueStore();
    expect(store.announce(key(1), { address: "192.0.2.1", port: 0 }, T0)).toBe("refused");
    expect(store.announce(key(1), { address: "192.0.2.1", port: 65536 }, T0)).toBe("refused");
    expect(store.announce(key(1), { address: "192.0.2.1", port: 1.5 }, T0)).toBe("refused");
    expect(store.announce(key(1), { address: "", port: 6881 }, T0)).toBe("refused");
    expect(store.announce(new Uint8Array(19), peer(1), T0)).toBe("refused");
    expect(store.stats()).toEqual({ keys: 0, values: 0, items: 0 });
  });

  test("when maxValuesPerKey are held, a newcomer replaces the value closest to expiry", () => {
    const store = new ValueStore({ maxValuesPerKey: 3 });
    store.announce(key(1), peer(1), T0);
    store.announce(key(1), peer(2), T0 + 1);
    store.announce(key(1), peer(3), T0 + 2);
    store.announce(key(1), peer(1), T0 + 3); // refreshed: now peer 2 is closest to expiry
    expect(store.announce(key(1), peer(4), T0 + 4)).toBe("stored");
    expect(endpoints(store.peers(key(1), T0 + 4, 10))).toEqual(["192.0.2.1:6881", "192.0.2.3:6881", "192.0.2.4:6881"]);
    expect(store.announce(key(1), peer(5), T0 + 5)).toBe("stored");
    expect(endpoints(store.peers(key(1), T0 + 5, 10))).toEqual(["192.0.2.1:6881", "192.0.2.4:6881", "192.0.2.5:6881"]);
  });

  test("when maxKeys are held, new keys are refused but held keys still refresh and grow", () => {
    const store = new ValueStore({ maxKeys: 2 });
    store.announce(key(1), peer(1), T0);
    store.announce(key(2), peer(1), T0);
    expect(store.announce(key(3), peer(1), T0 + 1)).toBe("refused");
    expect(store.count(key(3), T0 + 1)).toBe(0);
    expect(store.announce(key(1), peer(1), T0 + 1)).toBe("refreshed");
    expect(store.announce(key(2), peer(2), T0 + 1)).toBe("stored");
    expect(store.stats()).toEqual({ keys: 2, values: 3, items: 0 });
  });

  test("expired keys make room for new keys without waiting for expire()", () => {
    const store = new ValueStore({ maxKeys: 1 });
    store.announce(key(1), peer(1), T0);
    expect(store.announce(key(2), peer(1), T0 + TTL)).toBe("stored");
    expect(store.stats()).toEqual({ keys: 1, values: 1, items: 0 });
  });

  test("maxTotalValues bounds the values over all keys, replacing the one closest to expiry", () => {
    const store = new ValueStore({ maxTotalValues: 3 });
    store.announce(key(1), peer(1), T0);
    store.announce(key(2), peer(1), T0 + 1);
    store.announce(key(2), peer(2), T0 + 2);
    expect(store.announce(key(3), peer(1), T0 + 3)).toBe("stored");
    expect(store.stats()).toEqual({ keys: 2, values: 3, items: 0 }); // key 1 lost its only value
    expect(store.count(key(1), T0 + 3)).toBe(0);
    for (let n = 10; n < 100; n++) store.announce(key(n), peer(n), T0 + n);
    expect(store.stats().values).toBe(3);
    expect(store.stats().keys).toBeLessThanOrEqual(3);
  });

  test("the limits hold under a flood of distinct keys and peers", () => {
    const store = new ValueStore({ maxKeys: 10, maxValuesPerKey: 5, maxTotalValues: 30 });
    for (let n = 0; n < 5000; n++) {
      store.announce(key(n % 37), { address: `198.51.100.${n % 250}`, port: 1000 + n }, T0 + n);
    }
    const stats = store.stats();
    expect(stats.keys).toBeLessThanOrEqual(10);
    expect(stats.values).toBeLessThanOrEqual(30);
    for (let k = 0; k < 37; k++) expect(store.count(key(k), T0 + 5000)).toBeLessThanOrEqual(5);
  });

  test("peers(max) returns at most max values and, over repeated calls, every value", () => {
    const store = new ValueStore();
    for (let n = 1; n <= 10; n++) store.announce(key(1), peer(n), T0);
    const seen = new Set<string>();
    for (let call = 0; call < 4; call++) {
      const values = store.peers(key(1), T0, 3);
      expect(values).toHaveLength(3);
      expect(new Set(endpoints(values)).size).toBe(3);
      for (const e of endpoints(values)) seen.add(e);
    }
    expect(seen.size).toBe(10);
  });

  test("peers() with max of 0 returns nothing", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    expect(store.peers(key(1), T0, 0)).toEqual([]);
  });
});

describe("ValueStore BEP 44 items", () => {
  const value = new TextEncoder().encode("12:piece hashes");

  test("putItem() stores an item that getItem() returns, and a second put refreshes it", () => {
    const store = new ValueStore();
    expect(store.putItem(key(1), value, T0)).toBe("stored");
    expect(store.getItem(key(1), T0)).toEqual(value);
    expect(store.getItem(key(2), T0)).toBeUndefined();
    expect(store.putItem(key(1), value, T0 + ITEM_TTL / 2)).toBe("refreshed");
    expect(store.getItem(key(1), T0 + ITEM_TTL)).toEqual(value);
    expect(store.getItem(key(1), T0 + ITEM_TTL / 2 + ITEM_TTL)).toBeUndefined();
  });

  test("an item expires exactly at its TTL, and expire() drops it", () => {
    const store = new ValueStore();
    store.putItem(key(1), value, T0);
    expect(store.getItem(key(1), T0 + ITEM_TTL - 1)).toEqual(value);
    expect(store.getItem(key(1), T0 + ITEM_TTL)).toBeUndefined();
    expect(store.stats()).toEqual({ keys: 0, values: 0, items: 1 });
    expect(store.stats(T0 + ITEM_TTL)).toEqual({ keys: 0, values: 0, items: 0 });
    expect(store.expire(T0 + ITEM_TTL)).toBe(1);
    expect(store.stats()).toEqual({ keys: 0, values: 0, items: 0 });
  });

  test("putItem() refuses an empty value, one over BEP44_MAX_VALUE_BYTES, and a target not 20 bytes", () => {
    const store = new ValueStore();
    expect(store.putItem(key(1), new Uint8Array(BEP44_MAX_VALUE_BYTES), T0)).toBe("stored");
    expect(store.putItem(key(2), new Uint8Array(BEP44_MAX_VALUE_BYTES + 1), T0)).toBe("refused");
    expect(store.putItem(key(3), new Uint8Array(0), T0)).toBe("refused");
    expect(store.putItem(new Uint8Array(21), value, T0)).toBe("refused");
    expect(store.stats().items).toBe(1);
  });

  test("when maxItems are held, a new item replaces the one closest to expiry", () => {
    const store = new ValueStore({ maxItems: 2 });
    store.putItem(key(1), value, T0);
    store.putItem(key(2), value, T0 + 1);
    store.putItem(key(1), value, T0 + 2); // refreshed: item 2 is now closest to expiry
    expect(store.putItem(key(3), value, T0 + 3)).toBe("stored");
    expect(store.stats().items).toBe(2);
    expect(store.getItem(key(1), T0 + 3)).toEqual(value);
    expect(store.getItem(key(2), T0 + 3)).toBeUndefined();
    expect(store.getItem(key(3), T0 + 3)).toEqual(value);
  });

  test("items are copies of the caller's buffer", () => {
    const store = new ValueStore();
    const buffer = value.slice();
    store.putItem(key(1), buffer, T0);
    buffer[0] = 0;
    store.getItem(key(1), T0)![1] = 0;
    expect(store.getItem(key(1), T0)).toEqual(value);
  });
});

describe("ValueStore stats and limits", () => {
  test("stats() counts keys, values and items", () => {
    const store = new ValueStore();
    store.announce(key(1), peer(1), T0);
    store.announce(key(1), peer(2), T0);
    store.announce(key(2), peer(1), T0);
    store.putItem(key(9), new Uint8Array([1]), T0);
    expect(store.stats()).toEqual({ keys: 2, values: 3, items: 1 });
    expect(store.stats(T0)).toEqual({ keys: 2, values: 3, items: 1 });
  });

  test("the constructor merges partial limits over DEFAULT_LIMITS and refuses non-positive ones", () => {
    expect(new ValueStore({ maxKeys: 7 }).limits).toEqual({ ...DEFAULT_LIMITS, maxKeys: 7 });
    expect(() => new ValueStore({ valueTtlMs: 0 })).toThrow(RangeError);
  });
});
