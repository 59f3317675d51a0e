/**
 * DhtNode on the in-memory network: what it answers to hand-built KRPC (as BEP 5 and BEP 44 say), what it
 * refuses, who gets into its routing table, rate limits and counters, and a few nodes working together.
 */
import { afterEach, describe, expect, test } from "bun:test";
import bencode from "bencode";
import { idsEqual, idToHex, type Endpoint, type NodeId } from "../../src/dht/id.ts";
import { decodeMessage, encodeMessage } from "../../src/dht/krpc.ts";
import {
  KRPC_ERROR_METHOD_UNKNOWN,
  KRPC_ERROR_PROTOCOL,
  MAX_PIECE_INFO_BYTES,
  type ErrorMessage,
  type Message,
  type Query,
  type ResponseMessage,
} from "../../src/dht/messages.ts";
import { CLIENT_VERSION, DhtNode, sha1, type DhtNodeOptions } from "../../src/dht/node.ts";
import { MemoryNetwork, type DatagramSocket } from "../../src/dht/socket.ts";
import { id, seededRandom } from "./fakes.ts";

const T0 = 1_700_000_000_000;
/** How long to wait for an answer that should come (the network delivers in a macrotask). */
const ANSWER_WAIT_MS = 2_000;
/** Longer than a node's whole ping (two sends at the 100 ms cap used below), to see what it did after. */
const PING_GIVE_UP_MS = 400;

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const utf8 = (text: string) => new TextEncoder().encode(text);

let net: MemoryNetwork;
let closers: (() => void)[] = [];
let tCounter = 0;

afterEach(() => {
  for (const close of closers) close();
  closers = [];
});

function newNetwork(): MemoryNetwork {
  net = new MemoryNetwork();
  return net;
}

function makeNode(options: Partial<DhtNodeOptions> = {}): DhtNode {
  const node = new DhtNode({
    socket: net.bind(),
    bootstrap: [],
    maintenance: false,
    clock: () => T0,
    randomBytes: seededRandom(1000 + closers.length).bytes,
    rtt: { maxTimeoutMs: 100 },
    ...options,
  });
  closers.push(() => node.close());
  return node;
}

/** A socket speaking hand-built KRPC. It answers pings only when told to. */
class RawPeer {
  readonly socket: DatagramSocket;
  /** Queries the node sent us. */
  readonly queriesIn: { message: Message; from: Endpoint }[] = [];
  private readonly replies: Message[] = [];
  private waiters: (() => void)[] = [];

  constructor(
    readonly id: NodeId,
    private readonly answerPings: boolean,
    socket?: DatagramSocket,
  ) {
    this.socket = socket ?? net.bind();
    closers.push(() => this.socket.close());
    this.socket.onDatagram((data, from) => {
      const message = decodeMessage(data);
      if (message.kind === "invalid") throw new Error(`the node sent an unreadable datagram: ${message.reason}`);
      if (message.kind === "query") {
        this.queriesIn.push({ message, from });
        if (this.answerPings && message.query.method === "ping") {
          this.socket.send(encodeMessage({ kind: "response", t: message.t, body: { id: this.id } }), from);
        }
      } else {
        this.replies.push(message);
      }
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    });
  }

  get local(): Endpoint {
    return this.socket.local;
  }

