/**
 * A live node on real loopback UDP takes a few thousand hostile datagrams (random bytes and mutations of
 * valid KRPC, from a seeded generator) from several sockets, some of which answer the node's pings with
 * mutated answers. Afterwards it must still answer, have counted what it dropped, and hold nothing unbounded.
 */
import { afterAll, expect, test } from "bun:test";
import { encodeMessage } from "../../src/dht/krpc.ts";
import type { Message } from "../../src/dht/messages.ts";
import { DhtNode } from "../../src/dht/node.ts";
import { bindUdp, type DatagramSocket } from "../../src/dht/socket.ts";
import { seededRandom } from "./fakes.ts";

const DATAGRAMS = 3_000;
const SOURCES = 6;
/** A short pause after this many datagrams, so that the node handles them rather than the kernel dropping them. */
const BATCH = 40;
const MAX_ADDRESSES = 16;
const RTT_CAP_MS = 150;

const random = seededRandom(20240607);
/** The answers' own generator, so that when they happen does not change the datagrams sent. */
const replyRandom = seededRandom(4242);
const open: { close(): void }[] = [];
afterAll(() => {
  for (const o of open) o.close();
});

const utf8 = (text: string) => new TextEncoder().encode(text);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Well-formed messages of every kind, to mutate. */
function corpus(): Uint8Array[] {
  const id = () => random.bytes(20);
  const t = () => random.bytes(1 + random.int(4));
  const messages: Message[] = [
    { kind: "query", t: t(), query: { method: "ping", id: id() } },
    { kind: "query", t: t(), query: { method: "find_node", id: id(), target: id() } },
    { kind: "query", t: t(), query: { method: "get_peers", id: id(), infoHash: id() } },
    { kind: "query", t: t(), query: { method: "announce_peer", id: id(), infoHash: id(), port: 6881, token: random.bytes(8), impliedPort: false, pieces: random.bytes(64) } },
    { kind: "query", t: t(), query: { method: "announce_peer", id: id(), infoHash: id(), port: 0, token: random.bytes(8), impliedPort: true } },
    { kind: "query", t: t(), query: { method: "get", id: id(), target: id() } },
    { kind: "query", t: t(), query: { method: "put", id: id(), token: random.bytes(8), value: utf8("d1:ai1e1:bl3:xyzee"), mutable: false } },
    { kind: "response", t: t(), body: { id: id(), nodes: [{ id: id(), address: "127.0.0.1", port: 9 }], token: random.bytes(8) } },
    { kind: "response", t: t(), body: { id: id(), values: [{ address: "127.0.0.1", port: 9, pieces: random.bytes(20) }] } },
    { kind: "response", t: t(), body: { id: id(), value: utf8("4:spam") } },
    { kind: "error", t: t(), code: 201, message: "A Generic Error Ocurred" },
  ];
  return messages.map(encodeMessage);
}

const BASE = corpus();

/** One hostile datagram. */
function hostile(random: ReturnType<typeof seededRandom>): Uint8Array {
  const base = BASE[random.int(BASE.length)]!;
  switch (random.int(10)) {
    case 0: // random bytes
      return random.bytes(random.int(1_500));
    case 1: {
      // flipped bytes
      const out = base.slice();
      for (let i = 0, n = 1 + random.int(4); i < n; i++) out[random.int(out.length)] = random.int(256);
      return out;
    }
    case 2: // truncated
      return base.subarray(0, random.int(base.length));
    case 3: {
      // a string or integer given an absurd length or value
      const text = new TextDecoder("latin1").decode(base);
      const huge = random.int(2) === 0 ? text.replace(/(\d+):/, "99999999999:") : text.replace(/i(\d+)e/, "i99999999999999999999999999e");
      return Uint8Array.from(huge, (c) => c.charCodeAt(0));
    }
    case 4: {
      // another method name
      const text = new TextDecoder("latin1").decode(base);
      const names = ["constructor", "__proto__", "vote", "sample_infohashes", "", "pingping", "q"];
      const name = names[random.int(names.length)]!;
      return utf8(text.replace(/1:q(\d+):[a-z_]+/, `1:q${name.length}:${name}`));
    }
    case 5: {
      // wrong types: a value replaced by a list, dictionary or integer
      const text = new TextDecoder("latin1").decode(base);
      const swaps = ["le", "de", "i0e", "l20:" + "a".repeat(20) + "e"];
      return Uint8Array.from(text.replace(/20:[\s\S]{20}/, swaps[random.int(swaps.length)]!), (c) => c.charCodeAt(0));
    }
    case 6: // deep nesting
      return utf8("l".repeat(1 + random.int(5_000)) + "e".repeat(random.int(5_000)));
    case 7: // trailing junk
      return concat(base, random.bytes(1 + random.int(20)));
    case 8: // over the node's datagram limit
      return concat(base, random.bytes(9_000));
    default: // unchanged (still valid: exercises the normal path and the rate limiter)
      return base;
  }
}

