/**
 * APT benchmark: the real `apt-get install --download-only` of 150 packages, direct from a shaped
 * mirror, through apt-cacher-ng, and through `apt-p2p serve` as an APT proxy; everything on 127.0.0.1.
 *
 * Usage (as root, for tc and apt-get): bun scripts/bench/apt.ts [--packages 150] [--total-mb 200] [--large 4]
 *   [--mirror-rate 20MB/s] [--peers 3] [--peer-rate 0] [--runs 3] [--cases 1,2,3,4,5]
 *   [--keep-logs DIR]  (the apt-p2p daemons' logs, one file each, kept in DIR)
 *
 * Method.
 *  - A signed repository (throwaway gpg key, apt-ftparchive) of --packages independent packages (no
 *    Depends, so APT fetches exactly them): --large of them share most of --total-mb (each 1.3× the one
 *    before: about 28, 37, 48 and 63 MB with the defaults), the others are log-normal around a 60 kB
 *    median (sigma 1.5, 1 kB to 4 MB; seeded mulberry32, so every run has the same sizes; median of all
 *    about 60 kB). The .debs are built once and kept in /tmp/apt-p2p-bench-swarm-debs, keyed by the
 *    sizes' parameters; the indexes are signed afresh each run.
 *  - The mirror is a Range-capable Bun server in this process, reached through an HTTP front on a port
 *    under 32768 (apt-cacher-ng cannot fetch from higher ports) that answers pipelined requests (the
 *    Bun server drops them; APT and apt-cacher-ng pipeline). What the front sends is shaped to
 *    --mirror-rate with tc htb on `lo` by source port (scripts/bench/lib/shaper.ts), for every client
 *    alike: APT, apt-cacher-ng and apt-p2p all fetch from the same shaped mirror. If tc cannot be used
 *    (not root, or `lo` already has a root qdisc, e.g. another benchmark's), the front paces itself
 *    with a token bucket instead, and peers get `serve --upload-limit`; the table says which was used.
 *    MB = 10^6 bytes.
 *  - The real apt-get is isolated: its own APT_CONFIG, sources (signed-by the test key), lists,
 *    archives and an empty dpkg status in a fresh directory for every run, so every .deb is downloaded
 *    in every run and nothing of the machine's APT is read or touched. A run is `apt-get update`
 *    (not timed) and then the timed `apt-get install --download-only -y <all packages>`; afterwards
 *    every .deb APT kept must be byte-identical (SHA-256) to the repository's, or the benchmark fails.
 *  - The cases, each run in turn, --runs times; the median is reported:
 *     1. direct: APT fetches from the shaped mirror itself;
 *     2. apt-cacher-ng, warm: a private apt-cacher-ng (own config, cache and log dirs, on a loopback
 *        port) as APT's forward proxy (Acquire::http::Proxy); warmed by one untimed run first;
 *     3. apt-p2p, warm: `apt-p2p serve --sources <the mirror's sources>` as APT's forward proxy, warmed
 *        by one untimed run first; its DHT holds nobody else;
 *     4. apt-p2p, cold, with peers: --peers `serve` daemons seed all the .debs (--seed-dir) and have
 *        announced them in a DHT (the benchmark waits until lookups find every file at every peer); a
 *        fresh proxy daemon with an empty cache joins that DHT, and once its routing table holds the
 *        peers, APT runs through it. Peers are unshaped unless --peer-rate is given;
 *     5. apt-p2p, cold, no peers: a fresh proxy daemon whose DHT holds one empty node, so every byte
 *        comes from the mirror.
 *    Before every timed run, `sync` (not timed): every run writes the packages' 200 MB, and the first
 *    timed run of the warm proxy shared the disk with the write-back of what its warming had just
 *    cached (1.07-1.11 s against 0.80-0.91 for the runs after it).
 *  - Goals: 3 no slower than 2; 4 at least 3× faster than 1; 5 within 10% of 1.
 *  - Every child process, the tc qdisc, the mirror and its front, and the temporary directory are removed at the end,
 *    also on failure or Ctrl-C; a watchdog ends the whole run after 25 minutes.
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseRate } from "../../src/transfer/throttle.ts";
import type { PackageSpec } from "../../test/helpers/repo.ts";
import {
  AptClient, benchPayloadSizes, fetchedLine, freeLowPort, killTracked, runTimed, startAptCacher, startMirrorFront, verifyArchives,
  type AptCacher, type MirrorFront,
} from "./lib/apt-rig.ts";
import {
  cachedDebs, childEnv, CLI, linkOrCopy, settleWrites, startDaemon, startRepository, stopRepository, waitForAnnounces,
  type BenchPackage, type Daemon, type Repository,
} from "./lib/fixture.ts";
import { LoopbackShaper, type ShapeRule } from "./lib/shaper.ts";
import { DEBIAN_LIKE_SIZES, median, seededRandom } from "./lib/sizes.ts";
import { cleanUpOnExit, runBenchmark } from "./lib/exit.ts";

const MB = 1_000_000;
/** Seed of the PRNG choosing package sizes (one whose sample median is near Debian's 60 kB). */
const SIZE_SEED = 20_240_604;
/** The whole benchmark is stopped (and cleaned up) after this long. */
const WATCHDOG_MS = 25 * 60_000;
const UPDATE_TIMEOUT_MS = 60_000;
const ANNOUNCE_TIMEOUT_MS = 180_000;
/** A fresh proxy daemon has this long to find the peers' DHT nodes before APT runs through it anyway. */
const JOIN_TIMEOUT_MS = 30_000;
/** Seeders start this far apart, as in the swarm benchmark: all nodes share 127.0.0.1 and its DHT rate limit. */
const SEEDER_STAGGER_MS = 4_000;
/** Install timeout: this many times the time the whole download takes at --mirror-rate, and at least a minute. */
const INSTALL_TIMEOUT_FACTOR = 5;
const SUITE = "stable";

