/**
 * Shared downloads read while they run: bytes reach the client before the download ends, never the
 * last byte of a file that fails its hash, and two clients share one download.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bodyStream } from "../../src/http/direct-body.ts";
import type { Fetcher } from "../../src/http/fetch.ts";
import { LiveDownloads } from "../../src/proxy/live.ts";
import { ContentCache } from "../../src/store/cache.ts";
import { noise } from "../helpers/repo.ts";

const SIZE = 300_000;
let dir: string;
let cache: ContentCache;
let n = 0;

/** Fresh content for each test: the cache keeps what a test downloads, by hash. */
function content() {
  const data = noise(SIZE, 5 + n++);
  return { data, sha256: new Bun.CryptoHasher("sha256").update(data).digest("hex") };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-live-"));
  cache = await ContentCache.open(join(dir, "cache"));
});
afterAll(async () => {
  cache.close();
  await rm(dir, { recursive: true, force: true });
});

/** A mirror whose response body the test feeds by hand. */
function handFedMirror() {
  let feed!: ReadableStreamDefaultController<Uint8Array>;
  const calls: string[] = [];
  let called!: () => void;
  const asked = new Promise<void>((resolve) => (called = resolve));
  const fetcher: Fetcher = async (url) => {
    calls.push(url);
    called();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        feed = controller;
      },
    });
    return new Response(body, { status: 200, headers: { "Content-Length": String(SIZE) } });
  };
  return { fetcher, calls, asked, feed: (bytes: Uint8Array) => feed.enqueue(bytes.slice()), end: () => feed.close() };
}

function downloads(fetcher: Fetcher) {
  return new LiveDownloads({ cache, fetcher, findPeers: async () => [], seed: async () => {}, log: () => {} });
}

async function readAtLeast(reader: { read(): Promise<{ value?: Uint8Array; done: boolean }> }, count: number, into: Uint8Array[]): Promise<number> {
  let got = into.reduce((a, c) => a + c.length, 0);
  while (got < count) {
    const { value, done } = await reader.read();
    if (done || value === undefined) break;
    into.push(value);
    got += value.length;
  }
  return got;
}

test("a client gets the first bytes while the mirror is still sending, and the whole file at the end", async () => {
  const { data, sha256 } = content();
  const mirror = handFedMirror();
  const live = downloads(mirror.fetcher).get({ name: `a-${n++}.deb`, size: SIZE, sha256 }, ["http://mirror.invalid/a.deb"]);
  const reader = bodyStream(live.direct(0, SIZE - 1)).getReader();
  const chunks: Uint8Array[] = [];
  await mirror.asked;
  mirror.feed(data.subarray(0, 200_000));
  expect(await readAtLeast(reader, 200_000, chunks)).toBe(200_000);
  expect(live.file).toBeUndefined(); // still downloading
  mirror.feed(data.subarray(200_000));
  mirror.end();
  expect(await readAtLeast(reader, SIZE, chunks)).toBe(SIZE);
  expect((await reader.read()).done).toBe(true);
  expect(Buffer.concat(chunks).equals(Buffer.from(data))).toBe(true);
  expect((await live.done).sha256).toBe(sha256);
});

test("a file that fails its hash: the client is cut before the last byte", async () => {
  const { data, sha256 } = content();
  const mirror = handFedMirror();
  const live = downloads(mirror.fetcher).get({ name: `b-${n++}.deb`, size: SIZE, sha256 }, ["http://mirror.invalid/b.deb"]);
  const reader = bodyStream(live.direct(0, SIZE - 1)).getReader();
  let received = 0;
  // The client is waiting for bytes before any arrive, as APT is.
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      received += value.length;
    }
  })().catch((e: unknown) => e);
  await mirror.asked;
  const wrong = data.slice();
  wrong[SIZE - 1]! ^= 0xff;
  mirror.feed(wrong);
  mirror.end();
  const err = await reading;
  expect(err).toBeInstanceOf(Error);
  expect(received).toBeLessThan(SIZE);
  expect(await cache.lookup(sha256)).toBeNull();
});