test(`a node on loopback UDP survives ${DATAGRAMS} hostile datagrams and still answers`, async () => {
  const uncaught: unknown[] = [];
  const onError = (err: unknown) => void uncaught.push(err);
  process.on("uncaughtException", onError);
  try {
    const node = new DhtNode({
      socket: await bindUdp("127.0.0.1", 0),
      bootstrap: [],
      maintenance: false,
      randomBytes: random.bytes,
      rtt: { maxTimeoutMs: RTT_CAP_MS },
      rateLimit: { perSecond: 1_000, burst: 100, maxAddresses: MAX_ADDRESSES },
      storage: { maxKeys: 50, maxTotalValues: 100, maxItems: 20 },
    });
    open.push(node);
    await node.start();

    const sources: DatagramSocket[] = [];
    for (let i = 0; i < SOURCES; i++) {
      const socket = await bindUdp("127.0.0.1", 0);
      open.push(socket);
      const answersBack = i % 2 === 0;
      socket.onDatagram((data, from) => {
        // Half the sources answer whatever the node sends them (its pings): with a hostile datagram, and
        // with an answer under its transaction id but a random node id, so the matching path runs too.
        if (!answersBack) return;
        socket.send(hostile(replyRandom), from);
        // The node's queries end "1:t2:<t>1:v4:<version>1:y1:qe": its t is 18 bytes from the end.
        socket.send(concat(utf8("d1:rd2:id20:"), replyRandom.bytes(20), utf8("e1:t2:"), data.subarray(-18, -16), utf8("1:y1:re")), from);
      });
      sources.push(socket);
    }

    for (let i = 0; i < DATAGRAMS; i++) {
      sources[random.int(SOURCES)]!.send(hostile(random), node.local);
      if (i % BATCH === BATCH - 1) await pause(1);
    }
    // Let the node's own pings to the sources finish: two sends, each at most RTT_CAP_MS.
    await pause(3 * RTT_CAP_MS);
    expect(node.stats().inFlight).toBe(0);

    const fresh = await bindUdp("127.0.0.1", 0);
    open.push(fresh);
    const answered = new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the node no longer answers")), 2_000);
      fresh.onDatagram((data) => {
        if (!new TextDecoder("latin1").decode(data).endsWith("1:y1:re")) return; // the node's ping to us
        clearTimeout(timer);
        resolve(data);
      });
    });
    const t = utf8("ok");
    fresh.send(encodeMessage({ kind: "query", t, query: { method: "ping", id: random.bytes(20) } }), node.local);
    const reply = await answered;
    expect(new TextDecoder("latin1").decode(reply)).toContain("1:t2:ok1:v4:");

    const stats = node.stats();
    expect(stats.invalidIn).toBeGreaterThan(DATAGRAMS / 4);
    expect(stats.unknownTransactions).toBeGreaterThan(0);
    expect(stats.responsesIn).toBeGreaterThan(0);
    expect(stats.queriesIn.ping ?? 0).toBeGreaterThan(0);
    expect(stats.rateLimitTracked).toBeLessThanOrEqual(MAX_ADDRESSES);
    expect(stats.storedKeys).toBeLessThanOrEqual(50);
    expect(stats.storedValues).toBeLessThanOrEqual(100);
    expect(stats.storedItems).toBeLessThanOrEqual(20);
    expect(stats.tableSize).toBeLessThanOrEqual(SOURCES + 1);
    expect(uncaught).toEqual([]);
  } finally {
    process.off("uncaughtException", onError);
  }
}, 15_000);
