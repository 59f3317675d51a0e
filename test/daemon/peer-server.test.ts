import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat, truncate, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HotFiles } from "../../src/daemon/hot-files.ts";
import { handlePeer, newPeerServerStats, type PeerServerDeps, type PeerServerStats } from "../../src/daemon/peer-server.ts";
import type { RequestInfo } from "../../src/http/server.ts";
import type { ServedFile, ServedFiles } from "../../src/store/served.ts";
import { pieceListItem, pieceListKey } from "../../src/transfer/pieces.ts";
import { THROTTLE_CHUNK_BYTES, TokenBucket, UploadSlots } from "../../src/transfer/throttle.ts";
import { rawGet, rawRequest, ServerRig, type RawResponse } from "../helpers/raw-http.ts";

/** ServedFiles over a map, recording invalidations. */
class FakeServed implements ServedFiles {
  readonly files = new Map<string, ServedFile>();
  readonly pieceLists = new Map<string, Uint8Array>();
  readonly invalidated: string[] = [];

  bySha256(sha256: string): ServedFile | null {
    return this.files.get(sha256) ?? null;
  }

  pieceListByKey(keyHex: string): Uint8Array | null {
    return this.pieceLists.get(keyHex) ?? null;
  }

  invalidate(sha256: string): void {
    this.invalidated.push(sha256);
    this.files.delete(sha256);
  }
}

const sha256Hex = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const patterned = (size: number, seed: number) => new Uint8Array(size).map((_, i) => (i * 31 + seed) % 251);

const A: RequestInfo = { remoteAddress: "10.0.0.1", remotePort: 40000, rawTarget: "/" };
const B: RequestInfo = { remoteAddress: "10.0.0.2", remotePort: 40001, rawTarget: "/" };

let dir: string;
let served: FakeServed;
let stats: PeerServerStats;
let deps: PeerServerDeps;
let small: { bytes: Uint8Array; file: ServedFile };
let large: { bytes: Uint8Array; file: ServedFile };
let piecesKey: string;
let piecesItem: Uint8Array;

async function addFile(name: string, bytes: Uint8Array): Promise<{ bytes: Uint8Array; file: ServedFile }> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  const info = await stat(path);
  const file: ServedFile = { sha256: sha256Hex(bytes), size: bytes.length, path, mtimeMs: info.mtimeMs, pieces: [] };
  served.files.set(file.sha256, file);
  return { bytes, file };
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-peer-"));
  served = new FakeServed();
  stats = newPeerServerStats();
  deps = { served, bucket: null, slots: new UploadSlots(2), stats, sleep: async () => {} };
  small = await addFile("small.deb", patterned(1000, 7));
  large = await addFile("large.deb", patterned(3 * THROTTLE_CHUNK_BYTES + 123, 11));
  const hashes = [new Uint8Array(20).fill(1), new Uint8Array(20).fill(2)];
  piecesItem = pieceListItem(hashes);
  piecesKey = hex(pieceListKey(hashes));
  served.pieceLists.set(piecesKey, piecesItem);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function get(path: string, headers: Record<string, string> = {}, method = "GET"): Request {
  return new Request(`http://127.0.0.1:9${path}`, { method, headers });
}

const bodyOf = async (response: Response): Promise<Uint8Array> => new Uint8Array(await response.arrayBuffer());