const { values: flags } = parseArgs({
  options: {
    packages: { type: "string", default: "150" },
    "total-mb": { type: "string", default: "200" },
    large: { type: "string", default: "4" },
    "mirror-rate": { type: "string", default: "20MB/s" },
    peers: { type: "string", default: "3" },
    "peer-rate": { type: "string", default: "0" },
    runs: { type: "string", default: "3" },
    cases: { type: "string", default: "1,2,3,4,5" },
    "keep-logs": { type: "string" },
  },
});
const packageCount = whole("packages", 1);
const totalMb = Number(flags["total-mb"]);
if (!Number.isFinite(totalMb) || totalMb <= 0) throw new Error(`--total-mb must be a positive number, not '${flags["total-mb"]}'`);
const largeCount = whole("large", 0);
const peerCount = whole("peers", 1);
const runs = whole("runs", 1);
const mirrorRate = parseRate(flags["mirror-rate"]!);
const peerRate = parseRate(flags["peer-rate"]!);
if (mirrorRate <= 0) throw new Error("--mirror-rate must be a rate above 0: the mirror is the baseline");
const cases = new Set(flags.cases!.split(",").map((c) => Number(c.trim())));
for (const c of cases) if (![1, 2, 3, 4, 5].includes(c)) throw new Error(`--cases takes numbers 1 to 5, not '${c}'`);
// Case 1 is the baseline of cases 4 and 5, and case 2 that of case 3.
if (cases.has(4) || cases.has(5)) cases.add(1);
if (cases.has(3)) cases.add(2);

