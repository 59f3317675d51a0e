/**
 * Swarm downloads over real HTTP on 127.0.0.1: peers are small servers of `/~/<sha256>` (good, corrupt,
 * stalling, gone), the mirror a Range-capable server. Every case ends with the right bytes or a clean
 * failure, never a wrong byte on disk.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HashMismatchError } from "../../src/errors.ts";
import { fetchUrl } from "../../src/http/fetch.ts";
import type { AnnouncedPeer } from "../../src/transfer/piece-lists.ts";
import { announceInfo, hashPiece, PIECE_SIZE_BYTES, pieceListItem, pieceListKey } from "../../src/transfer/pieces.ts";
import { RangeClient, type RangeRequest } from "../../src/transfer/range-client.ts";
import { swarmDownload, type SwarmDeps } from "../../src/transfer/swarm.ts";
import { startMirror, type TestMirror } from "../helpers/mirror.ts";
import { listenRaw, rangeReply } from "../helpers/raw-http.ts";
import { noise } from "../helpers/repo.ts";

const SIZE = 6 * PIECE_SIZE_BYTES + 777; // 7 pieces: tier "item"
let work: string;
let bytes: Uint8Array;
let sha256: string;
let hashes: Uint8Array[];
const servers: { stop(): Promise<void> }[] = [];
let counter = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-swarm-"));
  bytes = noise(SIZE, 11);
  sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  hashes = Array.from({ length: 7 }, (_, i) => hashPiece(bytes.subarray(i * PIECE_SIZE_BYTES, Math.min(SIZE, (i + 1) * PIECE_SIZE_BYTES))));
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const target = () => ({ name: "big.deb", size: SIZE, sha256 });
const info = () => announceInfo(hashes);
/** Set per describe: peers read through the fetcher, or through the range client (counting its requests). */
let rangeClient: CountingRangeClient | undefined;
class CountingRangeClient extends RangeClient {
  requests = 0;
  override get(request: RangeRequest): Promise<void> {
    this.requests++;
    return super.get(request);
  }
}
const deps = (): SwarmDeps => ({
  fetcher: fetchUrl,
  rangeClient,
  getItem: async (key) => (Buffer.from(key).equals(Buffer.from(pieceListKey(hashes))) ? pieceListItem(hashes) : undefined),
});

/** A peer serving `content` as /~/<sha256> (and the piece list), like apt-p2p's peer server. */
async function peer(content: Uint8Array = bytes): Promise<TestMirror & AnnouncedPeer> {
  const root = join(work, `peer-${counter++}`);
  await mkdir(join(root, "~", "pieces"), { recursive: true });
  await writeFile(join(root, "~", sha256), content);
  await writeFile(join(root, "~", "pieces", Buffer.from(pieceListKey(hashes)).toString("hex")), pieceListItem(hashes));
  const m = await startMirror(root);
  servers.push(m);
  return Object.assign(m, { address: "127.0.0.1", port: Number(new URL(m.url).port), pieces: info() });
}

async function mirror(): Promise<{ url: string; server: TestMirror }> {
  const root = join(work, `mirror-${counter++}`);
  await mkdir(join(root, "pool"), { recursive: true });
  await writeFile(join(root, "pool", "big.deb"), bytes);
  const m = await startMirror(root);
  servers.push(m);
  return { url: `${m.url}/pool/big.deb`, server: m };
}

/** A server that accepts connections and never answers. */
function stallingPeer(): AnnouncedPeer {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Promise<Response>(() => {}) });
  servers.push({ stop: async () => void server.stop(true) });
  return { address: "127.0.0.1", port: server.port!, pieces: info() };
}

async function closedPort(): Promise<number> {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const port = server.port!;
  await server.stop(true);
  return port;
}

const out = () => join(work, `out-${counter++}`);
async function expectRightBytes(path: string) {
  expect(new Bun.CryptoHasher("sha256").update(await Bun.file(path).bytes()).digest("hex")).toBe(sha256);
}