  /** Sends raw bytes, or a query built from `query` with a fresh t; resolves with the reply to that t. */
  async ask(to: Endpoint, query: Query | Uint8Array, t = nextT()): Promise<ResponseMessage | ErrorMessage> {
    const data = query instanceof Uint8Array ? query : encodeMessage({ kind: "query", t, query });
    this.socket.send(data, to);
    const deadline = Date.now() + ANSWER_WAIT_MS;
    for (;;) {
      const i = this.replies.findIndex((m) => idsEqual(padT(m.t), padT(t)));
      if (i >= 0) return this.replies.splice(i, 1)[0] as ResponseMessage | ErrorMessage;
      if (Date.now() > deadline) throw new Error("no reply");
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  async response(to: Endpoint, query: Query | Uint8Array, t?: Uint8Array): Promise<ResponseMessage> {
    const reply = await this.ask(to, query, t);
    if (reply.kind !== "response") throw new Error(`expected a response, got error ${reply.code} ${reply.message}`);
    return reply;
  }

  async error(to: Endpoint, query: Query | Uint8Array, t?: Uint8Array): Promise<ErrorMessage> {
    const reply = await this.ask(to, query, t);
    if (reply.kind !== "error") throw new Error("expected an error, got a response");
    return reply;
  }

  /** Sends without waiting for anything. */
  send(to: Endpoint, query: Query, t = nextT()): void {
    this.socket.send(encodeMessage({ kind: "query", t, query }), to);
  }

  /** Replies received but not claimed by ask(). */
  get unclaimed(): number {
    return this.replies.length;
  }
}

function nextT(): Uint8Array {
  tCounter = (tCounter + 1) & 0xffff;
  return Uint8Array.of(tCounter >> 8, tCounter & 0xff);
}

/** Transaction ids compared as 20-byte arrays so idsEqual can be reused. */
function padT(t: Uint8Array): Uint8Array {
  const out = new Uint8Array(20);
  out.set(t.subarray(0, 20));
  return out;
}

/** A hand-built query, for what encodeMessage refuses to write. */
function rawQuery(method: string, args: Record<string, unknown>, t: Uint8Array): Uint8Array {
  return new Uint8Array(bencode.encode({ t, y: "q", q: method, a: args }));
}

async function tokenFor(peer: RawPeer, node: DhtNode, infoHash: NodeId): Promise<Uint8Array> {
  const reply = await peer.response(node.local, { method: "get_peers", id: peer.id, infoHash });
  expect(reply.body.token).toBeDefined();
  return reply.body.token!;
}

async function peersOf(node: DhtNode, infoHash: NodeId): Promise<string[]> {
  const asker = new RawPeer(id(0x77), false);
  const reply = await asker.response(node.local, { method: "get_peers", id: asker.id, infoHash });
  return (reply.body.values ?? []).map((v) => `${v.address}:${v.port}`);
}

const KEY = id(0x42);

describe("DhtNode answers BEP 5 queries", () => {
  test("ping: the node's id, our t, its client version and our address as BEP 42 ip", async () => {
    newNetwork();
    const node = makeNode({ id: id(0xa1) });
    const peer = new RawPeer(id(0x01), false);
    const t = utf8("pg");
    const reply = await peer.response(node.local, { method: "ping", id: peer.id }, t);
    expect(reply.t).toEqual(t);
    expect(reply.body.id).toEqual(id(0xa1));
    expect(reply.version).toEqual(CLIENT_VERSION);
    expect(reply.yourAddress).toEqual(peer.local);
  });

  test("find_node: the closest contacts it knows, as compact node info, and no values", async () => {
    newNetwork();
    const a = makeNode();
    await a.start();
    const others = [makeNode({ bootstrap: [a.local] }), makeNode({ bootstrap: [a.local] })];
    for (const o of others) await o.start();
    const peer = new RawPeer(id(0x02), false);
    const reply = await peer.response(a.local, { method: "find_node", id: peer.id, target: others[0]!.id });
    const got = (reply.body.nodes ?? []).map((c) => `${idToHex(c.id)}@${c.address}:${c.port}`);
    for (const o of others) expect(got).toContain(`${idToHex(o.id)}@${o.local.address}:${o.local.port}`);
    expect(got[0]).toBe(`${idToHex(others[0]!.id)}@${others[0]!.local.address}:${others[0]!.local.port}`);
    expect(reply.body.values).toBeUndefined();
    expect(reply.body.token).toBeUndefined();
  });

  test("get_peers for an unknown key: a token and nodes, no values", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x03), false);
    const reply = await peer.response(node.local, { method: "get_peers", id: peer.id, infoHash: KEY });
    expect(reply.body.token?.length).toBeGreaterThan(0);
    expect(reply.body.nodes).toEqual([]);
    expect(reply.body.values).toBeUndefined();
  });