describe("handlePeer() files by SHA-256", () => {
  test("GET serves the whole file with 200 and immutable content-address headers", async () => {
    const response = await handlePeer(get(`/~/${small.file.sha256}`), A, deps);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe("1000");
    expect(response.headers.get("accept-ranges")).toBe("bytes");
    expect(response.headers.get("content-type")).toBe("application/octet-stream");
    expect(response.headers.get("etag")).toBe(`"${small.file.sha256}"`);
    expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(await bodyOf(response)).toEqual(small.bytes);
  });

  test("a single range answers 206 with Content-Range", async () => {
    const response = await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=10-19" }), A, deps);
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe("bytes 10-19/1000");
    expect(response.headers.get("content-length")).toBe("10");
    expect(await bodyOf(response)).toEqual(small.bytes.subarray(10, 20));
  });

  test("a suffix range serves the last N bytes", async () => {
    const response = await handlePeer(get(`/~/${large.file.sha256}`, { Range: "bytes=-100" }), A, deps);
    expect(response.status).toBe(206);
    const size = large.bytes.length;
    expect(response.headers.get("content-range")).toBe(`bytes ${size - 100}-${size - 1}/${size}`);
    expect(await bodyOf(response)).toEqual(large.bytes.subarray(size - 100));
  });

  test("a range across several throttle pieces arrives whole", async () => {
    const start = THROTTLE_CHUNK_BYTES - 5;
    const end = 2 * THROTTLE_CHUNK_BYTES + 5;
    const response = await handlePeer(get(`/~/${large.file.sha256}`, { Range: `bytes=${start}-${end}` }), A, deps);
    expect(response.status).toBe(206);
    expect(await bodyOf(response)).toEqual(large.bytes.subarray(start, end + 1));
  });

  test("an unsatisfiable range answers 416 with Content-Range: bytes */size", async () => {
    const response = await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=1000-" }), A, deps);
    expect(response.status).toBe(416);
    expect(response.headers.get("content-range")).toBe("bytes */1000");
    expect(deps.slots.total()).toBe(0);
  });

  test("several ranges, or an If-Range for another validator, are ignored: 200 with the whole file", async () => {
    const multi = await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=0-1,5-9" }), A, deps);
    expect(multi.status).toBe(200);
    expect(await bodyOf(multi)).toEqual(small.bytes);
    const stale = await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=0-9", "If-Range": '"other"' }), A, deps);
    expect(stale.status).toBe(200);
    await stale.body?.cancel();
    const fresh = await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=0-9", "If-Range": `"${small.file.sha256}"` }), A, deps);
    expect(fresh.status).toBe(206);
    await fresh.body?.cancel();
  });

  test("HEAD answers the same headers without a body and takes no slot", async () => {
    const whole = await handlePeer(get(`/~/${small.file.sha256}`, {}, "HEAD"), A, deps);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-length")).toBe("1000");
    expect(whole.headers.get("etag")).toBe(`"${small.file.sha256}"`);
    expect(whole.body).toBeNull();
    const part = await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=-10" }, "HEAD"), A, deps);
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 990-999/1000");
    expect(part.headers.get("content-length")).toBe("10");
    expect(part.body).toBeNull();
    expect(deps.slots.total()).toBe(0);
  });

  const notServed: [string, () => string][] = [
    ["an unknown hash", () => `/~/${"0".repeat(64)}`],
    ["an upper-case hash of a served file", () => `/~/${small.file.sha256.toUpperCase()}`],
    ["63 hex digits", () => `/~/${small.file.sha256.slice(1)}`],
    ["65 hex digits", () => `/~/${small.file.sha256}0`],
    ["a trailing slash", () => `/~/${small.file.sha256}/`],
    ["a hash with a file name after it", () => `/~/${small.file.sha256}/x.deb`],
    ["the prefix alone", () => "/~/"],
    ["a path outside the prefix", () => "/etc/passwd"],
    ["a file's disk path", () => `/~/${small.file.path}`],
    ["dot-dot segments", () => "/~/../../etc/passwd"],
    ["encoded dot-dot segments", () => "/~/%2e%2e/%2E%2E/etc/passwd"],
    ["encoded slashes", () => "/~/..%2f..%2fetc%2fpasswd"],
    ["dot-dot into the temp directory", () => `/~/../..${dir}/small.deb`],
  ];
  for (const [what, path] of notServed) {
    test(`${what} → 404`, async () => {
      const response = await handlePeer(get(path()), A, deps);
      expect(response.status).toBe(404);
      expect(await response.text()).toBe("Not found\n");
    });
  }

  test("a file is pinned (safe from cache eviction) while it is sent, and released after, also for HEAD and 416", async () => {
    const pins = new Map<string, number>();
    deps.pin = (sha) => {
      pins.set(sha, (pins.get(sha) ?? 0) + 1);
      let released = false;
      return () => {
        if (!released) pins.set(sha, pins.get(sha)! - 1);
        released = true;
      };
    };
    const sha = large.file.sha256;
    const response = await handlePeer(get(`/~/${sha}`), A, deps);
    expect(pins.get(sha)).toBe(1);
    await bodyOf(response);
    expect(pins.get(sha)).toBe(0);
    await handlePeer(get(`/~/${sha}`, {}, "HEAD"), A, deps);
    await handlePeer(get(`/~/${sha}`, { Range: `bytes=${large.bytes.length + 5}-` }), A, deps);
    expect(pins.get(sha)).toBe(0);
  });

  test("methods other than GET and HEAD → 405 with Allow", async () => {
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
      const response = await handlePeer(get(`/~/${small.file.sha256}`, {}, method), A, deps);
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("GET, HEAD");
    }
  });

  test("a file modified on disk after hashing → 404, and the store is told", async () => {
    await utimes(small.file.path, new Date(), new Date(Date.now() + 60_000));
    const response = await handlePeer(get(`/~/${small.file.sha256}`), A, deps);
    expect(response.status).toBe(404);
    expect(served.invalidated).toEqual([small.file.sha256]);
  });

  test("a file whose size changed → 404 and invalidated, even if its mtime was put back", async () => {
    await writeFile(small.file.path, patterned(999, 7));
    const mtime = new Date(small.file.mtimeMs);
    await utimes(small.file.path, mtime, mtime);
    const response = await handlePeer(get(`/~/${small.file.sha256}`, {}, "HEAD"), A, deps);
    expect(response.status).toBe(404);
    expect(served.invalidated).toEqual([small.file.sha256]);
  });

  test("a file gone from disk → 404 and invalidated", async () => {
    await rm(small.file.path);
    const response = await handlePeer(get(`/~/${small.file.sha256}`), A, deps);
    expect(response.status).toBe(404);
    expect(served.invalidated).toEqual([small.file.sha256]);
  });

  test("counts requests, bytes sent and 404s", async () => {
    await bodyOf(await handlePeer(get(`/~/${small.file.sha256}`), A, deps));
    await bodyOf(await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=0-9" }), A, deps));
    await handlePeer(get(`/~/${"f".repeat(64)}`), A, deps);
    expect(stats).toEqual({ requests: 3, bytesSent: 1010, refused503: 0, notFound: 1 });
  });
});

