/**
 * Peer-serving benchmark: `wrk` against the peer server of a real `apt-p2p serve` and against nginx
 * serving the same files, side by side, everything on 127.0.0.1.
 *
 * Usage: bun scripts/bench/peer-serving.ts [--runs 3] [--duration 10] [--connections 8] [--big-mb 64] [--small 200]
 *
 * Method.
 *  - Files: one --big-mb MiB file of random bytes, and --small files of random bytes between 40 and
 *    80 kB (median 60 kB, as Debian's .debs; sizes from a seeded mulberry32). `apt-p2p serve` seeds them
 *    with --seed-dir (its DHT alone: no bootstrap); the benchmark waits until HEAD /~/<sha256> answers
 *    200 for every file, i.e. until they are hashed. nginx (Debian's nginx-light) serves hard links to
 *    the same files under the same paths (`/~/<sha256>`) from a config of our own in the temp dir: one
 *    worker process (the daemon is one process too), sendfile on, tcp_nopush, keep-alive, no access log.
 *  - Two loads, each a Lua script for wrk written to the temp dir: "range" asks for random 512 KiB
 *    pieces of the big file (Range: bytes=a-b at piece boundaries, what peers ask of each other);
 *    "whole" asks for the small files whole, in turn. wrk runs one thread with --connections keep-alive
 *    connections (default 8: the daemon's default cap of concurrent uploads per address; past it the
 *    peer server answers 503 by design, and all of wrk's connections come from 127.0.0.1).
 *  - Each load first warms both servers up for WARMUP_S, then runs --runs times for --duration seconds
 *    each, apt-p2p then nginx in every run; the ratio apt-p2p/nginx is taken in each run, and the
 *    median of those ratios is reported. Goal: at least 0.8 of nginx in requests/s (and so in MB/s).
 *  - Every answer must be 2xx (wrk counts the others as errors) and carry the expected body size on
 *    average, or the benchmark fails. The daemon, nginx and the temp dir are removed at the end, also on
 *    failure or Ctrl-C; a watchdog ends the whole run after 10 minutes.
 */
import { link, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { childEnv, startDaemon, unusedPort, type Daemon } from "./lib/fixture.ts";
import { compared, median, printResult, type ResultRow } from "./lib/report.ts";
import { seededRandom } from "./lib/sizes.ts";
import { cleanUpOnExit, runBenchmark } from "./lib/exit.ts";

const PIECE_BYTES = 512 * 1024;
const MIB = 1024 * 1024;
const MB = 1_000_000;
const SMALL_MIN_BYTES = 40_000;
const SMALL_MAX_BYTES = 80_000;
const FILE_SEED = 20_240_607;
/** Each server gets this much load of each kind before the measured runs (JIT, page cache, sockets). */
const WARMUP_S = 3;
const HASH_TIMEOUT_MS = 120_000;
const NGINX_START_TIMEOUT_MS = 10_000;
const WATCHDOG_MS = 10 * 60_000;
/** The mean body size of a load may be this far from the expected one (headers are counted by wrk too). */
const SIZE_TOLERANCE = 0.03;

const { values: flags } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "8" },
    "big-mb": { type: "string", default: "64" },
    small: { type: "string", default: "200" },
  },
});
const runs = positiveInt("runs");
const durationS = positiveInt("duration");
const connections = positiveInt("connections");
const bigBytes = positiveInt("big-mb") * MIB;
const smallCount = positiveInt("small");

