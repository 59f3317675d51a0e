/**
 * Footprint benchmark: memory, CPU and DHT traffic of an idle `apt-p2p serve` that holds 10,000 cached
 * files and sits in a DHT of 1,000 other nodes, everything on 127.0.0.1.
 *
 * Usage: bun scripts/bench/footprint.ts [--files 10000] [--nodes 1000] [--settle 30] [--window 120] [--runs 1]
 *
 * Method.
 *  - The cache: --files files of 1 to 8 kB of random bytes, each written to the cache's tmp/ and taken
 *    in with ContentCache.adopt() (src/store/cache.ts), as a download would leave them.
 *  - The DHT: --nodes DhtNodes (src/dht/node.ts) in this process on real UDP sockets on 127.0.0.1, the
 *    first alone, the others joining through it 25 at a time and then once more (as
 *    scripts/bench/dht-lookup.ts does), started once and shared by the --runs runs (each run has a
 *    new daemon with a new cache and node id), with their periodic maintenance on and no per-address rate limit
 *    (they all share 127.0.0.1). Their sockets count every datagram exchanged with the daemon, decoded
 *    (src/dht/bencode.ts) to tell queries by method and the answers to them, in both directions.
 *  - The daemon: src/cli.ts compiled with `bun build --compile` (what the Debian package ships), run as
 *    `serve --cache-dir <the cache> --bootstrap <first node>`. The benchmark waits until HEAD
 *    /~/<sha256> answers 200 for every cached file (all hashed), then --settle seconds more, then
 *    measures for --window seconds without sending it anything but a stats request at each end:
 *    RSS (VmRSS of /proc/<pid>/status, sampled every RSS_SAMPLE_MS; the peak is reported), CPU
 *    (utime + stime of /proc/<pid>/stat over the window, in % of one core), and DHT bytes per second:
 *    the daemon's own counters (GET /api/dht/stats: bytesIn + bytesOut), and from the nodes' side, split
 *    into maintenance (ping and find_node, whoever asked) and the rest (the seeder's announces:
 *    get_peers, announce_peer, BEP 44 get/put). Goals: RSS < 100 MB, maintenance < 300 B/s.
 *  - Note: the routing table is BEP 5's (K = 8, only the bucket holding our own id splits), so in a
 *    network of 1,000 nodes it holds about 8 × log2(1000 / 8) + 8 ≈ 70 contacts, not 1,000; the size
 *    it reached is reported. The seeder announces at most 64 files per 30 s, so with 10,000 files it is
 *    still announcing during the window: that traffic is reported apart from maintenance.
 *  Everything (daemon, sockets, temp dir) is released at the end, also on failure or Ctrl-C; a
 *  watchdog ends the run after 15 minutes.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readStrict, type BValue } from "../../src/dht/bencode.ts";
import type { Endpoint } from "../../src/dht/id.ts";
import { DhtNode } from "../../src/dht/node.ts";
import { bindUdp, type DatagramSocket } from "../../src/dht/socket.ts";
import { ContentCache } from "../../src/store/cache.ts";
import { childEnv, compileCli, REPO_ROOT } from "./lib/fixture.ts";
import { printResult, type ResultRow } from "./lib/report.ts";
import { seededRandom } from "./lib/sizes.ts";
import { cleanUpOnExit, runBenchmark } from "./lib/exit.ts";
import type { DhtStats } from "../../src/dht/node.ts";

const FILE_SEED = 20_240_610;
const FILE_MIN_BYTES = 1_000;
const FILE_MAX_BYTES = 8_000;
/** Nodes joining at once, as in scripts/bench/dht-lookup.ts. */
const BATCH = 25;
const UNLIMITED = { perSecond: 1e9, burst: 1e9 };
const RSS_SAMPLE_MS = 2_000;
const SERVE_START_TIMEOUT_MS = 30_000;
const SERVE_STOP_TIMEOUT_MS = 5_000;
const SEED_TIMEOUT_MS = 300_000;
const WATCHDOG_MS = 15 * 60_000;
const MB = 1_000_000;
const MAINTENANCE_METHODS = new Set(["ping", "find_node"]);

