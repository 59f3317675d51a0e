/**
 * Swarm benchmark: `apt-p2p get` against a local swarm, everything on 127.0.0.1.
 *
 * Usage (as root, for tc): bun scripts/bench/swarm.ts [--size-mb 100] [--seeders 8] [--seeder-rate 10MB/s]
 *   [--mirror-rate 5MB/s] [--small 200] [--runs 3] [--holders 3]
 *
 * Method.
 *  - A signed repository (throwaway gpg key, apt-ftparchive) holds one large package `huge` (an
 *    incompressible payload of --size-mb MB, dpkg-deb -Zgzip -z1) and --small small packages whose
 *    sizes are log-normal around a 60 kB median (sigma 1.5, 1 kB to 4 MB; seeded mulberry32, so every
 *    run has the same sizes). The .debs are built once and kept in /tmp/apt-p2p-bench-swarm-debs,
 *    keyed by size (and by count for the small ones); the indexes are signed afresh each run.
 *  - The mirror is a Range-capable Bun server (test/helpers/mirror.ts) in this process. A bootstrap
 *    `apt-p2p serve` and --seeders seeding daemons join the DHT; every seeder seeds `huge`, and each
 *    small package is seeded by --holders seeders chosen with the same seeded PRNG. The benchmark
 *    starts only when DHT lookups through the bootstrap node find every holder of every file.
 *  - Rates are shaped with tc on `lo`: an HTB root qdisc, one class per server matched by its SOURCE
 *    port (u32 `match ip sport PORT 0xffff`), so only what the server sends is limited; everything else
 *    bypasses HTB. If tc cannot be used, seeders get `serve --upload-limit` instead and the mirror is not
 *    shaped (the table says which was used). MB = 10^6 bytes, as in --upload-limit.
 *  - Case 1 (large file): each seeder at --seeder-rate, the mirror at --mirror-rate. The ideal time is
 *    T_min = size / (seeders × seeder-rate + mirror-rate), every source busy all the time. apt-p2p is
 *    src/cli.ts compiled with `bun build --compile` (what the Debian package ships), run as
 *    `apt-p2p get huge --json ...` with a fresh cache, destination and DHT state. Two times are taken:
 *    the download time, which `get --json` reports for the file (from the start of its download, DHT
 *    lookup and piece lists included, to the verified file in the destination), compared with T_min
 *    (goal T_min / T ≥ 0.90); and the whole process (start, index fetch and gpgv, DHT join, download,
 *    exit), compared with aria2c given all the URLs at once (each peer's /~/<sha256> and the mirror's
 *    pool URL; one connection per URL, 1 MiB minimum split), whose output is checked against the
 *    SHA-256 (goal: apt-p2p faster). aria2c fetches no index and looks nothing up.
 *  - Case 2 (small files): the seeders stay shaped, the mirror is unlimited. `get` of all small
 *    packages with --jobs 8 through the swarm is timed against the same with --no-dht (mirror only):
 *    this measures what the DHT lookups cost per file.
 *  - Runs alternate between the two sides of a comparison, each after a `sync` (not timed), so that the
 *    write-back of the 100 MB one side wrote does not fall into the other's run; the median of --runs
 *    is reported. Every
 *    child process, the tc qdisc and the temporary directory are removed at the end, also on failure
 *    or Ctrl-C; a watchdog ends the whole run after 14 minutes.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseRate } from "../../src/transfer/throttle.ts";
import { sha256File, type PackageSpec } from "../../test/helpers/repo.ts";
import {
  cachedDebs, childEnv, compileCli, linkOrCopy, settleWrites, startDaemon, startRepository, stopRepository, timed, unusedPort, waitForAnnounces,
  type BenchPackage, type Daemon, type Repository,
} from "./lib/fixture.ts";
import { LoopbackShaper, type ShapeRule } from "./lib/shaper.ts";
import { DEBIAN_LIKE_SIZES, logNormalSizes, median, pickDistinct, seededRandom } from "./lib/sizes.ts";
import { cleanUpOnExit, runBenchmark } from "./lib/exit.ts";

const MB = 1_000_000;
/** Seed of the PRNG choosing small package sizes and their holders. */
const SMALL_SEED = 20_240_601;
/** The whole benchmark is stopped (and cleaned up) after this long. */
const WATCHDOG_MS = 14 * 60_000;
const ANNOUNCE_TIMEOUT_MS = 180_000;
const GET_JOBS_SMALL = 8;
/**
 * Seeders start this far apart. Each one announces all its files at once when it joins, and every node
 * here shares the address 127.0.0.1 and so one DHT rate limit (20 queries/s, burst 50, per address at
 * each node): started together, they drop each other's queries and their failed announces wait a
 * minute to be retried.
 */