function positiveInt(name: keyof typeof flags): number {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive whole number, not '${flags[name]}'`);
  return n;
}

const log = (line: string) => process.stderr.write(`[peer-serving] ${line}\n`);

// ---- resources, released by cleanup() whatever happens ----
let work: string | undefined;
let daemon: Daemon | undefined;
let nginx: ReturnType<typeof Bun.spawn> | undefined;
let cleaned = false;

async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  if (nginx !== undefined && nginx.exitCode === null && nginx.signalCode === null) {
    nginx.kill("SIGQUIT"); // graceful stop: the master ends its worker
    const exited = await Promise.race([nginx.exited.then(() => true), Bun.sleep(5_000).then(() => false)]);
    if (!exited) nginx.kill("SIGKILL");
  }
  await daemon?.stop().catch((err: unknown) => log(`stopping the daemon failed: ${String(err)}`));
  if (work !== undefined) await rm(work, { recursive: true, force: true });
}

const watchdog = cleanUpOnExit(cleanup, { log, watchdogMs: WATCHDOG_MS });

// ---- the files ----
interface ServedFile {
  sha256: string;
  size: number;
  path: string;
}

/** Writes `size` bytes from the seeded source to `path` and returns its SHA-256. */
async function writeRandomFile(path: string, size: number, random: () => number): Promise<string> {
  const bytes = new Uint8Array(size);
  const words = new Uint32Array(bytes.buffer, 0, Math.floor(size / 4));
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(random() * 2 ** 32);
  for (let i = words.length * 4; i < size; i++) bytes[i] = Math.floor(random() * 256);
  await Bun.write(path, bytes);
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

async function makeFiles(seedDir: string, docRoot: string): Promise<{ big: ServedFile; small: ServedFile[] }> {
  const random = seededRandom(FILE_SEED);
  await mkdir(seedDir, { recursive: true });
  await mkdir(join(docRoot, "~"), { recursive: true });
  const make = async (name: string, size: number): Promise<ServedFile> => {
    const path = join(seedDir, name);
    const sha256 = await writeRandomFile(path, size, random);
    await link(path, join(docRoot, "~", sha256));
    return { sha256, size, path };
  };
  const big = await make("big.deb", bigBytes);
  const small: ServedFile[] = [];
  for (let i = 0; i < smallCount; i++) {
    const size = SMALL_MIN_BYTES + Math.floor(random() * (SMALL_MAX_BYTES - SMALL_MIN_BYTES));
    small.push(await make(`small-${String(i).padStart(4, "0")}.deb`, size));
  }
  return { big, small };
}

/** Polls HEAD /~/<sha256> until every file answers 200, i.e. the daemon has hashed them all. */
async function waitUntilServed(base: string, files: ServedFile[]): Promise<void> {
  let missing = files;
  const until = Date.now() + HASH_TIMEOUT_MS;
  while (missing.length > 0) {
    if (Date.now() > until) throw new Error(`${missing.length} file(s) still not served after ${HASH_TIMEOUT_MS / 1000} s`);
    const answers = await Promise.all(
      missing.map((f) => fetch(`${base}/~/${f.sha256}`, { method: "HEAD", signal: AbortSignal.timeout(5_000) }).then((r) => r.status, () => 0)),
    );
    missing = missing.filter((_, i) => answers[i] !== 200);
    if (missing.length > 0) await Bun.sleep(200);
  }
}

// ---- nginx ----
async function startNginx(dir: string, docRoot: string): Promise<string> {
  const port = unusedPort();
  const conf = join(dir, "nginx.conf");
  const temp = join(dir, "nginx-temp");
  await mkdir(temp, { recursive: true });
  // As root, nginx's workers would switch to an unprivileged user that cannot read the 0700 temp dir.
  const user = process.getuid?.() === 0 ? "user root;" : "";
  await writeFile(
    conf,
    `${user}
worker_processes 1;
daemon off;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "nginx-error.log")} warn;
events { worker_connections 512; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65s;
  keepalive_requests 10000000;
  default_type application/octet-stream;
  client_body_temp_path ${temp}/body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${docRoot};
  }
}
`,
  );
  nginx = Bun.spawn(["nginx", "-e", join(dir, "nginx-error.log"), "-p", dir, "-c", conf], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + NGINX_START_TIMEOUT_MS;
  while (Date.now() < until) {
    if (nginx.exitCode !== null) throw new Error(`nginx exited (code ${nginx.exitCode}): ${await new Response(nginx.stderr as ReadableStream).text()}`);
    const up = await fetch(`${url}/`, { method: "HEAD", signal: AbortSignal.timeout(1_000) }).then(() => true, () => false);
    if (up) return url;
    await Bun.sleep(100);
  }
  throw new Error(`nginx did not answer on ${url} within ${NGINX_START_TIMEOUT_MS / 1000} s`);
}

// ---- wrk ----
type Load = "range" | "whole";

/** The Lua script of one load: which request to send next, and a JSON summary at the end. */
function luaScript(load: Load, big: ServedFile, small: ServedFile[]): string {
  const paths = load === "range" ? [`/~/${big.sha256}`] : small.map((f) => `/~/${f.sha256}`);
  const pieces = Math.floor(big.size / PIECE_BYTES);
  return `-- written by scripts/bench/peer-serving.ts
