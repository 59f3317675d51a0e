/**
 * The DHT alone at scale: N nodes join, a share of them vanish without a word (their contacts stay in
 * everyone's tables), then live nodes announce keys and other live nodes look them up. Reports lookup
 * times and how often a lookup finds the announcer, and how often find_node returns exactly the K
 * closest live nodes.
 */
import { compareDistance, idsEqual } from "../../src/dht/id.ts";
import { K, type DhtNode } from "../../src/dht/node.ts";
import { SimClock } from "./clock.ts";
import { SimDatagramNetwork } from "./datagrams.ts";
import { buildDht, DHT_PORT } from "./dht.ts";
import { bytesFrom, quantile, seeded, shuffle } from "./random.ts";
import { addressOf, linkLatency } from "./world.ts";

export interface DhtOnlyOptions {
  nodes: number;
  seed: number;
  deadShare?: number;
  lookups?: number;
  loss?: number;
}

export interface DhtOnlyResult {
  nodes: number;
  dead: number;
  lookups: number;
  getPeers: { p50Ms: number; p99Ms: number; success: number };
  findNode: { p50Ms: number; p99Ms: number; exact: number };
  buildSeconds: number;
  runSeconds: number;
  datagrams: number;
}

export async function runDhtOnly(options: DhtOnlyOptions): Promise<DhtOnlyResult> {
  const random = seeded(options.seed);
  const places = Array.from({ length: options.nodes }, () => ({ accessMs: 2 + random() * 18, place: random() }));
  const index = new Map(places.map((p, i) => [addressOf(i + 1), p]));
  const clock = new SimClock();
  const net = new SimDatagramNetwork(clock, { latencyMs: (a, b) => linkLatency(index.get(a)!, index.get(b)!), loss: options.loss ?? 0.01, random });
  const started = performance.now();
  const nodes = await buildDht(
    clock,
    net,
    places.map((_, i) => ({ address: addressOf(i + 1), nat: false, early: true })),
    random,
  );
  const buildSeconds = (performance.now() - started) / 1000;
  const shuffled = shuffle([...nodes], random);
  const deadCount = Math.round((options.deadShare ?? 0.25) * nodes.length);
  const dead = new Set(shuffled.slice(0, deadCount));
  for (const node of dead) net.setOnline(node.local.address, false);
  const live = shuffled.slice(deadCount);
  const lookups = options.lookups ?? 200;
  const keyBytes = bytesFrom(random);
  const runStart = performance.now();

  // get_peers: one announcer per key, looked up from another live node.
  const announces = Array.from({ length: lookups }, (_, i) => ({ key: keyBytes(20), by: live[(2 * i) % live.length]!, from: live[(2 * i + 1) % live.length]! }));
  await clock.runUntil(Promise.all(announces.map((a) => a.by.announce(a.key, DHT_PORT))));
  const found = await clock.runUntil(Promise.all(announces.map((a) => a.from.getPeers(a.key))));
  const getPeersTimes = found.map((f) => f.durationMs);
  const success = found.filter((f, i) => f.peers.some((p) => p.address === announces[i]!.by.local.address)).length / lookups;

  // find_node: exactly the K closest live nodes?
  const targets = Array.from({ length: lookups }, (_, i) => ({ target: keyBytes(20), from: live[(7 * i + 3) % live.length]! }));
  const startedAt = targets.map(() => clock.now());
  const results = await clock.runUntil(
    Promise.all(
      targets.map(async (t, i) => {
        const begin = clock.now();
        startedAt[i] = begin;
        const closest = await t.from.findNode(t.target);
        return { closest, ms: clock.now() - begin };
      }),
    ),
  );
  const exact = results.filter((r, i) => sameIds(r.closest.map((c) => c.id), trueClosest(live, targets[i]!.target, targets[i]!.from))).length / lookups;
  return {
    nodes: nodes.length,
    dead: deadCount,
    lookups,
    getPeers: { p50Ms: quantile(getPeersTimes, 0.5), p99Ms: quantile(getPeersTimes, 0.99), success },
    findNode: { p50Ms: quantile(results.map((r) => r.ms), 0.5), p99Ms: quantile(results.map((r) => r.ms), 0.99), exact },
    buildSeconds,
    runSeconds: (performance.now() - runStart) / 1000,
    datagrams: net.counters.datagrams,
  };
}

function trueClosest(live: DhtNode[], target: Uint8Array, except: DhtNode): Uint8Array[] {
  return live
    .filter((n) => n !== except)
    .map((n) => n.id)
    .sort((a, b) => compareDistance(target, a, b))
    .slice(0, K);
}

function sameIds(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((id, i) => idsEqual(id, b[i]!));
}
