/**
 * The counters behind the metrics' DHT queries by method and outcome, and the lookup duration histogram.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { encodeMessage } from "../../src/dht/krpc.ts";
import { DhtNode } from "../../src/dht/node.ts";
import { Rpc } from "../../src/dht/rpc.ts";
import { RttTracker } from "../../src/dht/rtt.ts";
import { MemoryNetwork } from "../../src/dht/socket.ts";
import { id, ManualTimers, ScriptedSocket, seededRandom } from "./fakes.ts";

const PEER = { address: "10.0.0.2", port: 6881 };
let closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers) close();
  closers = [];
});

describe("Rpc outcomesOut", () => {
  test("counts each query once by method: answered, KRPC error, or timed out after its resend", async () => {
    const socket = new ScriptedSocket();
    const timers = new ManualTimers();
    const rpc = new Rpc({ socket, rtt: new RttTracker(), timers, randomBytes: seededRandom(3).bytes, onQuery: () => undefined });
    closers.push(() => rpc.close());
    const answered = rpc.query(PEER, { method: "ping", id: id(1) });
    socket.deliver(encodeMessage({ kind: "response", t: socket.lastSent().message.t, body: { id: id(2) } }), PEER);
    await answered;
    const refused = rpc.query(PEER, { method: "get_peers", id: id(1), infoHash: id(3) }).catch(() => "refused");
    socket.deliver(encodeMessage({ kind: "error", t: socket.lastSent().message.t, code: 203, message: "Bad token" }), PEER);
    expect(await refused).toBe("refused");
    const lost = rpc.query(PEER, { method: "get_peers", id: id(1), infoHash: id(3) }).catch(() => "lost");
    timers.advance(60_000);
    expect(await lost).toBe("lost");
    expect(rpc.counters.outcomesOut).toEqual({
      ping: { response: 1, error: 0, timeout: 0 },
      get_peers: { response: 0, error: 1, timeout: 1 },
    });
  });
});

describe("DhtNode outcomesIn and lookupDurations", () => {
  test("queries answered by another node count as answered, refusals as error; each lookup lands in the histogram", async () => {
    const net = new MemoryNetwork();
    const a = new DhtNode({ socket: net.bind(), bootstrap: [], maintenance: false, randomBytes: seededRandom(11).bytes });
    closers.push(() => a.close());
    await a.start();
    const b = new DhtNode({ socket: net.bind(), bootstrap: [a.local], maintenance: false, randomBytes: seededRandom(12).bytes });
    closers.push(() => b.close());
    await b.start();
    const before = a.stats().outcomesIn.find_node?.answered ?? 0;
    await b.findNode(id(9));
    const stats = a.stats();
    expect(stats.outcomesIn.find_node!.answered).toBeGreaterThan(before);
    expect(stats.outcomesIn.find_node!.error).toBe(0);
    expect(b.stats().outcomesOut.find_node!.response).toBeGreaterThan(0);

    // An announce with a token that a never issued is refused with a KRPC error.
    const sender = net.bind();
    closers.push(() => sender.close());
    sender.send(
      encodeMessage({
        kind: "query",
        t: Uint8Array.of(1, 2),
        query: { method: "announce_peer", id: id(7), infoHash: id(8), port: 1234, token: Uint8Array.of(1, 2, 3), impliedPort: false },
      }),
      a.local,
    );
    await Bun.sleep(50);
    expect(a.stats().outcomesIn.announce_peer).toEqual({ answered: 0, error: 1, dropped: 0 });

    const lookups = b.stats();
    expect(lookups.lookupDurations.count).toBe(lookups.lookups);
    expect(lookups.lookupDurations.counts.reduce((sum, n) => sum + n, 0)).toBe(lookups.lookups);
  });
});
