/**
 * The real `apt-get` through `apt-p2p serve`, on 127.0.0.1: a signed repository behind a Range-capable
 * mirror, two peers seeding its packages through a bootstrap node, and proxies started fresh for each
 * case. Every run ends with .debs byte-identical to the repository's — or, for the faults, still does.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { isolatedApt, type IsolatedApt } from "../helpers/apt.ts";
import { startServe, waitFor, type ServeProcess } from "../helpers/daemon.ts";
import { startMirror, type TestMirror } from "../helpers/mirror.ts";
import { addSourcePackage, buildRepo, dropGpgKey, makeGpgKey, noise, sha256File, type GpgKey, type Repo } from "../helpers/repo.ts";

const PACKAGES = [
  { name: "tiny", version: "1.0", payloadBytes: 2_000 },
  { name: "small", version: "1.0", payloadBytes: 60_000 },
  { name: "three", version: "1.0", payloadBytes: 1_200_000 },
  { name: "ten", version: "1.0", payloadBytes: 5_000_000 },
  { name: "huge", version: "1.0", payloadBytes: 42_000_000 },
];
/** In the repository, held by no peer. */
const LONELY = { name: "lonely", version: "1.0", payloadBytes: 700_000 };
const ALL = [...PACKAGES, LONELY].map((p) => p.name);

let work: string;
let key: GpgKey;
let repo: Repo;
let mirror: TestMirror;
let mirrorPort: number;
let bootstrap: ServeProcess;
const peers: ServeProcess[] = [];
const daemons: ServeProcess[] = [];
let sourcesFile: string;
let sourceLine: string;
/** SHA-256 of each .deb by file name. */
const expected = new Map<string, string>();
let counter = 0;
/** Pool paths of the source package's files. */
let sourceFiles: string[];

interface Status {
  connections: number;
  proxy: { bytesSent: number; bytesFrom: { mirror: number; peer: number; cache: number }; refused: number; stale: number };
}

async function status(daemon: ServeProcess): Promise<Status> {
  return (await (await fetch(`${daemon.url}/api/status`)).json()) as Status;
}

async function proxy(withPeers: boolean, extra: string[] = []): Promise<ServeProcess> {
  const dir = join(work, `proxy-${counter++}`);
  const daemon = await startServe([
    "--state-dir", join(dir, "state"), "--cache-dir", join(dir, "cache"), "--sources", sourcesFile,
    ...(withPeers ? ["--bootstrap", `127.0.0.1:${bootstrap.port}`] : []),
    ...extra,
  ]);
  daemons.push(daemon);
  return daemon;
}

async function apt(daemon: ServeProcess, form: "proxy" | "prefix"): Promise<IsolatedApt> {
  const dir = join(work, `apt-${counter++}`);
  return form === "proxy"
    ? isolatedApt(dir, { sources: [sourceLine], proxy: daemon.url })
    : isolatedApt(dir, {
        sources: ["deb", "deb-src"].map((type) => `${type} [signed-by=${key.keyring}] ${daemon.url}/127.0.0.1:${mirrorPort}/ stable main`),
      });
}

async function updateAndInstall(client: IsolatedApt, names: string[]): Promise<void> {
  const update = await client.run(["update"]);
  expect(update.stderr).not.toContain("E:");
  expect(update.code).toBe(0);
  const install = await client.run(["install", "--download-only", ...names]);
  if (install.code !== 0) throw new Error(`apt-get install failed:\n${install.stdout}\n${install.stderr}`);
}

async function expectRepositoryDebs(client: IsolatedApt, names: string[]): Promise<void> {
  const got = await client.debs();
  for (const name of names) {
    const file = [...expected.keys()].find((f) => f.startsWith(`${name}_`))!;
    expect(got.get(file)).toBe(expected.get(file)!);
  }
}

