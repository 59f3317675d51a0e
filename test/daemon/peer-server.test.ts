/**
 * The peer server's handler as a function from Request to Response: files by SHA-256 with Range, small
 * files held in memory, piece lists, upload slots. The same over a real socket is in
 * peer-server-socket.test.ts.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { rm, truncate, utimes, writeFile } from "node:fs/promises";
import { HotFiles } from "../../src/daemon/hot-files.ts";
import { handlePeer } from "../../src/daemon/peer-server.ts";
import type { RequestInfo } from "../../src/http/server.ts";
import { THROTTLE_CHUNK_BYTES, TokenBucket } from "../../src/transfer/throttle.ts";
import { patterned, usePeerFixture } from "../helpers/peer-fixture.ts";

const A: RequestInfo = { remoteAddress: "10.0.0.1", remotePort: 40000, rawTarget: "/" };
const B: RequestInfo = { remoteAddress: "10.0.0.2", remotePort: 40001, rawTarget: "/" };

const fx = usePeerFixture();

function get(path: string, headers: Record<string, string> = {}, method = "GET"): Request {
  return new Request(`http://127.0.0.1:9${path}`, { method, headers });
}

const bodyOf = async (response: Response): Promise<Uint8Array> => new Uint8Array(await response.arrayBuffer());

describe("handlePeer() files by SHA-256", () => {
  test("GET serves the whole file with 200 and immutable content-address headers", async () => {
    const response = await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe("1000");
    expect(response.headers.get("accept-ranges")).toBe("bytes");
    expect(response.headers.get("content-type")).toBe("application/octet-stream");
    expect(response.headers.get("etag")).toBe(`"${fx.small.file.sha256}"`);
    expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(await bodyOf(response)).toEqual(fx.small.bytes);
  });

  test("a single range answers 206 with Content-Range", async () => {
    const response = await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=10-19" }), A, fx.deps);
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe("bytes 10-19/1000");
    expect(response.headers.get("content-length")).toBe("10");
    expect(await bodyOf(response)).toEqual(fx.small.bytes.subarray(10, 20));
  });

  test("a suffix range serves the last N bytes", async () => {
    const response = await handlePeer(get(`/~/${fx.large.file.sha256}`, { Range: "bytes=-100" }), A, fx.deps);
    expect(response.status).toBe(206);
    const size = fx.large.bytes.length;
    expect(response.headers.get("content-range")).toBe(`bytes ${size - 100}-${size - 1}/${size}`);
    expect(await bodyOf(response)).toEqual(fx.large.bytes.subarray(size - 100));
  });

  test("a range across several throttle pieces arrives whole", async () => {
    const start = THROTTLE_CHUNK_BYTES - 5;
    const end = 2 * THROTTLE_CHUNK_BYTES + 5;
    const response = await handlePeer(get(`/~/${fx.large.file.sha256}`, { Range: `bytes=${start}-${end}` }), A, fx.deps);
    expect(response.status).toBe(206);
    expect(await bodyOf(response)).toEqual(fx.large.bytes.subarray(start, end + 1));
  });

  test("an unsatisfiable range answers 416 with Content-Range: bytes */size", async () => {
    const response = await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=1000-" }), A, fx.deps);
    expect(response.status).toBe(416);
    expect(response.headers.get("content-range")).toBe("bytes */1000");
    expect(fx.deps.slots.total()).toBe(0);
  });

  test("several ranges, or an If-Range for another validator, are ignored: 200 with the whole file", async () => {
    const multi = await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=0-1,5-9" }), A, fx.deps);
    expect(multi.status).toBe(200);
    expect(await bodyOf(multi)).toEqual(fx.small.bytes);
    const stale = await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=0-9", "If-Range": '"other"' }), A, fx.deps);
    expect(stale.status).toBe(200);
    await stale.body?.cancel();
    const fresh = await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=0-9", "If-Range": `"${fx.small.file.sha256}"` }), A, fx.deps);
    expect(fresh.status).toBe(206);
    await fresh.body?.cancel();
  });

  test("HEAD answers the same headers without a body and takes no slot", async () => {
    const whole = await handlePeer(get(`/~/${fx.small.file.sha256}`, {}, "HEAD"), A, fx.deps);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-length")).toBe("1000");
    expect(whole.headers.get("etag")).toBe(`"${fx.small.file.sha256}"`);
    expect(whole.body).toBeNull();
    const part = await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=-10" }, "HEAD"), A, fx.deps);
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe("bytes 990-999/1000");
    expect(part.headers.get("content-length")).toBe("10");
    expect(part.body).toBeNull();
    expect(fx.deps.slots.total()).toBe(0);
  });

  const notServed: [string, () => string][] = [
    ["an unknown hash", () => `/~/${"0".repeat(64)}`],
    ["an upper-case hash of a fx.served file", () => `/~/${fx.small.file.sha256.toUpperCase()}`],
    ["63 hex digits", () => `/~/${fx.small.file.sha256.slice(1)}`],
    ["65 hex digits", () => `/~/${fx.small.file.sha256}0`],
    ["a trailing slash", () => `/~/${fx.small.file.sha256}/`],
    ["a hash with a file name after it", () => `/~/${fx.small.file.sha256}/x.deb`],
    ["the prefix alone", () => "/~/"],
    ["a path outside the prefix", () => "/etc/passwd"],
    ["a file's disk path", () => `/~/${fx.small.file.path}`],
    ["dot-dot segments", () => "/~/../../etc/passwd"],
    ["encoded dot-dot segments", () => "/~/%2e%2e/%2E%2E/etc/passwd"],
    ["encoded slashes", () => "/~/..%2f..%2fetc%2fpasswd"],
    ["dot-dot into the temp directory", () => `/~/../..${fx.dir}/fx.small.deb`],
  ];
  for (const [what, path] of notServed) {
    test(`${what} → 404`, async () => {
      const response = await handlePeer(get(path()), A, fx.deps);
      expect(response.status).toBe(404);
      expect(await response.text()).toBe("Not found\n");
    });
  }

  test("a file is pinned (safe from cache eviction) while it is sent, and released after, also for HEAD and 416", async () => {
    const pins = new Map<string, number>();
    fx.deps.pin = (sha) => {
      pins.set(sha, (pins.get(sha) ?? 0) + 1);
      let released = false;
      return () => {
        if (!released) pins.set(sha, pins.get(sha)! - 1);
        released = true;
      };
    };
    const sha = fx.large.file.sha256;
    const response = await handlePeer(get(`/~/${sha}`), A, fx.deps);
    expect(pins.get(sha)).toBe(1);
    await bodyOf(response);
    expect(pins.get(sha)).toBe(0);
    await handlePeer(get(`/~/${sha}`, {}, "HEAD"), A, fx.deps);
    await handlePeer(get(`/~/${sha}`, { Range: `bytes=${fx.large.bytes.length + 5}-` }), A, fx.deps);
    expect(pins.get(sha)).toBe(0);
  });

  test("methods other than GET and HEAD → 405 with Allow", async () => {
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
      const response = await handlePeer(get(`/~/${fx.small.file.sha256}`, {}, method), A, fx.deps);
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("GET, HEAD");
    }
  });

  test("a file modified on disk after hashing → 404, and the store is told", async () => {
    await utimes(fx.small.file.path, new Date(), new Date(Date.now() + 60_000));
    const response = await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps);
    expect(response.status).toBe(404);
    expect(fx.served.invalidated).toEqual([fx.small.file.sha256]);
  });

  test("a file whose size changed → 404 and invalidated, even if its mtime was put back", async () => {
    await writeFile(fx.small.file.path, patterned(999, 7));
    const mtime = new Date(fx.small.file.mtimeMs);
    await utimes(fx.small.file.path, mtime, mtime);
    const response = await handlePeer(get(`/~/${fx.small.file.sha256}`, {}, "HEAD"), A, fx.deps);
    expect(response.status).toBe(404);
    expect(fx.served.invalidated).toEqual([fx.small.file.sha256]);
  });

  test("a file gone from disk → 404 and invalidated", async () => {
    await rm(fx.small.file.path);
    const response = await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps);
    expect(response.status).toBe(404);
    expect(fx.served.invalidated).toEqual([fx.small.file.sha256]);
  });

  test("counts requests, bytes sent and 404s", async () => {
    await bodyOf(await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps));
    await bodyOf(await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=0-9" }), A, fx.deps));
    await handlePeer(get(`/~/${"f".repeat(64)}`), A, fx.deps);
    expect(fx.stats).toEqual({ requests: 3, bytesSent: 1010, refused503: 0, notFound: 1 });
  });
});