describe("handlePeer() with small files held in memory", () => {
  beforeEach(() => {
    deps.hot = new HotFiles({ maxFileBytes: 64 * 1024 });
  });

  test("a small file is loaded on the first GET and later answers come from memory, also for ranges", async () => {
    expect(await bodyOf(await handlePeer(get(`/~/${small.file.sha256}`), A, deps))).toEqual(small.bytes);
    await rm(small.file.path); // only memory can answer now
    expect(await bodyOf(await handlePeer(get(`/~/${small.file.sha256}`), A, deps))).toEqual(small.bytes);
    const ranged = await handlePeer(get(`/~/${small.file.sha256}`, { Range: "bytes=10-19" }), A, deps);
    expect(ranged.status).toBe(206);
    expect(await bodyOf(ranged)).toEqual(small.bytes.subarray(10, 20));
    expect(deps.hot!.stats()).toMatchObject({ loads: 1, hits: 2 });
    expect(stats.bytesSent).toBe(2010);
    expect(deps.slots.total()).toBe(0);
  });

  test("a file rewritten with other bytes of the same size and mtime is caught by the hash on load: 404 and invalidated", async () => {
    await writeFile(small.file.path, patterned(1000, 8));
    const mtime = new Date(small.file.mtimeMs);
    await utimes(small.file.path, mtime, mtime);
    const response = await handlePeer(get(`/~/${small.file.sha256}`), A, deps);
    expect(response.status).toBe(404);
    expect(served.invalidated).toEqual([small.file.sha256]);
    expect(deps.hot!.stats().files).toBe(0);
  });

  test("a file the index no longer serves is not answered from memory", async () => {
    await bodyOf(await handlePeer(get(`/~/${small.file.sha256}`), A, deps));
    served.files.delete(small.file.sha256);
    expect((await handlePeer(get(`/~/${small.file.sha256}`), A, deps)).status).toBe(404);
  });

  test("HEAD loads nothing, and files over the bound are read from disk, never held", async () => {
    await handlePeer(get(`/~/${small.file.sha256}`, {}, "HEAD"), A, deps);
    expect(await bodyOf(await handlePeer(get(`/~/${large.file.sha256}`), A, deps))).toEqual(large.bytes);
    expect(deps.hot!.stats()).toMatchObject({ files: 0, loads: 0 });
  });
});

describe("handlePeer() piece lists", () => {
  test("GET /~/pieces/<key> serves the piece-list item", async () => {
    const response = await handlePeer(get(`/~/pieces/${piecesKey}`), A, deps);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(piecesItem.length));
    expect(await bodyOf(response)).toEqual(piecesItem);
  });

  test("HEAD answers its length without a body", async () => {
    const response = await handlePeer(get(`/~/pieces/${piecesKey}`, {}, "HEAD"), A, deps);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(piecesItem.length));
    expect(response.body).toBeNull();
  });

  test("an unknown, upper-case or malformed key → 404", async () => {
    for (const key of ["0".repeat(40), piecesKey.toUpperCase(), piecesKey.slice(2), `${piecesKey}/`]) {
      expect((await handlePeer(get(`/~/pieces/${key}`), A, deps)).status).toBe(404);
    }
  });
});

