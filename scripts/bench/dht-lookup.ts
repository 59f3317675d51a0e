/**
 * Benchmark: DHT lookups of apt-p2p's node against bittorrent-dht (webtorrent's BEP 5 implementation),
 * each as a network of N nodes in this one process on real UDP sockets on 127.0.0.1 (port 0).
 *
 * Method, the same for both implementations:
 *   1. Start N nodes: the first alone, then batches of BATCH joining through the first (a growing network).
 *      Then one settle round, batch by batch: ours call join() again, theirs look up their own id
 *      (what bucket refreshes achieve over time in a real network: meeting the nodes that joined later).
 *   2. ANNOUNCED_KEYS keys are each announced by ANNOUNCERS_PER_KEY nodes that stay alive.
 *   3. A fraction (--dead, default 25%) of the other nodes vanish silently: their socket drops every
 *      datagram in and out, so that they stay in the others' routing tables as a vanished machine does.
 *   4. L lookups (--lookups), CONCURRENCY at a time, each from a different live node picked at random:
 *      every other one a get_peers of an announced key (success: every announcer found), the rest a
 *      lookup of a random key (success: the K=8 closest nodes it reports that answered are the K live
 *      nodes closest to the key by brute force over all live ids). For random keys ours runs findNode
 *      (the same iterative lookup as getPeers, the only one whose result names its closest nodes);
 *      theirs runs dht.lookup (get_peers, their only lookup) and its closest are read from the table of
 *      answering nodes that bittorrent-dht keeps per lookup for a following announce (`_tables`).
 *      Duration: from the call to the promise/callback. Messages: find_node/get_peers query datagrams
 *      (resends included) that the looking node's socket sent during its lookup.
 *   5. Ours only, steady-state maintenance traffic: every live node runs maintain() with its clock
 *      (DhtNodeOptions.clock) advanced past BUCKET_REFRESH_MS, then 14 more times a minute later each:
 *      one 15-minute refresh cycle of the periodic work. Bytes that all live nodes sent during it,
 *      divided by live nodes and 900 s, give B/s per node (what a node receives is the same on average).
 *      This is an upper bound: in use, a node's own lookups touch buckets and spare their refreshes.
 *
 * bittorrent-dht runs as shipped (k = 20, 16 queries in flight, 2 s timeouts); ours with its defaults
 * except the per-address rate limit, which would treat all nodes here (all on 127.0.0.1) as one.
 *
 * Usage: bun scripts/bench/dht-lookup.ts [--nodes 500] [--lookups 200] [--dead 0.25] [--seed 1]
 */
import { parseArgs } from "node:util";
import { compareDistance, idsEqual, type Endpoint, type NodeId } from "../../src/dht/id.ts";
import { BUCKET_REFRESH_MS, DhtNode, K, MAINTENANCE_INTERVAL_MS } from "../../src/dht/node.ts";
import { bindUdp, type DatagramSocket } from "../../src/dht/socket.ts";
import { btAnnounce, btLookup, countOut, newCounters, startBtDht, withTimeout, type BtDht, type BtPeer, type TrafficCounters } from "../../test/helpers/bt-dht.ts";
import { seededBytes } from "../../test/helpers/dht-sim.ts";

const { values: args } = parseArgs({
  options: {
    nodes: { type: "string", default: "500" },
    lookups: { type: "string", default: "200" },
    dead: { type: "string", default: "0.25" },
    seed: { type: "string", default: "1" },
  },
});
const NODES = positiveInt(args.nodes, "--nodes");
const LOOKUPS = positiveInt(args.lookups, "--lookups");
const DEAD_FRACTION = Number(args.dead);
if (!(DEAD_FRACTION >= 0 && DEAD_FRACTION < 0.9)) throw new Error(`--dead must be in [0, 0.9), not ${args.dead}`);
const SEED = positiveInt(args.seed, "--seed");