describe("handlePeer() with small files held in memory", () => {
  beforeEach(() => {
    fx.deps.hot = new HotFiles({ maxFileBytes: 64 * 1024 });
  });

  test("a small file is loaded on the first GET and later answers come from memory, also for ranges", async () => {
    expect(await bodyOf(await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps))).toEqual(fx.small.bytes);
    await rm(fx.small.file.path); // only memory can answer now
    expect(await bodyOf(await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps))).toEqual(fx.small.bytes);
    const ranged = await handlePeer(get(`/~/${fx.small.file.sha256}`, { Range: "bytes=10-19" }), A, fx.deps);
    expect(ranged.status).toBe(206);
    expect(await bodyOf(ranged)).toEqual(fx.small.bytes.subarray(10, 20));
    expect(fx.deps.hot!.stats()).toMatchObject({ loads: 1, hits: 2 });
    expect(fx.stats.bytesSent).toBe(2010);
    expect(fx.deps.slots.total()).toBe(0);
  });

  test("a file rewritten with other bytes of the same size and mtime is caught by the hash on load: 404 and invalidated", async () => {
    await writeFile(fx.small.file.path, patterned(1000, 8));
    const mtime = new Date(fx.small.file.mtimeMs);
    await utimes(fx.small.file.path, mtime, mtime);
    const response = await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps);
    expect(response.status).toBe(404);
    expect(fx.served.invalidated).toEqual([fx.small.file.sha256]);
    expect(fx.deps.hot!.stats().files).toBe(0);
  });

  test("a file the index no longer serves is not answered from memory", async () => {
    await bodyOf(await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps));
    fx.served.files.delete(fx.small.file.sha256);
    expect((await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps)).status).toBe(404);
  });

  test("HEAD loads nothing, and files over the bound are read from disk, never held", async () => {
    await handlePeer(get(`/~/${fx.small.file.sha256}`, {}, "HEAD"), A, fx.deps);
    expect(await bodyOf(await handlePeer(get(`/~/${fx.large.file.sha256}`), A, fx.deps))).toEqual(fx.large.bytes);
    expect(fx.deps.hot!.stats()).toMatchObject({ files: 0, loads: 0 });
  });
});

