/**
 * The KRPC transport over a scripted socket and manual timers: no sleeps, every timeout deterministic.
 */
import { beforeEach, describe, expect, test } from "bun:test";
import { encodeMessage } from "../../src/dht/krpc.ts";
import { KRPC_ERROR_METHOD_UNKNOWN, KRPC_ERROR_PROTOCOL, type Message, type QueryMessage } from "../../src/dht/messages.ts";
import { Rpc, RpcClosedError, RpcRemoteError, RpcTimeoutError, SENDS_PER_QUERY } from "../../src/dht/rpc.ts";
import { INITIAL_TIMEOUT_MS, RttTracker } from "../../src/dht/rtt.ts";
import { id, ManualTimers, ScriptedSocket, seededRandom } from "./fakes.ts";

const PEER = { address: "10.0.0.2", port: 6881 };
const OWN_ID = id(1);
const PEER_ID = id(2);
const VERSION = new Uint8Array([0x54, 0x54, 0, 1]);

let socket: ScriptedSocket;
let timers: ManualTimers;
let rtt: RttTracker;
let rpc: Rpc;
let incoming: { message: QueryMessage; from: { address: string; port: number } }[];

beforeEach(() => {
  socket = new ScriptedSocket();
  timers = new ManualTimers();
  rtt = new RttTracker();
  incoming = [];
  rpc = new Rpc({
    socket,
    rtt,
    timers,
    version: VERSION,
    randomBytes: seededRandom(7).bytes,
    onQuery: (message, from) => incoming.push({ message, from }),
  });
});

/** The transaction id of the last query sent. */
function lastT(): Uint8Array {
  const { message } = socket.lastSent();
  if (message.kind !== "query") throw new Error(`last datagram is a ${message.kind}`);
  return message.t;
}

function answer(t: Uint8Array, from = PEER, responderId = PEER_ID): void {
  socket.deliver(encodeMessage({ kind: "response", t, body: { id: responderId } }), from);
}

/** Records how a promise settled without awaiting it, so time can be advanced first. */
function track<T>(promise: Promise<T>) {
  const state: { value?: T; error?: unknown; settled: boolean } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { value, settled: true }),
    (error) => Object.assign(state, { error, settled: true }),
  );
  return state;
}
const flush = () => new Promise((resolve) => setImmediate(resolve));

