/**
 * Interoperability with an independent BEP 5 / BEP 44 implementation, webtorrent's `bittorrent-dht`,
 * over real UDP on 127.0.0.1: joining through each other, announces found across implementations in a
 * mixed network, and immutable items put by one and got by the other.
 */
import { afterEach, describe, expect, test } from "bun:test";
import bencode from "bencode";
import { idsEqual, type Endpoint } from "../../src/dht/id.ts";
import { DhtNode, K, sha1 } from "../../src/dht/node.ts";
import { bindUdp } from "../../src/dht/socket.ts";
import { btAnnounce, btGet, btLookup, btPut, startBtDht, type BtPeer, type StartOptions } from "../helpers/bt-dht.ts";

/** Bounds every wait on the other implementation: its query timeout is about 2 s, a lookup a few of those. */
const OP_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 10;
const POLL_ROUNDS = 200;
const MIXED_SIZE = 6;

const ours: DhtNode[] = [];
const theirs: BtPeer[] = [];

afterEach(async () => {
  for (const node of ours.splice(0)) node.close();
  await Promise.all(theirs.splice(0).map((peer) => peer.close()));
});

async function startOurs(bootstrap: Endpoint[] = []): Promise<DhtNode> {
  const node = new DhtNode({ socket: await bindUdp("127.0.0.1", 0), bootstrap, maintenance: false });
  ours.push(node);
  await node.start();
  return node;
}

async function startTheirs(bootstrap: Endpoint[] = [], options: StartOptions = {}): Promise<BtPeer> {
  const peer = await startBtDht(bootstrap, options);
  theirs.push(peer);
  return peer;
}

function local(port: number): Endpoint {
  return { address: "127.0.0.1", port };
}

/** Some table entries arrive a round trip after the call that caused them (a ping of a new querier). */
async function eventually(check: () => boolean): Promise<boolean> {
  for (let i = 0; i < POLL_ROUNDS && !check(); i++) await Bun.sleep(POLL_INTERVAL_MS);
  return check();
}

const ourTableHas = (node: DhtNode, port: number) => node.contacts().some((c) => c.address === "127.0.0.1" && c.port === port);
const theirTableHas = (peer: BtPeer, port: number) => peer.dht.toJSON().nodes.some((n) => n.host === "127.0.0.1" && n.port === port);