describe("handlePeer() upload slots", () => {
  test("the per-address cap answers 503 with Retry-After; another address is still served", async () => {
    deps.retryAfterSeconds = 7;
    const first = await handlePeer(get(`/~/${large.file.sha256}`), A, deps);
    const second = await handlePeer(get(`/~/${large.file.sha256}`), A, deps);
    expect([first.status, second.status]).toEqual([200, 200]);
    const refused = await handlePeer(get(`/~/${small.file.sha256}`), A, deps);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("7");
    const other = await handlePeer(get(`/~/${small.file.sha256}`), B, deps);
    expect(other.status).toBe(200);
    expect(await bodyOf(other)).toEqual(small.bytes);
    expect(stats.refused503).toBe(1);
    await first.body?.cancel();
    await second.body?.cancel();
  });

  test("the slot is held while the body is unread and released once it is read to the end", async () => {
    const response = await handlePeer(get(`/~/${large.file.sha256}`), A, deps);
    expect(deps.slots.active(A.remoteAddress)).toBe(1);
    expect(await bodyOf(response)).toEqual(large.bytes);
    expect(deps.slots.active(A.remoteAddress)).toBe(0);
  });

  test("the slot is released when the client cancels the body midway", async () => {
    // More than one chunk of the body's stream (256 KiB), so that after the first read it is midway.
    const big = await addFile("big.deb", patterned(1024 * 1024, 8));
    const response = await handlePeer(get(`/~/${big.file.sha256}`), A, deps);
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    expect(deps.slots.active(A.remoteAddress)).toBe(1);
    await reader.cancel();
    expect(deps.slots.active(A.remoteAddress)).toBe(0);
  });

  test("a file that shrinks while it is sent fails the body, releases the slot and is invalidated", async () => {
    // Larger than what Bun reads ahead when the stream is made (256 KiB), so the truncation is seen.
    const huge = await addFile("huge.deb", patterned(2 * 1024 * 1024, 3));
    const response = await handlePeer(get(`/~/${huge.file.sha256}`), A, deps);
    await truncate(huge.file.path, 100);
    await expect(bodyOf(response)).rejects.toThrow("changed on disk");
    expect(deps.slots.active(A.remoteAddress)).toBe(0);
    expect(served.invalidated).toEqual([huge.file.sha256]);
  });

  test("a throttled body waits as the bucket says", async () => {
    const clock = { ms: 0 };
    const waits: number[] = [];
    deps.bucket = new TokenBucket({ bytesPerSecond: 100_000, burstBytes: THROTTLE_CHUNK_BYTES, now: () => clock.ms });
    deps.sleep = async (ms) => {
      waits.push(ms);
      clock.ms += ms;
    };
    expect(await bodyOf(await handlePeer(get(`/~/${large.file.sha256}`), A, deps))).toEqual(large.bytes);
    const total = waits.reduce((a, b) => a + b, 0);
    const expected = ((large.bytes.length - THROTTLE_CHUNK_BYTES) * 1000) / 100_000;
    expect(total).toBeGreaterThanOrEqual(expected);
    expect(total).toBeLessThanOrEqual(expected + waits.length);
  });
});

// ---- Over a socket -------------------------------------------------------------------------------

