/**
 * The peer server over a real socket (src/http/server.ts): pipelined requests answered in order, uploads
 * paced by the bucket, large ranges to a reader that pauses, and connections cut or closed midway.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { truncate } from "node:fs/promises";
import { handlePeer } from "../../src/daemon/peer-server.ts";
import { THROTTLE_CHUNK_BYTES, TokenBucket, UploadSlots } from "../../src/transfer/throttle.ts";
import { patterned, usePeerFixture } from "../helpers/peer-fixture.ts";
import { rawGet, rawRequest, ServerRig, type RawResponse } from "../helpers/raw-http.ts";

const fx = usePeerFixture();

function expectLengthFramed(responses: RawResponse[]): void {
  for (const response of responses) {
    expect(response.headers.get("transfer-encoding")).toBeUndefined();
    expect(response.headers.get("content-length")).toMatch(/^\d+$/);
  }
}

/**
 * An upload rate of one throttle chunk per second on a clock that moves only when the test opens a
 * gate: each wait of the body parks until the test calls the next function in the returned list.
 */
function gatedBucket(): (() => void)[] {
  const clock = { ms: 0 };
  const gates: (() => void)[] = [];
  fx.deps.bucket = new TokenBucket({ bytesPerSecond: THROTTLE_CHUNK_BYTES, now: () => clock.ms });
  fx.deps.sleep = (ms) =>
    new Promise<void>((resolve) =>
      gates.push(() => {
        clock.ms += ms;
        resolve();
      }),
    );
  return gates;
}

