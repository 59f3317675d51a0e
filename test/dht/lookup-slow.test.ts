/**
 * The lookup's own slowness check: once it has seen how fast nodes answer now, a node much slower than
 * that stops holding it up, even if the transport has not timed out yet (its RTT estimate may be stale).
 */
import { expect, test } from "bun:test";
import { compareDistance, type Contact } from "../../src/dht/id.ts";
import { lookup, type LookupDeps } from "../../src/dht/lookup.ts";
import type { Answer } from "../../src/dht/rpc.ts";
import { seededRandom } from "./fakes.ts";

test("a silent node among the closest does not stall a lookup once others answered quickly", async () => {
  const random = seededRandom(5);
  const nodes: Contact[] = Array.from({ length: 20 }, (_, i) => ({ id: random.bytes(20), address: `10.1.0.${i}`, port: 6881 }));
  const target = random.bytes(20);
  const sorted = [...nodes].sort((a, b) => compareDistance(target, a.id, b.id));
  const silent = sorted[0]!; // the closest node never answers, and the transport never gives up on it
  let silentAsked = 0;
  const deps: LookupDeps = {
    ownId: new Uint8Array(20).fill(0xff),
    now: () => performance.now(),
    schedule: (fn, ms) => {
      const handle = setTimeout(fn, ms);
      return () => clearTimeout(handle);
    },
    onAnswer: () => {},
    onFailure: () => {},
    query: (to) =>
      new Promise<Answer>((resolve) => {
        const node = nodes.find((n) => n.address === to.address)!;
        if (node === silent) {
          silentAsked++;
          return; // never settles
        }
        setTimeout(() => resolve({ body: { id: node.id, nodes }, from: to, rttMs: 1 }), 1);
      }),
  };
  const result = await lookup({ target, method: "find_node", seeds: nodes.slice(0, 5), k: 8, alpha: 3 }, deps);
  expect(silentAsked).toBe(1);
  expect(result.closest.map((c) => c.contact.address)).toEqual(sorted.slice(1, 9).map((n) => n.address));
  // Without the lookup's own slowness check this never resolves: the transport here never times out.
});