describe("Rpc queries", () => {
  test("query() sends a KRPC query with a 2-byte t and our version, and resolves with the answer and its RTT", async () => {
    const pending = rpc.query(PEER, { method: "ping", id: OWN_ID });
    const { message, to } = socket.lastSent();
    expect(to).toEqual(PEER);
    expect(message.kind).toBe("query");
    expect(message.t).toHaveLength(2);
    expect(message.version).toEqual(VERSION);
    expect(rpc.inFlight).toBe(1);
    timers.advance(30);
    answer(message.t);
    const got = await pending;
    expect(got.body.id).toEqual(PEER_ID);
    expect(got.from).toEqual(PEER);
    expect(got.rttMs).toBe(30);
    expect(rpc.inFlight).toBe(0);
    expect(timers.pending).toBe(0);
    expect(rpc.counters.queriesOut).toEqual({ ping: 1 });
    expect(rpc.counters.responsesIn).toBe(1);
    expect(rpc.counters.bytesOut).toBe(socket.sent[0]!.data.length);
    expect(rpc.counters.bytesIn).toBeGreaterThan(0);
  });

  test("concurrent queries get distinct transaction ids and each answer reaches its own query", async () => {
    const a = rpc.query(PEER, { method: "ping", id: OWN_ID });
    const tA = lastT();
    const b = rpc.query(PEER, { method: "find_node", id: OWN_ID, target: id(9) });
    const tB = lastT();
    expect(tA).not.toEqual(tB);
    answer(tB, PEER, id(0xbb));
    answer(tA, PEER, id(0xaa));
    expect((await a).body.id).toEqual(id(0xaa));
    expect((await b).body.id).toEqual(id(0xbb));
  });

  test("an unanswered query is resent once after the adaptive timeout, then fails with RpcTimeoutError", async () => {
    let slow = 0;
    const state = track(rpc.query(PEER, { method: "get_peers", id: OWN_ID, infoHash: id(3) }, { onSlow: () => slow++ }));
    const first = socket.sent[0]!.data;
    timers.advance(INITIAL_TIMEOUT_MS - 1);
    expect(socket.sent).toHaveLength(1);
    expect(slow).toBe(0);
    timers.advance(1);
    expect(socket.sent).toHaveLength(SENDS_PER_QUERY);
    expect(socket.sent[1]!.data).toEqual(first); // the same datagram, same transaction id
    expect(slow).toBe(1);
    expect(rpc.counters.resends).toBe(1);
    await flush();
    expect(state.settled).toBe(false);

    timers.advance(INITIAL_TIMEOUT_MS);
    await flush();
    expect(state.error).toBeInstanceOf(RpcTimeoutError);
    expect((state.error as RpcTimeoutError).to).toEqual(PEER);
    expect((state.error as RpcTimeoutError).method).toBe("get_peers");
    expect(slow).toBe(1);
    expect(rpc.counters.timeouts).toBe(1);
    expect(rpc.inFlight).toBe(0);
    expect(timers.pending).toBe(0);
    timers.advance(60_000);
    expect(socket.sent).toHaveLength(SENDS_PER_QUERY);
  });

  test("an answer to the resent query still resolves it; onSlow is not called for a prompt answer", async () => {
    let slow = 0;
    const prompt = rpc.query(PEER, { method: "ping", id: OWN_ID }, { onSlow: () => slow++ });
    answer(lastT());
    await prompt;
    timers.advance(10 * INITIAL_TIMEOUT_MS);
    expect(slow).toBe(0);

    const late = rpc.query(PEER, { method: "ping", id: OWN_ID }, { onSlow: () => slow++ });
    const t = lastT();
    timers.advance(rtt.timeoutFor(`${PEER.address}:${PEER.port}`) + 5); // past the first send's timeout only
    answer(t);
    expect((await late).body.id).toEqual(PEER_ID);
    expect(slow).toBe(1);
    expect(rpc.counters.timeouts).toBe(0);
  });

  test("RTT samples feed the tracker, but not from a resent query (Karn's rule)", async () => {
    const resent = rpc.query(PEER, { method: "ping", id: OWN_ID });
    const t = lastT();
    timers.advance(INITIAL_TIMEOUT_MS + 40);
    answer(t);
    await resent;
    expect(rtt.median()).toBeUndefined();
    expect(rtt.timeoutFor(`${PEER.address}:${PEER.port}`)).toBe(INITIAL_TIMEOUT_MS);

    const clean = rpc.query(PEER, { method: "ping", id: OWN_ID });
    timers.advance(100);
    answer(lastT());
    await clean;
    expect(rtt.median()).toBe(100);
    // RFC 6298's first sample: srtt 100, rttvar 50, estimate srtt + 4 rttvar; the first send waits at
    // most 2 × p90 of recent answers (200), the resend the larger of the two (300).
    expect(rtt.estimateFor(`${PEER.address}:${PEER.port}`)).toBe(300);

    // The next query to that peer waits the measured timeouts, not the cold-start one.
    const next = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    timers.advance(199);
    expect(socket.sent).toHaveLength(4);
    timers.advance(1);
    expect(socket.sent).toHaveLength(5);
    timers.advance(300);
    await flush();
    expect(next.error).toBeInstanceOf(RpcTimeoutError);
  });

  test("a KRPC error answer rejects with RpcRemoteError carrying code and message", async () => {
    const state = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    socket.deliver(encodeMessage({ kind: "error", t: lastT(), code: 202, message: "Server Error" }), PEER);
    await flush();
    expect(state.error).toBeInstanceOf(RpcRemoteError);
    expect((state.error as RpcRemoteError).code).toBe(202);
    expect((state.error as RpcRemoteError).remoteMessage).toBe("Server Error");
    expect(rpc.counters.errorsIn).toBe(1);
    expect(rpc.inFlight).toBe(0);
    expect(timers.pending).toBe(0);
  });

  test("a query that cannot be encoded rejects (never throws) and leaves nothing in flight", async () => {
    let result: Promise<unknown> | undefined;
    expect(() => {
      result = rpc.query(PEER, { method: "find_node", id: OWN_ID, target: new Uint8Array(5) });
    }).not.toThrow();
    await expect(result!).rejects.toThrow("target of 5 bytes");
    expect(rpc.inFlight).toBe(0);
    expect(socket.sent).toHaveLength(0);
  });

  test("a send the socket refuses fails the query at once and is counted", async () => {
    socket.accept = false;
    const state = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    await flush();
    expect(state.error).toBeInstanceOf(RpcTimeoutError);
    expect(rpc.counters.sendFailures).toBe(1);
    expect(rpc.inFlight).toBe(0);
    expect(timers.pending).toBe(0);
  });
});

