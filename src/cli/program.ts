/** The commander program: commands, options and their precedence (flag > environment > default). */
import { Command, Option } from "commander";
import { access, constants } from "node:fs/promises";
import packageJson from "../../package.json";
import {
  DEFAULT_GET_CONCURRENCY,
  DEFAULT_PORT,
  defaultCacheDir,
  defaultStateDir,
  hostArchitecture,
  parseBootstrap,
  parsePort,
  resolvePath,
  type GetConfig,
} from "../config.ts";
import { DEFAULT_UPLOADS_PER_ADDRESS, type ServeConfig } from "../daemon/daemon.ts";
import { idFromHex } from "../dht/id.ts";
import { parseRate } from "../transfer/throttle.ts";
import type { DhtStats } from "../dht/node.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import { askDaemon, printLookup, printStats, type LookupAnswer } from "./dht.ts";
import { EXIT_CODE_HELP } from "./exit-codes.ts";
import { resolveNames, runGet, type GetDeps } from "./get.ts";
import type { CliIO } from "./io.ts";
import { runServe, untilSignal } from "./serve.ts";
import { loadSourcesFile, loadSystemSources, type SourceEntry } from "../debian/sources.ts";
import { parseCidrList, parseMirrorAllow } from "../proxy/allow.ts";
import { parseProxyTarget } from "../proxy/target.ts";
import { aptConfigText } from "./apt-config.ts";

export const VERSION: string = packageJson.version;

interface IndexFlags {
  sources?: string;
  aptDir: string;
  cacheDir?: string;
  arch?: string;
  refresh: boolean;
}

interface GetFlags extends IndexFlags {
  dest: string;
  json: boolean;
  quiet: boolean;
  jobs: string;
  dht: boolean;
  daemon?: string;
  bootstrap?: string;
  stateDir?: string;
}

interface ServeFlags {
  sources?: string;
  aptDir: string;
  proxyAllow: string;
  mirrorAllow: string;
  port: string;
  bind: string;
  bootstrap?: string;
  stateDir?: string;
  cacheDir?: string;
  seedDir: string[];
  seedAptArchives: boolean;
  uploadLimit: string;
  maxUploadsPerAddress: string;
}

/** APT's own package cache, seeded by default. */
const APT_ARCHIVES = "/var/cache/apt/archives";

async function isReadableDir(path: string): Promise<boolean> {
  return access(path, constants.R_OK | constants.X_OK).then(
    () => true,
    () => false,
  );
}

export interface ProgramDeps {
  get?: GetDeps;
  /** Resolves when `serve` should stop (default: SIGINT or SIGTERM). */
  stopServe?: () => Promise<void>;
}

/** Options for reading the APT sources and the verified index, shared by `get` and `dht lookup`. */
function addIndexOptions(command: Command): Command {
  return command
    .addOption(new Option("-s, --sources <file>", "APT sources file (one-line or deb822) replacing the system's").env("APT_P2P_SOURCES"))
    .addOption(new Option("--apt-dir <dir>", "APT configuration directory (sources.list, trusted.gpg.d)").default("/etc/apt").env("APT_P2P_APT_DIR"))
    .addOption(new Option("--cache-dir <dir>", "cache directory (default: $XDG_CACHE_HOME/apt-p2p or ~/.cache/apt-p2p)").env("APT_P2P_CACHE_DIR"))
    .addOption(new Option("-a, --arch <arch>", "architecture (default: the host's, from dpkg)"))
    .addOption(new Option("--refresh", "re-fetch and re-verify the indexes even if unchanged").default(false));
}

function indexConfig(flags: IndexFlags, io: CliIO) {
  return {
    sourcesFile: flags.sources === undefined ? undefined : resolvePath(io.cwd, flags.sources),
    aptDir: resolvePath(io.cwd, flags.aptDir),
    cacheDir: resolvePath(io.cwd, flags.cacheDir ?? defaultCacheDir(io.env)),
    arches: [flags.arch ?? hostArchitecture()],
    refresh: flags.refresh,
  };
}

function daemonOption(): Option {
  return new Option("--daemon <url>", `the daemon's control API (default: http://127.0.0.1:${DEFAULT_PORT}, or the port in APT_P2P_PORT)`).env(
    "APT_P2P_DAEMON",
  );
}

function daemonUrl(flag: string | undefined, io: CliIO): string {
  if (flag !== undefined) return flag;
  const port = io.env.APT_P2P_PORT === undefined ? DEFAULT_PORT : parsePort(io.env.APT_P2P_PORT, "APT_P2P_PORT");
  return `http://127.0.0.1:${port}`;
}

