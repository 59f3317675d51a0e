/** A network of many DHT nodes in one process on an in-memory datagram network. */
import { compareDistance, idsEqual, type NodeId } from "../../src/dht/id.ts";
import { DhtNode, type DhtNodeOptions } from "../../src/dht/node.ts";
import { MemoryNetwork } from "../../src/dht/socket.ts";

/** Deterministic random bytes (xorshift32), so that a failing run can be repeated. */
export function seededBytes(seed: number): (n: number) => Uint8Array {
  let x = seed | 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  };
}

export interface Sim {
  net: MemoryNetwork;
  nodes: DhtNode[];
  dead: Set<DhtNode>;
  random: (n: number) => Uint8Array;
  close(): void;
  /** The K live nodes closest to target, by brute force, leaving out `except` (the one asking). */
  trueClosest(target: NodeId, k: number, except?: DhtNode): DhtNode[];
  kill(node: DhtNode): void;
}

/** Starts `count` nodes joining through the first, `batch` at a time (as a network grows). */
export async function startSim(count: number, options: { seed?: number; batch?: number; node?: Partial<DhtNodeOptions> } = {}): Promise<Sim> {
  const random = seededBytes(options.seed ?? 1);
  const net = new MemoryNetwork();
  const nodes: DhtNode[] = [];
  const dead = new Set<DhtNode>();
  const make = () => new DhtNode({ socket: net.bind(), randomBytes: random, maintenance: false, ...options.node, bootstrap: nodes.length > 0 ? [nodes[0]!.local] : [] });
  const first = make();
  nodes.push(first);
  await first.start();
  const batch = options.batch ?? 25;
  while (nodes.length < count) {
    const group = Array.from({ length: Math.min(batch, count - nodes.length) }, make);
    nodes.push(...group);
    await Promise.all(group.map((n) => n.start()));
  }
  // One round of what bucket refreshes do over time in a real network: each node looks around its own
  // id again, meeting the nodes that joined near it after it did.
  for (let i = 0; i < nodes.length; i += batch) await Promise.all(nodes.slice(i, i + batch).map((n) => n.join()));
  return {
    net,
    nodes,
    dead,
    random,
    close: () => nodes.forEach((n) => n.close()),
    trueClosest: (target, k, except) =>
      nodes
        .filter((n) => !dead.has(n) && n !== except)
        .sort((a, b) => compareDistance(target, a.id, b.id))
        .slice(0, k),
    kill: (node) => {
      dead.add(node);
      net.setDead(node.local);
    },
  };
}

export function sameIds(a: NodeId[], b: NodeId[]): boolean {
  return a.length === b.length && a.every((id, i) => idsEqual(id, b[i]!));
}