  test("announce_peer with a valid token stores the packet's source address with the announced port", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x04), false);
    const token = await tokenFor(peer, node, KEY);
    const reply = await peer.response(node.local, { method: "announce_peer", id: peer.id, infoHash: KEY, port: 9999, token, impliedPort: false });
    expect(reply.body.id).toEqual(node.id);
    expect(await peersOf(node, KEY)).toEqual([`${peer.local.address}:9999`]);
    expect(node.stats().storedValues).toBe(1);
  });

  test("announce_peer stores the source address even when the arguments carry another address", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x05), false);
    const token = await tokenFor(peer, node, KEY);
    const t = nextT();
    const forged = Uint8Array.of(192, 0, 2, 66, 0x1f, 0x90); // 192.0.2.66:8080
    const args = { id: peer.id, info_hash: KEY, port: 7000, token, ip: forged, address: "192.0.2.66" };
    const reply = await peer.ask(node.local, rawQuery("announce_peer", args, t), t);
    expect(reply.kind).toBe("response");
    expect(await peersOf(node, KEY)).toEqual([`${peer.local.address}:7000`]);
  });

  test("announce_peer with implied_port uses the packet's source port", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x06), false);
    const token = await tokenFor(peer, node, KEY);
    await peer.response(node.local, { method: "announce_peer", id: peer.id, infoHash: KEY, port: 1234, token, impliedPort: true });
    expect(await peersOf(node, KEY)).toEqual([`${peer.local.address}:${peer.local.port}`]);
  });

  test("announce_peer with a bad token is refused with 203 and stores nothing", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x07), false);
    const good = await tokenFor(peer, node, KEY);
    for (const token of [new Uint8Array(0), utf8("nonsense"), good.map((b) => b ^ 1), good.subarray(0, good.length - 1)]) {
      const reply = await peer.ask(node.local, { method: "announce_peer", id: peer.id, infoHash: KEY, port: 9999, token, impliedPort: false });
      expect(reply).toMatchObject({ kind: "error", code: KRPC_ERROR_PROTOCOL });
    }
    expect(await peersOf(node, KEY)).toEqual([]);
    expect(node.stats().storedValues).toBe(0);
  });

  test("a token issued to one address is refused from another", async () => {
    newNetwork();
    const node = makeNode();
    const alice = new RawPeer(id(0x08), false);
    const mallory = new RawPeer(id(0x09), false);
    const token = await tokenFor(alice, node, KEY);
    const reply = await mallory.error(node.local, { method: "announce_peer", id: mallory.id, infoHash: KEY, port: 9999, token, impliedPort: false });
    expect(reply.code).toBe(KRPC_ERROR_PROTOCOL);
    expect(await peersOf(node, KEY)).toEqual([]);
  });

  test("the same address on another port may use the token (tokens are bound to the IP, as BEP 5 says)", async () => {
    newNetwork();
    const node = makeNode();
    const first = new RawPeer(id(0x0a), false, net.bind("10.200.0.1", 1000));
    const second = new RawPeer(id(0x0b), false, net.bind("10.200.0.1", 2000));
    const token = await tokenFor(first, node, KEY);
    await second.response(node.local, { method: "announce_peer", id: second.id, infoHash: KEY, port: 9999, token, impliedPort: false });
    expect(await peersOf(node, KEY)).toEqual(["10.200.0.1:9999"]);
  });

  for (const [what, port] of [
    ["port 0", 0],
    ["port 65536", 65536],
    ["a negative port", -1],
    ["a port that is a string", "80"],
  ] as const) {
    test(`announce_peer with ${what} is refused with 203 and stores nothing`, async () => {
      newNetwork();
      const node = makeNode();
      const peer = new RawPeer(id(0x0c), false);
      const token = await tokenFor(peer, node, KEY);
      const t = nextT();
      const reply = await peer.ask(node.local, rawQuery("announce_peer", { id: peer.id, info_hash: KEY, port, token }, t), t);
      expect(reply).toMatchObject({ kind: "error", code: KRPC_ERROR_PROTOCOL });
      expect(await peersOf(node, KEY)).toEqual([]);
    });
  }

  test("announce_peer with piece information over the limit is refused with 203; at the limit it is kept", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x0d), false);
    const token = await tokenFor(peer, node, KEY);
    const t = nextT();
    const tooBig = new Uint8Array(MAX_PIECE_INFO_BYTES + 1).fill(7);
    const reply = await peer.ask(node.local, rawQuery("announce_peer", { id: peer.id, info_hash: KEY, port: 80, token, pieces: tooBig }, t), t);
    expect(reply).toMatchObject({ kind: "error", code: KRPC_ERROR_PROTOCOL });
    expect(node.stats().storedValues).toBe(0);

    const atLimit = new Uint8Array(MAX_PIECE_INFO_BYTES).fill(8);
    await peer.response(node.local, { method: "announce_peer", id: peer.id, infoHash: KEY, port: 80, token, impliedPort: false, pieces: atLimit });
    const asker = new RawPeer(id(0x0e), false);
    const found = await asker.response(node.local, { method: "get_peers", id: asker.id, infoHash: KEY });
    expect(found.body.values).toEqual([{ address: peer.local.address, port: 80, pieces: atLimit }]);
  });

  test("an unknown method is answered with 204 and a query without arguments with 203", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x0f), false);
    let t = nextT();
    expect(await peer.ask(node.local, rawQuery("vote", { id: peer.id }, t), t)).toMatchObject({ kind: "error", code: KRPC_ERROR_METHOD_UNKNOWN });
    t = nextT();
    expect(await peer.ask(node.local, rawQuery("__proto__", { id: peer.id }, t), t)).toMatchObject({ kind: "error", code: KRPC_ERROR_METHOD_UNKNOWN });
    t = nextT();
    const noArgs = new Uint8Array(bencode.encode({ t, y: "q", q: "ping" }));
    expect(await peer.ask(node.local, noArgs, t)).toMatchObject({ kind: "error", code: KRPC_ERROR_PROTOCOL });
    expect(node.stats().invalidIn).toBe(3);
  });
});