for (const mode of ["the fetcher", "the range client"] as const) {
  describe(`swarmDownload() reading peers with ${mode}`, () => {
    beforeAll(() => {
      rangeClient = mode === "the range client" ? new CountingRangeClient() : undefined;
    });
    afterAll(() => {
      rangeClient?.close();
    });

    test("takes pieces from several peers and the mirror, most from the peers", async () => {
      const [a, b, m] = await Promise.all([peer(), peer(), mirror()]);
      const path = out();
      const result = await swarmDownload(target(), { mirrors: [m.url], peers: [a, b] }, path, deps());
      await expectRightBytes(path);
      expect(result.bytes.peer + result.bytes.mirror).toBe(SIZE);
      expect(result.bytes.peer).toBeGreaterThan(result.bytes.mirror);
      expect(Object.keys(result.perPeer).sort()).toEqual([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort());
      if (rangeClient !== undefined) expect(rangeClient.requests).toBeGreaterThan(0);
    });

    test("reports the written prefix of listed pieces as it grows, never the whole file, and those bytes are right", async () => {
      const [a, b] = await Promise.all([peer(), peer()]);
      const path = out();
      const prefixes: number[] = [];
      const checked: Promise<void>[] = [];
      await swarmDownload(target(), { mirrors: [], peers: [a, b] }, path, deps(), {
        onPrefix: (n) => {
          prefixes.push(n);
          // What the hook announces is on disk already, and right.
          checked.push(
            Bun.file(path)
              .slice(0, n)
              .bytes()
              .then((onDisk) => expect(Buffer.from(onDisk).equals(Buffer.from(bytes.subarray(0, n)))).toBe(true)),
          );
        },
      });
      await Promise.all(checked);
      expect(prefixes.length).toBeGreaterThan(0);
      expect(prefixes).toEqual([...prefixes].sort((x, y) => x - y));
      expect(prefixes.every((n) => n > 0 && n < SIZE && n % PIECE_SIZE_BYTES === 0)).toBe(true);
      expect(prefixes.at(-1)).toBe(6 * PIECE_SIZE_BYTES);
    });

    test("bans a peer that sends corrupt pieces and finishes from the others", async () => {
      const corrupt = bytes.slice();
      for (let i = 0; i < corrupt.length; i += 4096) corrupt[i]! ^= 0xff;
      const [evil, good, m] = await Promise.all([peer(corrupt), peer(), mirror()]);
      const path = out();
      const badPieces: string[] = [];
      const bannedSeen: string[] = [];
      const result = await swarmDownload(target(), { mirrors: [m.url], peers: [evil, good] }, path, deps(), {
        onBadPiece: (source) => badPieces.push(source),
        onBanned: (source) => bannedSeen.push(source),
      });
      await expectRightBytes(path);
      expect(result.banned).toContain(`127.0.0.1:${evil.port}`);
      expect(result.perPeer[`127.0.0.1:${evil.port}`] ?? 0).toBe(0);
      // What metrics count: each bad piece and the ban, named by their source.
      expect(badPieces.length).toBeGreaterThanOrEqual(2);
      expect(new Set(badPieces)).toEqual(new Set([`127.0.0.1:${evil.port}`]));
      expect(bannedSeen).toEqual([`127.0.0.1:${evil.port}`]);
    });

    test("a stalling peer and a peer on a dead port do not stop the download", async () => {
      const [good, m] = await Promise.all([peer(), mirror()]);
      const dead = { address: "127.0.0.1", port: await closedPort(), pieces: info() };
      const path = out();
      await swarmDownload(target(), { mirrors: [m.url], peers: [stallingPeer(), dead, good] }, path, deps(), { stallMs: 300 });
      await expectRightBytes(path);
    });

    test("with the mirror down, the peers give everything", async () => {
      const [a, m] = await Promise.all([peer(), mirror()]);
      m.server.failWith = 503;
      const path = out();
      const result = await swarmDownload(target(), { mirrors: [m.url], peers: [a] }, path, deps());
      await expectRightBytes(path);
      expect(result.bytes.peer).toBe(SIZE);
    });

    test("with every source down it fails cleanly and leaves no file", async () => {
      const m = await mirror();
      m.server.failWith = 500;
      const dead = { address: "127.0.0.1", port: await closedPort(), pieces: info() };
      const dir = join(work, `empty-${counter++}`);
      await mkdir(dir);
      const err = await swarmDownload(target(), { mirrors: [m.url], peers: [dead] }, join(dir, "f"), deps()).catch((e) => e);
      expect(err).toBeInstanceOf(Error);
      expect(await readdir(dir)).toEqual([]);
    });

    test("a bogus piece list announced by more addresses is dropped, and the download finishes right", async () => {
      const bogus = hashes.map((h) => h.map((b) => b ^ 1));
      const liars: AnnouncedPeer[] = [
        { address: "127.0.0.2", port: await closedPort(), pieces: announceInfo(bogus) },
        { address: "127.0.0.3", port: await closedPort(), pieces: announceInfo(bogus) },
      ];
      const [good, m] = await Promise.all([peer(), mirror()]);
      const path = out();
      const withBogus: SwarmDeps = {
        fetcher: fetchUrl,
        rangeClient,
        getItem: async (key) => (Buffer.from(key).equals(Buffer.from(pieceListKey(bogus))) ? pieceListItem(bogus) : pieceListItem(hashes)),
      };
      const result = await swarmDownload(target(), { mirrors: [m.url], peers: [...liars, good] }, path, withBogus);
      await expectRightBytes(path);
      expect(result.banned).toEqual(expect.arrayContaining(liars.map((l) => `${l.address}:${l.port}`)));
    });

    test("a list proved wrong resets the reported prefix to 0 before the next plan", async () => {
      const bogus = hashes.map((h, i) => (i === 3 ? h.map((b) => b ^ 1) : h));
      const liars: AnnouncedPeer[] = [
        { address: "127.0.0.2", port: await closedPort(), pieces: announceInfo(bogus) },
        { address: "127.0.0.3", port: await closedPort(), pieces: announceInfo(bogus) },
      ];
      const [good, m] = await Promise.all([peer(), mirror()]);
      const prefixes: number[] = [];
      const withBogus: SwarmDeps = {
        fetcher: fetchUrl,
        rangeClient,
        getItem: async (key) => (Buffer.from(key).equals(Buffer.from(pieceListKey(bogus))) ? pieceListItem(bogus) : pieceListItem(hashes)),
      };
      const path = out();
      await swarmDownload(target(), { mirrors: [m.url], peers: [...liars, good] }, path, withBogus, { onPrefix: (n) => prefixes.push(n) });
      await expectRightBytes(path);
      expect(prefixes).toContain(0);
    });

    test("peers that all serve the same wrong file lead to a mirror-only retry, and the right bytes", async () => {
      const other = noise(SIZE, 12);
      const [x, y, m] = await Promise.all([peer(other), peer(other), mirror()]);
      for (const p of [x, y]) p.pieces = undefined; // no list: only the whole-file check can tell
      const path = out();
      const result = await swarmDownload(target(), { mirrors: [m.url], peers: [x, y] }, path, deps());
      await expectRightBytes(path);
      expect(result.bytes.mirror).toBe(SIZE);
    });

    test("a wrong file with no mirror to fall back on is refused as a hash mismatch", async () => {
      const x = await peer(noise(SIZE, 13));
      x.pieces = undefined;
      const path = out();
      const err = await swarmDownload(target(), { mirrors: [], peers: [x] }, path, deps()).catch((e) => e);
      expect(err).toBeInstanceOf(HashMismatchError);
      expect(await Bun.file(path).exists()).toBe(false);
    });
  });
}

// A file of one piece is checked whole as it lands, against the SHA-256 from the signed index, and is
// not hashed a second time at the end: a bad copy must still be refused and refetched elsewhere.
/**
 * A peer with one upload slot for us, like a peer server whose slots for our address are taken: a request
 * that comes while another is being answered gets 503 at once. Answers take `delayMs`.
 */
function oneSlotPeer(delayMs: number): AnnouncedPeer & { refused: () => number } {
  let busy = false;
  let refused = 0;
  const server = listenRaw((socket, request) => {
    if (busy) {
      refused++;
      socket.write("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    busy = true;
    const reply = rangeReply(request, bytes);
    setTimeout(() => {
      busy = false;
      socket.write(reply);
    }, delayMs);
  });
  servers.push({ stop: async () => server.stop() });
  return { address: "127.0.0.1", port: server.port, pieces: info(), refused: () => refused };
}

describe("swarmDownload() with a busy peer", () => {
  test("a peer that refuses requests as busy (503) is asked less at once, not dropped, and gives the whole file", async () => {
    const client = new RangeClient();
    try {
      const busyPeer = oneSlotPeer(10);
      const path = out();
      // No other source: had the refusals dropped the peer, the download could not finish.
      const result = await swarmDownload(target(), { mirrors: [], peers: [busyPeer] }, path, { ...deps(), rangeClient: client });
      await expectRightBytes(path);
      expect(result.bytes.peer).toBe(SIZE);
      expect(busyPeer.refused()).toBeGreaterThanOrEqual(3);
    } finally {
      client.close();
    }
  });
});

describe("swarmDownload() of a file of one piece", () => {
  const SMALL = 60_000;
  const small = noise(SMALL, 21);
  const smallSha = new Bun.CryptoHasher("sha256").update(small).digest("hex");
  const smallTarget = () => ({ name: "small.deb", size: SMALL, sha256: smallSha });

  async function smallPeer(content: Uint8Array): Promise<AnnouncedPeer> {
    const root = join(work, `small-peer-${counter++}`);
    await mkdir(join(root, "~"), { recursive: true });
    await writeFile(join(root, "~", smallSha), content);
    const m = await startMirror(root);
    servers.push(m);
    return { address: "127.0.0.1", port: Number(new URL(m.url).port) };
  }
  const corrupted = () => {
    const bad = small.slice();
    bad[SMALL >> 1]! ^= 0xff;
    return bad;
  };

  test("a corrupt copy is refused and the right bytes come from another peer", async () => {
    const evil = await smallPeer(corrupted());
    const good = await smallPeer(small);
    const path = out();
    const bad: string[] = [];
    // random() near 1 keeps the given order (swarm.ts shuffles the peers): the corrupt peer is asked first.
    const deps = { fetcher: fetchUrl, rangeClient: new RangeClient(), random: () => 0.999 };
    const result = await swarmDownload(smallTarget(), { mirrors: [], peers: [evil, good] }, path, deps, { onBadPiece: (s) => bad.push(s) });
    expect(new Bun.CryptoHasher("sha256").update(await Bun.file(path).bytes()).digest("hex")).toBe(smallSha);
    expect(result.perPeer[`127.0.0.1:${good.port}`]).toBe(SMALL);
    expect(bad.length).toBeGreaterThan(0);
    expect(new Set(bad)).toEqual(new Set([`127.0.0.1:${evil.port}`]));
  });

  test("asked of every peer at once (no endgame delay), one good copy among bad ones gives the right file", async () => {
    const peers = [await smallPeer(small), await smallPeer(corrupted()), await smallPeer(corrupted())];
    const path = out();
    // No endgame delay: the piece is asked of every peer at once, and the bad copies land around the good one.
    const result = await swarmDownload(smallTarget(), { mirrors: [], peers }, path, { fetcher: fetchUrl, rangeClient: new RangeClient() }, { endgameDelayMs: 0 });
    expect(new Bun.CryptoHasher("sha256").update(await Bun.file(path).bytes()).digest("hex")).toBe(smallSha);
    expect(result.bytes.peer).toBe(SMALL);
  });

  test("downloads spread over the peers that hold the file, not always the first one listed", async () => {
    const peers = [await smallPeer(small), await smallPeer(small)];
    const served = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const result = await swarmDownload(smallTarget(), { mirrors: [], peers }, out(), { fetcher: fetchUrl });
      for (const [peer, n] of Object.entries(result.perPeer)) served.set(peer, (served.get(peer) ?? 0) + n);
    }
    // Each peer first in about half of the 20 (a peer left out by chance: 2 in a million).
    expect(served.size).toBe(2);
  });

  test("when every copy is wrong it fails as a hash mismatch and leaves no file", async () => {
    const path = out();
    const err = await swarmDownload(smallTarget(), { mirrors: [], peers: [await smallPeer(corrupted())] }, path, { fetcher: fetchUrl }).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(await Bun.file(path).exists()).toBe(false);
  });
});
