/**
 * The commander program: its commands, and every option declared once (OPTIONS) with its precedence,
 * flag > environment > configuration file > default, resolved once per run (src/config-file.ts).
 */
import { Command, Option } from "commander";
import { access, constants } from "node:fs/promises";
import packageJson from "../../package.json";
import { configFileList, envName, loadConfigFiles, resolveSettings, Settings, type ConfigFile, type SettingCatalog, type SettingSpec, type SettingValue } from "../config-file.ts";
import {
  bootstrapEntries,
  DEFAULT_GET_CONCURRENCY,
  DEFAULT_PORT,
  defaultCacheDir,
  defaultStateDir,
  hostArchitecture,
  MAX_GET_CONCURRENCY,
  MAX_UPLOADS_PER_ADDRESS,
  parseBootstrap,
  parseCount,
  parsePort,
  resolvePath,
  type GetConfig,
} from "../config.ts";
import { DEFAULT_UPLOADS_PER_ADDRESS, type ServeConfig } from "../daemon/daemon.ts";
import { idFromHex } from "../dht/id.ts";
import { parseRate } from "../transfer/throttle.ts";
import type { DhtStats } from "../dht/node.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import { LOG_FORMATS, LOG_LEVELS, logAptLines, stderrLogger, type LogFormat, type Logger, type LogLevel } from "../log.ts";
import { askDaemon, printLookup, printStats, type LookupAnswer } from "./dht.ts";
import { printConfig } from "./config-cmd.ts";
import { EXIT_CODE_HELP } from "./exit-codes.ts";
import { resolveNames, runGet, type GetDeps } from "./get.ts";
import type { CliIO } from "./io.ts";
import { runServe, untilSignal } from "./serve.ts";
import { loadSourcesFile, loadSystemSources, type SourceEntry } from "../debian/sources.ts";
import { parseCidrList, parseMirrorAllow } from "../proxy/allow.ts";
import { parseProxyTarget } from "../proxy/target.ts";
import { aptConfigText } from "./apt-config.ts";
import { parseCacheSize } from "../store/quota.ts";
import { runCacheGc, runCacheLs, runCacheVerify } from "./cache.ts";

export const VERSION: string = packageJson.version;

/** The section of the files each command reads: apt-config shows serve's setup; dht asks as get does. */
export const COMMAND_SECTIONS = {
  get: "get",
  "dht lookup": "get",
  "dht stats": "get",
  serve: "serve",
  "apt-config": "serve",
  // The cache commands act on the daemon's cache: its directory and quota.
  "cache ls": "serve",
  "cache gc": "serve",
  "cache verify": "serve",
} as const;

/** A setting as an option: what its flag and help look like. */
export interface OptionSpec extends SettingSpec {
  /** A one-letter flag besides the long one, e.g. "-p". */
  short?: string;
  /** The value's placeholder in help, e.g. "<port>"; absent for switches. */
  arg?: string;
  /** Help for the flag shown in help: `--name`, or `--no-name` for a switch that is on by default. */
  description: string;
  /** The default as help shows it, when the value itself would not say it. */
  defaultHelp?: string;
}

const INDEX = ["get", "dht lookup"];
const CACHE_COMMANDS = ["cache ls", "cache gc", "cache verify"];
const GET_AND_SERVE = ["get", "serve"];

/** APT's own package cache, seeded by default. */
export const APT_ARCHIVES = "/var/cache/apt/archives";

function notEmpty(accepts: string): (text: string, what: string) => void {
  return (text, what) => {
    if (text.trim() === "") throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} '${text}': expected ${accepts}`);
  };
}

function oneOf(choices: readonly string[]): (text: string, what: string) => void {
  return (text, what) => {
    if (!choices.includes(text)) throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} '${text}': expected one of ${choices.join(", ")}`);
  };
}

function checkArch(text: string, what: string): void {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(text)) throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} '${text}': expected a dpkg architecture name, such as amd64 or arm64`);
}

function checkDaemonUrl(text: string, what: string): void {
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} '${text}': expected an http:// URL, such as http://127.0.0.1:${DEFAULT_PORT}`);
  }
}

/**
 * Every option that is a setting: a flag, an APT_P2P_* variable and a key of the configuration files.
 * Per-run output switches (--json, --quiet) and --config itself are flags only.
 */