/** Peers find each answer's end by its Content-Length: never chunked, never delimited by the close. */
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
  deps.bucket = new TokenBucket({ bytesPerSecond: THROTTLE_CHUNK_BYTES, now: () => clock.ms });
  deps.sleep = (ms) =>
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
  const start = () => rig.start((request, info) => handlePeer(request, info, deps));

  test("answers pipelined requests complete and in order, then reuses the connection", async () => {
    // The server handles pipelined requests as they are parsed and sends the answers in order, so their
    // uploads overlap: room for them all (the cap has tests of its own above).
    deps.slots = new UploadSlots(8);
    const client = await start();
    const responses = await client.exchange([
      rawGet(`/~/${large.file.sha256}`, "Range: bytes=100-199"),
      rawRequest("HEAD", `/~/${small.file.sha256}`),
      rawGet(`/~/${large.file.sha256}`),
      rawGet(`/~/${"a".repeat(64)}`),
      rawGet(`/~/${small.file.sha256}`),
      rawGet(`/~/pieces/${piecesKey}`),
      rawGet("/~/../../etc/passwd"),
    ]);
    expectLengthFramed(responses);
    expect(responses.map((r) => r.status)).toEqual([206, 200, 200, 404, 200, 200, 404]);
    expect(responses[0]!.headers.get("content-range")).toBe(`bytes 100-199/${large.bytes.length}`);
    expect(responses[0]!.body).toEqual(Buffer.from(large.bytes.subarray(100, 200)));
    expect(responses[1]!.headers.get("content-length")).toBe("1000");
    expect(responses[1]!.body.length).toBe(0);
    expect(responses[2]!.body).toEqual(Buffer.from(large.bytes));
    expect(responses[3]!.body.toString()).toBe("Not found\n");
    expect(responses[4]!.body).toEqual(Buffer.from(small.bytes));
    expect(responses[5]!.body).toEqual(Buffer.from(piecesItem));

    const again = await client.exchange([
      rawGet(`/~/${small.file.sha256}`, "Range: bytes=-10"),
      rawGet(`/~/${small.file.sha256}`, "Range: bytes=5000-"),
    ]);
    expectLengthFramed(again);
    expect(again.map((r) => r.status)).toEqual([206, 416]);
    expect(again[0]!.body).toEqual(Buffer.from(small.bytes.subarray(990)));
    expect(again[1]!.headers.get("content-range")).toBe("bytes */1000");
    expect(stats.requests).toBe(9);
    expect(deps.slots.total()).toBe(0);
  });

  test("uploads are paced by the bucket", async () => {
    const clock = { ms: 0 };
    const waits: number[] = [];
    const rate = 50_000;
    deps.bucket = new TokenBucket({ bytesPerSecond: rate, burstBytes: 10_000, now: () => clock.ms });
    deps.sleep = async (ms) => {
      waits.push(ms);
      clock.ms += ms;
    };
    const client = await start();
    const responses = await client.exchange([rawGet(`/~/${large.file.sha256}`)]);
    expectLengthFramed(responses);
    expect(responses[0]!.body).toEqual(Buffer.from(large.bytes));
    const total = waits.reduce((a, b) => a + b, 0);
    const expected = ((large.bytes.length - 10_000) * 1000) / rate;
    expect(waits.length).toBe(Math.ceil(large.bytes.length / THROTTLE_CHUNK_BYTES));
    expect(total).toBeGreaterThanOrEqual(expected);
    expect(total).toBeLessThanOrEqual(expected + waits.length);
  });

  // The server sends files itself from reused buffers (src/http/server.ts sendDirect), chunk by chunk with
  // backpressure: every body must still be the right bytes, whole and in order.
  test("512 KiB ranges pipelined to a reader that keeps pausing arrive intact", async () => {
    const big = await addFile("big.deb", patterned(8 * 512 * 1024 + 777, 9));
    deps.slots = new UploadSlots(16);
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
    expect(stats.bytesSent).toBe(responses.reduce((sum, r) => sum + r.body.length, 0) + big.bytes.length);
    expect(deps.slots.total()).toBe(0);
  });

  test("a file that shrinks while it is sent cuts the connection, frees the slot and is invalidated", async () => {
    const huge = await addFile("huge.deb", patterned(1024 * 1024, 4));
    const gates = gatedBucket();
    const client = await start();
    client.send(rawGet(`/~/${huge.file.sha256}`));
    for (let i = 0; i < 200 && gates.length === 0; i++) await Bun.sleep(5);
    expect(client.received.length).toBeGreaterThan(THROTTLE_CHUNK_BYTES);
    await truncate(huge.file.path, 100);
    gates.shift()!();
    await client.closed();
    expect(client.received.length).toBeLessThan(huge.bytes.length);
    expect(deps.slots.total()).toBe(0);
    expect(served.invalidated).toEqual([huge.file.sha256]);
  });

  // src/http/server.ts waits for "drain" or "close": on a response whose socket has closed, "drain"
  // never comes, and the body must still be cancelled so that the slot is freed.
  test("the slot is released when the client closes the connection midway", async () => {
    const huge = await addFile("huge.deb", patterned(4 * 1024 * 1024, 5));
    const gates = gatedBucket();
    const client = await start();
    client.send(rawGet(`/~/${huge.file.sha256}`));
    for (let i = 0; i < 200 && gates.length === 0; i++) await Bun.sleep(5);
    expect(client.received.length).toBeGreaterThan(0);
    expect(deps.slots.active("127.0.0.1")).toBe(1);
    await client.destroy();
    for (let i = 0; i < 200 && deps.slots.total() > 0; i++) {
      gates.shift()?.();
      await Bun.sleep(5);
    }
    expect(deps.slots.total()).toBe(0);
    expect(stats.bytesSent).toBeLessThan(huge.bytes.length);
  });
});