describe("DhtNode answers BEP 44 immutable get and put", () => {
  const value = utf8("d6:pieces40:" + "h".repeat(40) + "4:sizei3000000ee");
  const target = sha1(value);

  async function getToken(peer: RawPeer, node: DhtNode, forTarget: NodeId): Promise<Uint8Array> {
    const reply = await peer.response(node.local, { method: "get", id: peer.id, target: forTarget });
    return reply.body.token!;
  }

  test("put with a token stores the item under SHA-1 of the value; get returns it exactly", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x11), false);
    const token = await getToken(peer, node, target);
    await peer.response(node.local, { method: "put", id: peer.id, token, value, mutable: false });
    const got = await peer.response(node.local, { method: "get", id: peer.id, target });
    expect(got.body.value).toEqual(value);
    expect(got.body.token).toBeDefined();
    expect(got.body.nodes).toBeDefined();
    expect(node.stats().storedItems).toBe(1);
  });

  test("get for any other target returns no value: the key is computed by the node, never taken from the putter", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x12), false);
    const token = await getToken(peer, node, target);
    await peer.response(node.local, { method: "put", id: peer.id, token, value, mutable: false });
    const wrong = target.slice();
    wrong[19]! ^= 1;
    for (const other of [wrong, sha1(utf8("4:spam")), id(0)]) {
      const got = await peer.response(node.local, { method: "get", id: peer.id, target: other });
      expect(got.body.value).toBeUndefined();
    }
  });

  test("put with a bad token is refused with 203 and stores nothing", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x13), false);
    const reply = await peer.error(node.local, { method: "put", id: peer.id, token: utf8("12345678"), value, mutable: false });
    expect(reply.code).toBe(KRPC_ERROR_PROTOCOL);
    expect(node.stats().storedItems).toBe(0);
  });

  test("a mutable put (k and sig) is refused with 203 and stores nothing", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x14), false);
    const token = await getToken(peer, node, target);
    const t = nextT();
    const args = { id: peer.id, token, v: "spam", k: new Uint8Array(32), sig: new Uint8Array(64), seq: 1 };
    const reply = await peer.ask(node.local, rawQuery("put", args, t), t);
    expect(reply).toMatchObject({ kind: "error", code: KRPC_ERROR_PROTOCOL });
    expect(node.stats().storedItems).toBe(0);
  });

  test("a put of a value over 1000 bytes is refused with 205 (BEP 44) and stores nothing", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x15), false);
    const token = await getToken(peer, node, target);
    const t = nextT();
    const reply = await peer.ask(node.local, rawQuery("put", { id: peer.id, token, v: "x".repeat(1000) }, t), t);
    expect(reply).toMatchObject({ kind: "error", code: 205 });
    expect(node.stats().storedItems).toBe(0);
  });
});