const debRequests = (name: string) => mirror.requests.filter((r) => r.path.endsWith(".deb") && basename(r.path).startsWith(`${name}_`) && r.method === "GET");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-proxy-e2e-"));
  key = await makeGpgKey("proxy");
  repo = await buildRepo(join(work, "repo"), { key, packages: [...PACKAGES, LONELY], byHash: true });
  sourceFiles = await addSourcePackage(repo.root, repo.suite, { name: "greet", version: "1.0" }, { key, byHash: true });
  for (const [, path] of repo.debs) expected.set(basename(path), await sha256File(join(repo.root, path)));
  mirror = await startMirror(repo.root);
  mirrorPort = Number(new URL(mirror.url).port);
  sourceLine = `deb [signed-by=${key.keyring}] ${mirror.url}/ stable main\ndeb-src [signed-by=${key.keyring}] ${mirror.url}/ stable main`;
  sourcesFile = join(work, "repo.list");
  await writeFile(sourcesFile, `${sourceLine}\n`);

  bootstrap = await startServe(["--state-dir", join(work, "state-boot"), "--cache-dir", join(work, "cache-boot")]);
  for (let i = 0; i < 2; i++) {
    const seedDir = join(work, `seed-${i}`);
    await mkdir(seedDir);
    for (const p of PACKAGES) {
      const path = repo.debs.get(`${p.name}_${p.version}`)!;
      await copyFile(join(repo.root, path), join(seedDir, basename(path)));
    }
    peers.push(
      await startServe([
        "--state-dir", join(work, `state-seed-${i}`), "--cache-dir", join(work, `cache-seed-${i}`),
        "--bootstrap", `127.0.0.1:${bootstrap.port}`, "--seed-dir", seedDir,
      ]),
    );
  }
  const lookup = async (sha: string) =>
    ((await (await fetch(`${bootstrap.url}/api/dht/lookup?key=${sha.slice(0, 40)}`)).json()) as { peers: unknown[] }).peers.length;
  for (const p of PACKAGES) {
    const sha = expected.get(basename(repo.debs.get(`${p.name}_${p.version}`)!))!;
    await waitFor(async () => (await lookup(sha)) === 2, `the peers of ${p.name}`, 90_000);
  }
}, 180_000);

afterAll(async () => {
  await Promise.all([...daemons, ...peers, bootstrap].filter(Boolean).map((d) => d.stop()));
  await mirror?.stop();
  if (key) await dropGpgKey(key);
  if (work) await rm(work, { recursive: true, force: true });
});

