/**
 * The status page and /metrics of a real daemon after known transfers: a signed repository behind a local
 * mirror, a seeding daemon, and the proxy daemon under test, all on 127.0.0.1. Files are fetched through
 * the proxy in prefix form with plain fetch. /metrics must parse strictly and its counters move by the
 * bytes of each file; the page, loaded in headless Chromium, must show the same figures with no script
 * error and a chart with data. Screenshots land in test-artifacts/.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { REPO_ROOT } from "../helpers/cli.ts";
import { startServe, waitFor, type ServeProcess } from "../helpers/daemon.ts";
import { startMirror, type TestMirror } from "../helpers/mirror.ts";
import { buildRepo, dropGpgKey, makeGpgKey, sha256File, type GpgKey, type Repo } from "../helpers/repo.ts";
import { metricValue, parsePrometheusText, type PromFamily } from "./prometheus-text.ts";

/** Six pieces, seeded by a peer: the swarm takes pieces from the peer and the mirror. */
const SHARED = { name: "shared", version: "1.0", payloadBytes: 3_000_000 };
/** Only on the mirror. */
const LONELY = { name: "lonely", version: "1.0", payloadBytes: 200_000 };
const ARTIFACTS = join(REPO_ROOT, "test-artifacts");
const CHROMIUM = Bun.which("chromium") ?? Bun.which("chromium-browser");

let work: string;
let key: GpgKey;
let repo: Repo;
let mirror: TestMirror;
let seeder: ServeProcess;
let daemon: ServeProcess;
let base: string;
const files = new Map<string, { path: string; size: number; sha256: string }>();

interface Traffic {
  mirror: number;
  peer: number;
  cache: number;
  upload: number;
}
interface Status {
  traffic: { today: Traffic & { day: string }; allTime: Traffic & { since: number } };
  rates: { samples: { at: number; mirror: number; peer: number; upload: number }[] };
  recentTransfers: { name: string; size: number; ok: boolean; bytes: { mirror: number; peer: number; cache: number } }[];
  peers: { total: number; recent: { peer: string; found: number }[] };
  dht: { tableSize: number; lookups: number };
  peerServer: { bytesSent: number };
  cache: { bytes: number; files: number; limitBytes: number | null };
}

async function status(d: ServeProcess): Promise<Status> {
  return (await (await fetch(`${d.url}/api/status`)).json()) as Status;
}