describe("DhtNode lets only nodes that answer into its routing table", () => {
  test("a querier that never answers our ping stays out of the table", async () => {
    newNetwork();
    const node = makeNode();
    const silent = new RawPeer(id(0x21), false);
    await silent.response(node.local, { method: "ping", id: silent.id });
    await pause(PING_GIVE_UP_MS);
    expect(silent.queriesIn.map((q) => (q.message as { query: Query }).query.method)).toContain("ping");
    expect(node.stats().tableSize).toBe(0);
    expect(node.contacts()).toEqual([]);
    expect(node.stats().timeouts).toBe(1);
  });

  test("a querier that answers our ping enters the table at the address it queried from", async () => {
    newNetwork();
    const node = makeNode();
    const polite = new RawPeer(id(0x22), true);
    await polite.response(node.local, { method: "ping", id: polite.id });
    await pause(PING_GIVE_UP_MS);
    expect(node.contacts()).toEqual([{ id: polite.id, address: polite.local.address, port: polite.local.port }]);
  });

  test("an answer to our ping from another address does not let the querier's id in", async () => {
    newNetwork();
    const node = makeNode();
    const victim = new RawPeer(id(0x23), false);
    const spoofer = new RawPeer(id(0x24), false);
    await victim.response(node.local, { method: "ping", id: victim.id });
    // The node pings the victim's address; the spoofer, who saw the ping, answers it from elsewhere.
    const deadline = Date.now() + ANSWER_WAIT_MS;
    while (victim.queriesIn.length === 0 && Date.now() < deadline) await pause(5);
    const ping = victim.queriesIn[0]!.message;
    spoofer.socket.send(encodeMessage({ kind: "response", t: ping.t, body: { id: victim.id } }), node.local);
    await pause(PING_GIVE_UP_MS);
    expect(node.stats().tableSize).toBe(0);
    expect(node.stats().unknownTransactions).toBe(1);
  });

  test("a ping answer under another id than the querier gave does not let either id in", async () => {
    newNetwork();
    const node = makeNode();
    const liar = new RawPeer(id(0x25), false);
    await liar.response(node.local, { method: "ping", id: id(0x26) }); // claims another id in its query
    const deadline = Date.now() + ANSWER_WAIT_MS;
    while (liar.queriesIn.length === 0 && Date.now() < deadline) await pause(5);
    liar.socket.send(encodeMessage({ kind: "response", t: liar.queriesIn[0]!.message.t, body: { id: liar.id } }), node.local);
    await pause(PING_GIVE_UP_MS);
    expect(node.stats().tableSize).toBe(0);
  });
});