const { values: flags } = parseArgs({
  options: {
    files: { type: "string", default: "10000" },
    nodes: { type: "string", default: "1000" },
    settle: { type: "string", default: "30" },
    window: { type: "string", default: "120" },
    runs: { type: "string", default: "1" },
  },
});
const fileCount = positiveInt("files");
const nodeCount = positiveInt("nodes");
const settleS = positiveInt("settle");
const windowS = positiveInt("window");
const runs = positiveInt("runs");

function positiveInt(name: keyof typeof flags): number {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive whole number, not '${flags[name]}'`);
  return n;
}

const log = (line: string) => process.stderr.write(`[footprint] ${line}\n`);

// ---- resources, released by cleanup() whatever happens ----
let work: string | undefined;
let buildDir: string | undefined;
const nodes: DhtNode[] = [];
let serve: ReturnType<typeof Bun.spawn> | undefined;
let serveLog = "";
let cleaned = false;

async function stopServe(): Promise<void> {
  const proc = serve;
  serve = undefined;
  if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(SERVE_STOP_TIMEOUT_MS).then(() => false)]);
  if (!exited) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  await stopServe().catch((err: unknown) => log(`stopping the daemon failed: ${String(err)}`));
  for (const n of nodes) n.close();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
  if (buildDir !== undefined) await rm(buildDir, { recursive: true, force: true });
}

const watchdog = cleanUpOnExit(cleanup, { log, watchdogMs: WATCHDOG_MS });

// ---- the cache ----
async function fillCache(dir: string): Promise<string[]> {
  const random = seededRandom(FILE_SEED);
  const cache = await ContentCache.open(dir);
  const shas: string[] = [];
  try {
    for (let i = 0; i < fileCount; i++) {
      const size = FILE_MIN_BYTES + Math.floor(random() * (FILE_MAX_BYTES - FILE_MIN_BYTES));
      const bytes = new Uint8Array(size);
      for (let j = 0; j < size; j++) bytes[j] = Math.floor(random() * 256);
      const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
      const temp = cache.tempPath(`file-${i}.deb`);
      await Bun.write(temp, bytes);
      await cache.adopt(temp, { sha256, size, name: `file-${i}_1.0_amd64.deb` }, Date.now());
      shas.push(sha256);
    }
  } finally {
    cache.close();
  }
  return shas;
}

// ---- DHT traffic with the daemon, as the other nodes see it ----
interface Traffic {
  /** Bytes by "<who asked>:<method>", e.g. "daemon:get_peers" (queries and their answers). */
  bytes: Map<string, number>;
}

/** Transaction ids of queries in flight with the daemon: "<node port>:<tid hex>" → "<who asked>:<method>". */
const inFlight = new Map<string, string>();

function field(message: Map<string, BValue>, key: string): string | undefined {
  const v = message.get(key);
  return v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : undefined;
}

function account(traffic: Traffic, data: Uint8Array, nodePort: number, fromDaemon: boolean): void {
  let message: BValue;
  try {
    message = readStrict(data, 16);
  } catch {
    traffic.bytes.set("undecodable", (traffic.bytes.get("undecodable") ?? 0) + data.length);
    return;
  }
  if (!(message instanceof Map)) return;
  const tid = `${nodePort}:${Buffer.from((message.get("t") as Uint8Array | undefined) ?? new Uint8Array()).toString("hex")}`;
  const kind = field(message, "y");
  let label: string;
  if (kind === "q") {
    label = `${fromDaemon ? "daemon" : "nodes"}:${field(message, "q") ?? "?"}`;
    inFlight.set(tid, label);
  } else {
    label = inFlight.get(tid) ?? `${fromDaemon ? "nodes" : "daemon"}:unmatched`;
    inFlight.delete(tid);
  }
  traffic.bytes.set(label, (traffic.bytes.get(label) ?? 0) + data.length);
}

/** A node's socket that accounts every datagram exchanged with the daemon's port. */
function watched(inner: DatagramSocket, daemonPort: () => number, traffic: Traffic): DatagramSocket {
  const port = inner.local.port;
  return {
    local: inner.local,
    send(data, to) {
      if (to.port === daemonPort()) account(traffic, data, port, false);
      return inner.send(data, to);
    },
    onDatagram(handler) {
      inner.onDatagram((data, from) => {
        if (from.port === daemonPort()) account(traffic, data, port, true);
        handler(data, from);
      });
    },
    close: () => inner.close(),
  };
}

async function inBatches<T>(items: T[], size: number, work: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}

async function startNetwork(daemonPort: () => number, traffic: Traffic): Promise<Endpoint> {
  for (let i = 0; i < nodeCount; i++) {
    const socket = watched(await bindUdp("127.0.0.1", 0), daemonPort, traffic);
    const bootstrap: Endpoint[] = i === 0 ? [] : [nodes[0]!.local];
    nodes.push(new DhtNode({ socket, bootstrap, rateLimit: UNLIMITED }));
  }
  await nodes[0]!.start();
  await inBatches(nodes.slice(1), BATCH, (n) => n.start());
  await inBatches(nodes, BATCH, (n) => n.join());
  return nodes[0]!.local;
}

// ---- the daemon ----
async function startServe(bin: string, args: string[]): Promise<{ port: number; pid: number }> {
  const proc = Bun.spawn([bin, "serve", "--bind", "127.0.0.1", "--port", "0", "--no-seed-apt-archives", ...args], {
    cwd: REPO_ROOT,
    env: childEnv(),
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  serve = proc;
  serveLog = "";
  const decoder = new TextDecoder();
  void (async () => {
    for await (const chunk of proc.stderr) serveLog += decoder.decode(chunk, { stream: true });
  })().catch((err: unknown) => {
    serveLog += `\n[bench: reading the log failed: ${String(err)}]\n`;
  });
  const until = Date.now() + SERVE_START_TIMEOUT_MS;
  while (Date.now() < until) {
    const match = /listening on [\d.]+:(\d+) /.exec(serveLog);
    if (match) return { port: Number(match[1]), pid: proc.pid };
    if (proc.exitCode !== null) throw new Error(`serve exited (code ${proc.exitCode}) before listening:\n${serveLog}`);
    await Bun.sleep(100);
  }
  throw new Error(`serve did not start within ${SERVE_START_TIMEOUT_MS / 1000} s:\n${serveLog}`);
}

async function waitUntilSeeded(base: string, shas: string[]): Promise<void> {
  let missing = shas;
  const until = Date.now() + SEED_TIMEOUT_MS;
  let lastReport = 0;
  while (missing.length > 0) {
    if (Date.now() > until) throw new Error(`${missing.length} cached file(s) still not served after ${SEED_TIMEOUT_MS / 1000} s`);
    // A sample first; the whole list only once the sample is served.
    const probe = missing.length > 200 ? missing.filter((_, i) => i % Math.ceil(missing.length / 100) === 0) : missing;
    const ok = new Set<string>();
    await inBatches(probe, 20, async (sha) => {
      const r = await fetch(`${base}/~/${sha}`, { method: "HEAD", signal: AbortSignal.timeout(5_000) }).catch(() => null);
      if (r?.status === 200) ok.add(sha);
    });
    if (ok.size === probe.length && probe !== missing) {
      const rest = new Set<string>();
      await inBatches(missing, 20, async (sha) => {
        const r = await fetch(`${base}/~/${sha}`, { method: "HEAD", signal: AbortSignal.timeout(5_000) }).catch(() => null);
        if (r?.status !== 200) rest.add(sha);
      });
      missing = missing.filter((s) => rest.has(s));
    } else {
      missing = missing.filter((s) => !ok.has(s));
    }
    if (Date.now() - lastReport > 10_000) {
      lastReport = Date.now();
      log(`waiting for the seeder: ${missing.length} of ${shas.length} files not served yet`);
    }
    if (missing.length > 0) await Bun.sleep(1_000);
  }
}

async function dhtStats(base: string): Promise<DhtStats> {
  const r = await fetch(`${base}/api/dht/stats`, { signal: AbortSignal.timeout(5_000) });
  if (!r.ok) throw new Error(`GET /api/dht/stats: HTTP ${r.status}`);
  return (await r.json()) as DhtStats;
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/** utime + stime of a process, in clock ticks. */
async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of proc(5), counted from field 3
}

async function clockTicksPerSecond(): Promise<number> {
  const out = await new Response(Bun.spawn(["getconf", "CLK_TCK"], { stdout: "pipe" }).stdout).text();
  const n = Number(out.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
}

function sumWhere(bytes: Map<string, number>, keep: (label: string) => boolean): number {
  let sum = 0;
  for (const [label, n] of bytes) if (keep(label)) sum += n;
  return sum;
}

interface RunResult {
  peakRss: number;
  endRss: number;
  cpuPercent: number;
  totalBps: number;
  maintenanceBps: number;
  maintenanceOutBps: number;
  announceBps: number;
  tableSize: number;
}

/** The other nodes, shared by all runs; each run's daemon is new, so only its port is followed. */
interface Network {
  first: Endpoint;
  traffic: Traffic;
  setDaemonPort(port: number): void;
}

async function oneRun(bin: string, run: number, network: Network): Promise<RunResult> {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-bench-footprint-"));
  const cacheDir = join(work, "cache");
  let t0 = performance.now();
  const shas = await fillCache(cacheDir);
  log(`run ${run}: ${fileCount} files adopted into the cache in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const { first, traffic } = network;
  const started = await startServe(bin, ["--state-dir", join(work, "state"), "--cache-dir", cacheDir, "--bootstrap", `${first.address}:${first.port}`]);
  network.setDaemonPort(started.port);
  const base = `http://127.0.0.1:${started.port}`;
  t0 = performance.now();
  await waitUntilSeeded(base, shas);
  log(`run ${run}: the daemon (pid ${started.pid}) serves all ${fileCount} files after ${((performance.now() - t0) / 1000).toFixed(1)} s; settling ${settleS} s`);
  await Bun.sleep(settleS * 1000);

  const ticksPerSecond = await clockTicksPerSecond();
  const before = await dhtStats(base);
  const cpuBefore = await cpuTicks(started.pid);
  const bytesBefore = new Map(traffic.bytes);
  const windowStart = performance.now();
  let peakRss = 0;
  let endRss = 0;
  while (performance.now() - windowStart < windowS * 1000) {
    endRss = await rssBytes(started.pid);
    peakRss = Math.max(peakRss, endRss);
    await Bun.sleep(Math.min(RSS_SAMPLE_MS, Math.max(0, windowS * 1000 - (performance.now() - windowStart))));
  }
  const seconds = (performance.now() - windowStart) / 1000;
  const cpuAfter = await cpuTicks(started.pid);
  const after = await dhtStats(base);
  endRss = await rssBytes(started.pid);
  peakRss = Math.max(peakRss, endRss);

  const delta = new Map<string, number>();
  for (const [label, n] of traffic.bytes) delta.set(label, n - (bytesBefore.get(label) ?? 0));
  const maintenance = sumWhere(delta, (l) => MAINTENANCE_METHODS.has(l.split(":")[1]!));
  const result: RunResult = {
    peakRss,
    endRss,
    cpuPercent: (100 * (cpuAfter - cpuBefore)) / ticksPerSecond / seconds,
    totalBps: (after.bytesIn + after.bytesOut - before.bytesIn - before.bytesOut) / seconds,
    maintenanceBps: maintenance / seconds,
    maintenanceOutBps: sumWhere(delta, (l) => l.startsWith("daemon:") && MAINTENANCE_METHODS.has(l.split(":")[1]!)) / seconds,
    announceBps: sumWhere(delta, (l) => l.startsWith("daemon:") && !MAINTENANCE_METHODS.has(l.split(":")[1]!)) / seconds,
    tableSize: after.tableSize,
  };
  const byLabel = [...delta].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).map(([l, n]) => `${l} ${(n / seconds).toFixed(0)}`);
  log(`run ${run}: DHT B/s by who asked and method (queries and answers): ${byLabel.join(", ") || "none"}`);
  const diff = (a: Record<string, number>, b: Record<string, number>) =>
    Object.entries(a).map(([m, n]) => `${m} ${n - (b[m] ?? 0)}`).filter((s) => !s.endsWith(" 0")).join(", ") || "none";
  log(`run ${run}: daemon's queries out in the window: ${diff(after.queriesOut, before.queriesOut)}; in: ${diff(after.queriesIn, before.queriesIn)}; dropped by its rate limit: ${after.rateLimited - before.rateLimited}`);
  log(
    `run ${run}: RSS peak ${(peakRss / MB).toFixed(1)} MB, CPU ${result.cpuPercent.toFixed(2)}% of a core, DHT ${result.totalBps.toFixed(0)} B/s ` +
      `(maintenance ${result.maintenanceBps.toFixed(0)}, announces ${result.announceBps.toFixed(0)}), table ${after.tableSize} contacts`,
  );

  await stopServe();
  inFlight.clear();
  await rm(work, { recursive: true, force: true });
  work = undefined;
  return result;
}

