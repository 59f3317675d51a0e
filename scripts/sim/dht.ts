/**
 * DHT nodes of the simulation: the project's DhtNode on simulated datagrams and time.
 *
 * Growing a network join by join costs about a dozen lookups per node (the join refreshes every bucket),
 * more than a simulation of thousands of nodes can afford. A network that has run for a while is built
 * instead: every node starts as a restarted daemon does, with saved contacts (persist.ts), here the ones
 * its table would hold after long running: up to K live nodes at each distance range from its id. It
 * pings them (each answer enters its table; each ping also tells the other node about it) and looks up
 * its own id, all with the real join().
 */
import { ID_BYTES, type Contact, type NodeId } from "../../src/dht/id.ts";
import { DhtNode, K } from "../../src/dht/node.ts";
import type { StorageLimits } from "../../src/dht/storage.ts";
import type { SimClock } from "./clock.ts";
import type { SimDatagramNetwork } from "./datagrams.ts";
import { bytesFrom } from "./random.ts";

/** The daemon's UDP port (DEFAULT_PORT in src/config.ts). */
export const DHT_PORT = 9977;
/** Nodes start one after another this far apart. */
export const JOIN_SPACING_MS = 20;
/** Id bits used to place nodes in distance ranges (enough for millions of nodes). */
const PREFIX_BITS = 48;

export interface NodeSpec {
  address: string;
  /** Behind a NAT: a read-only node (BEP 43), which others keep out of their tables. */
  nat: boolean;
  /** Online when the network is built; the saved contacts of every node are drawn from these. */
  early: boolean;
}

export interface DhtBuildOptions {
  storage?: Partial<StorageLimits>;
}

/**
 * Creates a node per spec, each with saved contacts among the early reachable nodes, and starts the
 * early ones one after another (the others start later, when their machine comes online).
 */
export async function buildDht(clock: SimClock, net: SimDatagramNetwork, specs: NodeSpec[], random: () => number, options: DhtBuildOptions = {}): Promise<DhtNode[]> {
  const randomBytes = bytesFrom(random);
  const ids = specs.map(() => randomBytes(ID_BYTES));
  const reachable = specs.flatMap((s, i) => (s.nat || !s.early ? [] : [{ id: ids[i]!, address: s.address, port: DHT_PORT }]));
  const saved = savedContacts(ids, reachable, random);
  const nodes = specs.map(
    (spec, i) =>
      new DhtNode({
        socket: net.bind(spec.address, DHT_PORT, { nat: spec.nat }),
        id: ids[i],
        savedContacts: saved[i],
        randomBytes,
        timers: clock.timers(),
        clock: clock.wallClock(),
        storage: options.storage,
        maintenance: false,
        readOnly: spec.nat,
        refreshOnJoin: false,
      }),
  );
  const base = clock.now();
  const early = nodes.filter((_, i) => specs[i]!.early);
  const started = early.map((node, i) => new Promise<void>((resolve, reject) => clock.at(base + i * JOIN_SPACING_MS, () => node.start().then(resolve, reject))));
  await clock.runUntil(Promise.all(started));
  return nodes;
}

/**
 * For each id, up to K reachable contacts in every distance range (sharing exactly d leading bits with
 * it, for each d), as a long-running routing table holds them. Sorted prefixes make each range a slice.
 */
export function savedContacts(ids: NodeId[], reachable: Contact[], random: () => number): Contact[][] {
  const sorted = reachable.map((c) => ({ c, p: prefix(c.id) })).sort((a, b) => a.p - b.p);
  const prefixes = sorted.map((s) => s.p);
  return ids.map((id) => {
    const own = prefix(id);
    const out: Contact[] = [];
    for (let d = 0; d < PREFIX_BITS; d++) {
      // Ids sharing d bits with ours and differing in bit d: one contiguous block of the prefix space.
      const span = 2 ** (PREFIX_BITS - d - 1);
      const flipped = Math.floor(own / span) ^ 1;
      const lo = lowerBound(prefixes, flipped * span);
      const hi = lowerBound(prefixes, (flipped + 1) * span);
      if (hi <= lo) continue;
      const picks = hi - lo <= K ? range(lo, hi) : sample(lo, hi, K, random);
      for (const i of picks) if (sorted[i]!.p !== own) out.push(sorted[i]!.c);
    }
    return out;
  });
}

function prefix(id: NodeId): number {
  let v = 0;
  for (let i = 0; i < PREFIX_BITS / 8; i++) v = v * 256 + id[i]!;
  return v;
}

function lowerBound(values: number[], x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function range(lo: number, hi: number): number[] {
  return Array.from({ length: hi - lo }, (_, i) => lo + i);
}

function sample(lo: number, hi: number, k: number, random: () => number): number[] {
  const picked = new Set<number>();
  while (picked.size < k) picked.add(lo + Math.floor(random() * (hi - lo)));
  return [...picked];
}