describe("handlePeer() piece lists", () => {
  test("GET /~/pieces/<key> serves the piece-list item", async () => {
    const response = await handlePeer(get(`/~/pieces/${fx.piecesKey}`), A, fx.deps);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(fx.piecesItem.length));
    expect(await bodyOf(response)).toEqual(fx.piecesItem);
  });

  test("HEAD answers its length without a body", async () => {
    const response = await handlePeer(get(`/~/pieces/${fx.piecesKey}`, {}, "HEAD"), A, fx.deps);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(fx.piecesItem.length));
    expect(response.body).toBeNull();
  });

  test("an unknown, upper-case or malformed key → 404", async () => {
    for (const key of ["0".repeat(40), fx.piecesKey.toUpperCase(), fx.piecesKey.slice(2), `${fx.piecesKey}/`]) {
      expect((await handlePeer(get(`/~/pieces/${key}`), A, fx.deps)).status).toBe(404);
    }
  });
});

describe("handlePeer() upload slots", () => {
  test("the per-address cap answers 503 with Retry-After; another address is still served", async () => {
    fx.deps.retryAfterSeconds = 7;
    const first = await handlePeer(get(`/~/${fx.large.file.sha256}`), A, fx.deps);
    const second = await handlePeer(get(`/~/${fx.large.file.sha256}`), A, fx.deps);
    expect([first.status, second.status]).toEqual([200, 200]);
    const refused = await handlePeer(get(`/~/${fx.small.file.sha256}`), A, fx.deps);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("7");
    const other = await handlePeer(get(`/~/${fx.small.file.sha256}`), B, fx.deps);
    expect(other.status).toBe(200);
    expect(await bodyOf(other)).toEqual(fx.small.bytes);
    expect(fx.stats.refused503).toBe(1);
    await first.body?.cancel();
    await second.body?.cancel();
  });

  test("the slot is held while the body is unread and released once it is read to the end", async () => {
    const response = await handlePeer(get(`/~/${fx.large.file.sha256}`), A, fx.deps);
    expect(fx.deps.slots.active(A.remoteAddress)).toBe(1);
    expect(await bodyOf(response)).toEqual(fx.large.bytes);
    expect(fx.deps.slots.active(A.remoteAddress)).toBe(0);
  });

  test("the slot is released when the client cancels the body midway", async () => {
    // More than one chunk of the body's stream (256 KiB), so that after the first read it is midway.
    const big = await fx.addFile("big.deb", patterned(1024 * 1024, 8));
    const response = await handlePeer(get(`/~/${big.file.sha256}`), A, fx.deps);
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    expect(fx.deps.slots.active(A.remoteAddress)).toBe(1);
    await reader.cancel();
    expect(fx.deps.slots.active(A.remoteAddress)).toBe(0);
  });

  test("a file that shrinks while it is sent fails the body, releases the slot and is invalidated", async () => {
    // Larger than what Bun reads ahead when the stream is made (256 KiB), so the truncation is seen.
    const huge = await fx.addFile("huge.deb", patterned(2 * 1024 * 1024, 3));
    const response = await handlePeer(get(`/~/${huge.file.sha256}`), A, fx.deps);
    await truncate(huge.file.path, 100);
    await expect(bodyOf(response)).rejects.toThrow("changed on disk");
    expect(fx.deps.slots.active(A.remoteAddress)).toBe(0);
    expect(fx.served.invalidated).toEqual([huge.file.sha256]);
  });

  test("a throttled body waits as the bucket says", async () => {
    const clock = { ms: 0 };
    const waits: number[] = [];
    fx.deps.bucket = new TokenBucket({ bytesPerSecond: 100_000, burstBytes: THROTTLE_CHUNK_BYTES, now: () => clock.ms });
    fx.deps.sleep = async (ms) => {
      waits.push(ms);
      clock.ms += ms;
    };
    expect(await bodyOf(await handlePeer(get(`/~/${fx.large.file.sha256}`), A, fx.deps))).toEqual(fx.large.bytes);
    const total = waits.reduce((a, b) => a + b, 0);
    const expected = ((fx.large.bytes.length - THROTTLE_CHUNK_BYTES) * 1000) / 100_000;
    expect(total).toBeGreaterThanOrEqual(expected);
    expect(total).toBeLessThanOrEqual(expected + waits.length);
  });
});

// ---- Over a socket -------------------------------------------------------------------------------

/** Peers find each answer's end by its Content-Length: never chunked, never delimited by the close. */