export const OPTIONS: readonly OptionSpec[] = [
  // Where the APT sources and the index come from.
  { name: "sources", short: "-s", arg: "<file>", kind: "value", commands: [...INDEX, "serve", "apt-config"], description: "APT sources file (one-line or deb822) replacing the system's", defaultHelp: "the system's, from --apt-dir", check: notEmpty("a file name") },
  { name: "apt-dir", arg: "<dir>", kind: "value", commands: [...INDEX, "serve", "apt-config"], description: "APT configuration directory (sources.list, trusted.gpg.d)", default: "/etc/apt", check: notEmpty("a directory") },
  { name: "cache-dir", arg: "<dir>", kind: "value", commands: [...INDEX, "serve", ...CACHE_COMMANDS], description: "cache directory", default: defaultCacheDir, defaultHelp: "$XDG_CACHE_HOME/apt-p2p or ~/.cache/apt-p2p", check: notEmpty("a directory") },
  { name: "arch", short: "-a", arg: "<arch>", kind: "value", commands: INDEX, description: "architecture", default: () => hostArchitecture(), defaultHelp: "the host's, from dpkg", check: checkArch },
  { name: "refresh", kind: "switch", commands: INDEX, description: "re-fetch and re-verify the indexes even if unchanged", default: false },
  // get
  { name: "dest", short: "-d", arg: "<dir>", kind: "value", commands: ["get"], description: "directory to write the .deb files to", default: ".", check: notEmpty("a directory") },
  { name: "jobs", short: "-j", arg: "<n>", kind: "value", commands: ["get"], description: "files to download at once", default: String(DEFAULT_GET_CONCURRENCY), check: (text, what) => void parseCount(text, what, MAX_GET_CONCURRENCY) },
  { name: "dht", kind: "switch", commands: ["get"], description: "download from the mirror only, without looking for peers", default: true },
  { name: "daemon", arg: "<url>", kind: "value", commands: ["get", "dht stats", "dht lookup"], description: "the daemon's control API", defaultHelp: `http://127.0.0.1:PORT, PORT as serve resolves it (${DEFAULT_PORT})`, check: checkDaemonUrl },
  // DHT, state and logs
  { name: "bootstrap", arg: "<host:port,...>", kind: "value", commands: GET_AND_SERVE, description: "DHT nodes to join through", defaultHelp: "the contacts the daemon saved in --state-dir", check: (text, what) => void bootstrapEntries(text, what) },
  { name: "state-dir", arg: "<dir>", kind: "value", commands: GET_AND_SERVE, description: "state directory (node id, saved DHT contacts)", default: defaultStateDir, defaultHelp: "$XDG_STATE_HOME/apt-p2p or ~/.local/state/apt-p2p", check: notEmpty("a directory") },
  { name: "log-level", arg: "<level>", kind: "value", commands: GET_AND_SERVE, description: `least important log lines written: ${LOG_LEVELS.join(", ")}`, default: "info", check: oneOf(LOG_LEVELS) },
  { name: "log-format", arg: "<format>", kind: "value", commands: GET_AND_SERVE, description: `log lines as ${LOG_FORMATS.join(" or ")}`, default: "text", check: oneOf(LOG_FORMATS) },
  // serve
  { name: "port", short: "-p", arg: "<port>", kind: "value", commands: ["serve", "apt-config"], description: "TCP and UDP port (0: any free one)", default: String(DEFAULT_PORT), check: (text, what) => void parsePort(text, what, true) },
  { name: "bind", arg: "<address>", kind: "value", commands: ["serve"], description: "address to listen on", default: "0.0.0.0", check: notEmpty("an IP address") },
  { name: "seed-dir", arg: "<dir>", kind: "list", commands: ["serve"], description: "also serve the .deb files of this directory (repeatable)", defaultHelp: "none", check: notEmpty("a directory") },
  { name: "seed-apt-archives", kind: "switch", commands: ["serve"], description: `do not serve ${APT_ARCHIVES} (served by default when readable)`, default: true },
  { name: "upload-limit", arg: "<rate>", kind: "value", commands: ["serve"], description: "upload rate to all peers together, e.g. 2MB/s or 500KiB/s (0: unlimited)", default: "0", check: (text) => void parseRate(text) },
  { name: "max-uploads-per-address", arg: "<n>", kind: "value", commands: ["serve"], description: "concurrent uploads to one address", default: String(DEFAULT_UPLOADS_PER_ADDRESS), check: (text, what) => void parseCount(text, what, MAX_UPLOADS_PER_ADDRESS) },
  { name: "cache-size", arg: "<size>", kind: "value", commands: ["serve", "cache gc"], description: "cache quota, e.g. 10G, 500MiB, or 5% of the disk", defaultHelp: "unlimited", check: (text) => void parseCacheSize(text) },
  { name: "proxy-allow", arg: "<cidr,...>", kind: "value", commands: ["serve"], description: "APT proxy clients allowed besides this machine, e.g. 192.168.1.0/24", default: "", check: (text, what) => void parseCidrList(text, what) },
  { name: "mirror-allow", arg: "<host[:port],...>", kind: "value", commands: ["serve"], description: "mirrors the proxy may forward to besides those in the APT sources", default: "", check: (text) => void parseMirrorAllow(text) },
  { name: "status-allow", arg: "<cidr,...>", kind: "value", commands: ["serve"], description: "status page and /metrics clients allowed besides this machine", default: "", check: (text, what) => void parseCidrList(text, what) },
  // apt-config
  { name: "host", arg: "<address>", kind: "value", commands: ["apt-config"], description: "the address APT reaches apt-p2p at", default: "127.0.0.1", check: notEmpty("a host name or address") },
];