function whole(name: keyof typeof flags, min: number): number {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number of at least ${min}, not '${flags[name]}'`);
  return n;
}

const log = (line: string) => process.stderr.write(`[apt-bench] ${line}\n`);
const fmt = (s: number) => s.toFixed(2);
const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

// ---- resources, released by cleanup() whatever happens ----
const shaper = new LoopbackShaper();
/** Running daemons, each with the name its log is kept under (--keep-logs). */
const daemons = new Map<Daemon, string>();
let repo: Repository | undefined;
let front: MirrorFront | undefined;
let cacher: AptCacher | undefined;
let work: string | undefined;
let cleaning: Promise<void> | undefined;
let shapingLabel = "";
/** The timed round under way (1 to --runs). */
let run = 0;

/** Releases everything; every caller (the end of main, a signal, the watchdog) waits for the one cleanup. */
function cleanup(): Promise<void> {
  cleaning ??= release();
  return cleaning;
}

async function release(): Promise<void> {
  killTracked();
  await shaper.clear().catch((err: unknown) => log(`removing the tc qdisc failed: ${String(err)} — run: tc qdisc del dev lo root`));
  if (cacher !== undefined) await cacher.stop().catch((err: unknown) => log(`stopping apt-cacher-ng failed: ${String(err)}`));
  await Promise.all([...daemons.keys()].map((d) => untrack(d).catch((err: unknown) => log(`stopping a daemon failed: ${String(err)}`))));
  if (front !== undefined) await front.stop().catch((err: unknown) => log(`stopping the mirror's front failed: ${String(err)}`));
  if (repo !== undefined) await stopRepository(repo).catch((err: unknown) => log(`stopping the mirror failed: ${String(err)}`));
  if (work !== undefined) await removeTree(work);
}

/**
 * rm -r that makes sure: a run interrupted by a signal may be removing its own APT directory in there
 * at the same time, and a recursive rm racing another one can return early, leaving the rest behind.
 */
async function removeTree(dir: string): Promise<void> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    await rm(dir, { recursive: true, force: true }).catch((err: unknown) => log(`removing ${dir} (attempt ${attempt}) failed: ${String(err)}`));
    if (!(await exists(dir))) return;
    await Bun.sleep(200);
  }
  log(`could not remove ${dir}: remove it by hand`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

const watchdog = cleanUpOnExit(cleanup, { log, watchdogMs: WATCHDOG_MS });

// ---- preflight ----
async function ensureTools(): Promise<void> {
  const packageOf: Record<string, string> = {
    "apt-get": "apt", "apt-cacher-ng": "apt-cacher-ng", tc: "iproute2", "dpkg-deb": "dpkg", "apt-ftparchive": "apt-utils", gpg: "gnupg", gpgv: "gpgv", xz: "xz-utils",
  };
  const needed = Object.keys(packageOf).filter((t) => t !== "apt-cacher-ng" || cases.has(2));
  const missing = needed.filter((t) => Bun.which(t) === null && Bun.which(t, { PATH: "/usr/sbin:/sbin" }) === null);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((t) => packageOf[t]!))];
  const how = `apt-get install -y ${packages.join(" ")}`;
  if (process.getuid?.() !== 0) throw new Error(`missing ${missing.join(", ")}: run as root: ${how}`);
  log(`installing ${packages.join(" ")}`);
  const r = await runTimed(["apt-get", "install", "-y", ...packages], { timeoutMs: 300_000, env: { ...childEnv(), DEBIAN_FRONTEND: "noninteractive" } });
  if (r.code !== 0) throw new Error(`${how} failed (${r.code}): ${r.stderr.slice(-500)}`);
}

/** The proxy flags appeared with the APT proxy; an older `serve` cannot run cases 3 to 5. */
async function ensureProxyBuild(): Promise<void> {
  const help = await runTimed([process.execPath, CLI, "serve", "--help"], { timeoutMs: 30_000 });
  if (!help.stdout.includes("--sources")) {
    throw new Error("this build's `apt-p2p serve` has no --sources option (no APT proxy yet): run cases 1 and 2 only, with --cases 1,2");
  }
}

// ---- the world ----
function packageSpecs(): PackageSpec[] {
  const sizes = benchPayloadSizes({ totalBytes: Math.round(totalMb * MB), count: packageCount, large: largeCount, small: DEBIAN_LIKE_SIZES }, seededRandom(SIZE_SEED));
  const width = String(packageCount).length;
  return sizes.map((payloadBytes, i) => ({ name: `bench-${String(i + 1).padStart(width, "0")}`, version: "1.0", payloadBytes }));
}