async function main(): Promise<void> {
  buildDir = await mkdtemp(join(tmpdir(), "apt-p2p-bench-footprint-bin-"));
  log("compiling src/cli.ts with bun build --compile");
  const bin = await compileCli(join(buildDir, "apt-p2p"));
  const traffic: Traffic = { bytes: new Map() };
  let daemonPort = -1;
  const t0 = performance.now();
  const first = await startNetwork(() => daemonPort, traffic);
  log(`${nodeCount} DHT nodes up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const network: Network = { first, traffic, setDaemonPort: (port) => (daemonPort = port) };
  const results: RunResult[] = [];
  for (let r = 1; r <= runs; r++) results.push(await oneRun(bin, r, network));
  const of = (pick: (x: RunResult) => number) => results.map(pick);
  const rows: ResultRow[] = [
    { name: "RSS, peak over the window", unit: "MB", values: of((x) => x.peakRss / MB), goal: { of: "value", op: "<", target: 100 } },
    { name: "RSS at the end", unit: "MB", values: of((x) => x.endRss / MB) },
    { name: "CPU", unit: "% of a core", values: of((x) => x.cpuPercent) },
    { name: "DHT maintenance (ping, find_node), sent + received, in the window (buckets refresh every 15 min)", unit: "B/s", values: of((x) => x.maintenanceBps), goal: { of: "value", op: "<", target: 300 } },
    { name: "DHT maintenance, sent", unit: "B/s", values: of((x) => x.maintenanceOutBps) },
    { name: `DHT announces of the ${fileCount} files, sent + received`, unit: "B/s", values: of((x) => x.announceBps) },
    { name: "DHT traffic in all (daemon's counters)", unit: "B/s", values: of((x) => x.totalBps) },
    { name: "routing table size", unit: "contacts", values: of((x) => x.tableSize) },
  ];
  printResult({
    benchmark: "footprint",
    setup:
      `compiled apt-p2p serve, idle, holding ${fileCount} cached files (1-8 kB) in a DHT of ${nodeCount} in-process nodes; ` +
      `measured over ${windowS} s after all files were hashed and ${settleS} s more`,
    rows,
  });
}

await runBenchmark("footprint benchmark", main, {
  watchdog,
  cleanup,
  onFailure: () => console.error(`--- log of the daemon (last 1500 chars) ---\n${serveLog.slice(-1500)}`),
});
