/**
 * The iterative lookup over a synthetic network of ids, with a scripted `query` in place of the transport:
 * no sockets and no timers. A driver settles one outstanding query per step, so every run is repeatable.
 */
import { describe, expect, test } from "bun:test";
import { commonPrefixBits, compareDistance, idToHex, type Contact, type Endpoint, type NodeId } from "../../src/dht/id.ts";
import { lookup, type LookupDeps, type LookupMethod, type LookupResult } from "../../src/dht/lookup.ts";
import type { PeerValue, Query, ResponseBody } from "../../src/dht/messages.ts";
import { sha1 } from "../../src/dht/node.ts";
import { RpcTimeoutError, type Answer, type QueryOptions } from "../../src/dht/rpc.ts";
import { seededRandom } from "./fakes.ts";

const K = 8;
const ALPHA = 3;

type Behaviour =
  | "ok"
  /** Times out: onSlow, then a failure. */
  | "dead"
  /** Goes past its timeout (onSlow) and answers only after the lookup is over. */
  | "slow"
  /** Answers with another id than the one it is known by. */
  | "impostor"
  /** Goes past its first timeout (onSlow), then answers the resend. */
  | "late";

interface SimNode extends Contact {
  knows: Contact[];
  behaviour: Behaviour;
  values?: PeerValue[];
  item?: Uint8Array;
  /** What an impostor returns as closer nodes (never to be used). */
  bait?: Contact[];
}

interface Outstanding {
  node: SimNode | undefined;
  to: Endpoint;
  query: Query;
  options: QueryOptions;
  slow: boolean;
  resolve: (answer: Answer) => void;
  reject: (err: Error) => void;
}

const key = (e: Endpoint) => `${e.address}:${e.port}`;
const contactOf = (n: SimNode): Contact => ({ id: n.id, address: n.address, port: n.port });

class SimNetwork {
  readonly nodes: SimNode[] = [];
  readonly byAddress = new Map<string, SimNode>();
  readonly queried: string[] = [];
  readonly outstanding: Outstanding[] = [];
  readonly failures: string[] = [];
  readonly answers: string[] = [];
  maxActive = 0;
  private readonly random;

  constructor(size: number, seed: number) {
    this.random = seededRandom(seed);
    for (let i = 0; i < size; i++) this.addNode({ id: this.random.bytes(20), address: `10.0.${i >> 8}.${i & 255}`, port: 6881 });
    // Each node knows up to K nodes per shared-prefix length with its own id, as a full routing table would.
    for (const node of this.nodes) {
      const buckets = new Map<number, Contact[]>();
      for (const other of this.nodes) {
        if (other === node) continue;
        const depth = commonPrefixBits(node.id, other.id);
        const bucket = buckets.get(depth) ?? [];
        if (bucket.length < K) bucket.push(contactOf(other));
        buckets.set(depth, bucket);
      }
      node.knows = [...buckets.values()].flat();
    }
  }

  addNode(contact: Contact, behaviour: Behaviour = "ok"): SimNode {
    const node: SimNode = { ...contact, knows: [], behaviour };
    this.nodes.push(node);
    this.byAddress.set(key(node), node);
    return node;
  }

  closestTo(target: NodeId, count: number, except: SimNode[] = []): SimNode[] {
    return this.nodes
      .filter((n) => !except.includes(n))
      .sort((a, b) => compareDistance(target, a.id, b.id))
      .slice(0, count);
  }

  get active(): number {
    return this.outstanding.filter((o) => !o.slow).length;
  }

  deps(ownId: NodeId): LookupDeps {
    return {
      ownId,
      query: (to, query, options) => {
        this.queried.push(key(to));
        return new Promise<Answer>((resolve, reject) => {
          this.outstanding.push({ node: this.byAddress.get(key(to)), to, query, options, slow: false, resolve, reject });
          this.maxActive = Math.max(this.maxActive, this.active);
        });
      },
      onAnswer: (contact) => void this.answers.push(key(contact)),
      onFailure: (contact) => void this.failures.push(`${key(contact)}/${idToHex(contact.id)}`),
      now: () => 0,
    };
  }

