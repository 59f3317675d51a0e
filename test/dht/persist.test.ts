/**
 * DhtState keeps the node id and routing-table contacts across restarts, and a node restarted from them
 * rejoins the network without any bootstrap node.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compareDistance, idToHex, type Contact, type NodeId } from "../../src/dht/id.ts";
import { DhtNode, K } from "../../src/dht/node.ts";
import { DhtState } from "../../src/dht/persist.ts";
import { MemoryNetwork } from "../../src/dht/socket.ts";
import { id, seededRandom } from "./fakes.ts";

const T0 = 1_700_000_000_000;
let cleanup: (() => void)[] = [];

afterEach(() => {
  for (const c of cleanup.reverse()) c();
  cleanup = [];
});

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "apt-p2p-dht-state-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openState(dir: string): DhtState {
  const state = DhtState.open(dir);
  cleanup.push(() => state.close());
  return state;
}

describe("DhtState", () => {
  test("nodeId() makes an id once and returns the saved one after reopening", () => {
    const dir = stateDir();
    let made = 0;
    const fresh = () => {
      made++;
      return id(0xab);
    };
    const first = openState(dir);
    expect(first.nodeId(fresh)).toEqual(id(0xab));
    first.close();
    const second = openState(dir);
    expect(second.nodeId(() => id(0xcd))).toEqual(id(0xab));
    expect(made).toBe(1);
  });

  test("saveContacts() replaces the saved contacts, and contacts() returns them in the order given", () => {
    const dir = stateDir();
    const state = openState(dir);
    expect(state.contacts()).toEqual([]);
    const contacts: Contact[] = [1, 2, 3].map((n) => ({ id: id(n), address: `10.0.0.${n}`, port: 6880 + n }));
    state.saveContacts(contacts, T0);
    state.saveContacts(contacts.slice(1).reverse(), T0 + 1);
    state.close();
    const reopened = openState(dir);
    expect(reopened.contacts()).toEqual([contacts[2]!, contacts[1]!]);
  });

  test("close() is idempotent, and a closed state refuses to be used", () => {
    const state = openState(stateDir());
    state.close();
    state.close();
    expect(() => state.contacts()).toThrow("closed");
    expect(() => state.saveContacts([], T0)).toThrow("closed");
  });
});

describe("a restarted node", () => {
  const NODES = 24;

  async function network() {
    const net = new MemoryNetwork();
    const random = seededRandom(77);
    const nodes: DhtNode[] = [];
    const make = (bootstrap: DhtNode[]) => {
      const node = new DhtNode({ socket: net.bind(), bootstrap: bootstrap.map((b) => b.local), maintenance: false, clock: () => T0, randomBytes: random.bytes, rtt: { maxTimeoutMs: 100 } });
      cleanup.push(() => node.close());
      return node;
    };
    const first = make([]);
    await first.start();
    nodes.push(first);
    for (let i = 1; i < NODES; i++) {
      const node = make([first]);
      await node.start();
      nodes.push(node);
    }
    return { net, nodes, random };
  }

  const trueClosest = (target: NodeId, among: DhtNode[]) =>
    [...among].sort((a, b) => compareDistance(target, a.id, b.id)).slice(0, K).map((n) => idToHex(n.id));

  async function restart(options: { saved: boolean; kill?: number }) {
    const { net, nodes, random } = await network();
    const dir = stateDir();
    // First life: joins through the first node and saves what it learnt, as the daemon does.
    let state = openState(dir);
    const ownId = state.nodeId(() => random.bytes(20));
    const socket = net.bind();
    const address = { ...socket.local };
    const before = new DhtNode({ socket, id: ownId, bootstrap: [nodes[0]!.local], maintenance: false, clock: () => T0, randomBytes: random.bytes, rtt: { maxTimeoutMs: 100 } });
    await before.start();
    expect(before.contacts().length).toBeGreaterThanOrEqual(K);
    state.saveContacts(before.contacts(), T0);
    before.close();
    state.close();

    // Some of the old contacts may have gone meanwhile.
    const dead = nodes.filter((n) => before.contacts().some((c) => idToHex(c.id) === idToHex(n.id))).slice(0, options.kill ?? 0);
    for (const n of dead) net.setDead(n.local);

    // Second life: same id and address, no bootstrap at all.
    state = openState(dir);
    expect(state.nodeId(() => id(0))).toEqual(ownId);
    const after = new DhtNode({
      socket: net.bind(address.address, address.port),
      id: state.nodeId(() => id(0)),
      bootstrap: [],
      savedContacts: options.saved ? state.contacts() : [],
      maintenance: false,
      clock: () => T0,
      randomBytes: random.bytes,
      rtt: { maxTimeoutMs: 100 },
    });
    cleanup.push(() => after.close());
    await after.start();
    return { after, nodes, live: nodes.filter((n) => !dead.includes(n)), random };
  }

  test("with its saved contacts and no bootstrap node, it rejoins and finds the K closest nodes", async () => {
    const { after, live, random } = await restart({ saved: true });
    expect(after.stats().tableSize).toBeGreaterThanOrEqual(K);
    for (let i = 0; i < 5; i++) {
      const target = random.bytes(20);
      expect((await after.findNode(target)).map((c) => idToHex(c.id))).toEqual(trueClosest(target, live));
    }
  }, 20_000);

  test("it rejoins when a quarter of its saved contacts are gone", async () => {
    const { after, live, random } = await restart({ saved: true, kill: 4 });
    expect(after.stats().tableSize).toBeGreaterThan(0);
    const target = random.bytes(20);
    expect((await after.findNode(target)).map((c) => idToHex(c.id))).toEqual(trueClosest(target, live));
  }, 20_000);

  test("without saved contacts and no bootstrap node it stays alone (what the saved contacts are for)", async () => {
    const { after, random } = await restart({ saved: false });
    expect(after.stats().tableSize).toBe(0);
    expect(await after.findNode(random.bytes(20))).toEqual([]);
  }, 20_000);
});