describe("DhtNode rate limits per address", () => {
  test("a flood from one address is dropped past its burst and counted; other addresses are still answered", async () => {
    newNetwork();
    const node = makeNode({ rateLimit: { perSecond: 1, burst: 5 } });
    const flooder = new RawPeer(id(0x31), false);
    for (let i = 0; i < 30; i++) flooder.send(node.local, { method: "ping", id: flooder.id });
    await pause(100);
    expect(flooder.unclaimed).toBe(5);
    expect(node.stats().rateLimited).toBe(25);
    expect(node.stats().queriesIn.ping).toBe(30);

    const other = new RawPeer(id(0x32), false);
    const reply = await other.response(node.local, { method: "ping", id: other.id });
    expect(reply.body.id).toEqual(node.id);
    expect(node.stats().rateLimited).toBe(25);
  });

  test("several nodes on one host are limited each on their own, and the host as a whole more loosely", async () => {
    newNetwork();
    const node = makeNode({ rateLimit: { perSecond: 1, burst: 5 }, hostRateLimit: { perSecond: 1, burst: 12 } });
    const neighbours = [6001, 6002, 6003].map((port, i) => new RawPeer(id(0x40 + i), false, net.bind("10.9.9.9", port)));
    for (const peer of neighbours) for (let i = 0; i < 4; i++) peer.send(node.local, { method: "ping", id: peer.id });
    await pause(100);
    // 3 nodes × 4 queries: within each node's burst of 5 and the host's burst of 12.
    expect(node.stats().rateLimited).toBe(0);
    for (const peer of neighbours) peer.send(node.local, { method: "ping", id: peer.id });
    await pause(100);
    // Each node is still within its own burst, but the host's 12 are spent.
    expect(node.stats().rateLimited).toBe(3);
  });

  test("malformed queries count against the same limit: a flood of them is not answered past the burst", async () => {
    newNetwork();
    const node = makeNode({ rateLimit: { perSecond: 1, burst: 5 } });
    const flooder = new RawPeer(id(0x33), false);
    for (let i = 0; i < 30; i++) flooder.socket.send(rawQuery("nonesuch", { id: flooder.id }, nextT()), node.local);
    await pause(100);
    expect(node.stats().invalidIn).toBe(30);
    expect(flooder.unclaimed).toBe(5);
    expect(node.stats().rateLimited).toBe(25);
    const other = new RawPeer(id(0x34), false);
    const t = nextT();
    expect(await other.ask(node.local, rawQuery("nonesuch", { id: other.id }, t), t)).toMatchObject({ kind: "error", code: KRPC_ERROR_METHOD_UNKNOWN });
  });
});

describe("DhtNode stats", () => {
  test("counters move with the traffic", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x41), true);
    const before = node.stats();
    expect(before).toMatchObject({ responsesIn: 0, invalidIn: 0, rateLimited: 0, bytesIn: 0, bytesOut: 0, tableSize: 0 });
    await peer.response(node.local, { method: "ping", id: peer.id });
    await peer.response(node.local, { method: "find_node", id: peer.id, target: KEY });
    peer.socket.send(utf8("garbage"), node.local);
    await pause(PING_GIVE_UP_MS);
    const after = node.stats();
    expect(after.queriesIn).toEqual({ ping: 1, find_node: 1 });
    expect(after.queriesOut).toEqual({ ping: 1 }); // the ping that let the peer in
    expect(after.responsesIn).toBe(1);
    expect(after.invalidIn).toBe(1);
    expect(after.tableSize).toBe(1);
    expect(after.bytesIn).toBeGreaterThan(0);
    expect(after.bytesOut).toBeGreaterThan(0);
    expect(after.id).toBe(idToHex(node.id));
    expect(after.address).toBe(node.local.address);
  });
});