/**
 * A DHT of a bootstrap node and `peerCount` seeders, each seeding every .deb (paced by `uploadLimit`
 * when given); resolves once lookups find them all.
 */
async function startPeers(dir: string, packages: BenchPackage[], uploadLimit: string | null): Promise<{ boot: Daemon; seeders: Daemon[] }> {
  const started = performance.now();
  const boot = await track("peers-boot", startDaemon(["--state-dir", join(dir, "state-boot"), "--cache-dir", join(dir, "cache-boot")]));
  const seedDir = join(dir, "seed");
  await mkdir(seedDir, { recursive: true });
  for (const p of packages) await linkOrCopy(join(repo!.root, p.poolPath), join(seedDir, `${p.name}.deb`));
  const seeders: Daemon[] = [];
  for (let i = 0; i < peerCount; i++) {
    if (i > 0) await Bun.sleep(SEEDER_STAGGER_MS);
    seeders.push(await track(`peer-${i}`, startDaemon([
      "--state-dir", join(dir, `state-peer-${i}`), "--cache-dir", join(dir, `cache-peer-${i}`), "--bootstrap", `127.0.0.1:${boot.port}`, "--seed-dir", seedDir,
      ...(uploadLimit === null ? [] : ["--upload-limit", uploadLimit]),
    ])));
  }
  const holders = new Map(packages.map((p) => [p.sha256, seeders.map((s) => s.port)]));
  let lastReport = 0;
  const missing = await waitForAnnounces(boot, holders, {
    timeoutMs: ANNOUNCE_TIMEOUT_MS,
    parallel: 2,
    perRound: 20,
    pauseMs: 2_000,
    onRound: (n) => {
      if (Date.now() - lastReport < 10_000) return;
      lastReport = Date.now();
      log(`waiting for announces: ${n} of ${holders.size} files not yet found at all ${peerCount} peers`);
    },
  });
  if (missing.length > 0) throw new Error(`${missing.length} of ${holders.size} files were not found at all ${peerCount} peers within ${ANNOUNCE_TIMEOUT_MS / 1000} s`);
  log(`${peerCount} peers announced all ${holders.size} files in ${fmt((performance.now() - started) / 1000)} s`);
  return { boot, seeders };
}

async function track(name: string, starting: Promise<Daemon>): Promise<Daemon> {
  const daemon = await starting;
  daemons.set(daemon, name);
  return daemon;
}

/** Stops a daemon, keeping its log in --keep-logs if given. */
async function untrack(daemon: Daemon): Promise<void> {
  const name = daemons.get(daemon);
  daemons.delete(daemon);
  await daemon.stop();
  if (flags["keep-logs"] !== undefined && name !== undefined) {
    await mkdir(flags["keep-logs"], { recursive: true });
    await writeFile(join(flags["keep-logs"], `${name}.log`), daemon.log());
  }
}

let daemonCounter = 0;
/** An APT proxy daemon with an empty cache, bootstrapping into `bootPort`; `name` names its log. */
async function startProxy(name: string, sourcesFile: string, bootPort: number): Promise<Daemon> {
  const n = daemonCounter++;
  return track(name, startDaemon([
    "--state-dir", join(work!, `state-proxy-${n}`), "--cache-dir", join(work!, `cache-proxy-${n}`), "--bootstrap", `127.0.0.1:${bootPort}`, "--sources", sourcesFile,
  ]));
}

/** A DHT node of its own, so a proxy bootstrapping into it has a working DHT in which nobody holds anything. */
async function startLonelyNode(): Promise<Daemon> {
  const n = daemonCounter++;
  return track(`lonely-${n}`, startDaemon(["--state-dir", join(work!, `state-lonely-${n}`), "--cache-dir", join(work!, `cache-lonely-${n}`)]));
}