describe("peer server over a socket", () => {
  const rig = new ServerRig();
  const clients = rig.clients;
  afterEach(() => rig.close());
  const start = () => rig.start((request, info) => handlePeer(request, info, fx.deps));

  test("answers pipelined requests complete and in order, then reuses the connection", async () => {
    // The server handles pipelined requests as they are parsed and sends the answers in order, so their
    // uploads overlap: room for them all (the cap has tests of its own above).
    fx.deps.slots = new UploadSlots(8);
    const client = await start();
    const responses = await client.exchange([
      rawGet(`/~/${fx.large.file.sha256}`, "Range: bytes=100-199"),
      rawRequest("HEAD", `/~/${fx.small.file.sha256}`),
      rawGet(`/~/${fx.large.file.sha256}`),
      rawGet(`/~/${"a".repeat(64)}`),
      rawGet(`/~/${fx.small.file.sha256}`),
      rawGet(`/~/pieces/${fx.piecesKey}`),
      rawGet("/~/../../etc/passwd"),
    ]);
    expectLengthFramed(responses);
    expect(responses.map((r) => r.status)).toEqual([206, 200, 200, 404, 200, 200, 404]);
    expect(responses[0]!.headers.get("content-range")).toBe(`bytes 100-199/${fx.large.bytes.length}`);
    expect(responses[0]!.body).toEqual(Buffer.from(fx.large.bytes.subarray(100, 200)));
    expect(responses[1]!.headers.get("content-length")).toBe("1000");
    expect(responses[1]!.body.length).toBe(0);
    expect(responses[2]!.body).toEqual(Buffer.from(fx.large.bytes));
    expect(responses[3]!.body.toString()).toBe("Not found\n");
    expect(responses[4]!.body).toEqual(Buffer.from(fx.small.bytes));
    expect(responses[5]!.body).toEqual(Buffer.from(fx.piecesItem));

    const again = await client.exchange([
      rawGet(`/~/${fx.small.file.sha256}`, "Range: bytes=-10"),
      rawGet(`/~/${fx.small.file.sha256}`, "Range: bytes=5000-"),
    ]);
    expectLengthFramed(again);
    expect(again.map((r) => r.status)).toEqual([206, 416]);
    expect(again[0]!.body).toEqual(Buffer.from(fx.small.bytes.subarray(990)));
    expect(again[1]!.headers.get("content-range")).toBe("bytes */1000");
    expect(fx.stats.requests).toBe(9);
    expect(fx.deps.slots.total()).toBe(0);
  });

  test("uploads are paced by the bucket", async () => {
    const clock = { ms: 0 };
    const waits: number[] = [];
    const rate = 50_000;
    fx.deps.bucket = new TokenBucket({ bytesPerSecond: rate, burstBytes: 10_000, now: () => clock.ms });
    fx.deps.sleep = async (ms) => {
      waits.push(ms);
      clock.ms += ms;
    };
    const client = await start();
    const responses = await client.exchange([rawGet(`/~/${fx.large.file.sha256}`)]);
    expectLengthFramed(responses);
    expect(responses[0]!.body).toEqual(Buffer.from(fx.large.bytes));
    const total = waits.reduce((a, b) => a + b, 0);
    const expected = ((fx.large.bytes.length - 10_000) * 1000) / rate;
    expect(waits.length).toBe(Math.ceil(fx.large.bytes.length / THROTTLE_CHUNK_BYTES));
    expect(total).toBeGreaterThanOrEqual(expected);
    expect(total).toBeLessThanOrEqual(expected + waits.length);
  });

  // The server sends files itself from reused buffers (src/http/server.ts sendDirect), chunk by chunk with
  // backpressure: every body must still be the right bytes, whole and in order.
  test("512 KiB ranges pipelined to a reader that keeps pausing arrive intact", async () => {
    const big = await fx.addFile("big.deb", patterned(8 * 512 * 1024 + 777, 9));
    fx.deps.slots = new UploadSlots(16);
    const client = await start();
    let pauses = 0;
    client.socket.on("data", () => {
      if (pauses++ % 3 !== 0) return;
      client.socket.pause();
      setTimeout(() => client.socket.resume(), 5);
    });
    const pieces = [3, 0, 7, 8, 1, 6, 2, 5, 4, 3];
    const responses = await client.exchange(
      pieces.map((p) => rawGet(`/~/${big.file.sha256}`, `Range: bytes=${p * 524288}-${Math.min((p + 1) * 524288, big.bytes.length) - 1}`)),
    );
    expectLengthFramed(responses);
    expect(responses.map((r) => r.status)).toEqual(pieces.map(() => 206));
    responses.forEach((r, i) => expect(r.body.equals(Buffer.from(big.bytes.subarray(pieces[i]! * 524288, (pieces[i]! + 1) * 524288)))).toBe(true));
    const [whole] = await client.exchange([rawGet(`/~/${big.file.sha256}`)]);
    expectLengthFramed([whole!]);
    expect(whole!.body.equals(Buffer.from(big.bytes))).toBe(true);
    expect(fx.stats.bytesSent).toBe(responses.reduce((sum, r) => sum + r.body.length, 0) + big.bytes.length);
    expect(fx.deps.slots.total()).toBe(0);
  });

  test("a file that shrinks while it is sent cuts the connection, frees the slot and is invalidated", async () => {
    const huge = await fx.addFile("huge.deb", patterned(1024 * 1024, 4));
    const gates = gatedBucket();
    const client = await start();
    client.send(rawGet(`/~/${huge.file.sha256}`));
    for (let i = 0; i < 200 && gates.length === 0; i++) await Bun.sleep(5);
    expect(client.received.length).toBeGreaterThan(THROTTLE_CHUNK_BYTES);
    await truncate(huge.file.path, 100);
    gates.shift()!();
    await client.closed();
    expect(client.received.length).toBeLessThan(huge.bytes.length);
    expect(fx.deps.slots.total()).toBe(0);
    expect(fx.served.invalidated).toEqual([huge.file.sha256]);
  });

  // src/http/server.ts waits for "drain" or "close": on a response whose socket has closed, "drain"
  // never comes, and the body must still be cancelled so that the slot is freed.
  test("the slot is released when the client closes the connection midway", async () => {
    const huge = await fx.addFile("huge.deb", patterned(4 * 1024 * 1024, 5));
    const gates = gatedBucket();
    const client = await start();
    client.send(rawGet(`/~/${huge.file.sha256}`));
    for (let i = 0; i < 200 && gates.length === 0; i++) await Bun.sleep(5);
    expect(client.received.length).toBeGreaterThan(0);
    expect(fx.deps.slots.active("127.0.0.1")).toBe(1);
    await client.destroy();
    for (let i = 0; i < 200 && fx.deps.slots.total() > 0; i++) {
      gates.shift()?.();
      await Bun.sleep(5);
    }
    expect(fx.deps.slots.total()).toBe(0);
    expect(fx.stats.bytesSent).toBeLessThan(huge.bytes.length);
  });
});
