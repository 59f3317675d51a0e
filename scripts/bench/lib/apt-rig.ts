/**
 * The APT side of the APT benchmark, all on 127.0.0.1: the real `apt-get` isolated in a directory of
 * its own (its own APT_CONFIG, sources, lists, archives and an empty dpkg status, so nothing of the
 * machine's APT is read or touched), apt-cacher-ng as the reference caching proxy (its own config,
 * cache and log directories, on a loopback port), an HTTP front that puts the mirror on a port
 * apt-cacher-ng can reach and answers pipelined requests (and can pace it when tc cannot), the package sizes of the benchmark, and the check that the .debs APT kept
 * are the repository's.
 *
 * Every child process started here is tracked, so that `killTracked()` can end the ones still running
 * when the benchmark is interrupted.
 */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { listen } from "../../../src/http/server.ts";
import { throttleStream, TokenBucket } from "../../../src/transfer/throttle.ts";
import { sha256File } from "../../../test/helpers/repo.ts";
import { childEnv, REPO_ROOT, type BenchPackage } from "./fixture.ts";
import { logNormalSizes, type LogNormalSizes } from "./sizes.ts";

// ---- tracked child processes ----

const running = new Set<Bun.Subprocess>();

/** SIGKILLs every child started through this module that is still running. */
export function killTracked(): void {
  for (const proc of running) proc.kill("SIGKILL");
}