const SEEDER_STAGGER_MS = 4_000;

const { values: flags } = parseArgs({
  options: {
    "size-mb": { type: "string", default: "100" },
    seeders: { type: "string", default: "8" },
    "seeder-rate": { type: "string", default: "10MB/s" },
    "mirror-rate": { type: "string", default: "5MB/s" },
    small: { type: "string", default: "200" },
    runs: { type: "string", default: "3" },
    holders: { type: "string", default: "3" },
  },
});
const sizeMb = positive("size-mb");
const seederCount = positive("seeders");
const smallCount = Math.floor(Number(flags.small));
const runs = positive("runs");
const holdersPerSmall = Math.min(seederCount, positive("holders"));
const seederRate = parseRate(flags["seeder-rate"]!);
const mirrorRate = parseRate(flags["mirror-rate"]!);

function positive(name: keyof typeof flags): number {
  const n = Number(flags[name]);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, not '${flags[name]}'`);
  return name === "size-mb" ? n : Math.floor(n);
}

const log = (line: string) => process.stderr.write(`[swarm-bench] ${line}\n`);
const fmt = (s: number) => s.toFixed(2);

interface Row {
  name: string;
  apt: number;
  anchorName: string;
  anchor: number;
  ratioName: string;
  ratio: number;
  goal: string;
  met: boolean;
}

// ---- resources, released by cleanup() whatever happens ----
const shaper = new LoopbackShaper();
const daemons: Daemon[] = [];
let repo: Repository | undefined;
let work: string | undefined;
let cleaned = false;

async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  await shaper.clear().catch((err: unknown) => log(`removing the tc qdisc failed: ${String(err)} — run: tc qdisc del dev lo root`));
  await Promise.all(daemons.map((d) => d.stop().catch((err: unknown) => log(`stopping a daemon failed: ${String(err)}`))));
  if (repo !== undefined) await stopRepository(repo).catch((err: unknown) => log(`stopping the mirror failed: ${String(err)}`));
  if (work !== undefined) await rm(work, { recursive: true, force: true });
}

const watchdog = cleanUpOnExit(cleanup, { log, watchdogMs: WATCHDOG_MS });

// ---- preflight ----
async function ensureTools(): Promise<void> {
  const missing = ["aria2c", "tc", "dpkg-deb", "apt-ftparchive", "gpg", "gpgv", "xz"].filter((t) => Bun.which(t) === null);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((t) => ({ aria2c: "aria2", tc: "iproute2", "dpkg-deb": "dpkg", "apt-ftparchive": "apt-utils", gpg: "gnupg", gpgv: "gpgv", xz: "xz-utils" })[t]!))];
  const how = `apt-get install -y ${packages.join(" ")}`;
  if (process.getuid?.() !== 0) throw new Error(`missing ${missing.join(", ")}: run as root: ${how}`);
  log(`installing ${packages.join(" ")}`);
  const r = await timed(["apt-get", "install", "-y", ...packages], { timeoutMs: 300_000, env: { ...childEnv(), DEBIAN_FRONTEND: "noninteractive" } });
  if (r.code !== 0) throw new Error(`${how} failed (${r.code}): ${r.stderr.slice(-500)}`);
}

// ---- the world ----
function smallSpecs(): { specs: PackageSpec[]; holders: number[][] } {
  const random = seededRandom(SMALL_SEED);
  const sizes = logNormalSizes(smallCount, DEBIAN_LIKE_SIZES, random);
  const specs = sizes.map((payloadBytes, i) => ({ name: `small-${String(i + 1).padStart(4, "0")}`, version: "1.0", payloadBytes }));
  const holders = specs.map(() => pickDistinct(seederCount, holdersPerSmall, random));
  return { specs, holders };
}

async function startSwarm(dir: string, packages: BenchPackage[], smallHolders: number[][], uploadLimit: string | null): Promise<{ boot: Daemon; seeders: Daemon[] }> {
  const boot = await startDaemon(["--state-dir", join(dir, "state-boot"), "--cache-dir", join(dir, "cache-boot")]);
  daemons.push(boot);
  const [huge, ...small] = packages;
  const seedDirs: string[] = [];
  for (let i = 0; i < seederCount; i++) {
    const seedDir = join(dir, `seed-${i}`);
    await mkdir(seedDir, { recursive: true });
    await linkOrCopy(join(repo!.root, huge!.poolPath), join(seedDir, "huge.deb"));
    seedDirs.push(seedDir);
  }
  for (let j = 0; j < small.length; j++) {
    for (const i of smallHolders[j]!) await linkOrCopy(join(repo!.root, small[j]!.poolPath), join(seedDirs[i]!, `${small[j]!.name}.deb`));
  }
  const seeders: Daemon[] = [];
  for (const [i, seedDir] of seedDirs.entries()) {
    if (i > 0 && small.length > 0) await Bun.sleep(SEEDER_STAGGER_MS);
    const seeder = await startDaemon([
      "--state-dir", join(dir, `state-${i}`), "--cache-dir", join(dir, `cache-${i}`), "--bootstrap", `127.0.0.1:${boot.port}`, "--seed-dir", seedDir,
      ...(uploadLimit === null ? [] : ["--upload-limit", uploadLimit]),
    ]);
    daemons.push(seeder);
    seeders.push(seeder);
  }
  return { boot, seeders };
}

// ---- measurements ----
let runCounter = 0;
/** The compiled apt-p2p that `get` runs as (main() builds it). */
let getBinary = "";
async function aptGet(names: string[], boot: Daemon, extra: string[], timeoutMs: number) {
  const dir = join(work!, `get-${runCounter++}`);
  const dest = join(dir, "dest");
  const args = [
    "get", "--json", "--sources", repo!.sourcesFile, "--cache-dir", join(dir, "cache"), "--dest", dest, "--arch", "amd64",
    "--bootstrap", `127.0.0.1:${boot.port}`, "--state-dir", join(dir, "state"), ...extra, ...names,
  ];
  // No daemon must answer at get's default address: point it at a port nothing listens on.
  const run = await timed([getBinary, ...args], { timeoutMs, env: childEnv({ APT_P2P_PORT: String(unusedPort()) }) });
  if (run.code !== 0 || run.timedOut) throw new Error(`apt-p2p get failed (code ${run.code}${run.timedOut ? ", timed out" : ""}):\n${run.stderr.slice(-2000)}`);
  if (run.stderr.trim() !== "") log(`get said on stderr: ${run.stderr.trim().slice(0, 500)}`);
  const lines = run.stdout.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as GetLine);
  await rm(dir, { recursive: true, force: true });
  return { seconds: run.seconds, lines };
}

interface GetLine {
  package: string;
  size: number;
  sha256: string;
  seconds: number;
  sources: { mirror: number; cache: number; peers: number; perPeer: Record<string, number> };
}

async function aria2(urls: string[], expectedSha: string, timeoutMs: number): Promise<number> {
  const dir = join(work!, `aria2-${runCounter++}`);
  const cmd = [
    "aria2c", "--no-conf", "--console-log-level=warn", "--summary-interval=0", "--download-result=hide",
    // One connection per URL (all URLs are on the host 127.0.0.1, so -x must allow them all).
    "-x", "16", "-s", String(urls.length), "-k", "1M", "--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false",
    "--connect-timeout=5", "--timeout=10", "--max-tries=3", "-d", dir, "-o", "huge.deb", ...urls,
  ];
  const run = await timed(cmd, { timeoutMs });
  if (run.code !== 0 || run.timedOut) throw new Error(`aria2c failed (code ${run.code}${run.timedOut ? ", timed out" : ""}):\n${(run.stdout + run.stderr).slice(-2000)}`);
  const got = await sha256File(join(dir, "huge.deb"));
  if (got !== expectedSha) throw new Error(`aria2c wrote a file with SHA-256 ${got}, expected ${expectedSha}`);
  await rm(dir, { recursive: true, force: true });
  return run.seconds;
}

/** Queries dropped by the per-address rate limit: on one host every node shares the address 127.0.0.1. */
async function logDhtCounters(nodes: Daemon[]): Promise<void> {
  const stats = await Promise.all(
    nodes.map((d) =>
      fetch(`${d.url}/api/dht/stats`, { signal: AbortSignal.timeout(5_000) })
        .then((r) => r.json() as Promise<{ rateLimited?: number }>)
        .catch(() => ({ rateLimited: undefined })),
    ),
  );
  log(`DHT queries dropped by rate limiting, per node: ${stats.map((s) => s.rateLimited ?? "?").join(", ")}`);
}

function describeSplit(line: GetLine, seederPorts: Map<number, number>): string {
  const perPeer = Object.entries(line.sources.perPeer)
    .map(([peer, bytes]) => [seederPorts.get(Number(peer.split(":").pop())) ?? peer, bytes] as const)
    .sort((a, b) => String(a[0]).localeCompare(String(b[0]), undefined, { numeric: true }))
    .map(([who, bytes]) => `s${who} ${(bytes / MB).toFixed(1)}`);
  return `peers ${(line.sources.peers / MB).toFixed(1)} MB (${perPeer.join(", ")}), mirror ${(line.sources.mirror / MB).toFixed(1)} MB`;
}

// ---- main ----
async function main(): Promise<void> {
  await ensureTools();
  const shaping = await shaper.trial();
  log(shaping.tc ? "shaping with tc htb on lo, by source port" : `tc unusable (${shaping.why}); seeders use --upload-limit, the mirror is not shaped`);

  const hugeSpec: PackageSpec = { name: "huge", version: "1.0", payloadBytes: Math.round(sizeMb * MB) };
  const { specs: small, holders } = smallSpecs();
  const hugeDeb = await cachedDebs(`huge-${sizeMb}MB`, [hugeSpec], log);
  const smallDebs = smallCount > 0 ? await cachedDebs(`small-${smallCount}-seed${SMALL_SEED}`, small, log) : [];
  work = await mkdtemp(join(tmpdir(), "apt-p2p-bench-swarm-"));
  log("compiling src/cli.ts with bun build --compile");
  getBinary = await compileCli(join(work, "apt-p2p"));
  repo = await startRepository(work, [
    { spec: hugeSpec, path: hugeDeb[0]! },
    ...small.map((spec, i) => ({ spec, path: smallDebs[i]! })),
  ]);
  const [huge, ...smallPackages] = repo.packages;
  const smallBytes = smallPackages.reduce((a, p) => a + p.size, 0);
  const smallMedian = smallPackages.length > 0 ? `, median ${(median(smallPackages.map((p) => p.size)) / 1000).toFixed(0)} kB` : "";
  log(`repository: huge ${(huge!.size / MB).toFixed(1)} MB; ${smallPackages.length} small, ${(smallBytes / MB).toFixed(1)} MB in all${smallMedian}`);

  const started = performance.now();
  const { boot, seeders } = await startSwarm(work, repo.packages, holders, shaping.tc ? null : flags["seeder-rate"]!);
  const seederPorts = new Map(seeders.map((s, i) => [s.port, i]));
  const announced = new Map<string, number[]>([[huge!.sha256, seeders.map((s) => s.port)]]);
  smallPackages.forEach((p, j) => announced.set(p.sha256, holders[j]!.map((i) => seeders[i]!.port)));
  const hugeOnly = new Map([[huge!.sha256, announced.get(huge!.sha256)!]]);
  if ((await waitForAnnounces(boot, hugeOnly, { timeoutMs: ANNOUNCE_TIMEOUT_MS, parallel: 1, perRound: 1, pauseMs: 2_000 })).length > 0) {
    throw new Error(`huge was not found at all ${seederCount} seeders within ${ANNOUNCE_TIMEOUT_MS / 1000} s`);
  }
  log(`huge found at all ${seederCount} seeders after ${fmt((performance.now() - started) / 1000)} s`);
  announced.delete(huge!.sha256);
  let lastReport = 0;
  const missing = await waitForAnnounces(boot, announced, {
    timeoutMs: ANNOUNCE_TIMEOUT_MS,
    parallel: 2,
    perRound: 20,
    pauseMs: 2_000,
    onRound: (n) => {
      if (Date.now() - lastReport < 10_000) return;
      lastReport = Date.now();
      log(`waiting for announces: ${n} of ${announced.size} small files not yet found at all their holders`);
    },
  });
  log(`swarm ready in ${fmt((performance.now() - started) / 1000)} s${missing.length > 0 ? ` (${missing.length} small files short of holders)` : ""}`);
  await logDhtCounters([boot, ...seeders]);
  for (const line of seeders.flatMap((s, i) => s.log().split("\n").filter((l) => /failed/.test(l)).slice(0, 2).map((l) => `s${i}: ${l.slice(0, 300)}`))) log(line);

  const rows: Row[] = [];
  const seederRules: ShapeRule[] = seeders.map((s) => ({ port: s.port, bytesPerSecond: seederRate }));
  const mirrorRule: ShapeRule = { port: repo.mirrorPort, bytesPerSecond: mirrorRate };

  // Case 1: the large file.
  if (shaping.tc) await shaper.apply([...seederRules, mirrorRule]);
  const tMin = huge!.size / (seederCount * seederRate + (shaping.tc ? mirrorRate : 0));
  const timeoutMs = Math.max(60_000, tMin * 20_000);
  const urls = [...seeders.map((s) => `${s.url}/~/${huge!.sha256}`), `${repo.mirror.url}/${huge!.poolPath}`];
  const aptTimes: number[] = [];
  const fileTimes: number[] = [];
  const ariaTimes: number[] = [];
  for (let r = 0; r < runs; r++) {
    await settleWrites(log);
    const got = await aptGet(["huge"], boot, [], timeoutMs);
    const line = got.lines[0]!;
    if (line.sha256 !== huge!.sha256) throw new Error(`get reported SHA-256 ${line.sha256} for huge`);
    aptTimes.push(got.seconds);
    fileTimes.push(line.seconds);
    log(`case 1 run ${r + 1}: apt-p2p ${fmt(got.seconds)} s (file ${fmt(line.seconds)} s): ${describeSplit(line, seederPorts)}`);
    await settleWrites(log);
    const a = await aria2(urls, huge!.sha256, timeoutMs);
    ariaTimes.push(a);
    log(`case 1 run ${r + 1}: aria2c ${fmt(a)} s`);
  }
  if (shaping.tc) {
    const sent = await shaper.sentBytes([...seederRules, mirrorRule]);
    log(`bytes sent through the tc classes: ${[...sent].map(([port, bytes]) => `${seederPorts.has(port) ? `s${seederPorts.get(port)}` : "mirror"} ${(bytes / MB).toFixed(0)} MB`).join(", ")}`);
  }
  const aptMedian = median(aptTimes);
  const fileMedian = median(fileTimes);
  const ariaMedian = median(ariaTimes);
  log(`case 1 reference: T_min ${fmt(tMin)} s; aria2c reaches T_min/T = ${(tMin / ariaMedian).toFixed(2)}; apt-p2p's whole process ${(tMin / aptMedian).toFixed(2)}`);
  const sizeLabel = `${(huge!.size / MB).toFixed(0)} MB`;
  rows.push({ name: `1. ${sizeLabel} file, download`, apt: fileMedian, anchorName: "T_min", anchor: tMin, ratioName: "T_min/T", ratio: tMin / fileMedian, goal: ">= 0.90", met: tMin / fileMedian >= 0.9 });
  rows.push({ name: `1. ${sizeLabel} file, whole process`, apt: aptMedian, anchorName: "aria2c", anchor: ariaMedian, ratioName: "apt/aria2c", ratio: aptMedian / ariaMedian, goal: "< 1.00", met: aptMedian < ariaMedian });

  // Case 2: small files, the mirror unlimited.
  if (smallPackages.length > 0) {
    if (shaping.tc) await shaper.apply(seederRules);
    const names = smallPackages.map((p) => p.name);
    const swarmTimes: number[] = [];
    const mirrorTimes: number[] = [];
    for (let r = 0; r < runs; r++) {
      await settleWrites(log);
      const viaSwarm = await aptGet(names, boot, ["--jobs", String(GET_JOBS_SMALL)], 300_000);
      const fromPeers = viaSwarm.lines.reduce((a, l) => a + l.sources.peers, 0);
      swarmTimes.push(viaSwarm.seconds);
      log(`case 2 run ${r + 1}: swarm ${fmt(viaSwarm.seconds)} s (${viaSwarm.lines.length} files, ${((100 * fromPeers) / smallBytes).toFixed(0)}% of bytes from peers, median file ${fmt(median(viaSwarm.lines.map((l) => l.seconds)))} s)`);
      await settleWrites(log);
      const viaMirror = await aptGet(names, boot, ["--jobs", String(GET_JOBS_SMALL), "--no-dht"], 300_000);
      mirrorTimes.push(viaMirror.seconds);
      log(`case 2 run ${r + 1}: --no-dht ${fmt(viaMirror.seconds)} s (median file ${fmt(median(viaMirror.lines.map((l) => l.seconds)))} s)`);
    }
    const s = median(swarmTimes);
    const m = median(mirrorTimes);
    rows.push({ name: `2. ${names.length} small files`, apt: s, anchorName: "--no-dht", anchor: m, ratioName: "swarm/no-dht", ratio: s / m, goal: "<= 1.00", met: s <= m });
  }

  printTable(rows, shaping.tc ? "tc htb on lo (by source port)" : `serve --upload-limit (tc unusable: ${shaping.why}); mirror unshaped`);
}

function printTable(rows: Row[], shapingLabel: string): void {
  const header = ["case", "apt-p2p s", "anchor", "anchor s", "ratio", "value", "goal", "met"];
  const body = rows.map((r) => [r.name, fmt(r.apt), r.anchorName, fmt(r.anchor), r.ratioName, r.ratio.toFixed(2), r.goal, r.met ? "yes" : "NO"]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log(`\nswarm benchmark: ${seederCount} seeders at ${flags["seeder-rate"]}, mirror at ${flags["mirror-rate"]} (case 2: unlimited), median of ${runs} run(s); shaping: ${shapingLabel}`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
}

await runBenchmark("swarm benchmark", main, {
  watchdog,
  cleanup,
  onFailure: () => {
    for (const d of daemons) if (d.log().includes("rror")) console.error(`--- log of the daemon on port ${d.port} (last 1500 chars) ---\n${d.log().slice(-1500)}`);
  },
});