describe("interoperability with bittorrent-dht over loopback UDP", () => {
  test("a bittorrent-dht node bootstrapping from ours: each enters the other's routing table", async () => {
    const node = await startOurs();
    const peer = await startTheirs([node.local]);
    expect(theirTableHas(peer, node.local.port)).toBe(true);
    // Ours takes a querier in only after it answered our ping.
    expect(await eventually(() => ourTableHas(node, peer.port))).toBe(true);
    const entry = node.contacts().find((c) => c.port === peer.port)!;
    expect(idsEqual(entry.id, peer.dht.nodeId)).toBe(true);
  }, 20_000);

  test("ours bootstrapping from a bittorrent-dht node: each enters the other's routing table", async () => {
    const peer = await startTheirs();
    const node = await startOurs([local(peer.port)]);
    expect(ourTableHas(node, peer.port)).toBe(true);
    expect(await eventually(() => theirTableHas(peer, node.local.port))).toBe(true);
    const pong = await node.ping(local(peer.port));
    expect(idsEqual(pong.id, peer.dht.nodeId)).toBe(true);
  }, 20_000);

  test("bittorrent-dht's addNode pings ours, and ours' ping of it is answered with its id", async () => {
    const node = await startOurs();
    const peer = await startTheirs();
    peer.dht.addNode({ host: "127.0.0.1", port: node.local.port });
    expect(await eventually(() => theirTableHas(peer, node.local.port))).toBe(true);
    const pong = await node.ping(local(peer.port));
    expect(idsEqual(pong.id, peer.dht.nodeId)).toBe(true);
    expect(ourTableHas(node, peer.port)).toBe(true);
  }, 20_000);

  describe(`a mixed network of ${MIXED_SIZE} of ours and ${MIXED_SIZE} bittorrent-dht nodes`, () => {
    /** Joins alternately, each new node through the last one of the other implementation. */
    async function startMixed(): Promise<{ o: DhtNode[]; t: BtPeer[] }> {
      const o: DhtNode[] = [await startOurs()];
      const t: BtPeer[] = [];
      for (let i = 0; i < MIXED_SIZE; i++) {
        t.push(await startTheirs([o[o.length - 1]!.local]));
        if (o.length < MIXED_SIZE) o.push(await startOurs([local(t[t.length - 1]!.port)]));
      }
      // What bucket refreshes do over time: ours look around their ids again, meeting later joiners.
      await Promise.all(o.map((n) => n.join()));
      return { o, t };
    }

    test("every node knows nodes of both implementations", async () => {
      const { o, t } = await startMixed();
      const ourPorts = new Set(o.map((n) => n.local.port));
      const theirPorts = new Set(t.map((p) => p.port));
      for (const node of o) {
        const ports = node.contacts().map((c) => c.port);
        expect(ports.some((p) => ourPorts.has(p))).toBe(true);
        expect(ports.some((p) => theirPorts.has(p))).toBe(true);
      }
      for (const peer of t) {
        const ports = peer.dht.toJSON().nodes.map((n) => n.port);
        expect(ports.some((p) => ourPorts.has(p))).toBe(true);
        expect(ports.some((p) => theirPorts.has(p))).toBe(true);
      }
    }, 60_000);

    test("a key announced by ours (with piece information) is found by bittorrent-dht's lookup, from nodes of both", async () => {
      const { o, t } = await startMixed();
      const ourPorts = new Set(o.map((n) => n.local.port));
      const theirPorts = new Set(t.map((p) => p.port));
      const key = sha1(new TextEncoder().encode("announced by ours"));
      const announced = await o[2]!.announce(key, 7001, new Uint8Array(32).fill(9));
      expect(announced.stored).toBeGreaterThanOrEqual(K - 1);
      for (const peer of [t[0]!, t[4]!]) {
        const found = await btLookup(peer.dht, key, OP_TIMEOUT_MS);
        expect(found.peers).toEqual(["127.0.0.1:7001"]);
        // Theirs accepted our announce_peer, and ours answered their get_peers with values.
        expect(found.sources.some((p) => theirPorts.has(p))).toBe(true);
        expect(found.sources.some((p) => ourPorts.has(p))).toBe(true);
      }
    }, 60_000);

    test("a key announced by bittorrent-dht is found by our getPeers", async () => {
      const { o, t } = await startMixed();
      const key = sha1(new TextEncoder().encode("announced by theirs"));
      expect(await btAnnounce(t[3]!.dht, key, 7002, OP_TIMEOUT_MS)).toBeGreaterThan(0);
      for (const node of [o[0]!, o[5]!]) {
        const found = await node.getPeers(key);
        expect(found.peers.map((p) => `${p.address}:${p.port}`)).toEqual(["127.0.0.1:7002"]);
      }
    }, 60_000);

    test("keys announced by both are found together by either", async () => {
      const { o, t } = await startMixed();
      const key = sha1(new TextEncoder().encode("announced by both"));
      await o[1]!.announce(key, 7011);
      await btAnnounce(t[1]!.dht, key, 7012, OP_TIMEOUT_MS);
      const expected = ["127.0.0.1:7011", "127.0.0.1:7012"];
      const ourView = await o[4]!.getPeers(key);
      expect(ourView.peers.map((p) => `${p.address}:${p.port}`).sort()).toEqual(expected);
      const theirView = await btLookup(t[5]!.dht, key, OP_TIMEOUT_MS);
      expect(theirView.peers.sort()).toEqual(expected);
    }, 60_000);
  });

  describe("through the other implementation alone", () => {
    const NETWORK = 4;

    async function startOursOnly(): Promise<DhtNode[]> {
      const o: DhtNode[] = [await startOurs()];
      while (o.length < NETWORK) o.push(await startOurs([o[0]!.local]));
      await Promise.all(o.map((n) => n.join()));
      return o;
    }

    async function startTheirsOnly(): Promise<BtPeer[]> {
      const t: BtPeer[] = [await startTheirs()];
      while (t.length < NETWORK) t.push(await startTheirs([local(t[0]!.port)]));
      return t;
    }

    test("an announce by bittorrent-dht with implied_port is stored by ours under its UDP source port", async () => {
      const o = await startOursOnly();
      const peer = await startTheirs([o[0]!.local]);
      const key = sha1(new TextEncoder().encode("implied port"));
      // Port 0: bittorrent-dht sends implied_port = 1.
      expect(await btAnnounce(peer.dht, key, 0, OP_TIMEOUT_MS)).toBeGreaterThanOrEqual(NETWORK - 1);
      const found = await o[3]!.getPeers(key);
      expect(found.peers.map((p) => `${p.address}:${p.port}`)).toEqual([`127.0.0.1:${peer.port}`]);
    }, 60_000);

    /*
     * bittorrent-dht, when it never listened, hands out itself with port 0 after an implied_port
     * announce; nobody can be reached on port 0, so our lookup leaves such values (and nodes) out.
     */
    test("a peer with port 0 in a get_peers answer is left out of our getPeers", async () => {
      const o = await startOursOnly();
      const peer = await startTheirs([o[0]!.local], { bindFirst: true });
      const key = sha1(new TextEncoder().encode("port zero"));
      // implied_port: ours store the UDP source port; bittorrent-dht stores itself with port 0.
      await btAnnounce(peer.dht, key, 0, OP_TIMEOUT_MS);
      const found = await o[3]!.getPeers(key);
      expect(found.peers.map((p) => `${p.address}:${p.port}`)).toEqual([`127.0.0.1:${peer.port}`]);
    }, 60_000);

    test("bittorrent-dht joining a network of ours finds a key announced there", async () => {
      const o = await startOursOnly();
      const key = sha1(new TextEncoder().encode("in our network"));
      await o[1]!.announce(key, 7021);
      await o[2]!.announce(key, 7022, new Uint8Array(16).fill(3));
      const peer = await startTheirs([o[0]!.local]);
      const found = await btLookup(peer.dht, key, OP_TIMEOUT_MS);
      expect(found.peers.sort()).toEqual(["127.0.0.1:7021", "127.0.0.1:7022"]);
      expect(found.answered).toBeGreaterThanOrEqual(NETWORK - 1);
    }, 60_000);

    test("ours joining a network of bittorrent-dht nodes finds a key announced there", async () => {
      const t = await startTheirsOnly();
      const key = sha1(new TextEncoder().encode("in their network"));
      expect(await btAnnounce(t[1]!.dht, key, 7031, OP_TIMEOUT_MS)).toBeGreaterThanOrEqual(NETWORK - 1);
      expect(await btAnnounce(t[2]!.dht, key, 7032, OP_TIMEOUT_MS)).toBeGreaterThanOrEqual(NETWORK - 1);
      const node = await startOurs([local(t[0]!.port)]);
      const found = await node.getPeers(key);
      expect(found.peers.map((p) => `${p.address}:${p.port}`).sort()).toEqual(["127.0.0.1:7031", "127.0.0.1:7032"]);
    }, 60_000);

    test("a BEP 44 item put by ours is got by a bittorrent-dht node that joins later, value bytes equal", async () => {
      const o = await startOursOnly();
      const value = bencode.encode({ pieces: new Uint8Array(64).fill(5), size: 1_048_576 });
      const { target, stored } = await o[0]!.putItem(value);
      expect(stored).toBe(NETWORK - 1);
      const peer = await startTheirs([o[3]!.local]);
      const got = await btGet(peer.dht, target, OP_TIMEOUT_MS);
      expect(got).not.toBeNull();
      // bittorrent-dht decodes `v`; encoded again it must be the very bytes ours put.
      expect(new Uint8Array(bencode.encode(got))).toEqual(new Uint8Array(value));
    }, 60_000);

    test("a BEP 44 item put by bittorrent-dht is got by ours joining later, value bytes equal", async () => {
      const t = await startTheirsOnly();
      const v = Buffer.from("piece hashes for a package, as bittorrent-dht stores a string");
      const { target, stored } = await btPut(t[0]!.dht, v, OP_TIMEOUT_MS);
      expect(stored).toBeGreaterThanOrEqual(NETWORK - 1);
      const expected = new Uint8Array(bencode.encode(v));
      expect(idsEqual(target, sha1(expected))).toBe(true);
      const node = await startOurs([local(t[2]!.port)]);
      const got = await node.getItem(target);
      expect(got).toBeDefined();
      expect(new Uint8Array(got!)).toEqual(expected);
    }, 60_000);
  });

  describe("BEP 44 immutable items in a mixed network", () => {
    /** Three of each, joined alternately. */
    async function startSmall(): Promise<{ o: DhtNode[]; t: BtPeer[] }> {
      const o: DhtNode[] = [await startOurs()];
      const t: BtPeer[] = [];
      for (let i = 0; i < 3; i++) {
        t.push(await startTheirs([o[o.length - 1]!.local]));
        o.push(await startOurs([local(t[t.length - 1]!.port)]));
      }
      await Promise.all(o.map((n) => n.join()));
      return { o, t };
    }

    test("an item put by ours is stored by bittorrent-dht nodes too and got by them", async () => {
      const { o, t } = await startSmall();
      const value = bencode.encode({ pieces: new Uint8Array(64).fill(6), size: 2_097_152 });
      const { target, stored } = await o[0]!.putItem(value);
      expect(stored).toBe(o.length - 1 + t.length);
      const got = await btGet(t[2]!.dht, target, OP_TIMEOUT_MS);
      expect(new Uint8Array(bencode.encode(got))).toEqual(new Uint8Array(value));
    }, 60_000);

    test("a dictionary item put by bittorrent-dht is got by ours exactly as bencoded", async () => {
      const { o, t } = await startSmall();
      const v = { n: 3, p: Buffer.alloc(40, 1), s: Buffer.from("size") };
      const { target, stored } = await btPut(t[1]!.dht, v, OP_TIMEOUT_MS);
      expect(stored).toBe(o.length + t.length - 1);
      const got = await o[2]!.getItem(target);
      expect(got).toBeDefined();
      expect(new Uint8Array(got!)).toEqual(new Uint8Array(bencode.encode(v)));
    }, 60_000);
  });
});