describe("DhtNodes together", () => {
  test("a node that joins through another enters its table, and each finds the other", async () => {
    newNetwork();
    const a = makeNode();
    await a.start();
    const b = makeNode({ bootstrap: [a.local] });
    await b.start();
    await pause(50);
    expect(a.contacts().map((c) => idToHex(c.id))).toEqual([idToHex(b.id)]);
    expect(b.contacts().map((c) => idToHex(c.id))).toEqual([idToHex(a.id)]);
    expect((await b.findNode(a.id)).map((c) => idToHex(c.id))).toEqual([idToHex(a.id)]);
  });

  test("putItem() refuses a value that is not canonical bencode, which other nodes would store under another target", async () => {
    newNetwork();
    const a = makeNode();
    await a.start();
    const b = makeNode({ bootstrap: [a.local] });
    await b.start();
    await expect(b.putItem(utf8("d1:bi1e1:ai2ee"))).rejects.toThrow("not canonical");
    await expect(b.putItem(utf8("not bencode"))).rejects.toThrow("not canonical");
    const canonical = utf8("d1:ai2e1:bi1ee");
    const put = await b.putItem(canonical);
    expect(put.stored).toBe(1);
    expect(await a.getItem(put.target)).toEqual(canonical);
  });

  test("a join survives a lost datagram to its only bootstrap node (it waits for the resend's answer)", async () => {
    newNetwork();
    const a = makeNode();
    await a.start();
    // A bootstrap node whose first answer is lost: it answers only the resent query.
    const bootstrap = net.bind();
    closers.push(() => bootstrap.close());
    const seen = new Set<string>();
    bootstrap.onDatagram((data, from) => {
      const message = decodeMessage(data);
      if (message.kind !== "query") return;
      const t = idToHex(padT(message.t));
      if (!seen.has(t)) {
        seen.add(t);
        return;
      }
      const nodes = [{ id: a.id, address: a.local.address, port: a.local.port }];
      bootstrap.send(encodeMessage({ kind: "response", t: message.t, body: { id: id(0x99), nodes } }), from);
    });
    const b = makeNode({ bootstrap: [bootstrap.local] });
    await b.start();
    expect(b.contacts().map((c) => idToHex(c.id))).toContain(idToHex(a.id));
  });

  test("announce and getPeers across three nodes; putItem and getItem", async () => {
    newNetwork();
    const a = makeNode();
    await a.start();
    const b = makeNode({ bootstrap: [a.local] });
    const c = makeNode({ bootstrap: [a.local] });
    await b.start();
    await c.start();
    const announced = await b.announce(KEY, 8080, Uint8Array.of(1, 2, 3));
    expect(announced.stored).toBe(2); // a and c
    const found = await c.getPeers(KEY);
    expect(found.peers).toEqual([{ address: b.local.address, port: 8080, pieces: Uint8Array.of(1, 2, 3) }]);

    const value = utf8("l4:spam4:eggse");
    const put = await a.putItem(value);
    expect(put.target).toEqual(sha1(value));
    expect(put.stored).toBe(2);
    expect(await c.getItem(put.target)).toEqual(value);
    expect(await c.getItem(sha1(utf8("3:nah")))).toBeUndefined();
  });

  test("close() is idempotent and stops answering", async () => {
    newNetwork();
    const node = makeNode();
    const peer = new RawPeer(id(0x51), false);
    node.close();
    node.close();
    await expect(peer.ask(node.local, { method: "ping", id: peer.id })).rejects.toThrow("no reply");
  });
});

describe("getPeers() and our own store", () => {
  test("a node finds the values announced to itself, not only those held by others", async () => {
    const net = new MemoryNetwork();
    const a = new DhtNode({ socket: net.bind(), maintenance: false });
    await a.start();
    const b = new DhtNode({ socket: net.bind(), bootstrap: [a.local], maintenance: false });
    await b.start();
    try {
      const key = new Uint8Array(20).fill(0x42);
      // With two nodes, b's announce is stored at a only.
      expect((await b.announce(key, 4321)).stored).toBe(1);
      const found = await a.getPeers(key);
      expect(found.peers.map((p) => p.port)).toEqual([4321]);
    } finally {
      a.close();
      b.close();
    }
  });
});

describe("read-only nodes (BEP 43)", () => {
  test("a read-only node's queries say so, it is answered but never enters the table, and it answers nothing", async () => {
    const net = new MemoryNetwork();
    const daemon = new DhtNode({ socket: net.bind(), maintenance: false });
    await daemon.start();
    const reader = new DhtNode({ socket: net.bind(), bootstrap: [daemon.local], maintenance: false, readOnly: true, refreshOnJoin: false });
    try {
      await reader.start();
      expect(reader.stats().tableSize).toBe(1); // it learned the daemon from the answer
      await Bun.sleep(50); // room for a ping the daemon must not send
      expect(daemon.stats().tableSize).toBe(0);
      expect(daemon.stats().queriesOut.ping ?? 0).toBe(0);
      await expect(daemon.ping(reader.local)).rejects.toThrow(/timed out/);
    } finally {
      reader.close();
      daemon.close();
    }
  });
});