  /** Settles outstanding queries one at a time, oldest first, until the lookup resolves. */
  async run(result: Promise<LookupResult>, maxSteps = 10_000): Promise<LookupResult> {
    let done: LookupResult | undefined;
    void result.then((r) => (done = r));
    for (let step = 0; step < maxSteps; step++) {
      await flush();
      if (done !== undefined) return done;
      // Prompt answers first; a query past its first timeout settles only when nothing else is pending.
      const next = this.outstanding.find((o) => !o.slow) ?? this.outstanding.find((o) => o.node?.behaviour !== "slow");
      if (next === undefined) throw new Error("the lookup waits on slow nodes only");
      this.settle(next);
    }
    throw new Error(`lookup not finished after ${maxSteps} steps`);
  }

  /** Settles every query still outstanding after the lookup: slow nodes answer, dead ones fail. */
  async drain(): Promise<void> {
    for (let step = 0; step < 10_000 && this.outstanding.length > 0; step++) {
      const o = this.outstanding[0]!;
      if (o.node?.behaviour === "slow") this.answer(o);
      else this.settle(o);
      await flush();
    }
  }

  private settle(o: Outstanding): void {
    const behaviour = o.node?.behaviour ?? "dead";
    if ((behaviour === "dead" || behaviour === "slow" || behaviour === "late") && !o.slow) {
      o.slow = true; // the transport's first timeout: the query stops holding a slot
      o.options.onSlow?.();
      return;
    }
    if (behaviour === "dead") {
      this.outstanding.splice(this.outstanding.indexOf(o), 1);
      o.reject(new RpcTimeoutError(o.to, o.query.method));
      return;
    }
    this.answer(o);
  }

  private answer(o: Outstanding): void {
    this.outstanding.splice(this.outstanding.indexOf(o), 1);
    const node = o.node!;
    const target = "target" in o.query ? o.query.target : "infoHash" in o.query ? o.query.infoHash : node.id;
    const body: ResponseBody = {
      id: node.behaviour === "impostor" ? new Uint8Array(20).fill(0xee) : node.id,
      nodes: node.bait ?? [...node.knows].sort((a, b) => compareDistance(target, a.id, b.id)).slice(0, 2 * K),
      token: Uint8Array.of(...node.id.subarray(0, 4)),
    };
    if (o.query.method === "get_peers" && node.values) body.values = node.values;
    if (o.query.method === "get" && node.item) body.value = node.item;
    o.resolve({ body, from: o.to, rttMs: 1 });
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function start(net: SimNetwork, target: NodeId, options: { method?: LookupMethod; seeds?: (Contact | Endpoint)[]; ownId?: NodeId; alpha?: number; stopOnItem?: boolean } = {}) {
  const ownId = options.ownId ?? new Uint8Array(20).fill(0x5a);
  const seeds = options.seeds ?? net.nodes.slice(0, 4).map(contactOf);
  return net.run(lookup({ target, method: options.method ?? "find_node", seeds, k: K, alpha: options.alpha ?? ALPHA, stopOnItem: options.stopOnItem }, net.deps(ownId)));
}

const hexes = (contacts: Contact[]) => contacts.map((c) => idToHex(c.id));
const closestHex = (result: LookupResult) => result.closest.map((c) => idToHex(c.contact.id));

describe("lookup() over a synthetic network", () => {
  test("finds exactly the K closest nodes, closest first, without querying the whole network", async () => {
    for (let seed = 1; seed <= 5; seed++) {
      const net = new SimNetwork(300, seed);
      const target = seededRandom(seed + 100).bytes(20);
      const result = await start(net, target);
      expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K)));
      expect(result.answered).toBe(result.queried);
      expect(result.queried).toBeLessThan(100);
    }
  });

