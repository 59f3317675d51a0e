/**
 * The local world of the swarm benchmark, all on 127.0.0.1: a signed repository (its .debs built once
 * and kept in a cache under /tmp, keyed by their sizes), a Range-capable mirror serving it, and
 * `apt-p2p serve` daemons — a bootstrap node and seeders, each seeding a directory of hard links to the
 * repository's .debs. Every process started here is stopped by `close()`, also after a failure.
 */
import { copyFile, link, mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { buildDeb, makeGpgKey, dropGpgKey, publishIndexes, sha256File, type GpgKey, type PackageSpec } from "../../../test/helpers/repo.ts";
import { startMirror, type TestMirror } from "../../../test/helpers/mirror.ts";

export const REPO_ROOT = join(import.meta.dir, "../../..");
export const CLI = join(REPO_ROOT, "src/cli.ts");
/**
 * src/cli.ts compiled with `bun build --compile --bytecode` into `outfile` (as `bun run build` does): what the Debian package ships, and
 * what a benchmark should time when it times a start of apt-p2p (about half the start of `bun src/cli.ts`,
 * which transpiles every module first).
 */
export async function compileCli(outfile: string): Promise<string> {
  const build = Bun.spawn([process.execPath, "build", "--compile", "--bytecode", "src/cli.ts", "--outfile", outfile], { cwd: REPO_ROOT, stdout: "ignore", stderr: "pipe" });
  if ((await build.exited) !== 0) throw new Error(`bun build --compile failed: ${await new Response(build.stderr).text()}`);
  return outfile;
}

/** Built .debs are kept here between runs; delete it to rebuild. */
export const DEB_CACHE = join(tmpdir(), "apt-p2p-bench-swarm-debs");
const SUITE = "stable";
/** A daemon that has not said "listening on" by then is taken as failed. */
const SERVE_START_TIMEOUT_MS = 20_000;
/** After SIGTERM, a daemon gets this long before SIGKILL. */
const SERVE_STOP_TIMEOUT_MS = 5_000;

export interface BenchPackage {
  name: string;
  version: string;
  /** Pool path inside the repository. */
  poolPath: string;
  size: number;
  sha256: string;
}

/** Builds (or takes from DEB_CACHE) the .deb of each spec; returns their paths in the cache. */
export async function cachedDebs(group: string, specs: PackageSpec[], log: (line: string) => void): Promise<string[]> {
  const dir = join(DEB_CACHE, group);
  const marker = join(dir, ".complete");
  const paths = specs.map((s) => join(dir, `${s.name}_${s.version}_amd64.deb`));
  if (await exists(marker)) return paths;
  log(`building ${specs.length} .deb file(s) into ${dir} (once; kept for later runs)`);
  await mkdir(DEB_CACHE, { recursive: true });
  const building = await mkdtemp(join(DEB_CACHE, `.${group}-`));
  const work = await mkdtemp(join(tmpdir(), "apt-p2p-bench-debroot-"));
  try {
    // Two at a time: dpkg-deb is one process per core.
    for (let i = 0; i < specs.length; i += 2) {
      await Promise.all(specs.slice(i, i + 2).map((s) => buildDeb(work, s, join(building, `${s.name}_${s.version}_amd64.deb`))));
      await rm(work, { recursive: true, force: true });
      await mkdir(work, { recursive: true });
    }
    await writeFile(join(building, ".complete"), `${new Date().toISOString()}\n`);
    await rm(dir, { recursive: true, force: true });
    await rename(building, dir);
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(building, { recursive: true, force: true });
  }
  return paths;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** A hard link when the file system allows it (the seeder reads only regular files, not symlinks), else a copy. */
export async function linkOrCopy(from: string, to: string): Promise<void> {
  await link(from, to).catch(() => copyFile(from, to));
}

export interface Repository {
  root: string;
  key: GpgKey;
  packages: BenchPackage[];
  /** An APT sources file pointing at the mirror. */
  sourcesFile: string;
  mirror: TestMirror;
  mirrorPort: number;
}

/** Lays the .debs out as a pool, signs fresh indexes with a throwaway key and serves them. */
export async function startRepository(work: string, debs: { spec: PackageSpec; path: string }[]): Promise<Repository> {
  const root = join(work, "repo");
  const packages: BenchPackage[] = [];
  for (const { spec, path } of debs) {
    const dir = join("pool/main", spec.name[0]!, spec.name);
    await mkdir(join(root, dir), { recursive: true });
    const poolPath = join(dir, basename(path));
    await linkOrCopy(path, join(root, poolPath));
    packages.push({ name: spec.name, version: spec.version, poolPath, size: (await stat(path)).size, sha256: await sha256File(path) });
  }
  const key = await makeGpgKey("swarm-bench");
  try {
    await publishIndexes(root, SUITE, { key });
    const mirror = await startMirror(root);
    const sourcesFile = join(work, "bench.list");
    await writeFile(sourcesFile, `deb [signed-by=${key.keyring}] ${mirror.url} ${SUITE} main\n`);
    return { root, key, packages, sourcesFile, mirror, mirrorPort: Number(new URL(mirror.url).port) };
  } catch (err) {
    await dropGpgKey(key);
    throw err;
  }
}

export async function stopRepository(repo: Repository): Promise<void> {
  await repo.mirror.stop();
  await dropGpgKey(repo.key);
}

export interface Daemon {
  port: number;
  url: string;
  log(): string;
  stop(): Promise<void>;
}

/** The environment of every apt-p2p child: no APT_P2P_* of the caller's leaks in. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("APT_P2P_")) env[k] = v;
  return { ...env, ...extra };
}

/** `apt-p2p serve` on 127.0.0.1, port 0; resolves once it says which port it listens on. */
export async function startDaemon(args: string[]): Promise<Daemon> {
  const proc = Bun.spawn([process.execPath, CLI, "serve", "--bind", "127.0.0.1", "--port", "0", "--no-seed-apt-archives", ...args], {
    cwd: REPO_ROOT,
    env: childEnv(),
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  let logged = "";
  const decoder = new TextDecoder();
  let onLine: () => void = () => undefined;
  const drained = (async () => {
    for await (const chunk of proc.stderr) {
      logged += decoder.decode(chunk, { stream: true });
      onLine();
    }
  })().catch((err: unknown) => {
    logged += `\n[bench: reading the log failed: ${String(err)}]\n`;
  });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(SERVE_STOP_TIMEOUT_MS).then(() => false)]);
    if (!exited) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    await drained;
  };
  const port = await new Promise<number>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`serve did not start within ${SERVE_START_TIMEOUT_MS} ms:\n${logged}`)), SERVE_START_TIMEOUT_MS);
    onLine = () => {
      const match = /listening on [\d.]+:(\d+) /.exec(logged);
      if (match) {
        clearTimeout(deadline);
        resolve(Number(match[1]));
      }
    };
    void proc.exited.then((code) => {
      clearTimeout(deadline);
      reject(new Error(`serve exited (code ${code}) before listening:\n${logged}`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  onLine = () => undefined;
  return { port, url: `http://127.0.0.1:${port}`, log: () => logged, stop };
}

/** The ports of the peers a DHT lookup through `daemon` finds for a file. */
export async function lookupPorts(daemon: Daemon, sha256: string): Promise<number[]> {
  const response = await fetch(`${daemon.url}/api/dht/lookup?key=${sha256.slice(0, 40)}`, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`lookup of ${sha256.slice(0, 40)}: HTTP ${response.status}`);
  const answer = (await response.json()) as { peers: { port: number }[] };
  return answer.peers.map((p) => p.port);
}

/**
 * Polls lookups until every file is found at all of its holders' ports; returns the files still short
 * at the deadline (empty when all are announced). Lookups are DHT traffic from 127.0.0.1 like the
 * seeders' announces, and on one host they share its per-address rate limit; so each round looks up
 * at most `perRound` files (`parallel` at once), the ones not yet confirmed, and then pauses.
 */
export async function waitForAnnounces(
  daemon: Daemon,
  holders: Map<string, number[]>,
  options: { timeoutMs: number; parallel: number; perRound: number; pauseMs: number; onRound?: (missing: number) => void },
): Promise<string[]> {
  let missing = [...holders.keys()];
  const until = Date.now() + options.timeoutMs;
  while (missing.length > 0 && Date.now() < until) {
    const confirmed = new Set<string>();
    const round = missing.slice(0, options.perRound);
    for (let i = 0; i < round.length; i += options.parallel) {
      const batch = round.slice(i, i + options.parallel);
      const found = await Promise.all(batch.map((sha) => lookupPorts(daemon, sha).catch(() => [] as number[])));
      batch.forEach((sha, j) => {
        const ports = new Set(found[j]);
        if (holders.get(sha)!.every((p) => ports.has(p))) confirmed.add(sha);
      });
    }
    // The unconfirmed of this round go to the back, so that the next round tries others first.
    missing = [...missing.slice(options.perRound), ...round.filter((sha) => !confirmed.has(sha))];
    options.onRound?.(missing.length);
    if (missing.length > 0) await Bun.sleep(options.pauseMs);
  }
  return missing;
}

/** A TCP port nothing listens on now (so that `get` finds no daemon at its default address). */
export function unusedPort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export interface TimedRun {
  code: number;
  seconds: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command to completion (killed after `timeoutMs`), timing it from spawn to exit. */
export async function timed(cmd: string[], options: { timeoutMs: number; env?: Record<string, string> }): Promise<TimedRun> {
  const started = performance.now();
  const proc = Bun.spawn(cmd, { cwd: REPO_ROOT, env: options.env ?? childEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, options.timeoutMs);
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const code = await proc.exited;
  const seconds = (performance.now() - started) / 1000;
  clearTimeout(timer);
  return { code, seconds, stdout, stderr, timedOut };
}

/**
 * Waits until the files written so far are on disk (sync(1)), so that the write-back of what one run
 * wrote does not fall into the next run's time.
 */
export async function settleWrites(log: (line: string) => void): Promise<void> {
  const r = await timed(["sync"], { timeoutMs: 120_000 });
  if (r.code !== 0 || r.timedOut) log(`sync failed (code ${r.code}${r.timedOut ? ", timed out" : ""}); timing anyway`);
}