/** Waits until `daemon`'s routing table holds `contacts` nodes (a proxy that has joined the peers' DHT). */
async function waitForJoin(daemon: Daemon, contacts: number): Promise<void> {
  const until = Date.now() + JOIN_TIMEOUT_MS;
  let size = 0;
  while (Date.now() < until) {
    const stats = await fetch(`${daemon.url}/api/dht/stats`, { signal: AbortSignal.timeout(5_000) })
      .then((r) => r.json() as Promise<{ tableSize?: number }>)
      .catch((err: unknown) => {
        log(`DHT stats of the proxy on port ${daemon.port}: ${String(err)}`);
        return { tableSize: 0 };
      });
    size = stats.tableSize ?? 0;
    if (size >= contacts) return;
    await Bun.sleep(250);
  }
  log(`the proxy on port ${daemon.port} knows ${size} DHT nodes after ${JOIN_TIMEOUT_MS / 1000} s, not ${contacts}; running anyway`);
}

// ---- one APT run ----
/** APT's proxy for one run: none (direct), apt-cacher-ng, or an apt-p2p daemon (whose counters are read). */
interface Via {
  proxy?: string;
  daemon?: Daemon;
  /** The seeding peers, whose refusals for want of upload slots are counted. */
  peers?: Daemon[];
}

interface ProxyBytes {
  mirror: number;
  peer: number;
  cache: number;
}

interface RunOutcome {
  seconds: number;
  /** Bytes the mirror sent during the timed install. */
  mirrorBytes: number;
}

let runCounter = 0;
/** A fresh APT (direct or through a proxy): update, then the timed download-only install, then the check. */
async function aptRun(label: string, sources: string, via: Via, packages: BenchPackage[]): Promise<RunOutcome> {
  const apt = await AptClient.create(join(work!, `apt-${runCounter++}`), { sources, proxy: via.proxy });
  const totalBytes = packages.reduce((a, p) => a + p.size, 0);
  const timeoutMs = Math.max(60_000, (INSTALL_TIMEOUT_FACTOR * 1000 * totalBytes) / mirrorRate);
  try {
    const updated = await apt.update(UPDATE_TIMEOUT_MS);
    const before = { mirror: await mirrorSent(), proxy: await proxyBytes(via.daemon), busy: await peersBusy(via.peers) };
    const installed = await apt.downloadOnly(packages.map((p) => p.name), timeoutMs);
    const after = { mirror: await mirrorSent(), proxy: await proxyBytes(via.daemon), busy: await peersBusy(via.peers) };
    const mirrorBytes = after.mirror - before.mirror;
    await verifyArchives(apt.archives, packages);
    const split =
      before.proxy === null || after.proxy === null
        ? ""
        : `; the proxy got peers ${mb(after.proxy.peer - before.proxy.peer)}, mirror ${mb(after.proxy.mirror - before.proxy.mirror)}, cache ${mb(after.proxy.cache - before.proxy.cache)}`;
    const busy = via.peers === undefined ? "" : `; the peers refused ${after.busy - before.busy} requests as busy (503)`;
    log(`${label}: ${fmt(installed.seconds)} s (update ${fmt(updated.seconds)} s); the mirror sent ${mb(mirrorBytes)}${split}${busy}; ${fetchedLine(installed.stdout)}; all ${packages.length} .debs verified`);
    return { seconds: installed.seconds, mirrorBytes };
  } finally {
    await apt.remove();
  }
}

/** Where an apt-p2p proxy's bytes came from so far (its /api/status), or null without a daemon or an answer. */
async function proxyBytes(daemon: Daemon | undefined): Promise<ProxyBytes | null> {
  if (daemon === undefined) return null;
  try {
    const response = await fetch(`${daemon.url}/api/status`, { signal: AbortSignal.timeout(5_000) });
    const status = (await response.json()) as { proxy?: { bytesFrom?: ProxyBytes } };
    return status.proxy?.bytesFrom ?? null;
  } catch (err) {
    log(`status of the proxy on port ${daemon.port}: ${String(err)}`);
    return null;
  }
}

