/**
 * Configuration resolved once at the edge (flag > environment > file > default) into typed slices.
 * Each option is declared once, in the OPTIONS table of src/cli/program.ts (flag, variable, file key,
 * default, check); how files are read and values ranked is in src/config-file.ts.
 */
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { Endpoint } from "./dht/id.ts";
import { AptP2pError, ErrorCode } from "./errors.ts";
import { isIPv4 } from "./ip.ts";

export interface GetConfig {
  /** A sources file given with --sources, replacing the system's. */
  sourcesFile?: string;
  /** APT's configuration directory: sources.list(.d) and trusted.gpg(.d). */
  aptDir: string;
  cacheDir: string;
  dest: string;
  /** Architectures accepted besides "all", most preferred first. */
  arches: string[];
  refresh: boolean;
  output: "auto" | "json" | "quiet";
  /** Files downloaded at the same time. */
  concurrency: number;
  dht: GetDhtConfig;
}

/** How a get finds peers: through a running daemon, or a short-lived DHT node of its own. */
export interface GetDhtConfig {
  /** False with --no-dht: the mirror only. */
  enabled: boolean;
  /** The daemon's control API. */
  daemonUrl: string;
  /** Given with --daemon: then it must answer. */
  daemonExplicit: boolean;
  bootstrap: Endpoint[];
  /** Where a daemon keeps its routing table, to join through without a bootstrap node. */
  stateDir: string;
  /** Address for the short-lived node's UDP socket. */
  bind: string;
}

/** The daemon's TCP and UDP port. */
export const DEFAULT_PORT = 9977;

/** How many files one `get` downloads at once: enough to hide latency, few enough to be kind to a mirror. */
export const DEFAULT_GET_CONCURRENCY = 4;
/** More at once would only queue behind each other on one mirror. */
export const MAX_GET_CONCURRENCY = 64;
/** A sanity bound on --max-uploads-per-address; beyond it the global --upload-limit is the real cap. */
export const MAX_UPLOADS_PER_ADDRESS = 1000;

export function defaultCacheDir(env: Record<string, string | undefined>): string {
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg !== undefined && xdg !== "" && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), ".cache");
  return join(base, "apt-p2p");
}

/** The machine's dpkg architecture, or the closest name for the running CPU when dpkg is absent. */
export function hostArchitecture(): string {
  try {
    const out = Bun.spawnSync(["dpkg", "--print-architecture"], { stdout: "pipe", stderr: "ignore" });
    const arch = out.stdout.toString().trim();
    if (out.exitCode === 0 && arch !== "") return arch;
  } catch {
    // dpkg missing: fall through to the CPU's name.
  }
  const byCpu: Record<string, string> = { x64: "amd64", arm64: "arm64", ia32: "i386", arm: "armhf", ppc64: "ppc64el", s390x: "s390x" };
  return byCpu[process.arch] ?? process.arch;
}

export function resolvePath(cwd: string, path: string): string {
  return resolve(cwd, path);
}

export function defaultStateDir(env: Record<string, string | undefined>): string {
  const xdg = env.XDG_STATE_HOME;
  const base = xdg !== undefined && xdg !== "" && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), ".local", "state");
  return join(base, "apt-p2p");
}

export function parsePort(text: string, what: string, allowZero = false): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535 || (port === 0 && !allowZero)) {
    throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} '${text}': expected a port number from ${allowZero ? 0 : 1} to 65535`);
  }
  return port;
}

/** "host:port,host:port" → endpoints, host names resolved to IPv4 addresses (the DHT speaks IPv4). */
export async function parseBootstrap(text: string): Promise<Endpoint[]> {
  const endpoints: Endpoint[] = [];
  for (const { item, host, port } of bootstrapEntries(text, "--bootstrap")) {
    let address = host;
    if (!isIPv4(host)) {
      try {
        // Loaded only for a name: most bootstrap entries are addresses.
        const { lookup } = await import("node:dns/promises");
        address = (await lookup(host, { family: 4 })).address;
      } catch (err) {
        throw new AptP2pError(ErrorCode.Usage, `Invalid --bootstrap entry '${item}': cannot resolve ${host} to an IPv4 address`, { cause: err });
      }
    }
    endpoints.push({ address, port });
  }
  return endpoints;
}

/** The HOST:PORT entries of a bootstrap list, checked for form only (names are resolved later). */
export function bootstrapEntries(text: string, what: string): { item: string; host: string; port: number }[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const colon = item.lastIndexOf(":");
      if (colon <= 0) throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} entry '${item}': expected HOST:PORT`);
      return { item, host: item.slice(0, colon), port: parsePort(item.slice(colon + 1), `port in ${what} entry '${item}'`) };
    });
}

/** A whole number from 1 to max, such as --jobs. */
export function parseCount(text: string, what: string, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < 1 || n > max) {
    throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} '${text}': expected a whole number from 1 to ${max}`);
  }
  return n;
}
