/**
 * The lookup's own slowness check: once it has seen how fast nodes answer now, a node much slower than
 * that stops holding it up, even if the transport has not timed out yet (its RTT estimate may be stale).
 */
import { expect, test } from "bun:test";
import { compareDistance, type Contact } from "../../src/dht/id.ts";
import { lookup, type LookupDeps } from "../../src/dht/lookup.ts";
import type { Answer } from "../../src/dht/rpc.ts";
import { seededRandom } from "./fakes.ts";

/** Lookup deps on the real clock and timers, answering through `query`. */
function realTimeDeps(query: LookupDeps["query"]): LookupDeps {
  return {
    ownId: new Uint8Array(20).fill(0xff),
    now: () => performance.now(),
    schedule: (fn, ms) => {
      const handle = setTimeout(fn, ms);
      return () => clearTimeout(handle);
    },
    onAnswer: () => {},
    onFailure: () => {},
    query,
  };
}

test("a silent node among the closest does not stall a lookup once others answered quickly", async () => {
  const random = seededRandom(5);
  const nodes: Contact[] = Array.from({ length: 20 }, (_, i) => ({ id: random.bytes(20), address: `10.1.0.${i}`, port: 6881 }));
  const target = random.bytes(20);
  const sorted = [...nodes].sort((a, b) => compareDistance(target, a.id, b.id));
  const silent = sorted[0]!; // the closest node never answers, and the transport never gives up on it
  let silentAsked = 0;
  const deps = realTimeDeps(
    (to) =>
      new Promise<Answer>((resolve) => {
        const node = nodes.find((n) => n.address === to.address)!;
        if (node === silent) {
          silentAsked++;
          return; // never settles
        }
        setTimeout(() => resolve({ body: { id: node.id, nodes }, from: to, rttMs: 1 }), 1);
      }),
  );
  const result = await lookup({ target, method: "find_node", seeds: nodes.slice(0, 5), k: 8, alpha: 3 }, deps);
  expect(silentAsked).toBe(1);
  expect(result.closest.map((c) => c.contact.address)).toEqual(sorted.slice(1, 9).map((n) => n.address));
  // Without the lookup's own slowness check this never resolves: the transport here never times out.
});

test("in a DHT of fewer than K nodes, get_peers holding peers does not wait for a silent node; find_node still does", async () => {
  const random = seededRandom(6);
  // Four machines: three answer at once, with a peer for the key; one is gone and never answers.
  const nodes: Contact[] = Array.from({ length: 4 }, (_, i) => ({ id: random.bytes(20), address: `10.2.0.${i}`, port: 6881 }));
  const target = random.bytes(20);
  const gone = nodes[3]!;
  let transportGaveUp!: () => void;
  const giveUp = new Promise<void>((resolve) => (transportGaveUp = resolve));
  const deps = realTimeDeps((to) => {
    const node = nodes.find((n) => n.address === to.address)!;
    // The gone node's query fails only when the test says the transport timed out.
    if (node === gone) return giveUp.then(() => Promise.reject(new Error("timeout")));
    return new Promise<Answer>((resolve) =>
      setTimeout(() => resolve({ body: { id: node.id, nodes, values: [{ address: "10.9.0.1", port: 9977 }] }, from: to, rttMs: 1 }), 1),
    );
  });
  const peers = await lookup({ target, method: "get_peers", seeds: nodes, k: 8, alpha: 4 }, deps);
  expect(peers.values).toEqual([{ address: "10.9.0.1", port: 9977 }]);
  // A join (find_node) with fewer than K nodes known waits for the last one's fate: it may be all there is.
  let joined = false;
  const join = lookup({ target, method: "find_node", seeds: nodes, k: 8, alpha: 4 }, deps).then((r) => {
    joined = true;
    return r;
  });
  await Bun.sleep(100);
  expect(joined).toBe(false);
  transportGaveUp();
  expect((await join).closest.length).toBe(3);
});