/** Nodes joining at once, as in test/helpers/dht-sim.ts. */
const BATCH = 25;
const CONCURRENCY = 8;
const ANNOUNCED_KEYS = 20;
const ANNOUNCERS_PER_KEY = 3;
/** A lookup still running after this counts as a failure (bittorrent-dht's take a few seconds with dead nodes). */
const LOOKUP_TIMEOUT_MS = 30_000;
/** No new lookups start after this, so that the whole script stays within a few minutes. */
const LOOKUP_PHASE_BUDGET_MS = 100_000;
const ANNOUNCE_TIMEOUT_MS = 30_000;
/** Maintenance runs at once per live node: bounds the load on the one event loop. */
const MAINTENANCE_CONCURRENCY = 25;
/**
 * Ours limits queries per source IP address; here every node is 127.0.0.1, so the first node would drop
 * most of the joiners' queries. In a real network each of them has its own address: no limit here.
 */
const UNLIMITED = { perSecond: 1e9, burst: 1e9 };
const REFRESH_CYCLE_S = BUCKET_REFRESH_MS / 1000;
const MAINTENANCE_ROUNDS = BUCKET_REFRESH_MS / MAINTENANCE_INTERVAL_MS; // 15: the first one refreshes every bucket

const random = seededBytes(SEED);