async function metrics(d: ServeProcess): Promise<Map<string, PromFamily>> {
  const response = await fetch(`${d.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parsePrometheusText(await response.text());
}

const downloaded = (m: Map<string, PromFamily>, source: string) => metricValue(m, "apt_p2p_download_bytes_total", { source });
const sentToApt = (m: Map<string, PromFamily>) => metricValue(m, "apt_p2p_upload_bytes_total", { to: "apt" });

/** Fetches a pool file through the proxy (prefix form) and checks it is the repository's. */
async function fetchDeb(name: string): Promise<void> {
  const file = files.get(name)!;
  const response = await fetch(`${base}/${file.path}`);
  expect(response.status).toBe(200);
  const body = new Uint8Array(await response.arrayBuffer());
  expect(body.length).toBe(file.size);
  expect(new Bun.CryptoHasher("sha256").update(body).digest("hex")).toBe(file.sha256);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-status-"));
  key = await makeGpgKey("status");
  repo = await buildRepo(join(work, "repo"), { key, packages: [SHARED, LONELY] });
  for (const p of [SHARED, LONELY]) {
    const path = repo.debs.get(`${p.name}_${p.version}`)!;
    const full = join(repo.root, path);
    files.set(p.name, { path, size: Bun.file(full).size, sha256: await sha256File(full) });
  }
  mirror = await startMirror(repo.root);
  const sources = join(work, "repo.list");
  await writeFile(sources, `deb [signed-by=${key.keyring}] ${mirror.url}/ stable main\n`);
  daemon = await startServe(["--state-dir", join(work, "state"), "--cache-dir", join(work, "cache"), "--sources", sources]);
  const seedDir = join(work, "seed");
  await mkdir(seedDir);
  await copyFile(join(repo.root, files.get("shared")!.path), join(seedDir, basename(files.get("shared")!.path)));
  seeder = await startServe(["--state-dir", join(work, "state-seeder"), "--cache-dir", join(work, "cache-seeder"), "--seed-dir", seedDir, "--bootstrap", `127.0.0.1:${daemon.port}`]);
  const lookup = async () =>
    ((await (await fetch(`${daemon.url}/api/dht/lookup?key=${files.get("shared")!.sha256.slice(0, 40)}`)).json()) as { peers: unknown[] }).peers.length;
  await waitFor(async () => (await lookup()) > 0, "the seeder's announce", 60_000);
  base = `${daemon.url}/${new URL(mirror.url).host}`;
  // The proxy learns the hashes from the signed InRelease and the Packages index it lists.
  for (const path of ["dists/stable/InRelease", "dists/stable/main/binary-amd64/Packages.xz"]) {
    const response = await fetch(`${base}/${path}`);
    expect(response.status).toBe(200);
    await response.arrayBuffer();
  }
}, 120_000);

afterAll(async () => {
  await Promise.all([daemon, seeder].filter(Boolean).map((d) => d.stop()));
  await mirror?.stop();
  if (key) await dropGpgKey(key);
  if (work) await rm(work, { recursive: true, force: true });
});

describe("GET /metrics of a daemon serving known transfers", () => {
  test("counters move by the bytes of each file, by source; the DHT's lookups and queries are counted", async () => {
    const shared = files.get("shared")!;
    const lonely = files.get("lonely")!;
    const before = await metrics(daemon);

    await fetchDeb("shared");
    const afterShared = await metrics(daemon);
    const fromPeers = downloaded(afterShared, "peer") - downloaded(before, "peer");
    const fromMirror = downloaded(afterShared, "mirror") - downloaded(before, "mirror");
    expect(fromPeers + fromMirror).toBe(shared.size);
    expect(fromPeers).toBeGreaterThan(0);
    expect(sentToApt(afterShared) - sentToApt(before)).toBe(shared.size);
    // What we took from the peer, the seeder uploaded (it may also have sent pieces the mirror won).
    const seederUpload = metricValue(await metrics(seeder), "apt_p2p_upload_bytes_total", { to: "peer" });
    expect(seederUpload).toBeGreaterThanOrEqual(fromPeers);

    await fetchDeb("lonely");
    const afterLonely = await metrics(daemon);
    expect(downloaded(afterLonely, "mirror") - downloaded(afterShared, "mirror")).toBe(lonely.size);
    expect(downloaded(afterLonely, "peer")).toBe(downloaded(afterShared, "peer"));

    await fetchDeb("shared");
    const again = await metrics(daemon);
    expect(downloaded(again, "cache") - downloaded(afterLonely, "cache")).toBe(shared.size);
    expect(downloaded(again, "mirror") + downloaded(again, "peer")).toBe(downloaded(afterLonely, "mirror") + downloaded(afterLonely, "peer"));
    expect(metricValue(again, "apt_p2p_proxy_requests_total", { outcome: "verified" }) - metricValue(before, "apt_p2p_proxy_requests_total", { outcome: "verified" })).toBe(3);

    const lookups = "apt_p2p_dht_lookup_duration_seconds";
    expect(metricValue(again, lookups, {}, `${lookups}_count`)).toBeGreaterThan(0);
    expect(metricValue(again, "apt_p2p_dht_routing_table_contacts")).toBe(1);
    expect(metricValue(again, "apt_p2p_dht_queries_total", { direction: "out", method: "get_peers", outcome: "response" })).toBeGreaterThan(0);
    expect(metricValue(again, "apt_p2p_peers_seen")).toBeGreaterThanOrEqual(1);
    // In the cache: both .debs and the Packages index (it has a signed hash too); no quota, none evicted.
    const index = Bun.file(join(repo.root, "dists/stable/main/binary-amd64/Packages.xz")).size;
    expect(metricValue(again, "apt_p2p_cache_files")).toBe(3);
    expect(metricValue(again, "apt_p2p_cache_bytes")).toBe(shared.size + lonely.size + index);
    expect(metricValue(again, "apt_p2p_cache_evictions_total")).toBe(0);
    expect(again.has("apt_p2p_cache_limit_bytes")).toBe(false);
  }, 60_000);

  test("/api/status agrees: today and all time hold every byte, the transfers are listed with their sources", async () => {
    const m = await metrics(daemon);
    const s = await status(daemon);
    for (const source of ["mirror", "peer", "cache"] as const) {
      expect(s.traffic.allTime[source]).toBe(downloaded(m, source));
      expect(s.traffic.today[source]).toBe(downloaded(m, source));
    }
    const names = s.recentTransfers.map((t) => t.name);
    const debName = (n: string) => basename(files.get(n)!.path);
    expect(names.filter((n) => n === debName("shared"))).toHaveLength(2);
    const cached = s.recentTransfers.find((t) => t.name === debName("shared"))!; // newest first: the cache hit
    expect(cached.bytes).toEqual({ mirror: 0, peer: 0, cache: files.get("shared")!.size });
    expect(s.recentTransfers.find((t) => t.name === debName("lonely"))!.bytes.mirror).toBe(files.get("lonely")!.size);
    expect(s.peers.recent.some((p) => p.peer === `127.0.0.1:${seeder.port}` && p.found > 0)).toBe(true);
  });
});

describe("the status page in headless Chromium", () => {
  const title = CHROMIUM === null ? "(skipped: no chromium on PATH; CI installs Debian's chromium)" : "";
  (CHROMIUM === null ? test.skip : test)(`shows the figures of the transfers, a chart with data and no script error ${title}`, async () => {
    // The rate chart is sampled every 5 s: wait until a sample holds the transfers.
    await waitFor(async () => (await status(daemon)).rates.samples.some((r) => r.mirror + r.peer > 0), "a rate sample with the downloads", 20_000);
    const s = await status(daemon);
    await mkdir(ARTIFACTS, { recursive: true });
    const desktop = await chromium(daemon.url, join(ARTIFACTS, "status-page.png"), "1100,1500");
    await chromium(daemon.url, join(ARTIFACTS, "status-page-phone.png"), "390,2200");
    const dom = desktop.dom;

    expect(dom).toMatch(/<ul id="errors" hidden="">\s*<\/ul>/);
    expect(desktop.consoleLines).toEqual([]);
    expect(dom).toMatch(/<body data-updated="\d+">/); // the poll ran and rendered
    const bytesOf = (id: string) => Number(new RegExp(`id="${id}"[^>]*data-bytes="(\\d+)"`).exec(dom)?.[1]);
    for (const period of ["today", "all"] as const) {
      const t = period === "today" ? s.traffic.today : s.traffic.allTime;
      expect(bytesOf(`${period}-peer`)).toBe(t.peer);
      expect(bytesOf(`${period}-mirror`)).toBe(t.mirror);
      expect(bytesOf(`${period}-cache`)).toBe(t.cache);
      expect(bytesOf(`${period}-spared`)).toBe(t.peer + t.cache);
    }
    expect(s.traffic.today.peer).toBeGreaterThan(0);
    expect(dom).toContain("The mirror was spared <strong>");
    for (const name of ["shared", "lonely"]) expect(dom).toContain(`<strong>${basename(files.get(name)!.path)}</strong>`);
    expect(dom).toContain(`127.0.0.1:${seeder.port}`);
    expect(dom).toMatch(/id="dht-table">1</);
    expect(bytesOf("cache-use")).toBe(s.cache.bytes);
    expect(dom).toContain("No quota: the cache may grow without limit.");

    const points = Number(/id="chart"[^>]*data-points="(\d+)"/.exec(dom)?.[1]);
    expect(points).toBeGreaterThanOrEqual(1);
    const download = /class="series-download" points="([^"]*)"/.exec(dom)?.[1] ?? "";
    expect(download.trim().split(/\s+/)).toHaveLength(points + 2); // the area's two base corners and one point a sample
    expect(await Bun.file(join(ARTIFACTS, "status-page.png")).exists()).toBe(true);
  }, 90_000);
});

describe("traffic totals across a restart", () => {
  test("all time and today are the same after the daemon restarts on the same state dir", async () => {
    const before = await status(daemon);
    await daemon.stop();
    daemon = await startServe(["--state-dir", join(work, "state"), "--cache-dir", join(work, "cache")]);
    const after = await status(daemon);
    expect(after.traffic.allTime).toEqual(before.traffic.allTime);
    expect(after.traffic.today).toEqual(before.traffic.today);
    expect(after.traffic.allTime.peer).toBeGreaterThan(0);
  }, 60_000);
});

/**
 * Loads `url` in headless Chromium with virtual time enough for two polls; returns the DOM after the
 * scripts ran and the page's console messages (Chromium logs them to stderr as CONSOLE lines).
 */
async function chromium(url: string, screenshot: string, windowSize: string): Promise<{ dom: string; consoleLines: string[] }> {
  const profile = await mkdtemp(join(tmpdir(), "apt-p2p-chromium-"));
  try {
    const proc = Bun.spawn(
      [
        CHROMIUM!, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        `--user-data-dir=${profile}`, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=12000",
        `--window-size=${windowSize}`, `--screenshot=${screenshot}`, "--dump-dom", `${url}/`,
      ],
      { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    const [dom, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const code = await proc.exited;
    if (code !== 0 || !dom.includes("</html>")) throw new Error(`chromium failed (${code}):\n${stderr}`);
    return { dom, consoleLines: stderr.split("\n").filter((line) => /:CONSOLE\(\d+\)\]/.test(line)) };
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}
