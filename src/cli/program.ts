/** The commander program: commands, options and their precedence (flag > environment > default). */
import { Command, Option } from "commander";
import { AptP2pError, ErrorCode } from "../errors.ts";
import packageJson from "../../package.json";
import { DEFAULT_GET_CONCURRENCY, defaultCacheDir, hostArchitecture, resolvePath, type GetConfig } from "../config.ts";
import { EXIT_CODE_HELP } from "./exit-codes.ts";
import { runGet, type GetDeps } from "./get.ts";
import type { CliIO } from "./io.ts";

export const VERSION: string = packageJson.version;

interface GetFlags {
  dest: string;
  sources?: string;
  aptDir: string;
  cacheDir?: string;
  arch?: string;
  refresh: boolean;
  json: boolean;
  quiet: boolean;
  jobs: string;
}

export function buildProgram(io: CliIO, getDeps?: GetDeps): Command {
  const program = new Command("apt-p2p")
    .description(
      "Peer-to-peer downloader and caching proxy for APT. Every file is checked against the SHA-256 in " +
        "the archive's signed index before it is written.",
    )
    .version(VERSION, "-V, --version", "print the version")
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride()
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`);

  program
    .command("get")
    .description(
      "Download Debian packages by name, verified against the signed index of the APT sources. " +
        "Each PACKAGE is NAME (newest version), NAME=VERSION, NAME:ARCH, a file name such as " +
        "hello_2.10-3_amd64.deb, or a pool path.",
    )
    .argument("<package...>", "packages to download")
    .addOption(new Option("-d, --dest <dir>", "directory to write the .deb files to").default("."))
    .addOption(new Option("-s, --sources <file>", "APT sources file (one-line or deb822) replacing the system's").env("APT_P2P_SOURCES"))
    .addOption(new Option("--apt-dir <dir>", "APT configuration directory (sources.list, trusted.gpg.d)").default("/etc/apt").env("APT_P2P_APT_DIR"))
    .addOption(new Option("--cache-dir <dir>", "cache directory (default: $XDG_CACHE_HOME/apt-p2p or ~/.cache/apt-p2p)").env("APT_P2P_CACHE_DIR"))
    .addOption(new Option("-a, --arch <arch>", "architecture to download for (default: the host's, from dpkg)"))
    .addOption(new Option("--refresh", "re-fetch and re-verify the indexes even if unchanged").default(false))
    .addOption(new Option("--json", "print one JSON object per file").default(false).conflicts("quiet"))
    .addOption(new Option("-q, --quiet", "print nothing but errors").default(false))
    .addOption(new Option("-j, --jobs <n>", "files to download at once").default(String(DEFAULT_GET_CONCURRENCY)))
    .addHelpText("after", `\n${EXIT_CODE_HELP}\n`)
    .action(async (names: string[], flags: GetFlags) => {
      const jobs = Number(flags.jobs);
      if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) {
        throw new AptP2pError(ErrorCode.Usage, `Invalid --jobs '${flags.jobs}': expected a whole number from 1 to 64`);
      }
      const config: GetConfig = {
        sourcesFile: flags.sources === undefined ? undefined : resolvePath(io.cwd, flags.sources),
        aptDir: resolvePath(io.cwd, flags.aptDir),
        cacheDir: resolvePath(io.cwd, flags.cacheDir ?? defaultCacheDir(io.env)),
        dest: resolvePath(io.cwd, flags.dest),
        arches: [flags.arch ?? hostArchitecture()],
        refresh: flags.refresh,
        output: flags.json ? "json" : flags.quiet ? "quiet" : "auto",
        concurrency: jobs,
      };
      await runGet(names, config, io, getDeps);
    });

  return program;
}
