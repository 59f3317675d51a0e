/** The warm start's saved contacts: what a long-running routing table holds, K per distance range. */
import { describe, expect, test } from "bun:test";
import { K } from "../../src/dht/node.ts";
import { savedContacts } from "../../scripts/sim/dht.ts";
import { bytesFrom, seeded } from "../../scripts/sim/random.ts";

/** Leading bits two ids share. */
function sharedBits(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]! ^ b[i]!;
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return a.length * 8;
}

describe("savedContacts()", () => {
  const random = seeded(9);
  const bytes = bytesFrom(random);
  const ids = Array.from({ length: 400 }, () => bytes(20));
  const reachable = ids.slice(0, 300).map((id, i) => ({ id, address: `10.0.${i >> 8}.${i & 255}`, port: 9977 }));
  const saved = savedContacts(ids, reachable, random);

  test("every node gets at most K contacts per distance range, never itself, only reachable ones", () => {
    const reachableIds = new Set(reachable.map((c) => c.id));
    saved.forEach((contacts, i) => {
      const perRange = new Map<number, number>();
      for (const c of contacts) {
        expect(c.id).not.toBe(ids[i]!);
        expect(reachableIds.has(c.id)).toBe(true);
        const d = sharedBits(ids[i]!, c.id);
        perRange.set(d, (perRange.get(d) ?? 0) + 1);
      }
      for (const n of perRange.values()) expect(n).toBeLessThanOrEqual(K);
    });
  });

  test("a range with fewer than K nodes is given whole, so every node knows its closest neighbours", () => {
    saved.forEach((contacts, i) => {
      const known = new Set(contacts.map((c) => c.id));
      const others = reachable.filter((c) => c.id !== ids[i]);
      for (const c of others) {
        const d = sharedBits(ids[i]!, c.id);
        const inRange = others.filter((o) => sharedBits(ids[i]!, o.id) === d).length;
        if (inRange <= K) expect(known.has(c.id)).toBe(true);
      }
    });
  });
});