export interface RunResult {
  code: number;
  seconds: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command to completion, killed after `timeoutMs`; timed from spawn to exit. */
export async function runTimed(cmd: string[], options: { timeoutMs: number; env?: Record<string, string> }): Promise<RunResult> {
  const started = performance.now();
  const proc = Bun.spawn(cmd, { cwd: REPO_ROOT, env: options.env ?? childEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  running.add(proc);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, options.timeoutMs);
  try {
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const code = await proc.exited;
    return { code, seconds: (performance.now() - started) / 1000, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
    running.delete(proc);
  }
}

// ---- package sizes ----

export interface BenchSizes {
  /** Total payload of all packages. */
  totalBytes: number;
  count: number;
  /** How many of them are the large ones that carry most of the bytes. */
  large: number;
  /** Shape of the others. */
  small: LogNormalSizes;
}

/**
 * Each large package is this much bigger than the one before, so the large ones are spread out
 * (with 4 of them and 200 MB in all: about 28, 36, 47 and 61 MB) rather than all the same size.
 */
const LARGE_GROWTH = 1.3;

/**
 * Payload sizes: `count - large` drawn log-normal (Debian-like: median near 60 kB, long tail), then
 * `large` packages sharing what is left of `totalBytes`, growing by LARGE_GROWTH. Pure; the random
 * source is passed in. Throws when the small ones alone leave too little for the large ones.
 */
export function benchPayloadSizes(shape: BenchSizes, random: () => number): number[] {
  const small = logNormalSizes(shape.count - shape.large, shape.small, random);
  const left = shape.totalBytes - small.reduce((a, b) => a + b, 0);
  const weights = Array.from({ length: shape.large }, (_, i) => LARGE_GROWTH ** i);
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const large = weights.map((w) => Math.round((left * w) / weightSum));
  if (shape.large > 0 && large[0]! < shape.small.maxBytes) {
    throw new Error(`a total of ${shape.totalBytes} bytes leaves only ${left} for the ${shape.large} large packages: raise the total`);
  }
  return [...small, ...large];
}

// ---- isolated apt-get ----

export interface AptClientOptions {
  /** The sources.list lines (with signed-by, so no trusted keyring is needed). */
  sources: string;
  /** Forward proxy for http (Acquire::http::Proxy), or none: straight to the mirror. */
  proxy?: string;
}

/** What APT_CONFIG points at: every Dir APT reads or writes is under `dir`. */
export function aptConfText(dir: string, proxy: string | undefined): string {
  const lines = [
    `Dir "/";`,
    `Dir::Etc "${dir}/etc";`,
    `Dir::Etc::main "${dir}/etc/apt.conf";`,
    `Dir::Etc::Parts "${dir}/etc/apt.conf.d";`,
    `Dir::Etc::SourceList "${dir}/etc/sources.list";`,
    `Dir::Etc::SourceParts "${dir}/etc/sources.list.d";`,
    `Dir::Etc::Trusted "${dir}/etc/trusted.gpg";`,
    `Dir::Etc::TrustedParts "${dir}/etc/trusted.gpg.d";`,
    `Dir::Etc::Preferences "${dir}/etc/preferences";`,
    `Dir::Etc::PreferencesParts "${dir}/etc/preferences.d";`,
    `Dir::State "${dir}/state";`,
    `Dir::State::status "${dir}/status";`,
    `Dir::Cache "${dir}/cache";`,
    `Dir::Log "${dir}/log";`,
    `APT::Architecture "amd64";`,
    `APT::Architectures { "amd64"; };`,
    // The lists and archives are root's temporary directories: download as root, not as _apt.
    `APT::Sandbox::User "root";`,
    `APT::Install-Recommends "false";`,
    `Acquire::Languages "none";`,
    // A failed transfer shows as a failed run, not as a slow one.
    `Acquire::Retries "0";`,
    // Seconds without progress on a connection before APT gives up on it.
    `Acquire::http::Timeout "30";`,
    `Debug::NoLocking "true";`,
    // Without a proxy line (and with no *_proxy in the environment), APT connects to the mirror itself.
    ...(proxy === undefined ? [] : [`Acquire::http::Proxy "${proxy}";`]),
  ];
  return `${lines.join("\n")}\n`;
}

export class AptClient {
  readonly dir: string;
  readonly archives: string;
  readonly #env: Record<string, string>;

  private constructor(dir: string) {
    this.dir = dir;
    this.archives = join(dir, "cache/archives");
    // No proxy of the caller's environment may leak in: only the apt.conf line decides.
    const env = childEnv({ APT_CONFIG: join(dir, "etc/apt.conf"), LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive" });
    for (const k of Object.keys(env)) if (/^(https?|ftp|all|no)_proxy$/i.test(k)) delete env[k];
    this.#env = env;
  }

  /** A fresh APT world in `dir` (which must not hold an old one): nothing listed, nothing downloaded. */
  static async create(dir: string, options: AptClientOptions): Promise<AptClient> {
    for (const sub of ["etc/apt.conf.d", "etc/sources.list.d", "etc/trusted.gpg.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial", "log"]) {
      await mkdir(join(dir, sub), { recursive: true });
    }
    await writeFile(join(dir, "status"), "");
    await writeFile(join(dir, "etc/sources.list"), options.sources);
    await writeFile(join(dir, "etc/apt.conf"), aptConfText(dir, options.proxy));
    return new AptClient(dir);
  }

  /** `apt-get update`, failing (not just warning) when any index could not be fetched. */
  async update(timeoutMs: number): Promise<RunResult> {
    return this.#run(["apt-get", "update", "--error-on=any"], timeoutMs);
  }

  /** `apt-get install --download-only -y` of `names`; the .debs end up in `archives`. */
  async downloadOnly(names: string[], timeoutMs: number): Promise<RunResult> {
    return this.#run(["apt-get", "install", "--download-only", "-y", ...names], timeoutMs);
  }

  async #run(cmd: string[], timeoutMs: number): Promise<RunResult> {
    const result = await runTimed(cmd, { timeoutMs, env: this.#env });
    if (result.code !== 0 || result.timedOut) {
      const why = result.timedOut ? `timed out after ${timeoutMs / 1000} s` : `exit code ${result.code}`;
      throw new Error(`${cmd.slice(0, 3).join(" ")} (APT_CONFIG in ${this.dir}) failed, ${why}:\n${(result.stdout + result.stderr).slice(-3000)}`);
    }
    return result;
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The "Fetched 200 MB in 10s (20.0 MB/s)" line of an apt-get run, or "". */
export function fetchedLine(output: string): string {
  return /^Fetched .*$/m.exec(output)?.[0] ?? "";
}

/**
 * Checks that `archives` holds exactly one .deb per package and that each is byte-identical (SHA-256
 * and size) to the repository's; throws naming every file that is missing, extra or different.
 */
export async function verifyArchives(archives: string, packages: BenchPackage[]): Promise<void> {
  const files = new Set((await readdir(archives)).filter((f) => f.endsWith(".deb")));
  const problems: string[] = [];
  for (const p of packages) {
    // APT names a kept .deb <name>_<version, ':' escaped>_<arch>.deb.
    const file = `${p.name}_${p.version.replace(/:/g, "%3a")}_amd64.deb`;
    if (!files.delete(file)) {
      problems.push(`${file}: missing`);
      continue;
    }
    const sha = await sha256File(join(archives, file));
    if (sha !== p.sha256) problems.push(`${file}: SHA-256 ${sha}, the repository's is ${p.sha256}`);
  }
  for (const extra of files) problems.push(`${extra}: not asked for`);
  if (problems.length > 0) {
    throw new Error(`the .debs APT kept in ${archives} are not the repository's (${problems.length} problem(s)):\n  ${problems.slice(0, 20).join("\n  ")}`);
  }
}

// ---- apt-cacher-ng ----

/** apt-cacher-ng has this long to accept connections on its port. */
const ACNG_START_TIMEOUT_MS = 15_000;
const ACNG_STOP_TIMEOUT_MS = 5_000;

export interface AptCacher {
  port: number;
  url: string;
  cacheDir: string;
  /** What it printed, and its log files. */
  log(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * The acng.conf of a private apt-cacher-ng: loopback only, on `port`, every file under `dir`. It is
 * used as a forward proxy, so no Remap rules are needed; AllowUserPorts 0 lets it fetch from a
 * mirror on any port (by default it refuses all but port 80).
 */
export function acngConfText(dir: string, port: number): string {
  return [
    `CacheDir: ${dir}/cache`,
    `LogDir: ${dir}/log`,
    `SupportDir: /usr/lib/apt-cacher-ng`,
    `Port: ${port}`,
    `BindAddress: 127.0.0.1`,
    `SocketPath: ${dir}/socket`,
    `PidFile: ${dir}/pid`,
    `ForeGround: 1`,
    `AllowUserPorts: 0`,
    `ConnectProto: v4`,
    `ExThreshold: 4`,
    `UnbufferLogs: 1`,
    `VerboseLog: 1`,
    "",
  ].join("\n");
}

/** Starts apt-cacher-ng with its own config dir (`dir`/conf) on 127.0.0.1:`port`; resolves once it accepts connections. */
export async function startAptCacher(dir: string, port: number): Promise<AptCacher> {
  const conf = join(dir, "conf");
  for (const sub of ["conf", "cache", "log"]) await mkdir(join(dir, sub), { recursive: true });
  await writeFile(join(conf, "acng.conf"), acngConfText(dir, port));
  const proc = Bun.spawn(["apt-cacher-ng", "-c", conf], { env: childEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  running.add(proc);
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then(([o, e]) => o + e);
  const log = async () => {
    const files = await readdir(join(dir, "log")).catch(() => [] as string[]);
    const texts = await Promise.all(files.map(async (f) => `--- ${f} ---\n${await Bun.file(join(dir, "log", f)).text()}`));
    const printed = proc.exitCode === null && proc.signalCode === null ? "(still running)" : await output;
    return [`--- output ---\n${printed}`, ...texts].join("\n");
  };
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(ACNG_STOP_TIMEOUT_MS).then(() => false)]);
      if (!exited) proc.kill("SIGKILL");
      await proc.exited;
    }
    running.delete(proc);
  };
  const until = Date.now() + ACNG_START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      running.delete(proc);
      throw new Error(`apt-cacher-ng exited (${proc.exitCode ?? proc.signalCode}) before listening:\n${await log()}`);
    }
    if (await accepts(port)) break;
    if (Date.now() > until) {
      await stop();
      throw new Error(`apt-cacher-ng did not listen on 127.0.0.1:${port} within ${ACNG_START_TIMEOUT_MS} ms:\n${await log()}`);
    }
    await Bun.sleep(100);
  }
  return { port, url: `http://127.0.0.1:${port}`, cacheDir: join(dir, "cache"), log, stop };
}

/** True when something accepts a TCP connection on 127.0.0.1:`port`. */
async function accepts(port: number): Promise<boolean> {
  try {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    socket.end();
    return true;
  } catch {
    return false; // refused: not listening yet
  }
}

// ---- low ports, and the front that puts the mirror on one ----

/**
 * apt-cacher-ng (3.7.4) can neither listen on nor fetch from a port above 32767: it says "Error
 * resolving address for binding", or answers "503 Connection refused" for a mirror on such a port.
 * Port 0 gives ports above that; so its port, and the port of the front of the mirror, are the first
 * free ones from here up.
 */
const LOW_PORT_FIRST = 23_142;
const LOW_PORT_LAST = 32_767;

/** A TCP port under 32768 that nothing listens on now. */
export function freeLowPort(): number {
  for (let port = LOW_PORT_FIRST; port <= LOW_PORT_LAST; port++) {
    try {
      const server = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
      server.stop(true);
      return port;
    } catch {
      continue; // in use: try the next one
    }
  }
  throw new Error(`no free TCP port on 127.0.0.1 in ${LOW_PORT_FIRST}-${LOW_PORT_LAST}`);
}

export interface MirrorFront {
  port: number;
  url: string;
  /** Body bytes sent to clients so far. */
  sentBytes(): number;
  stop(): Promise<void>;
}

/**
 * Bytes the front's pacing may send at once, as the HTB class's burst in shaper.ts: more than one
 * 64 KiB piece, too little to show in a transfer of seconds.
 */
const FRONT_BURST_BYTES = 256 * 1024;
/** The mirror (in this process) has this long to answer a request's headers. */
const MIRROR_ANSWER_TIMEOUT_MS = 10_000;
/**
 * The front reads each answer of the mirror whole, at once, and sends it from memory. Of requests
 * pipelined on one connection only the first is being sent; the test mirror (Bun.serve) cuts a
 * response nobody reads for 10 s, which a later one would be behind a large file at a low rate.
 */
const READ_AHEAD: QueuingStrategy<Uint8Array> = { highWaterMark: Number.POSITIVE_INFINITY };
/** Request headers the front passes on to the mirror: the ones a download or a revalidation depends on. */
const FORWARDED_REQUEST_HEADERS = ["range", "if-range", "if-modified-since", "if-none-match"];
/** Response headers it passes back. */
const FORWARDED_RESPONSE_HEADERS = ["content-length", "content-range", "content-type", "last-modified", "accept-ranges", "etag"];

/**
 * The mirror as its clients reach it: an HTTP server on 127.0.0.1:`port` (the project's own HTTP/1.1
 * server, src/http/server.ts, which answers pipelined requests in order — the test mirror's Bun.serve drops them, and
 * APT and apt-cacher-ng pipeline) passing each GET or HEAD on to `mirrorUrl`. With `bytesPerSecond`,
 * the bodies it sends are paced by one token bucket for all connections together (the fallback when
 * tc cannot shape its port).
 */
export async function startMirrorFront(port: number, mirrorUrl: string, bytesPerSecond: number | null): Promise<MirrorFront> {
  const bucket = bytesPerSecond === null ? null : new TokenBucket({ bytesPerSecond, burstBytes: FRONT_BURST_BYTES, now: () => performance.now() });
  let sent = 0;
  const server = await listen(
    async (request) => {
      if (request.method !== "GET" && request.method !== "HEAD") return new Response("Only GET and HEAD\n", { status: 405 });
      const headers = new Headers();
      for (const name of FORWARDED_REQUEST_HEADERS) {
        const value = request.headers.get(name);
        if (value !== null) headers.set(name, value);
      }
      const url = new URL(request.url);
      // Bounded until the mirror answers; the body then takes as long as the pacing says.
      const answered = new AbortController();
      const timer = setTimeout(() => answered.abort(new Error(`the mirror did not answer within ${MIRROR_ANSWER_TIMEOUT_MS} ms`)), MIRROR_ANSWER_TIMEOUT_MS);
      const upstream = await fetch(`${mirrorUrl}${url.pathname}`, { method: request.method, headers, signal: answered.signal }).finally(() => clearTimeout(timer));
      const answer = new Headers();
      for (const name of FORWARDED_RESPONSE_HEADERS) {
        const value = upstream.headers.get(name);
        if (value !== null) answer.set(name, value);
      }
      const body =
        upstream.body === null
          ? null
          : throttleStream(upstream.body.pipeThrough(new TransformStream(undefined, READ_AHEAD)), bucket, Bun.sleep).pipeThrough(
              new TransformStream<Uint8Array, Uint8Array>({
                transform(chunk, controller) {
                  sent += chunk.length;
                  controller.enqueue(chunk);
                },
              }),
            );
      return new Response(body, { status: upstream.status, headers: answer });
    },
    { hostname: "127.0.0.1", port },
  );
  return { port: server.port, url: `http://127.0.0.1:${server.port}/`, sentBytes: () => sent, stop: () => server.close() };
}