  for (const alpha of [1, 3, 4]) {
    test(`never more than α = ${alpha} queries in flight that are not past their timeout`, async () => {
      const net = new SimNetwork(200, alpha);
      for (const n of net.nodes.filter((_, i) => i % 5 === 2)) n.behaviour = "dead";
      const result = await start(net, seededRandom(alpha * 7).bytes(20), { alpha });
      expect(net.maxActive).toBe(alpha);
      expect(result.closest).toHaveLength(K);
    });
  }

  test("stops once the K closest have answered: nothing is queried after, and each node is queried once", async () => {
    const net = new SimNetwork(300, 11);
    const target = seededRandom(12).bytes(20);
    const result = await start(net, target);
    const queriedAtEnd = net.queried.length;
    expect(net.outstanding).toHaveLength(0);
    await flush();
    expect(net.queried).toHaveLength(queriedAtEnd);
    expect(new Set(net.queried).size).toBe(net.queried.length);
    expect(result.queried).toBe(queriedAtEnd);
  });

  test("does not wait for a slow node once K closer nodes answered", async () => {
    const net = new SimNetwork(300, 21);
    const target = seededRandom(22).bytes(20);
    const [closest] = net.closestTo(target, 1);
    closest!.behaviour = "slow";
    const result = await start(net, target); // run() throws if the lookup sat waiting on the slow node
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K + 1).slice(1)));
    expect(net.outstanding.some((o) => o.node === closest)).toBe(true);
    await net.drain(); // its late answer does not disturb anything
    expect(net.answers).toContain(key(closest!));
  });

  test("a bootstrap endpoint that answers only the resend still seeds the lookup", async () => {
    const net = new SimNetwork(200, 24);
    const target = seededRandom(25).bytes(20);
    const bootstrap = net.nodes[0]!;
    bootstrap.behaviour = "late";
    const result = await start(net, target, { seeds: [{ address: bootstrap.address, port: bootstrap.port }] });
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K)));
  });

  test("with fewer than K other nodes to ask, it waits for a slow node's answer rather than leave it out", async () => {
    const net = new SimNetwork(5, 26);
    const target = seededRandom(27).bytes(20);
    net.closestTo(target, 1)[0]!.behaviour = "late";
    const result = await start(net, target, { seeds: net.nodes.map(contactOf) });
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, 5)));
  });

  test("skips nodes that fail and reports each failed node with its id", async () => {
    const net = new SimNetwork(300, 31);
    const target = seededRandom(32).bytes(20);
    const dead = net.closestTo(target, 4);
    for (const n of dead) n.behaviour = "dead";
    const result = await start(net, target);
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K, dead)));
    await net.drain(); // their timeouts may come after the lookup is over
    for (const n of dead) expect(net.failures).toContain(`${key(n)}/${idToHex(n.id)}`);
    expect(result.answered).toBeLessThanOrEqual(result.queried - dead.length);
  });

  test("an answer under another id than expected counts as a failure, and the nodes it offers are not used", async () => {
    const net = new SimNetwork(300, 41);
    const target = seededRandom(42).bytes(20);
    const impostor = net.closestTo(target, 1)[0]!;
    impostor.behaviour = "impostor";
    // The bait sits right at the target: a lookup that trusted the answer would query it and rank it first.
    const trap = net.addNode({ id: target.slice(), address: "10.9.9.9", port: 6881 }, "ok");
    net.nodes.splice(net.nodes.indexOf(trap), 1);
    impostor.bait = [contactOf(trap)];
    const result = await start(net, target);
    expect(net.queried).toContain(key(impostor));
    expect(net.queried).not.toContain(key(trap));
    expect(net.answers).not.toContain(key(impostor));
    expect(net.failures).toContain(`${key(impostor)}/${idToHex(impostor.id)}`);
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K, [impostor])));
  });

  test("never queries a node with our own id, even when it is offered as the closest", async () => {
    const net = new SimNetwork(200, 51);
    const target = seededRandom(52).bytes(20);
    const ownId = target.slice();
    ownId[19]! ^= 1; // we are right next to the target, so every answer offers us
    const self = net.addNode({ id: ownId, address: "10.8.8.8", port: 6881 });
    for (const n of net.nodes) if (n !== self) n.knows.push(contactOf(self));
    const result = await start(net, target, { ownId, seeds: [contactOf(self), ...net.nodes.slice(0, 3).map(contactOf)] });
    expect(net.queried).not.toContain(key(self));
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K, [self])));
  });

  test("bootstrap endpoints without ids are queried, then ranked under the id they answer with", async () => {
    const net = new SimNetwork(200, 61);
    const target = seededRandom(62).bytes(20);
    const seeds: Endpoint[] = net.nodes.slice(0, 2).map((n) => ({ address: n.address, port: n.port }));
    const result = await start(net, target, { seeds });
    expect(net.queried.slice(0, 2)).toEqual(seeds.map(key));
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K)));
  });

  test("a dead bootstrap endpoint does not stop the lookup", async () => {
    const net = new SimNetwork(200, 63);
    const target = seededRandom(64).bytes(20);
    const result = await start(net, target, { seeds: [{ address: "10.7.7.7", port: 1 }, { address: net.nodes[0]!.address, port: 6881 }] });
    expect(closestHex(result)).toEqual(hexes(net.closestTo(target, K)));
  });

  test("get_peers returns each peer once, keeps piece information, and the token of each of the closest", async () => {
    const net = new SimNetwork(200, 71);
    const target = seededRandom(72).bytes(20);
    const holders = net.closestTo(target, 5);
    const pieces = Uint8Array.of(1, 2, 3);
    holders.forEach((n, i) => {
      n.values = [
        { address: "192.0.2.1", port: 80 },
        { address: "192.0.2.2", port: 80, ...(i === 3 ? { pieces } : {}) },
        { address: "192.0.2.2", port: 81 },
      ];
    });
    const result = await start(net, target, { method: "get_peers" });
    const peers = result.values.map((v) => `${v.address}:${v.port}`).sort();
    expect(peers).toEqual(["192.0.2.1:80", "192.0.2.2:80", "192.0.2.2:81"]);
    expect(result.values.find((v) => v.port === 80 && v.address === "192.0.2.2")?.pieces).toEqual(pieces);
    for (const c of result.closest) expect(c.token).toEqual(Uint8Array.of(...c.contact.id.subarray(0, 4)));
  });
});

