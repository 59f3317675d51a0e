/**
 * The swarm across processes on 127.0.0.1: a bootstrap daemon, four seeding daemons holding packages of
 * every piece tier (one of 42 MB), a Range-capable mirror, and `apt-p2p get` as the downloader — alone
 * (a short-lived DHT node) and through a daemon. Faults: a hostile peer serving corrupt bytes, the
 * mirror down while peers have the files, a seeder killed mid-transfer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { jsonLines, runApt } from "../helpers/cli.ts";
import { startServe, waitFor, type ServeProcess } from "../helpers/daemon.ts";
import { startMirror, type TestMirror } from "../helpers/mirror.ts";
import { buildRepo, dropGpgKey, makeGpgKey, noise, sha256File, type GpgKey, type Repo } from "../helpers/repo.ts";

const PACKAGES = [
  { name: "tiny", version: "1.0", payloadBytes: 2_000 }, // 1 piece
  { name: "three", version: "1.0", payloadBytes: 1_200_000 }, // 3 pieces: hashes inline
  { name: "ten", version: "1.0", payloadBytes: 5_000_000 }, // 10 pieces: a BEP 44 item
  { name: "huge", version: "1.0", payloadBytes: 42_000_000 }, // 81 pieces: the list over HTTP
];
/** In the repository but held by no peer. */
const LONELY = { name: "lonely", version: "1.0", payloadBytes: 700_000 };
const SEEDERS = 4;

let work: string;
let key: GpgKey;
let repo: Repo;
let mirror: TestMirror;
let bootstrap: ServeProcess;
const seeders: ServeProcess[] = [];
const extra: ServeProcess[] = [];
let sources: string;
const sha: Record<string, string> = {};

async function api<T>(daemon: ServeProcess, path: string, method = "GET"): Promise<T> {
  const response = await fetch(`${daemon.url}${path}`, { method });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

const peersOf = async (name: string) =>
  (await api<{ peers: { port: number }[] }>(bootstrap, `/api/dht/lookup?key=${sha[name]!.slice(0, 40)}`)).peers.map((p) => p.port);

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-swarm-e2e-"));
  key = await makeGpgKey("swarm");
  repo = await buildRepo(join(work, "repo"), { key, packages: [...PACKAGES, LONELY] });
  for (const p of PACKAGES) sha[p.name] = await sha256File(join(repo.root, repo.debs.get(`${p.name}_${p.version}`)!));
  mirror = await startMirror(repo.root);
  sources = join(work, "repo.list");
  await writeFile(sources, `deb [signed-by=${key.keyring}] ${mirror.url} stable main\n`);

  bootstrap = await startServe(["--state-dir", join(work, "state-boot"), "--cache-dir", join(work, "cache-boot")]);
  for (let i = 0; i < SEEDERS; i++) {
    const seedDir = join(work, `seed-${i}`);
    await mkdir(seedDir);
    for (const p of PACKAGES) {
      const path = repo.debs.get(`${p.name}_${p.version}`)!;
      await copyFile(join(repo.root, path), join(seedDir, basename(path)));
    }
    seeders.push(
      await startServe([
        "--state-dir", join(work, `state-${i}`), "--cache-dir", join(work, `cache-${i}`),
        "--bootstrap", `127.0.0.1:${bootstrap.port}`, "--seed-dir", seedDir,
      ]),
    );
  }
  // Every seeder has hashed its files and announced each of them.
  for (const p of PACKAGES) await waitFor(async () => (await peersOf(p.name)).length === SEEDERS, `the seeders of ${p.name}`, 90_000);
}, 180_000);