describe("apt-get through the proxy", () => {
  test("forward-proxy form: six packages (one of 42 MB) byte-identical, most bytes from the peers", async () => {
    const daemon = await proxy(true);
    const client = await apt(daemon, "proxy");
    await updateAndInstall(client, ALL);
    await expectRepositoryDebs(client, ALL);
    const { proxy: stats, connections } = await status(daemon);
    expect(stats.bytesFrom.peer).toBeGreaterThan(stats.bytesFrom.mirror);
    expect(debRequests("lonely").length).toBeGreaterThan(0); // no peer has it: the mirror gave it
    // APT keeps its connection to the proxy alive and pipelines: a handful of connections, not one a file.
    expect(connections).toBeLessThanOrEqual(4);
  }, 120_000);

  test("prefix form without peers: everything from the mirror, each file fetched upstream once", async () => {
    const daemon = await proxy(false);
    const before = debRequests("ten").length;
    const client = await apt(daemon, "prefix");
    await updateAndInstall(client, ALL);
    await expectRepositoryDebs(client, ALL);
    expect(debRequests("ten").length - before).toBeLessThanOrEqual(1);
    // A second client gets them from the proxy's cache.
    const again = await apt(daemon, "prefix");
    await updateAndInstall(again, ALL);
    await expectRepositoryDebs(again, ALL);
    expect(debRequests("ten").length - before).toBeLessThanOrEqual(1);
    expect((await status(daemon)).proxy.bytesFrom.cache).toBeGreaterThan(0);
  }, 120_000);

  test("lists fetched before the proxy was set up (InRelease 304): the proxy still learns the hashes, and peers give the .debs", async () => {
    const daemon = await proxy(true);
    const dir = join(work, `apt-${counter++}`);
    const direct = await isolatedApt(dir, { sources: [sourceLine] });
    expect((await direct.run(["update"])).code).toBe(0);
    const client = await isolatedApt(dir, { sources: [sourceLine], proxy: daemon.url });
    await updateAndInstall(client, ["ten", "three"]);
    // APT fetched no index through the proxy (its lists were current): the proxy fetched one itself (from
    // the mirror or a peer that cached it) to learn what it lists.
    expect(daemon.log()).toMatch(/learned \d+ file hashes from .*Packages/);
    await expectRepositoryDebs(client, ["ten", "three"]);
    expect((await status(daemon)).proxy.bytesFrom.peer).toBeGreaterThan(0);
  }, 120_000);

  test("apt-get download and apt-get source, in both forms, get the repository's files", async () => {
    const daemon = await proxy(false);
    for (const form of ["proxy", "prefix"] as const) {
      const client = await apt(daemon, form);
      expect((await client.run(["update"])).code).toBe(0);
      const cwd = join(client.dir, "here");
      await mkdir(cwd);
      const download = await client.run(["download", "small"], { cwd });
      expect(download.code).toBe(0);
      const debName = basename(repo.debs.get("small_1.0")!);
      expect(await sha256File(join(cwd, debName))).toBe(expected.get(debName)!);
      const source = await client.run(["source", "--download-only", "greet"], { cwd });
      if (source.code !== 0) throw new Error(`apt-get source failed:\n${source.stdout}\n${source.stderr}`);
      for (const path of sourceFiles) expect(await sha256File(join(cwd, basename(path)))).toBe(await sha256File(join(repo.root, path)));
    }
    // The source files were known by their signed hashes (from Sources), not passed through.
    expect(daemon.log()).toMatch(/learned \d+ file hashes from .*Sources/);
  }, 120_000);

  test("with the mirror down after `update`, the peers give every .deb and the install succeeds", async () => {
    const daemon = await proxy(true);
    const client = await apt(daemon, "proxy");
    expect((await client.run(["update"])).code).toBe(0);
    const names = PACKAGES.map((p) => p.name);
    mirror.failWith = 503;
    try {
      const install = await client.run(["install", "--download-only", ...names]);
      expect(install.code).toBe(0);
    } finally {
      mirror.failWith = null;
    }
    await expectRepositoryDebs(client, names);
    expect((await status(daemon)).proxy.bytesFrom.mirror).toBe(0);
  }, 120_000);

  test("a partial file in APT's partial/ dir is resumed with Range and ends with the right hash", async () => {
    const daemon = await proxy(false);
    const client = await apt(daemon, "proxy");
    expect((await client.run(["update"])).code).toBe(0);
    const file = basename(repo.debs.get("ten_1.0")!);
    const whole = await Bun.file(join(repo.root, repo.debs.get("ten_1.0")!)).bytes();
    const kept = 3_000_000;
    await writeFile(join(client.archives, "partial", file), whole.subarray(0, kept));
    const before = (await status(daemon)).proxy.bytesSent;
    const install = await client.run(["install", "--download-only", "ten"]);
    expect(install.code).toBe(0);
    await expectRepositoryDebs(client, ["ten"]);
    expect((await status(daemon)).proxy.bytesSent - before).toBe(whole.length - kept);
  }, 120_000);

  test("a peer serving corrupt bytes: APT still ends with the right file", async () => {
    const sha = expected.get(basename(repo.debs.get("ten_1.0")!))!;
    const hostileRoot = join(work, "hostile");
    await mkdir(join(hostileRoot, "~"), { recursive: true });
    await writeFile(join(hostileRoot, "~", sha), noise(5_010_000, 99));
    const hostile = await startMirror(hostileRoot);
    try {
      const port = Number(new URL(hostile.url).port);
      await fetch(`${peers[0]!.url}/api/dht/announce?key=${sha.slice(0, 40)}&port=${port}`, { method: "POST" });
      const daemon = await proxy(true);
      const client = await apt(daemon, "proxy");
      await updateAndInstall(client, ["ten"]);
      await expectRepositoryDebs(client, ["ten"]);
      if (hostile.requests.some((r) => r.status === 200 || r.status === 206)) {
        // It was asked and answered: its pieces failed their hashes, as /metrics says (bans: swarm tests).
        const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
        expect(Number(/^apt_p2p_piece_verification_failures_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
        expect(metrics).toMatch(/^apt_p2p_banned_peers_total \d+/m);
      }
    } finally {
      await hostile.stop();
    }
  }, 120_000);

  test("over its --cache-size the proxy evicts the least recently used files and stops serving them to peers", async () => {
    const daemon = await proxy(false, ["--cache-size", "8MB"]);
    const client = await apt(daemon, "proxy");
    expect((await client.run(["update"])).code).toBe(0);
    const shaOf = (name: string) => expected.get(basename(repo.debs.get(`${name}_1.0`)!))!;
    const served = async (name: string) => (await fetch(`${daemon.url}/~/${shaOf(name)}`, { method: "HEAD" })).status;
    for (const name of ["ten", "three"]) expect((await client.run(["install", "--download-only", name])).code).toBe(0);
    await waitFor(async () => (await served("three")) === 200, "three seeded");
    expect((await client.run(["install", "--download-only", "huge"])).code).toBe(0);
    await expectRepositoryDebs(client, ["ten", "three", "huge"]);
    // huge alone is over the quota: the older files went, it stayed (the newest is never evicted by its own arrival).
    await waitFor(async () => (await served("ten")) === 404 && (await served("three")) === 404, "evicted files no longer served");
    const { cache } = (await (await fetch(`${daemon.url}/api/status`)).json()) as { cache: { files: number; evictions: number } };
    expect(cache.files).toBe(1);
    expect(cache.evictions).toBeGreaterThanOrEqual(2);
  }, 120_000);

  test("ten apt-get clients at once: all succeed, each file fetched from upstream once", async () => {
    const daemon = await proxy(false);
    const names = ["tiny", "small", "three", "lonely"];
    const counts = () => names.map((n) => debRequests(n).length);
    // The binary index, by name or by hash (APT asks for by-hash/SHA256/... when the Release offers it).
    const packagesRequests = () => mirror.requests.filter((r) => /binary-amd64\/(Packages|by-hash\/)/.test(r.path)).length;
    const before = counts();
    const indexBefore = packagesRequests();
    const clients = await Promise.all(Array.from({ length: 10 }, () => apt(daemon, "proxy")));
    await Promise.all(clients.map((c) => updateAndInstall(c, names)));
    for (const c of clients) await expectRepositoryDebs(c, names);
    expect(counts().map((n, i) => n - before[i]!)).toEqual(names.map(() => 1));
    expect(packagesRequests() - indexBefore).toBe(1);
  }, 180_000);
});

describe("HTTP as APT speaks it, and requests an attacker would send", () => {
  let daemon: ServeProcess;
  beforeAll(async () => {
    daemon = await proxy(false);
    const client = await apt(daemon, "proxy");
    await updateAndInstall(client, ["tiny", "small"]);
  }, 60_000);

  /** Writes `raw` in one write() and returns everything the server sent until it closed or went quiet. */
  async function rawExchange(raw: string, quietMs = 1_000): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const socket = connect(daemon.port, "127.0.0.1");
      let received = "";
      let timer = setTimeout(() => socket.end(), 10_000);
      socket.on("connect", () => socket.write(raw));
      socket.on("data", (chunk) => {
        received += chunk.toString("latin1");
        clearTimeout(timer);
        timer = setTimeout(() => socket.end(), quietMs);
      });
      socket.on("close", () => {
        clearTimeout(timer);
        resolve(received);
      });
      socket.on("error", reject);
    });
  }

  const path = (name: string) => `http://127.0.0.1:${mirrorPort}/${repo.debs.get(`${name}_1.0`)!}`;

  test("pipelined requests in one write are all answered, in order", async () => {
    const names = ["small", "tiny", "small"];
    const raw = names.map((n) => `GET ${path(n)} HTTP/1.1\r\nHost: 127.0.0.1:${mirrorPort}\r\n\r\n`).join("");
    const answer = await rawExchange(raw);
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    expect(statuses).toEqual(["200", "200", "200"]);
    const lengths = [...answer.matchAll(/content-length: (\d+)/gi)].map((m) => Number(m[1]));
    const sizes = await Promise.all(names.map((n) => Bun.file(join(repo.root, repo.debs.get(`${n}_1.0`)!)).size));
    expect(lengths).toEqual(sizes);
  });

  test("HEAD and Range answer from the signed size without a body beyond the range", async () => {
    const head = await rawExchange(`HEAD ${path("small")} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const size = Bun.file(join(repo.root, repo.debs.get("small_1.0")!)).size;
    expect(head).toMatch(new RegExp(`content-length: ${size}`, "i"));
    const ranged = await rawExchange(`GET ${path("small")} HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n`);
    expect(ranged).toMatch(/^HTTP\/1\.1 206/);
    expect(ranged).toMatch(new RegExp(`content-range: bytes 10-19/${size}`, "i"));
  });

  test("a mirror not in the sources is refused with 403 saying how to allow it", async () => {
    const answer = await rawExchange(`GET http://127.0.0.1:1/debian/dists/stable/InRelease HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 403/);
    expect(answer).toContain("--mirror-allow 127.0.0.1:1");
  });

  test("traversal and encoded traversal are refused with 400, and nothing outside the mirror is read", async () => {
    for (const target of [
      `/127.0.0.1:${mirrorPort}/../../../etc/passwd`,
      `/127.0.0.1:${mirrorPort}/pool/%2e%2e/%2e%2e/etc/passwd`,
      `http://127.0.0.1:${mirrorPort}/pool/..%2f..%2fetc/passwd`,
    ]) {
      const answer = await rawExchange(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 400/);
      expect(answer).not.toContain("root:");
    }
  });

  test("CONNECT and other methods are refused", async () => {
    expect(await rawExchange(`CONNECT 127.0.0.1:${mirrorPort} HTTP/1.1\r\nHost: 127.0.0.1:${mirrorPort}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 405/);
    expect(await rawExchange(`DELETE ${path("tiny")} HTTP/1.1\r\nHost: x\r\n\r\n`)).toMatch(/^HTTP\/1\.1 405/);
  });

  test("with the mirror down, InRelease comes from the last copy, marked stale", async () => {
    const url = `${daemon.url}/127.0.0.1:${mirrorPort}/dists/stable/InRelease`;
    const fresh = await fetch(url);
    expect(fresh.status).toBe(200);
    const body = await fresh.text();
    mirror.failWith = 503;
    try {
      const stale = await fetch(url);
      expect(stale.status).toBe(200);
      expect(stale.headers.get("x-apt-p2p-stale")).toContain("mirror unreachable");
      expect(await stale.text()).toBe(body);
    } finally {
      mirror.failWith = null;
    }
  });
});
