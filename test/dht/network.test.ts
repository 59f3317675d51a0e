/**
 * Hundreds of nodes on an in-memory datagram network: lookups find the K closest nodes, survive a
 * quarter of the nodes vanishing, and get_peers finds every announcer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import bencode from "bencode";
import { idToHex } from "../../src/dht/id.ts";
import { K } from "../../src/dht/node.ts";
import { startSim, type Sim } from "../helpers/dht-sim.ts";

const NODES = 500;
const LOOKUPS = 40;

let sim: Sim;

beforeAll(async () => {
  // Patient timeouts: these tests check that lookups are exact, and on a busy 2-core CI machine an
  // event-loop stall past the default floors marks a live node slow and the lookup ends without it.
  sim = await startSim(NODES, { seed: 42, node: { rtt: { minTimeoutMs: 500 }, slowFloorMs: 500 } });
}, 120_000);

afterAll(() => sim?.close());

function pickLive(i: number) {
  const live = sim.nodes.filter((n) => !sim.dead.has(n));
  return live[(i * 7919) % live.length]!;
}

describe(`a DHT of ${NODES} nodes`, () => {
  test("every node joined: each routing table holds at least K contacts", () => {
    const sizes = sim.nodes.map((n) => n.stats().tableSize);
    expect(Math.min(...sizes)).toBeGreaterThanOrEqual(K);
  });

  test("random lookups find exactly the K closest nodes", async () => {
    const results = await Promise.all(
      Array.from({ length: LOOKUPS }, async (_, i) => {
        const target = sim.random(20);
        const from = pickLive(i);
        const found = await from.findNode(target);
        const expected = sim.trueClosest(target, K, from).map((n) => idToHex(n.id));
        return { found: found.map((c) => idToHex(c.id)), expected };
      }),
    );
    for (const r of results) expect(r.found).toEqual(r.expected);
  }, 60_000);

  test("nodes that joined a grown network estimate its size within a factor of three", () => {
    const estimates = sim.nodes.slice(-50).map((n) => n.stats().estimatedNetworkSize).sort((a, b) => a - b);
    const median = estimates[25]!;
    expect(median).toBeGreaterThan(NODES / 3);
    expect(median).toBeLessThan(NODES * 3);
  });

  test("a key announced by several nodes is found with every announcer by get_peers from another", async () => {
    const key = sim.random(20);
    const announcers = [3, 77, 150, 222, 401].map((i) => sim.nodes[i]!);
    const outcomes = await Promise.all(announcers.map((n, i) => n.announce(key, 9000 + i)));
    for (const o of outcomes) expect(o.stored).toBeGreaterThanOrEqual(K - 1);
    const found = await sim.nodes[333]!.getPeers(key);
    const got = found.peers.map((p) => `${p.address}:${p.port}`).sort();
    expect(got).toEqual(announcers.map((n, i) => `${n.local.address}:${9000 + i}`).sort());
  }, 60_000);

  test("get_peers with enough=1 stops at the first answer naming peers: fewer queries, announcers only", async () => {
    const key = sim.random(20);
    const announcers = [12, 99, 250].map((i) => sim.nodes[i]!);
    await Promise.all(announcers.map((n, i) => n.announce(key, 8000 + i)));
    const valid = new Set(announcers.map((n, i) => `${n.local.address}:${8000 + i}`));
    // The early one first: the full lookup from the same node then starts from a table that learned from it.
    const early = await sim.nodes[444]!.getPeers(key, { enough: 1 });
    const full = await sim.nodes[444]!.getPeers(key);
    expect(full.peers).toHaveLength(3);
    expect(early.peers.length).toBeGreaterThanOrEqual(1);
    for (const p of early.peers) expect(valid.has(`${p.address}:${p.port}`)).toBe(true);
    expect(early.queried).toBeLessThan(full.queried);
  }, 60_000);

  test("a BEP 44 item put by one node is got by another", async () => {
    const value = bencode.encode({ pieces: new Uint8Array(40).fill(7), size: 3_000_000 });
    const { target, stored } = await sim.nodes[10]!.putItem(value);
    expect(stored).toBeGreaterThanOrEqual(K - 1);
    const got = await sim.nodes[490]!.getItem(target);
    expect(got).toEqual(value);
  }, 60_000);

  test("with a quarter of the nodes silently dead, lookups still find the K closest live nodes", async () => {
    for (let i = 1; i < sim.nodes.length; i += 4) sim.kill(sim.nodes[i]!);
    expect(sim.dead.size).toBe(NODES / 4);
    const results = await Promise.all(
      Array.from({ length: LOOKUPS }, async (_, i) => {
        const target = sim.random(20);
        const from = pickLive(i + 1);
        const found = await from.findNode(target);
        const expected = sim.trueClosest(target, K, from).map((n) => idToHex(n.id));
        return found.map((c) => idToHex(c.id)).filter((id) => expected.includes(id)).length;
      }),
    );
    // Nodes answer with 2K contacts, so a lookup steps past the dead ones in their lists (see NODES_PER_ANSWER).
    expect(results.filter((n) => n === K)).toHaveLength(LOOKUPS);
  }, 60_000);

  test("with a quarter of the nodes dead, every announcer of a key is still found", async () => {
    const key = sim.random(20);
    const announcers = [0, 8, 100, 200, 300].map((i) => sim.nodes[i]!).filter((n) => !sim.dead.has(n));
    expect(announcers).toHaveLength(5);
    await Promise.all(announcers.map((n, i) => n.announce(key, 7000 + i)));
    const found = await sim.nodes[498]!.getPeers(key);
    expect(found.peers.map((p) => p.port).sort()).toEqual([7000, 7001, 7002, 7003, 7004]);
  }, 60_000);
});