afterAll(async () => {
  await Promise.all([bootstrap, ...seeders, ...extra].filter(Boolean).map((d) => d.stop()));
  await mirror?.stop();
  if (key) await dropGpgKey(key);
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
function getArgs(...rest: string[]) {
  const dir = join(work, `get-${counter++}`);
  return {
    dest: join(dir, "dest"),
    args: [
      "get", "--json", "--sources", sources, "--cache-dir", join(dir, "cache"), "--dest", join(dir, "dest"), "--arch", "amd64",
      "--state-dir", join(dir, "state"), "--bootstrap", `127.0.0.1:${bootstrap.port}`, ...rest,
    ],
  };
}

describe("apt-p2p get from a swarm", () => {
  test("every tier comes from the peers, verified, with bytes per peer reported", async () => {
    const { dest, args } = getArgs(...PACKAGES.map((p) => p.name));
    const r = await runApt(args);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines).toHaveLength(PACKAGES.length);
    for (const line of lines) {
      const sources = line.sources as { peers: number; mirror: number; perPeer: Record<string, number> };
      expect(await sha256File(join(dest, basename(line.filename as string)))).toBe(sha[line.package as string]!);
      expect(sources.peers).toBeGreaterThan(0.5 * (line.size as number));
      expect(sources.peers + sources.mirror).toBe(line.size as number);
      expect(Object.values(sources.perPeer).reduce((a, b) => a + b, 0)).toBe(sources.peers);
    }
    const huge = lines.find((l) => l.package === "huge")!;
    expect(Object.keys((huge.sources as { perPeer: object }).perPeer).length).toBeGreaterThanOrEqual(2);
  }, 120_000);

  test("with the mirror down, peers give everything", async () => {
    // A first get leaves the verified index in the cache; then the file is dropped from it, so that it
    // has to come from somewhere while the mirror answers nothing but 503.
    const { dest, args } = getArgs("ten");
    expect((await runApt([...args, "--no-dht"])).code).toBe(0);
    await rm(dest, { recursive: true, force: true });
    await rm(join(dest, "..", "cache", "files"), { recursive: true, force: true });
    mirror.failWith = 503;
    try {
      const r = await runApt(args);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain("using the index verified at");
      const [line] = jsonLines(r.stdout);
      expect((line!.sources as { peers: number }).peers).toBe(line!.size as number);
      expect(await sha256File(join(dest, "ten_1.0_amd64.deb"))).toBe(sha.ten!);
    } finally {
      mirror.failWith = null;
    }
  }, 60_000);

  test("a hostile peer serving corrupt bytes is banned and the file still verifies", async () => {
    const corrupt = noise(PACKAGES[2]!.payloadBytes + 10_000, 99);
    const hostileRoot = join(work, "hostile");
    await mkdir(join(hostileRoot, "~"), { recursive: true });
    await writeFile(join(hostileRoot, "~", sha.ten!), corrupt);
    const hostile = await startMirror(hostileRoot);
    try {
      const port = Number(new URL(hostile.url).port);
      await api(seeders[0]!, `/api/dht/announce?key=${sha.ten!.slice(0, 40)}&port=${port}`, "POST");
      await waitFor(async () => (await peersOf("ten")).includes(port), "the hostile announce");
      const { dest, args } = getArgs("ten");
      const r = await runApt(args);
      expect(r.code).toBe(0);
      expect(await sha256File(join(dest, "ten_1.0_amd64.deb"))).toBe(sha.ten!);
      const [line] = jsonLines(r.stdout);
      expect((line!.sources as { perPeer: Record<string, number> }).perPeer[`127.0.0.1:${port}`] ?? 0).toBe(0);
      expect(hostile.requests.length).toBeGreaterThan(0); // it was tried, and nothing it sent was kept
    } finally {
      await hostile.stop();
    }
  }, 60_000);

  test("a daemon downloads for get, and seeds the file afterwards", async () => {
    const daemon = await startServe(["--state-dir", join(work, "state-dl"), "--cache-dir", join(work, "cache-dl"), "--bootstrap", `127.0.0.1:${bootstrap.port}`]);
    extra.push(daemon);
    const { dest, args } = getArgs("three", "--daemon", daemon.url);
    const r = await runApt(args);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(await sha256File(join(dest, "three_1.0_amd64.deb"))).toBe(sha.three!);
    const [line] = jsonLines(r.stdout);
    expect((line!.sources as { peers: number }).peers).toBeGreaterThan(0);
    await waitFor(async () => (await peersOf("three")).includes(daemon.port), "the daemon announcing what it downloaded", 30_000);
  }, 90_000);

  test("a package no peer holds comes from the mirror", async () => {
    const { dest, args } = getArgs("lonely");
    const r = await runApt(args);
    expect(r.code).toBe(0);
    const [line] = jsonLines(r.stdout);
    expect(line!.sources).toMatchObject({ peers: 0, mirror: line!.size });
    expect(await sha256File(join(dest, "lonely_1.0_amd64.deb"))).toBe(await sha256File(join(repo.root, repo.debs.get("lonely_1.0")!)));
  }, 60_000);

  test("--no-dht takes everything from the mirror", async () => {
    const { args } = getArgs("three", "--no-dht");
    const r = await runApt(args);
    expect(r.code).toBe(0);
    const [line] = jsonLines(r.stdout);
    expect(line!.sources).toMatchObject({ peers: 0, mirror: line!.size });
  }, 60_000);

  test("a seeder killed mid-transfer does not stop the download", async () => {
    const { dest, args } = getArgs("huge");
    const running = runApt(args);
    await Bun.sleep(150);
    await seeders[3]!.stop();
    const r = await running;
    expect(r.code).toBe(0);
    expect(await sha256File(join(dest, "huge_1.0_amd64.deb"))).toBe(sha.huge!);
  }, 90_000);
});
