/**
 * Configuration resolved once at the edge (flag > environment > default) into typed slices.
 * Commander applies flag > environment; the defaults that depend on the machine are filled in here.
 */
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";

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
}

/** How many files one `get` downloads at once: enough to hide latency, few enough to be kind to a mirror. */
export const DEFAULT_GET_CONCURRENCY = 4;

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