local paths = { ${paths.map((p) => `"${p}"`).join(", ")} }
local load = "${load}"
local piece = ${PIECE_BYTES}
local pieces = ${pieces}
local next_index = 0
math.randomseed(${FILE_SEED})

request = function()
  if load == "range" then
    local first = math.random(0, pieces - 1) * piece
    return wrk.format("GET", paths[1], { ["Range"] = "bytes=" .. first .. "-" .. (first + piece - 1) })
  end
  next_index = next_index % #paths + 1
  return wrk.format("GET", paths[next_index])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"bytes":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;
}

interface WrkRun {
  requestsPerSecond: number;
  megabytesPerSecond: number;
  bytesPerRequest: number;
  p50Ms: number;
  p99Ms: number;
}

async function wrk(url: string, script: string, seconds: number): Promise<WrkRun> {
  const cmd = ["wrk", "-t", "1", "-c", String(connections), "-d", `${seconds}s`, "--timeout", "10s", "-s", script, url];
  const proc = Bun.spawn(cmd, { env: childEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), (seconds + 30) * 1000);
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const code = await proc.exited;
  clearTimeout(timer);
  const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (code !== 0 || line === undefined) throw new Error(`wrk ${url} failed (code ${code}):\n${out}\n${err}`);
  const s = JSON.parse(line.slice("WRK_JSON ".length)) as {
    requests: number; bytes: number; durationUs: number; connect: number; read: number; write: number; status: number; timeout: number; p50Us: number; p99Us: number;
  };
  const errors = s.connect + s.read + s.write + s.status + s.timeout;
  if (errors > 0) throw new Error(`wrk ${url}: ${errors} errors (connect ${s.connect}, read ${s.read}, write ${s.write}, non-2xx ${s.status}, timeout ${s.timeout})`);
  const durationS = s.durationUs / 1e6;
  return {
    requestsPerSecond: s.requests / durationS,
    megabytesPerSecond: s.bytes / durationS / MB,
    bytesPerRequest: s.bytes / Math.max(1, s.requests),
    p50Ms: s.p50Us / 1000,
    p99Ms: s.p99Us / 1000,
  };
}

function checkBodySize(who: string, load: Load, run: WrkRun, expected: number): void {
  if (Math.abs(run.bytesPerRequest - expected) > expected * SIZE_TOLERANCE) {
    throw new Error(`${who}, ${load}: ${run.bytesPerRequest.toFixed(0)} bytes per answer, expected about ${expected.toFixed(0)}`);
  }
}