describe("Rpc drops answers it did not ask for", () => {
  test("an answer with an unknown transaction id is dropped and counted; the query still waits", async () => {
    const state = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    const t = lastT();
    const other = Uint8Array.of(t[0]!, t[1]! ^ 0xff);
    answer(other);
    answer(Uint8Array.of(1, 2, 3)); // not even our length
    await flush();
    expect(rpc.counters.unknownTransactions).toBe(2);
    expect(rpc.counters.responsesIn).toBe(0);
    expect(state.settled).toBe(false);
    answer(t);
    await flush();
    expect(state.value?.body.id).toEqual(PEER_ID);
  });

  test("an answer with the right transaction id from another address or another port is dropped", async () => {
    const state = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    const t = lastT();
    answer(t, { address: "10.0.0.66", port: PEER.port }, id(0x66));
    answer(t, { address: PEER.address, port: PEER.port + 1 }, id(0x67));
    socket.deliver(encodeMessage({ kind: "error", t, code: 201, message: "spoofed" }), { address: "10.0.0.66", port: PEER.port });
    await flush();
    expect(rpc.counters.unknownTransactions).toBe(3);
    expect(rpc.counters.errorsIn).toBe(0);
    expect(state.settled).toBe(false);
    expect(rtt.median()).toBeUndefined();
    answer(t);
    await flush();
    expect(state.value?.body.id).toEqual(PEER_ID);
  });

  test("a second answer to a finished transaction is dropped", async () => {
    const pending = rpc.query(PEER, { method: "ping", id: OWN_ID });
    const t = lastT();
    answer(t);
    await pending;
    answer(t);
    expect(rpc.counters.responsesIn).toBe(1);
    expect(rpc.counters.unknownTransactions).toBe(1);
  });
});