export const SETTINGS: SettingCatalog = { specs: OPTIONS, sectionOf: COMMAND_SECTIONS };

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
  /** The system-wide configuration file (default /etc/apt-p2p/apt-p2p.conf); tests point it elsewhere. */
  systemConfigFile?: string;
}

/** commander's attribute for an option name: "seed-dir" → "seedDir". */
function attributeName(name: string): string {
  return name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

function defaultText(spec: OptionSpec): string | undefined {
  if (spec.defaultHelp !== undefined) return spec.defaultHelp;
  return typeof spec.default === "string" && spec.default !== "" ? spec.default : undefined;
}

/**
 * The commander options of a setting. No commander default and no .env(): commander would read
 * process.env, not the injected environment, so it only parses flags and we rank the sources. A switch
 * gets both --name and --no-name, so that a flag can undo what a file set; help shows the one that
 * changes the default.
 */
function commanderOptions(spec: OptionSpec): Option[] {
  const shownDefault = defaultText(spec);
  const help = `${spec.description} (${shownDefault === undefined ? "" : `default: ${shownDefault}; `}env ${envName(spec.name)})`;
  if (spec.kind === "switch") {
    const [shown, hidden] = spec.default === true ? [`--no-${spec.name}`, `--${spec.name}`] : [`--${spec.name}`, `--no-${spec.name}`];
    return [new Option(shown, help), new Option(hidden).hideHelp()];
  }
  const option = new Option(`${spec.short === undefined ? "" : `${spec.short}, `}--${spec.name} ${spec.arg ?? "<value>"}`, help);
  if (spec.kind === "list") option.argParser((value: string, previous: string[] = []) => [...previous, value]);
  return [option];
}

/** Adds the options that the command at `path` ("serve", "dht lookup") takes. */
function addSettings(command: Command, path: string): Command {
  for (const spec of OPTIONS) if (spec.commands.includes(path)) for (const option of commanderOptions(spec)) command.addOption(option);
  return command;
}

/** The settings given as flags on this command line. */
function givenFlags(command: Command): Map<string, SettingValue> {
  const flags = new Map<string, SettingValue>();
  for (const spec of OPTIONS) {
    const key = attributeName(spec.name);
    if (command.getOptionValueSource(key) === "cli") flags.set(spec.name, command.getOptionValue(key) as SettingValue);
  }
  return flags;
}

/** The logger that --log-level and --log-format ask for (both checked against their choices already). */
function loggerOf(s: Settings, io: CliIO): Logger {
  return stderrLogger(io, s.text("log-level") as LogLevel, s.text("log-format") as LogFormat);
}

function indexConfig(s: Settings, io: CliIO) {
  const sources = s.optional("sources");
  return {
    sourcesFile: sources === undefined ? undefined : resolvePath(io.cwd, sources),
    aptDir: resolvePath(io.cwd, s.text("apt-dir")),
    cacheDir: resolvePath(io.cwd, s.text("cache-dir")),
    arches: [s.text("arch")],
    refresh: s.on("refresh"),
  };
}

export function buildProgram(io: CliIO, deps: ProgramDeps = {}): Command {
  const program = new Command("apt-p2p")
    .description(
      "Peer-to-peer downloader and caching proxy for APT. Every file is checked against the SHA-256 in " +
        "the archive's signed index before it is written.",
    )
    .version(VERSION, "-V, --version", "print the version")
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .addOption(new Option("--config <file>", `configuration file read after /etc/apt-p2p/apt-p2p.conf and ~/.config/apt-p2p/apt-p2p.conf (env ${envName("config")})`))
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`);

  // The files are read once per run, by the first command that asks.
  let files: Promise<ConfigFile[]> | undefined;
  const configFiles = () => {
    const list = configFileList(io.env, io.cwd, program.opts<{ config?: string }>().config, deps.systemConfigFile);
    return (files ??= loadConfigFiles(list, SETTINGS));
  };
  /** The settings of the command at `path`, given these flags; `only` some of them. */
  const settingsOf = async (path: string, flags: Map<string, SettingValue>, only?: string[]) =>
    new Settings(path, resolveSettings(SETTINGS, path, { flags, env: io.env, files: await configFiles() }, only));
  /** The daemon's default URL: the port `serve` would listen on, from the same files and environment. */
  const daemonUrl = async (s: Settings) => {
    const explicit = s.optional("daemon");
    if (explicit !== undefined) return explicit;
    const serve = await settingsOf("serve", new Map(), ["port"]);
    // A daemon on "any free port" (0) cannot be found by its port: try the usual one.
    const port = parsePort(serve.text("port"), "--port", true) || DEFAULT_PORT;
    return `http://127.0.0.1:${port}`;
  };

  addSettings(
    program
      .command("get")
      .description(
        "Download Debian packages by name, verified against the signed index of the APT sources. " +
          "Each PACKAGE is NAME (newest version), NAME=VERSION, NAME:ARCH, a file name such as " +
          "hello_2.10-3_amd64.deb, or a pool path.",
      )
      .argument("<package...>", "packages to download"),
    "get",
  )
    .addOption(new Option("--json", "print one JSON object per file").default(false).conflicts("quiet"))
    .addOption(new Option("-q, --quiet", "print nothing but errors").default(false))
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`)
    .action(async (names: string[], flags: { json: boolean; quiet: boolean }, command: Command) => {
      const s = await settingsOf("get", givenFlags(command));
      const daemon = s.optional("daemon");
      const config: GetConfig = {
        ...indexConfig(s, io),
        dest: resolvePath(io.cwd, s.text("dest")),
        output: flags.json ? "json" : flags.quiet ? "quiet" : "auto",
        concurrency: parseCount(s.text("jobs"), "--jobs", MAX_GET_CONCURRENCY),
        dht: {
          enabled: s.on("dht"),
          daemonUrl: await daemonUrl(s),
          daemonExplicit: daemon !== undefined,
          bootstrap: await parseBootstrap(s.optional("bootstrap") ?? ""),
          stateDir: resolvePath(io.cwd, s.text("state-dir")),
          bind: "0.0.0.0",
        },
      };
      // get still writes APT-style "W: " lines; until it takes a Logger they pass through one.
      await runGet(names, config, { ...io, stderr: logAptLines(loggerOf(s, io), io.stderr) }, deps.get);
    });

  addSettings(program.command("serve").description("Run the daemon: DHT node on UDP and its HTTP side on TCP, on the same port number."), "serve")
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`)
    .action(async (_flags: unknown, command: Command) => {
      const s = await settingsOf("serve", givenFlags(command));
      const seedDirs = s.list("seed-dir").map((d) => resolvePath(io.cwd, d));
      if (s.on("seed-apt-archives") && (await isReadableDir(APT_ARCHIVES))) seedDirs.push(APT_ARCHIVES);
      const port = parsePort(s.text("port"), "--port", true);
      const aptDir = resolvePath(io.cwd, s.text("apt-dir"));
      const sourcesFile = s.optional("sources");
      const sources = sourcesFile === undefined ? (await loadSystemSources(aptDir)).entries : await loadSourcesFile(resolvePath(io.cwd, sourcesFile));
      const config: ServeConfig = {
        port,
        bind: s.text("bind"),
        bootstrap: await parseBootstrap(s.optional("bootstrap") ?? ""),
        stateDir: resolvePath(io.cwd, s.text("state-dir")),
        cacheDir: resolvePath(io.cwd, s.text("cache-dir")),
        version: VERSION,
        seedDirs,
        uploadLimit: parseRate(s.text("upload-limit")),
        maxUploadsPerAddress: parseCount(s.text("max-uploads-per-address"), "--max-uploads-per-address", MAX_UPLOADS_PER_ADDRESS),
        sources: unwrapProxied(sources, port),
        aptDir,
        proxyAllow: parseCidrList(s.text("proxy-allow"), "--proxy-allow"),
        mirrorAllow: parseMirrorAllow(s.text("mirror-allow")),
        statusAllow: parseCidrList(s.text("status-allow"), "--status-allow"),
        cacheSize: s.optional("cache-size"),
      };
      await runServe(config, io, (deps.stopServe ?? untilSignal)(), loggerOf(s, io));
    });

  addSettings(
    program.command("apt-config").description("Print how to send APT through the proxy: the apt.conf line, or this machine's sources rewritten."),
    "apt-config",
  ).action(async (_flags: unknown, command: Command) => {
    const s = await settingsOf("apt-config", givenFlags(command));
    const port = parsePort(s.text("port"), "--port");
    const aptDir = resolvePath(io.cwd, s.text("apt-dir"));
    const given = s.optional("sources");
    const sourcesFile = given === undefined ? undefined : resolvePath(io.cwd, given);
    const entries = sourcesFile === undefined ? (await loadSystemSources(aptDir)).entries : await loadSourcesFile(sourcesFile);
    // Sources already in the prefix form are shown as the mirrors behind them, then rewritten again.
    io.stdout(aptConfigText(unwrapProxied(entries, port), { host: s.text("host"), port, sourcesOrigin: sourcesFile ?? `${aptDir}/sources.list{,.d}` }));
  });

  const config = program
    .command("config")
    .description("Print the configuration that serve and get resolve, and where each value comes from. Takes their options, to show their effect.")
    .option("--json", "print one JSON object", false);
  for (const spec of OPTIONS) {
    if (spec.commands.includes("serve") || spec.commands.includes("get")) for (const option of commanderOptions(spec)) config.addOption(option);
  }
  config.action(async (flags: { json: boolean }, command: Command) => {
    const given = givenFlags(command);
    const loaded = await configFiles();
    const sections = await Promise.all(
      (["serve", "get"] as const).map(async (path) => ({ command: path, settings: (await settingsOf(path, given)).values })),
    );
    printConfig({ files: loaded, sections }, io, flags.json);
  });

  const cache = program.command("cache").description("Look at, trim and check the content cache (with or without a running daemon).");
  addSettings(
    cache.command("ls").description("List the cached files: size, last use, name, SHA-256; least recently used (next to be evicted) first."),
    "cache ls",
  )
    .option("--json", "print one JSON object per file", false)
    .action(async (flags: { json: boolean }, command: Command) => {
      const s = await settingsOf("cache ls", givenFlags(command));
      await runCacheLs({ cacheDir: resolvePath(io.cwd, s.text("cache-dir")), json: flags.json }, io);
    });
  addSettings(cache.command("gc").description("Evict least recently used files down to --cache-size and tidy the cache's records."), "cache gc").action(
    async (_flags: unknown, command: Command) => {
      const s = await settingsOf("cache gc", givenFlags(command));
      const size = s.optional("cache-size");
      await runCacheGc({ cacheDir: resolvePath(io.cwd, s.text("cache-dir")), cacheSize: size === undefined ? undefined : parseCacheSize(size) }, io);
    },
  );
  addSettings(cache.command("verify").description("Rehash every cached file; remove and report corrupt ones (exit code 13 if any were found)."), "cache verify")
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`)
    .action(async (_flags: unknown, command: Command) => {
      const s = await settingsOf("cache verify", givenFlags(command));
      await runCacheVerify({ cacheDir: resolvePath(io.cwd, s.text("cache-dir")) }, io);
    });

  const dht = program.command("dht").description("Ask the running daemon what its DHT node sees.");
  addSettings(
    dht
      .command("stats")
      .description("Print the node id, routing table, stored values, traffic counters, RTT and lookup times.")
      .option("--json", "print one JSON object", false),
    "dht stats",
  ).action(async (flags: { json: boolean }, command: Command) => {
    const s = await settingsOf("dht stats", givenFlags(command));
    printStats(await askDaemon<DhtStats>(await daemonUrl(s), "/api/dht/stats"), io, flags.json);
  });

  addSettings(
    dht
      .command("lookup")
      .description("Look up the peers of a package (by name, resolved through the signed index) or of a 40-digit hex key.")
      .argument("<package-or-key>", "package name (or NAME=VERSION, file name) or hex key")
      .option("--json", "print one JSON object", false),
    "dht lookup",
  ).action(async (what: string, flags: { json: boolean }, command: Command) => {
    const s = await settingsOf("dht lookup", givenFlags(command));
    let key: string;
    let label: string | undefined;
    if (/^[0-9a-fA-F]{40}$/.test(what)) {
      key = Buffer.from(idFromHex(what)).toString("hex");
    } else {
      const [row] = await resolveNames([what], indexConfig(s, io), io, deps.get);
      key = row!.sha256.slice(0, 40);
      label = `${row!.package} ${row!.version}`;
    }
    const answer = await askDaemon<LookupAnswer>(await daemonUrl(s), `/api/dht/lookup?key=${key}`);
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