describe("lookup() of a BEP 44 item", () => {
  const value = new TextEncoder().encode("d6:pieces40:" + "p".repeat(40) + "e");
  const target = sha1(value);
  const forged = new TextEncoder().encode("d6:pieces40:" + "X".repeat(40) + "e");

  test("accepts an item only when its SHA-1 is the target", async () => {
    const net = new SimNetwork(200, 81);
    for (const n of net.nodes) n.item = forged;
    const onlyForged = await start(net, target, { method: "get" });
    expect(onlyForged.item).toBeUndefined();

    const net2 = new SimNetwork(200, 81);
    for (const n of net2.nodes) n.item = forged;
    net2.closestTo(target, 1)[0]!.item = value;
    const found = await start(net2, target, { method: "get" });
    expect(found.item).toEqual(value);
  });

  test("with stopOnItem, stops at the first genuine item", async () => {
    const net = new SimNetwork(300, 91);
    const full = await start(net, target, { method: "get" });
    const net2 = new SimNetwork(300, 91);
    for (const n of net2.nodes.slice(0, 4)) n.item = value; // the seeds hold it
    const early = await start(net2, target, { method: "get", stopOnItem: true });
    expect(early.item).toEqual(value);
    expect(early.queried).toBeLessThan(full.queried);
  });

  test("an item in a find_node or get_peers answer is ignored", async () => {
    const net = new SimNetwork(100, 93);
    for (const n of net.nodes) n.item = value;
    const result = await start(net, target, { method: "get_peers" });
    expect(result.item).toBeUndefined();
  });
});