test("two clients asking at once share one download, and a range reads only its bytes", async () => {
  const { data, sha256 } = content();
  const mirror = handFedMirror();
  const all = downloads(mirror.fetcher);
  const target = { name: `c-${n++}.deb`, size: SIZE, sha256 };
  const first = all.get(target, ["http://mirror.invalid/c.deb"]);
  const second = all.get(target, ["http://mirror.invalid/c.deb"]);
  expect(second).toBe(first);
  const whole = new Response(bodyStream(first.direct(0, SIZE - 1))).bytes();
  const part = new Response(bodyStream(second.direct(1000, 1999))).bytes();
  await mirror.asked;
  mirror.feed(data);
  mirror.end();
  expect(Buffer.from(await whole).equals(Buffer.from(data))).toBe(true);
  expect(Buffer.from(await part).equals(Buffer.from(data.subarray(1000, 2000)))).toBe(true);
  expect(mirror.calls.length).toBe(1);
});

test("a DHT lookup that hangs does not hold the download: the mirror starts when the lookup times out", async () => {
  const { data, sha256 } = content();
  const mirror = handFedMirror();
  const all = new LiveDownloads({ cache, fetcher: mirror.fetcher, findPeers: () => new Promise(() => {}), seed: async () => {}, log: () => {}, lookupTimeoutMs: 50 });
  const live = all.get({ name: `d-${n++}.deb`, size: SIZE, sha256 }, ["http://mirror.invalid/d.deb"]);
  await mirror.asked;
  mirror.feed(data);
  mirror.end();
  expect((await live.done).sha256).toBe(sha256);
});

test("a client that started during the download keeps the file pinned after it enters the cache, until it is done", async () => {
  const { data, sha256 } = content();
  const mirror = handFedMirror();
  const live = downloads(mirror.fetcher).get({ name: `p-${n++}.deb`, size: SIZE, sha256 }, ["http://mirror.invalid/p.deb"]);
  const body = live.direct(0, SIZE - 1);
  const got = new Uint8Array(SIZE);
  let at = 0;
  await mirror.asked;
  mirror.feed(data.subarray(0, 100_000));
  at += await body.read(got.subarray(at, 100_000)); // from the partial file
  mirror.feed(data.subarray(100_000));
  mirror.end();
  await live.done;
  // The rest is read from the file in the cache: eviction must still leave it alone.
  at += await body.read(got.subarray(at, at + 1000));
  expect(cache.isPinned(sha256)).toBe(true);
  while (at < SIZE) at += await body.read(got.subarray(at));
  expect(Buffer.from(got).equals(Buffer.from(data))).toBe(true);
  expect(cache.isPinned(sha256)).toBe(true);
  body.settle("complete");
  expect(cache.isPinned(sha256)).toBe(false);
});

test("a client that first reads just after the file moved into the cache, before the download says so, still gets the file", async () => {
  const { data, sha256 } = content();
  const mirror = handFedMirror();
  const own = await ContentCache.open(join(dir, "cache-adopt"));
  // The rename into the cache is done, but the download does not learn it until the test says so.
  const adopt = own.adopt.bind(own);
  const moved = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  own.adopt = async (...args: Parameters<typeof own.adopt>) => {
    const file = await adopt(...args);
    moved.resolve();
    await release.promise;
    return file;
  };
  try {
    const live = new LiveDownloads({ cache: own, fetcher: mirror.fetcher, findPeers: async () => [], seed: async () => {}, log: () => {} })
      .get({ name: `m-${n++}.deb`, size: SIZE, sha256 }, ["http://mirror.invalid/m.deb"]);
    const body = live.direct(0, SIZE - 1);
    await mirror.asked;
    mirror.feed(data);
    mirror.end();
    await moved.promise;
    expect(live.file).toBeUndefined();
    const got = new Uint8Array(SIZE);
    const first = body.read(got); // the partial file is gone; the read waits for the cached one
    release.resolve();
    let at = await first;
    while (at < SIZE) at += await body.read(got.subarray(at));
    body.settle("complete");
    expect(Buffer.from(got).equals(Buffer.from(data))).toBe(true);
  } finally {
    own.close();
  }
});