describe("Rpc and malformed datagrams", () => {
  const FROM = { address: "10.0.0.9", port: 4000 };
  const raw = (text: string) => new TextEncoder().encode(text);
  /** An answer with transaction id t whose node id is 3 bytes long. */
  const malformedAnswer = (t: Uint8Array) => new Uint8Array([...raw("d1:rd2:id3:abce1:t2:"), ...t, ...raw("1:y1:re")]);

  test("garbage is counted as invalid and never answered", () => {
    for (const bad of ["", "not bencode", "i42e", "le", "d1:t2:aa1:y1:qe" + "x", "d1:y1:qe"]) socket.deliver(raw(bad), FROM);
    expect(rpc.counters.invalidIn).toBe(6);
    expect(socket.sent).toHaveLength(0);
    expect(incoming).toHaveLength(0);
  });

  test("a query with an unknown method and a readable t is answered with error 204", () => {
    socket.deliver(raw(`d1:ad2:id20:${"a".repeat(20)}e1:q6:vanish1:t2:xy1:y1:qe`), FROM);
    expect(rpc.counters.invalidIn).toBe(1);
    const { message, to } = socket.lastSent();
    expect(to).toEqual(FROM);
    expect(message).toMatchObject({ kind: "error", t: raw("xy"), code: KRPC_ERROR_METHOD_UNKNOWN });
    expect(incoming).toHaveLength(0);
  });

  test("a query with bad arguments and a readable t is answered with error 203", () => {
    socket.deliver(raw("d1:ad2:id5:shorte1:q4:ping1:t2:zz1:y1:qe"), FROM);
    expect(rpc.counters.invalidIn).toBe(1);
    expect(socket.lastSent().message).toMatchObject({ kind: "error", t: raw("zz"), code: KRPC_ERROR_PROTOCOL });
  });

  test("a malformed query is not answered when mayAnswer() refuses its sender (the node's rate limit)", () => {
    const asked: string[] = [];
    const limited = new Rpc({
      socket,
      rtt,
      timers,
      randomBytes: seededRandom(8).bytes,
      onQuery: () => {},
      mayAnswer: (from) => {
        asked.push(`${from.address}:${from.port}`);
        return false;
      },
    });
    socket.deliver(raw(`d1:ad2:id20:${"a".repeat(20)}e1:q6:vanish1:t2:xy1:y1:qe`), FROM);
    socket.deliver(raw("garbage"), FROM); // not answerable anyway: the limiter is not consulted
    expect(limited.counters.invalidIn).toBe(2);
    expect(asked).toEqual([`${FROM.address}:${FROM.port}`]);
    expect(socket.sent).toHaveLength(0);
  });

  test("a malformed response is counted and not answered", () => {
    socket.deliver(raw("d1:rd2:id3:abce1:t2:xy1:y1:re"), FROM);
    expect(rpc.counters.invalidIn).toBe(1);
    expect(socket.sent).toHaveLength(0);
  });

  test("a malformed answer to one of our queries fails that query at once, not at its timeout", async () => {
    const state = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    socket.deliver(malformedAnswer(lastT()), PEER);
    await flush();
    expect(state.settled).toBe(true);
    expect(state.error).toBeInstanceOf(RpcRemoteError);
    expect(String((state.error as Error).message)).toContain("malformed answer");
    expect(rpc.inFlight).toBe(0);
  });

  test("a malformed answer from another address does not fail the query", async () => {
    const state = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    socket.deliver(malformedAnswer(lastT()), { address: "10.9.9.9", port: 1 });
    await flush();
    expect(state.settled).toBe(false);
    expect(rpc.inFlight).toBe(1);
  });

  test("a well-formed query reaches onQuery with its source; respond() answers it with t and the requester's address", () => {
    const query: Message = { kind: "query", t: raw("qq"), query: { method: "ping", id: PEER_ID } };
    socket.deliver(encodeMessage(query), FROM);
    expect(incoming).toHaveLength(1);
    expect(incoming[0]!.from).toEqual(FROM);
    expect(rpc.counters.queriesIn).toEqual({ ping: 1 });
    rpc.respond(FROM, incoming[0]!.message.t, { id: OWN_ID });
    const { message, to } = socket.lastSent();
    expect(to).toEqual(FROM);
    expect(message).toMatchObject({ kind: "response", t: raw("qq"), yourAddress: FROM, body: { id: OWN_ID } });
  });
});

describe("Rpc.close()", () => {
  test("rejects pending queries with RpcClosedError, clears timers, closes the socket once, and is idempotent", async () => {
    const a = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    const b = track(rpc.query(PEER, { method: "ping", id: OWN_ID }));
    const t = lastT();
    rpc.close();
    rpc.close();
    await flush();
    expect(a.error).toBeInstanceOf(RpcClosedError);
    expect(b.error).toBeInstanceOf(RpcClosedError);
    expect(rpc.inFlight).toBe(0);
    expect(timers.pending).toBe(0);
    expect(socket.closeCalls).toBe(1);
    answer(t);
    expect(rpc.counters.responsesIn).toBe(0);
    expect(rpc.query(PEER, { method: "ping", id: OWN_ID })).rejects.toBeInstanceOf(RpcClosedError);
    const sentBefore = socket.sent.length;
    timers.advance(60_000);
    expect(socket.sent).toHaveLength(sentBefore);
  });
});