function positiveInt(text: string | undefined, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${text}`);
  return n;
}

/** An integer in [0, n) from the seeded source (n well below 2^32). */
function randomInt(n: number): number {
  const b = random(4);
  return (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) % n;
}

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

/** One member of a network under test, whichever implementation. */
interface Member {
  id: NodeId;
  port: number;
  counters: TrafficCounters;
  dead: boolean;
}

interface LookupSample {
  ms: number;
  queries: number;
  ok: boolean;
  announced: boolean;
}

interface Outcome {
  impl: string;
  startMs: number;
  meanTable: number;
  samples: LookupSample[];
  skipped: number;
  maintenance?: { outPerNodeBps: number; inPerNodeBps: number; queriesPerNode: number };
  /** Ours: the median over nodes of each node's median measured RTT, after the lookups. */
  medianRttMs?: number;
}

/** The plan shared by both runs: which nodes announce which key and which vanish, by index. */
interface Plan {
  keys: NodeId[];
  announcers: number[][];
  deadIndexes: Set<number>;
  lookups: { key: NodeId; announced: number | null }[];
}

function makePlan(): Plan {
  const keys = Array.from({ length: ANNOUNCED_KEYS }, () => random(20));
  const order = shuffled(Array.from({ length: NODES - 1 }, (_, i) => i + 1));
  const announcers = keys.map((_, k) => order.slice(k * ANNOUNCERS_PER_KEY, (k + 1) * ANNOUNCERS_PER_KEY));
  const announcing = new Set(announcers.flat());
  const candidates = order.filter((i) => !announcing.has(i));
  const deadIndexes = new Set(candidates.slice(0, Math.min(candidates.length, Math.round(NODES * DEAD_FRACTION))));
  const lookups = Array.from({ length: LOOKUPS }, (_, i) =>
    i % 2 === 0 ? { key: keys[(i / 2) % ANNOUNCED_KEYS]!, announced: (i / 2) % ANNOUNCED_KEYS } : { key: random(20), announced: null },
  );
  return { keys, announcers, deadIndexes, lookups };
}

function trueClosest(members: Member[], key: NodeId, except: Member): NodeId[] {
  return members
    .filter((m) => !m.dead && m !== except)
    .map((m) => m.id)
    .sort((a, b) => compareDistance(key, a, b))
    .slice(0, K);
}

function sameSet(found: NodeId[], expected: NodeId[]): boolean {
  return found.length === expected.length && expected.every((id) => found.some((f) => idsEqual(f, id)));
}

/**
 * Runs the lookups, CONCURRENCY at a time, each from a live node that runs no other lookup at the time.
 * `run` performs one lookup and says whether it succeeded.
 */
async function runLookups(
  members: Member[],
  plan: Plan,
  run: (looker: number, key: NodeId, announced: number | null) => Promise<boolean>,
): Promise<{ samples: LookupSample[]; skipped: number }> {
  const live = shuffled(members.map((_, i) => i).filter((i) => !members[i]!.dead));
  const busy = new Set<number>();
  const samples: LookupSample[] = [];
  const deadline = performance.now() + LOOKUP_PHASE_BUDGET_MS;
  let next = 0;
  let cursor = 0;
  const worker = async () => {
    while (next < plan.lookups.length && performance.now() < deadline) {
      const { key, announced } = plan.lookups[next++]!;
      let looker = live[cursor++ % live.length]!;
      for (let tries = 0; busy.has(looker) && tries < live.length; tries++) looker = live[cursor++ % live.length]!;
      busy.add(looker);
      const counters = members[looker]!.counters;
      const before = counters.lookupQueriesOut;
      const started = performance.now();
      const ok = await withTimeout(run(looker, key, announced), LOOKUP_TIMEOUT_MS, "lookup").catch(() => false);
      samples.push({ ms: performance.now() - started, queries: counters.lookupQueriesOut - before, ok, announced: announced !== null });
      busy.delete(looker);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { samples, skipped: plan.lookups.length - samples.length };
}

async function inBatches<T>(items: T[], size: number, work: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}

/** Our DatagramSocket, counted, with a switch that makes the node vanish (drops everything in and out). */
function switchable(inner: DatagramSocket, member: { counters: TrafficCounters; dead: boolean }): DatagramSocket {
  return {
    local: inner.local,
    send(data, to) {
      if (member.dead) return true; // Gone silently: the datagram goes nowhere, as from a vanished machine.
      countOut(member.counters, data);
      return inner.send(data, to);
    },
    onDatagram(handler) {
      inner.onDatagram((data, from) => {
        if (member.dead) return;
        member.counters.datagramsIn++;
        member.counters.bytesIn += data.length;
        handler(data, from);
      });
    },
    close: () => inner.close(),
  };
}

async function benchOurs(plan: Plan): Promise<Outcome> {
  let clockOffsetMs = 0;
  const clock = () => Date.now() + clockOffsetMs;
  const members: Member[] = [];
  const nodes: DhtNode[] = [];
  const t0 = performance.now();
  for (let i = 0; i < NODES; i++) {
    const member: Member = { id: new Uint8Array(20), port: 0, counters: newCounters(), dead: false };
    const socket = switchable(await bindUdp("127.0.0.1", 0), member);
    const bootstrap: Endpoint[] = i === 0 ? [] : [nodes[0]!.local];
    const node = new DhtNode({ socket, bootstrap, maintenance: false, clock, rateLimit: UNLIMITED });
    member.id = node.id;
    member.port = socket.local.port;
    members.push(member);
    nodes.push(node);
  }
  try {
    await nodes[0]!.start();
    await inBatches(nodes.slice(1), BATCH, (n) => n.start());
    await inBatches(nodes, BATCH, (n) => n.join());
    const startMs = performance.now() - t0;
    const meanTable = nodes.reduce((sum, n) => sum + n.contacts().length, 0) / nodes.length;

    await Promise.all(plan.announcers.map((group, k) => Promise.all(group.map((i) => nodes[i]!.announce(plan.keys[k]!, portOf(i))))));
    for (const i of plan.deadIndexes) members[i]!.dead = true;

    const { samples, skipped } = await runLookups(members, plan, async (looker, key, announced) => {
      const node = nodes[looker]!;
      if (announced !== null) {
        const found = await node.getPeers(key);
        const got = new Set(found.peers.map((p) => p.port));
        return plan.announcers[announced]!.every((i) => got.has(portOf(i)));
      }
      const closest = await node.findNode(key);
      return sameSet(
        closest.map((c) => c.id),
        trueClosest(members, key, members[looker]!),
      );
    });

    const live = nodes.filter((_, i) => !members[i]!.dead);
    const rtts = live.map((n) => n.stats().medianRttMs ?? Number.NaN).filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
    const medianRttMs = percentile(rtts, 0.5);
    const liveMembers = members.filter((m) => !m.dead);
    const outBefore = liveMembers.reduce((s, m) => s + m.counters.bytesOut, 0);
    const inBefore = liveMembers.reduce((s, m) => s + m.counters.bytesIn, 0);
    const queriesBefore = liveMembers.reduce((s, m) => s + m.counters.queriesOut, 0);
    clockOffsetMs += BUCKET_REFRESH_MS;
    for (let round = 0; round < MAINTENANCE_ROUNDS; round++) {
      if (round > 0) clockOffsetMs += MAINTENANCE_INTERVAL_MS;
      await inBatches(live, MAINTENANCE_CONCURRENCY, (n) => n.maintain());
    }
    await Bun.sleep(100); // answers still in flight
    const perNode = (total: number) => total / liveMembers.length;
    const maintenance = {
      outPerNodeBps: perNode(liveMembers.reduce((s, m) => s + m.counters.bytesOut, 0) - outBefore) / REFRESH_CYCLE_S,
      inPerNodeBps: perNode(liveMembers.reduce((s, m) => s + m.counters.bytesIn, 0) - inBefore) / REFRESH_CYCLE_S,
      queriesPerNode: perNode(liveMembers.reduce((s, m) => s + m.counters.queriesOut, 0) - queriesBefore),
    };
    return { impl: "apt-p2p", startMs, meanTable, samples, skipped, maintenance, medianRttMs };
  } finally {
    for (const n of nodes) n.close();
  }
}

/** The port each announcer announces: distinct per node, so that "every announcer found" is exact. */
function portOf(index: number): number {
  return 10_000 + index;
}

/** bittorrent-dht's per-lookup table of answering nodes (private: read only by this benchmark). */
function theirClosest(dht: BtDht, key: NodeId): NodeId[] {
  const tables = (dht as unknown as { _tables: { get(hex: string): { closest(id: Buffer, n: number): { id: Buffer }[] } | undefined } })._tables;
  const table = tables.get(Buffer.from(key).toString("hex"));
  return table === undefined ? [] : table.closest(Buffer.from(key), K).map((c) => new Uint8Array(c.id));
}

async function benchTheirs(plan: Plan): Promise<Outcome> {
  const peers: BtPeer[] = [];
  const members: Member[] = [];
  const add = (peer: BtPeer) => {
    peers.push(peer);
    members.push({ id: new Uint8Array(peer.dht.nodeId), port: peer.port, counters: peer.counters, dead: false });
  };
  const t0 = performance.now();
  try {
    add(await startBtDht());
    const first = { address: "127.0.0.1", port: peers[0]!.port };
    while (peers.length < NODES) {
      const group = await Promise.all(Array.from({ length: Math.min(BATCH, NODES - peers.length) }, () => startBtDht([first])));
      group.forEach(add);
    }
    await inBatches(peers, BATCH, (p) => btLookup(p.dht, p.dht.nodeId, LOOKUP_TIMEOUT_MS).catch(() => undefined));
    const startMs = performance.now() - t0;
    const meanTable = peers.reduce((sum, p) => sum + p.dht.toJSON().nodes.length, 0) / peers.length;

    await Promise.all(
      plan.announcers.map((group, k) => Promise.all(group.map((i) => btAnnounce(peers[i]!.dht, plan.keys[k]!, portOf(i), ANNOUNCE_TIMEOUT_MS).catch(() => 0)))),
    );
    for (const i of plan.deadIndexes) {
      members[i]!.dead = true;
      peers[i]!.kill();
    }

    const { samples, skipped } = await runLookups(members, plan, async (looker, key, announced) => {
      const dht = peers[looker]!.dht;
      const found = await btLookup(dht, key, LOOKUP_TIMEOUT_MS);
      if (announced !== null) {
        const got = new Set(found.peers);
        return plan.announcers[announced]!.every((i) => got.has(`127.0.0.1:${portOf(i)}`));
      }
      return sameSet(theirClosest(dht, key), trueClosest(members, key, members[looker]!));
    });
    return { impl: "bittorrent-dht", startMs, meanTable, samples, skipped };
  } finally {
    await Promise.all(peers.map((p) => withTimeout(p.close(), 5_000, "close").catch(() => undefined)));
  }
}

function summarize(o: Outcome) {
  const ms = o.samples.map((s) => s.ms).sort((a, b) => a - b);
  const rate = (xs: LookupSample[]) => (xs.length === 0 ? Number.NaN : xs.filter((s) => s.ok).length / xs.length);
  return {
    p50: percentile(ms, 0.5),
    p90: percentile(ms, 0.9),
    p99: percentile(ms, 0.99),
    messages: o.samples.reduce((s, x) => s + x.queries, 0) / Math.max(1, o.samples.length),
    success: rate(o.samples),
    successAnnounced: rate(o.samples.filter((s) => s.announced)),
    successRandom: rate(o.samples.filter((s) => !s.announced)),
  };
}

function report(ours: Outcome, theirs: Outcome): void {
  const a = summarize(ours);
  const b = summarize(theirs);
  const pct = (x: number) => (Number.isNaN(x) ? "-" : `${(100 * x).toFixed(1)}%`);
  const num = (x: number) => (Number.isNaN(x) ? "-" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const ratio = (x: number, y: number) => (y > 0 ? (x / y).toFixed(2) : "-");
  const rows: string[][] = [
    ["", "apt-p2p", "bittorrent-dht", "ours/theirs", "goal", "met"],
    ["lookup p50 (ms)", num(a.p50), num(b.p50), ratio(a.p50, b.p50), "ours <= 0.25 x theirs", a.p50 <= 0.25 * b.p50 ? "yes" : "NO"],
    ["lookup p90 (ms)", num(a.p90), num(b.p90), ratio(a.p90, b.p90), "", ""],
    ["lookup p99 (ms)", num(a.p99), num(b.p99), ratio(a.p99, b.p99), "ours < 1000", a.p99 < 1000 ? "yes" : "NO"],
    ["queries per lookup (mean)", num(a.messages), num(b.messages), ratio(a.messages, b.messages), "", ""],
    ["success, all", pct(a.success), pct(b.success), "", ">= 99%", a.success >= 0.99 ? "yes" : "NO"],
    ["  announced keys: every announcer", pct(a.successAnnounced), pct(b.successAnnounced), "", "", ""],
    ["  random keys: the K live closest", pct(a.successRandom), pct(b.successRandom), "", "", ""],
    ["lookups run (of asked)", `${ours.samples.length}/${LOOKUPS}`, `${theirs.samples.length}/${LOOKUPS}`, "", "", ""],
    ["start + settle (s)", (ours.startMs / 1000).toFixed(1), (theirs.startMs / 1000).toFixed(1), "", "", ""],
    ["mean routing table size", num(ours.meanTable), num(theirs.meanTable), "", "", ""],
    ["median RTT measured by nodes (ms)", num(ours.medianRttMs ?? Number.NaN), "", "", "", ""],
  ];
  if (ours.maintenance !== undefined) {
    const m = ours.maintenance;
    rows.push(["maintenance sent, B/s per node", m.outPerNodeBps.toFixed(1), "", "", "< 300", m.outPerNodeBps < 300 ? "yes" : "NO"]);
    rows.push(["maintenance received, B/s per node", m.inPerNodeBps.toFixed(1), "", "", "", ""]);
    rows.push(["maintenance queries per node per 15 min", num(m.queriesPerNode), "", "", "", ""]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "));
}

console.log(`DHT lookup benchmark: ${NODES} nodes each, ${Math.round(DEAD_FRACTION * 100)}% dead, ${LOOKUPS} lookups (${CONCURRENCY} at a time), seed ${SEED}`);
const plan = makePlan();
const ours = await benchOurs(plan);
console.log(`apt-p2p done: ${ours.samples.length} lookups`);
const theirs = await benchTheirs(plan);
console.log(`bittorrent-dht done: ${theirs.samples.length} lookups\n`);
report(ours, theirs);