// ---- main ----
async function main(): Promise<void> {
  const missing = ["wrk", "nginx"].filter((t) => Bun.which(t) === null);
  if (missing.length > 0) throw new Error(`missing ${missing.join(", ")}: apt-get install -y ${missing.map((t) => (t === "nginx" ? "nginx-light" : t)).join(" ")}`);
  work = await mkdtemp(join(tmpdir(), "apt-p2p-bench-peer-"));
  const seedDir = join(work, "seed");
  const docRoot = join(work, "www");
  const { big, small } = await makeFiles(seedDir, docRoot);
  const smallMean = small.reduce((a, f) => a + f.size, 0) / small.length;
  log(`files: one of ${(big.size / MIB).toFixed(0)} MiB, ${small.length} of ${(smallMean / 1000).toFixed(0)} kB on average`);

  daemon = await startDaemon(["--state-dir", join(work, "state"), "--cache-dir", join(work, "cache"), "--seed-dir", seedDir]);
  const hashStart = performance.now();
  await waitUntilServed(daemon.url, [big, ...small]);
  log(`apt-p2p serve on port ${daemon.port} serves all files (hashed in ${((performance.now() - hashStart) / 1000).toFixed(1)} s)`);
  const nginxUrl = await startNginx(work, docRoot);
  log(`nginx on ${nginxUrl}`);

  const servers = [
    { name: "apt-p2p", url: daemon.url },
    { name: "nginx", url: nginxUrl },
  ];
  const rows: ResultRow[] = [];
  for (const load of ["range", "whole"] as const) {
    const script = join(work, `${load}.lua`);
    await writeFile(script, luaScript(load, big, small));
    const expected = load === "range" ? PIECE_BYTES : smallMean;
    for (const s of servers) await wrk(s.url, script, WARMUP_S);
    const ours: WrkRun[] = [];
    const theirs: WrkRun[] = [];
    for (let r = 0; r < runs; r++) {
      const a = await wrk(daemon.url, script, durationS);
      checkBodySize("apt-p2p", load, a, expected);
      ours.push(a);
      const b = await wrk(nginxUrl, script, durationS);
      checkBodySize("nginx", load, b, expected);
      theirs.push(b);
      log(
        `${load} run ${r + 1}: apt-p2p ${a.requestsPerSecond.toFixed(0)} req/s ${a.megabytesPerSecond.toFixed(0)} MB/s (p99 ${a.p99Ms.toFixed(1)} ms); ` +
          `nginx ${b.requestsPerSecond.toFixed(0)} req/s ${b.megabytesPerSecond.toFixed(0)} MB/s (p99 ${b.p99Ms.toFixed(1)} ms)`,
      );
    }
    const label = load === "range" ? "512 KiB ranges" : `whole ${(smallMean / 1000).toFixed(0)} kB files`;
    const goal = { of: "ratio" as const, op: ">=" as const, target: 0.8 };
    rows.push(compared(`${label}, requests/s`, "req/s", ours.map((x) => x.requestsPerSecond), "nginx", theirs.map((x) => x.requestsPerSecond), goal));
    rows.push(compared(`${label}, throughput`, "MB/s", ours.map((x) => x.megabytesPerSecond), "nginx", theirs.map((x) => x.megabytesPerSecond), goal));
    rows.push(compared(`${label}, latency p99`, "ms", ours.map((x) => x.p99Ms), "nginx", theirs.map((x) => x.p99Ms)));
  }
  log(`median ratios: ${rows.filter((r) => r.ratios !== undefined).map((r) => `${r.name} ${median(r.ratios!).toFixed(2)}`).join("; ")}`);
  printResult({
    benchmark: "peer-serving",
    setup:
      `wrk (1 thread, ${connections} connections, ${durationS} s × ${runs} runs) on apt-p2p serve's GET /~/<sha256> vs nginx-light (1 worker, sendfile); ` +
      `random 512 KiB ranges of a ${(big.size / MIB).toFixed(0)} MiB file, and ${small.length} whole files of 40-80 kB`,
    rows,
  });
}

await runBenchmark("peer-serving benchmark", main, {
  watchdog,
  cleanup,
  onFailure: () => {
    if (daemon !== undefined) console.error(`--- log of the daemon (last 1500 chars) ---\n${daemon.log().slice(-1500)}`);
  },
});