export function buildProgram(io: CliIO, deps: ProgramDeps = {}): Command {
  const program = new Command("apt-p2p")
    .description(
      "Peer-to-peer downloader and caching proxy for APT. Every file is checked against the SHA-256 in " +
        "the archive's signed index before it is written.",
    )
    .version(VERSION, "-V, --version", "print the version")
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride()
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`);

  addIndexOptions(
    program
      .command("get")
      .description(
        "Download Debian packages by name, verified against the signed index of the APT sources. " +
          "Each PACKAGE is NAME (newest version), NAME=VERSION, NAME:ARCH, a file name such as " +
          "hello_2.10-3_amd64.deb, or a pool path.",
      )
      .argument("<package...>", "packages to download")
      .addOption(new Option("-d, --dest <dir>", "directory to write the .deb files to").default(".")),
  )
    .addOption(new Option("--json", "print one JSON object per file").default(false).conflicts("quiet"))
    .addOption(new Option("-q, --quiet", "print nothing but errors").default(false))
    .addOption(new Option("-j, --jobs <n>", "files to download at once").default(String(DEFAULT_GET_CONCURRENCY)))
    .addOption(new Option("--no-dht", "download from the mirror only, without looking for peers"))
    .addOption(daemonOption().default(undefined, "a daemon on the configured port, if one runs"))
    .addOption(new Option("--bootstrap <host:port,...>", "without a daemon: DHT nodes to join through (default: the daemon's saved contacts)").env("APT_P2P_BOOTSTRAP"))
    .addOption(new Option("--state-dir <dir>", "without a daemon: where its saved DHT contacts are (default: $XDG_STATE_HOME/apt-p2p)").env("APT_P2P_STATE_DIR"))
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`)
    .action(async (names: string[], flags: GetFlags) => {
      const jobs = Number(flags.jobs);
      if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) {
        throw new AptP2pError(ErrorCode.Usage, `Invalid --jobs '${flags.jobs}': expected a whole number from 1 to 64`);
      }
      const config: GetConfig = {
        ...indexConfig(flags, io),
        dest: resolvePath(io.cwd, flags.dest),
        output: flags.json ? "json" : flags.quiet ? "quiet" : "auto",
        concurrency: jobs,
        dht: {
          enabled: flags.dht,
          daemonUrl: daemonUrl(flags.daemon, io),
          daemonExplicit: flags.daemon !== undefined,
          bootstrap: await parseBootstrap(flags.bootstrap ?? ""),
          stateDir: resolvePath(io.cwd, flags.stateDir ?? defaultStateDir(io.env)),
          bind: "0.0.0.0",
        },
      };
      await runGet(names, config, io, deps.get);
    });

  program
    .command("serve")
    .description("Run the daemon: DHT node on UDP and its HTTP side on TCP, on the same port number.")
    .addOption(new Option("-p, --port <port>", "TCP and UDP port").default(String(DEFAULT_PORT)).env("APT_P2P_PORT"))
    .addOption(new Option("--bind <address>", "address to listen on").default("0.0.0.0").env("APT_P2P_BIND"))
    .addOption(new Option("--bootstrap <host:port,...>", "DHT nodes to join through (none: rejoin through saved contacts)").env("APT_P2P_BOOTSTRAP"))
    .addOption(new Option("--state-dir <dir>", "state directory (default: $XDG_STATE_HOME/apt-p2p or ~/.local/state/apt-p2p)").env("APT_P2P_STATE_DIR"))
    .addOption(new Option("--cache-dir <dir>", "cache directory (default: $XDG_CACHE_HOME/apt-p2p or ~/.cache/apt-p2p)").env("APT_P2P_CACHE_DIR"))
    .addOption(
      new Option("--seed-dir <dir>", "also serve the .deb files of this directory (repeatable)")
        .argParser((value: string, previous: string[] = []) => [...previous, value])
        .default([] as string[], "none"),
    )
    .addOption(new Option("--no-seed-apt-archives", `do not serve ${APT_ARCHIVES} (served by default when readable)`))
    .addOption(new Option("--upload-limit <rate>", "upload rate to all peers together, e.g. 2MB/s or 500KiB/s (0: unlimited)").default("0").env("APT_P2P_UPLOAD_LIMIT"))
    .addOption(new Option("--max-uploads-per-address <n>", "concurrent uploads to one address").default(String(DEFAULT_UPLOADS_PER_ADDRESS)))
    .addOption(new Option("-s, --sources <file>", "APT sources file (one-line or deb822) replacing the system's: the mirrors the proxy forwards to").env("APT_P2P_SOURCES"))
    .addOption(new Option("--apt-dir <dir>", "APT configuration directory (sources.list, trusted.gpg.d)").default("/etc/apt").env("APT_P2P_APT_DIR"))
    .addOption(new Option("--proxy-allow <cidr,...>", "APT proxy clients allowed besides this machine, e.g. 192.168.1.0/24").default("").env("APT_P2P_PROXY_ALLOW"))
    .addOption(new Option("--mirror-allow <host[:port],...>", "mirrors the proxy may forward to besides those in the APT sources").default("").env("APT_P2P_MIRROR_ALLOW"))
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`)
    .action(async (flags: ServeFlags) => {
      const perAddress = Number(flags.maxUploadsPerAddress);
      if (!Number.isInteger(perAddress) || perAddress < 1 || perAddress > 1000) {
        throw new AptP2pError(ErrorCode.Usage, `Invalid --max-uploads-per-address '${flags.maxUploadsPerAddress}': expected a whole number from 1 to 1000`);
      }
      const seedDirs = flags.seedDir.map((d) => resolvePath(io.cwd, d));
      if (flags.seedAptArchives && (await isReadableDir(APT_ARCHIVES))) seedDirs.push(APT_ARCHIVES);
      const port = parsePort(flags.port, "--port", true);
      const aptDir = resolvePath(io.cwd, flags.aptDir);
      const sources = flags.sources === undefined ? (await loadSystemSources(aptDir)).entries : await loadSourcesFile(resolvePath(io.cwd, flags.sources));
      const config: ServeConfig = {
        port,
        bind: flags.bind,
        bootstrap: await parseBootstrap(flags.bootstrap ?? ""),
        stateDir: resolvePath(io.cwd, flags.stateDir ?? defaultStateDir(io.env)),
        cacheDir: resolvePath(io.cwd, flags.cacheDir ?? defaultCacheDir(io.env)),
        version: VERSION,
        seedDirs,
        uploadLimit: parseRate(flags.uploadLimit),
        maxUploadsPerAddress: perAddress,
        sources: unwrapProxied(sources, port),
        aptDir,
        proxyAllow: parseCidrList(flags.proxyAllow, "--proxy-allow"),
        mirrorAllow: parseMirrorAllow(flags.mirrorAllow),
      };
      await runServe(config, io, (deps.stopServe ?? untilSignal)());
    });

  program
    .command("apt-config")
    .description("Print how to send APT through the proxy: the apt.conf line, or this machine's sources rewritten.")
    .addOption(new Option("-s, --sources <file>", "APT sources file to rewrite instead of the system's").env("APT_P2P_SOURCES"))
    .addOption(new Option("--apt-dir <dir>", "APT configuration directory (sources.list, sources.list.d)").default("/etc/apt").env("APT_P2P_APT_DIR"))
    .addOption(new Option("--host <address>", "the address APT reaches apt-p2p at").default("127.0.0.1"))
    .addOption(new Option("-p, --port <port>", "apt-p2p's port").default(String(DEFAULT_PORT)).env("APT_P2P_PORT"))
    .action(async (flags: { sources?: string; aptDir: string; host: string; port: string }) => {
      const port = parsePort(flags.port, "--port");
      const aptDir = resolvePath(io.cwd, flags.aptDir);
      const sourcesFile = flags.sources === undefined ? undefined : resolvePath(io.cwd, flags.sources);
      const entries = sourcesFile === undefined ? (await loadSystemSources(aptDir)).entries : await loadSourcesFile(sourcesFile);
      // Sources already in the prefix form are shown as the mirrors behind them, then rewritten again.
      io.stdout(aptConfigText(unwrapProxied(entries, port), { host: flags.host, port, sourcesOrigin: sourcesFile ?? `${aptDir}/sources.list{,.d}` }));
    });

  const dht = program.command("dht").description("Ask the running daemon what its DHT node sees.");
  dht
    .command("stats")
    .description("Print the node id, routing table, stored values, traffic counters, RTT and lookup times.")
    .option("--json", "print one JSON object", false)
    .addOption(daemonOption())
    .action(async (flags: { json: boolean; daemon?: string }) => {
      printStats(await askDaemon<DhtStats>(daemonUrl(flags.daemon, io), "/api/dht/stats"), io, flags.json);
    });

  addIndexOptions(
    dht
      .command("lookup")
      .description("Look up the peers of a package (by name, resolved through the signed index) or of a 40-digit hex key.")
      .argument("<package-or-key>", "package name (or NAME=VERSION, file name) or hex key")
      .option("--json", "print one JSON object", false)
      .addOption(daemonOption()),
  ).action(async (what: string, flags: IndexFlags & { json: boolean; daemon?: string }) => {
    let key: string;
    let label: string | undefined;
    if (/^[0-9a-fA-F]{40}$/.test(what)) {
      key = Buffer.from(idFromHex(what)).toString("hex");
    } else {
      const [row] = await resolveNames([what], indexConfig(flags, io), io, deps.get);
      key = row!.sha256.slice(0, 40);
      label = `${row!.package} ${row!.version}`;
    }
    const answer = await askDaemon<LookupAnswer>(daemonUrl(flags.daemon, io), `/api/dht/lookup?key=${key}`);
    printLookup({ ...answer, package: label }, io, flags.json);
  });

  return program;
}

/**
 * Sources already rewritten to go through this proxy (http://127.0.0.1:<port>/<mirror-host>/...) name
 * the mirror behind it: that is the mirror to allow, and whose keys sign its Release.
 */
export function unwrapProxied(entries: SourceEntry[], port: number): SourceEntry[] {
  return entries.map((entry) => {
    const match = /^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(?::(\d+))?(\/.*)$/i.exec(entry.uri);
    if (match === null || Number(match[2] ?? "80") !== port) return entry;
    const parsed = parseProxyTarget("GET", match[3]!);
    return parsed.ok ? { ...entry, uri: parsed.target.url } : entry;
  });
}