/** Requests the peers have refused so far for want of upload slots (their /metrics). */
async function peersBusy(peers: Daemon[] | undefined): Promise<number> {
  let total = 0;
  for (const peer of peers ?? []) {
    const metrics = await (await fetch(`${peer.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    total += Number(/^apt_p2p_peer_requests_total\{outcome="busy"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
  }
  return total;
}

/** Bytes the mirror has sent so far (through its front, which every client reaches it by). */
async function mirrorSent(): Promise<number> {
  return front!.sentBytes();
}

function mirrorRule(): ShapeRule {
  return { port: front!.port, bytesPerSecond: mirrorRate };
}

// ---- main ----
const CASE_NAMES: Record<number, string> = {
  1: `direct, mirror at ${flags["mirror-rate"]}`,
  2: "apt-cacher-ng, warm cache",
  3: "apt-p2p, warm cache",
  4: `apt-p2p, cold, ${peerCount} peers`,
  5: "apt-p2p, cold, no peers",
};

async function main(): Promise<void> {
  await ensureTools();
  // Everything here shares the machine's CPUs: other work running alongside skews the timings.
  const [load1] = loadavg();
  log(`load average ${load1!.toFixed(1)} on ${availableParallelism()} CPUs${load1! > availableParallelism() / 2 ? " — the machine is busy, timings will be noisy" : ""}`);
  const shaping = await shaper.trial();
  shapingLabel = shaping.tc ? "shaped by tc htb on lo (by source port)" : "paced by its front (tc unusable)";
  if (!shaping.tc) log(`tc unusable: ${shaping.why}`);
  log(`the mirror is ${shapingLabel}${cases.has(4) && peerRate > 0 ? `; peers by ${shaping.tc ? "tc too" : "serve --upload-limit"}` : ""}`);
  if (cases.has(3) || cases.has(4) || cases.has(5)) await ensureProxyBuild();

  const specs = packageSpecs();
  const debs = await cachedDebs(`apt-${packageCount}-${totalMb}MB-${largeCount}large-seed${SIZE_SEED}`, specs, log);
  work = await mkdtemp(join(tmpdir(), "apt-p2p-bench-apt-"));
  repo = await startRepository(work, specs.map((spec, i) => ({ spec, path: debs[i]! })));
  front = await startMirrorFront(freeLowPort(), repo.mirror.url, shaping.tc ? null : mirrorRate);
  const mirrorUrl = front.url;
  const sources = `deb [signed-by=${repo.key.keyring}] ${mirrorUrl} ${SUITE} main\n`;
  const sourcesFile = join(work, "mirror.list");
  await writeFile(sourcesFile, sources);
  const packages = repo.packages;
  const totalBytes = packages.reduce((a, p) => a + p.size, 0);
  const sizes = packages.map((p) => p.size);
  log(
    `repository: ${packages.length} packages, ${mb(totalBytes)} in all, median ${(median(sizes) / 1000).toFixed(0)} kB, ` +
      `largest ${[...sizes].sort((a, b) => b - a).slice(0, Math.max(largeCount, 1)).map(mb).join(", ")}; mirror ${mirrorUrl} at ${flags["mirror-rate"]}`,
  );
  if (shaping.tc) await shaper.apply([mirrorRule()]);

  // Set up every case before timing any, so that runs of different cases alternate.
  const setups = new Map<number, () => Promise<Via & { done: () => Promise<void> }>>();
  const nothing = async () => undefined;
  if (cases.has(1)) setups.set(1, async () => ({ done: nothing }));
  if (cases.has(2)) {
    cacher = await startAptCacher(join(work, "acng"), freeLowPort());
    await aptRun("2. apt-cacher-ng, warming", sources, { proxy: cacher.url }, packages);
    setups.set(2, async () => ({ proxy: cacher!.url, done: nothing }));
  }
  if (cases.has(3)) {
    const lonely = await startLonelyNode();
    const warm = await startProxy("proxy-case3-warm", sourcesFile, lonely.port);
    await aptRun("3. apt-p2p, warming", sources, { proxy: warm.url, daemon: warm }, packages);
    setups.set(3, async () => ({ proxy: warm.url, daemon: warm, done: nothing }));
  }
  if (cases.has(4)) {
    const { boot, seeders } = await startPeers(work, packages, peerRate > 0 && !shaping.tc ? flags["peer-rate"]! : null);
    if (peerRate > 0 && shaping.tc) await shaper.apply([mirrorRule(), ...seeders.map((s) => ({ port: s.port, bytesPerSecond: peerRate }))]);
    setups.set(4, async () => {
      const proxy = await startProxy(`proxy-case4-run${run}`, sourcesFile, boot.port);
      await waitForJoin(proxy, 1 + peerCount);
      return { proxy: proxy.url, daemon: proxy, peers: seeders, done: () => untrack(proxy) };
    });
  }
  if (cases.has(5)) {
    setups.set(5, async () => {
      const lonely = await startLonelyNode();
      const proxy = await startProxy(`proxy-case5-run${run}`, sourcesFile, lonely.port);
      await waitForJoin(proxy, 1);
      return {
        proxy: proxy.url,
        daemon: proxy,
        done: async () => {
          await untrack(proxy);
          await untrack(lonely);
        },
      };
    });
  }

  const seconds = new Map<number, number[]>();
  const fromMirror = new Map<number, number[]>();
  for (run = 1; run <= runs; run++) {
    for (const [c, setup] of setups) {
      const via = await setup();
      await settleWrites(log);
      try {
        const outcome = await aptRun(`${c}. ${CASE_NAMES[c]}, run ${run}`, sources, via, packages);
        seconds.set(c, [...(seconds.get(c) ?? []), outcome.seconds]);
        fromMirror.set(c, [...(fromMirror.get(c) ?? []), outcome.mirrorBytes]);
      } finally {
        await via.done();
      }
    }
  }
  printTable(seconds, fromMirror, totalBytes);
}

function printTable(seconds: Map<number, number[]>, fromMirror: Map<number, number[]>, totalBytes: number): void {
  const medians = new Map([...seconds].map(([c, s]) => [c, median(s)]));
  const goals: Record<number, { of: [number, number]; goal: string; met: (v: number) => boolean }> = {
    3: { of: [3, 2], goal: "<= 1.00", met: (v) => v <= 1.0 },
    4: { of: [1, 4], goal: ">= 3.00", met: (v) => v >= 3.0 },
    5: { of: [5, 1], goal: "<= 1.10", met: (v) => v <= 1.1 },
  };
  const header = ["case", "median s", "runs (s)", "from mirror", "ratio", "value", "goal", "met"];
  const body = [...medians].map(([c, m]) => {
    const g = goals[c];
    const [a, b] = g?.of ?? [0, 0];
    const value = g !== undefined && medians.has(a) && medians.has(b) ? medians.get(a)! / medians.get(b)! : null;
    return [
      `${c}. ${CASE_NAMES[c]}`,
      fmt(m),
      seconds.get(c)!.map(fmt).join(" "),
      `${((100 * median(fromMirror.get(c)!)) / totalBytes).toFixed(0)}%`,
      value === null ? "" : `${a} / ${b}`,
      value === null ? "" : value.toFixed(2),
      value === null ? "" : g!.goal,
      value === null ? "" : g!.met(value) ? "yes" : "NO",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log(
    `\nAPT benchmark: apt-get install --download-only of ${packageCount} packages (${mb(totalBytes)}); mirror at ${flags["mirror-rate"]}, ${shapingLabel}` +
      `${seconds.has(4) ? `, ${peerCount} peers ${peerRate > 0 ? `at ${flags["peer-rate"]}` : "unshaped"}` : ""}; median of ${runs} run(s); ` +
      `"from mirror": bytes the mirror sent during the install, as a share of the packages' bytes`,
  );
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
}

await runBenchmark("APT benchmark", main, {
  watchdog,
  cleanup,
  onFailure: async () => {
    for (const d of daemons.keys()) if (d.log().includes("rror")) console.error(`--- log of the daemon on port ${d.port} (last 1500 chars) ---\n${d.log().slice(-1500)}`);
    if (cacher !== undefined) console.error(`--- apt-cacher-ng (last 1500 chars) ---\n${(await cacher.log().catch(String)).slice(-1500)}`);
  },
});
