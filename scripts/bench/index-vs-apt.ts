/**
 * Index benchmark against APT: resolving `hello` from the real bookworm index
 * (../shared/fixtures/debian-bookworm/) with a compiled binary, cold and warm, beside `apt-cache show
 * hello` on an isolated APT holding the same index. Timed with hyperfine, no shell in between (-N).
 *
 * Usage: bun scripts/bench/index-vs-apt.ts [--rounds 3] [--cold-runs 2] [--warm-runs 10] [--name hello]
 *
 * Method.
 *  - apt-p2p: `apt-p2p` has no offline resolve command (`get` always downloads; `dht lookup` needs a
 *    daemon), so scripts/bench/lib/resolve-cli.ts, get's own resolveNames() without the download, is
 *    compiled with `bun build --compile --bytecode` (as `bun run build` compiles src/cli.ts). Its sources file
 *    names a file: mirror in the temp dir whose dists/bookworm/ holds the fixture's InRelease and
 *    Packages.xz, signed-by the fixture's keyring. Cold: no cache dir (gpgv on InRelease, Packages.xz
 *    checked against it, decompressed, parsed and stored into a fresh SQLite file, then resolved).
 *    Warm: the same command again (InRelease read and found unchanged, one SQLite lookup).
 *    Goals: warm (start of the compiled binary included) < 150 ms, cold < 2 s.
 *  - APT: APT_CONFIG names a config of our own: Dir::Etc, Dir::State (lists, an empty status) and
 *    Dir::Cache in the temp dir; the lists dir holds the fixture's InRelease and Packages (decompressed,
 *    as APT stores it) under the names `apt-get update` would give them for a source line
 *    `http://mirror.invalid/debian bookworm main`. Cold: pkgcache.bin and srcpkgcache.bin removed
 *    before each run, so apt-cache builds them; warm: they are there.
 *  - Also timed: `apt-p2p --version` of src/cli.ts compiled the same way (the start of the real binary),
 *    and a compiled one-line script (the start of any `bun build --compile` binary: Bun's floor).
 *  - --rounds rounds, each one hyperfine run of the cold pair then one of the warm pair; a round's
 *    ratio is median(apt-p2p) / median(apt-cache) of that round. Both sides must print the same version.
 *  The temp dir is removed at the end, also on failure or Ctrl-C.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { childEnv, REPO_ROOT } from "./lib/fixture.ts";
import { compared, median, printResult, type ResultRow } from "./lib/report.ts";
import { runBenchmark } from "./lib/exit.ts";

const FIXTURE = join(REPO_ROOT, "../shared/fixtures/debian-bookworm");
/** The host in APT's list file names; .invalid is reserved (RFC 2606) and never resolves. */
const LIST_PREFIX = "mirror.invalid_debian_dists_bookworm";
const COMMAND_TIMEOUT_MS = 300_000;
const WARMUP_RUNS = 3;

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    "cold-runs": { type: "string", default: "2" },
    "warm-runs": { type: "string", default: "10" },
    name: { type: "string", default: "hello" },
  },
});
const rounds = positiveInt("rounds");
const coldRuns = positiveInt("cold-runs");
const warmRuns = positiveInt("warm-runs");
const name = flags.name!;

function positiveInt(flag: keyof typeof flags): number {
  const n = Number(flags[flag]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive whole number, not '${flags[flag]}'`);
  return n;
}

const log = (line: string) => process.stderr.write(`[index-vs-apt] ${line}\n`);

let work: string | undefined;
let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  if (work !== undefined) await rm(work, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function run(cmd: string[], env: Record<string, string> = childEnv()): Promise<string> {
  const proc = Bun.spawn(cmd, { cwd: REPO_ROOT, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const code = await proc.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (code ${code}):\n${out.slice(-1000)}${err.slice(-2000)}`);
  return out;
}

interface Side {
  label: string;
  command: string[];
  /** Run before each timed run of the cold case (hyperfine --prepare). */
  prepareCold: string;
  env: Record<string, string>;
}

/** Times the commands one after the other (hyperfine), returning each one's times in ms. */
async function hyperfine(commands: { command: string[]; prepare?: string }[], runs: number, warmup: number, env: Record<string, string>): Promise<number[][]> {
  const out = join(work!, `hyperfine-${Date.now()}.json`);
  const args = ["hyperfine", "-N", "--style", "none", "--runs", String(runs), "--warmup", String(warmup), "--export-json", out];
  for (const c of commands) if (c.prepare !== undefined) args.push("--prepare", c.prepare);
  args.push(...commands.map((c) => c.command.join(" ")));
  await run(args, env);
  const parsed = JSON.parse(await readFile(out, "utf8")) as { results: { times: number[] }[] };
  return parsed.results.map((r) => r.times.map((s) => s * 1000));
}

async function main(): Promise<void> {
  const missing = ["hyperfine", "apt-cache", "gpgv", "xz"].filter((t) => Bun.which(t) === null);
  if (missing.length > 0) throw new Error(`missing ${missing.join(", ")}: apt-get install -y ${missing.map((t) => (t === "apt-cache" ? "apt" : t === "xz" ? "xz-utils" : t)).join(" ")}`);
  work = await mkdtemp(join(tmpdir(), "apt-p2p-bench-index-"));

  // apt-p2p: a file: mirror of the fixture and the compiled binaries.
  const dists = join(work, "mirror/dists/bookworm");
  await mkdir(join(dists, "main/binary-amd64"), { recursive: true });
  await copyFile(join(FIXTURE, "InRelease"), join(dists, "InRelease"));
  await copyFile(join(FIXTURE, "main/binary-amd64/Packages.xz"), join(dists, "main/binary-amd64/Packages.xz"));
  const sources = join(work, "sources.list");
  await writeFile(sources, `deb [signed-by=${join(FIXTURE, "debian-archive-keyring.gpg")}] file://${join(work, "mirror")} bookworm main\n`);
  const ourCache = join(work, "p2p-cache");
  const emptyAptDir = join(work, "empty-apt");
  await mkdir(emptyAptDir);
  const resolveBin = join(work, "resolve-cli");
  const cliBin = join(work, "apt-p2p");
  const floorBin = join(work, "floor");
  await writeFile(join(work, "floor.ts"), 'console.log("started");\n');
  log("compiling scripts/bench/lib/resolve-cli.ts, src/cli.ts and a one-line script with bun build --compile");
  await run([process.execPath, "build", "--compile", "--bytecode", "scripts/bench/lib/resolve-cli.ts", "--outfile", resolveBin]);
  await run([process.execPath, "build", "--compile", "--bytecode", "src/cli.ts", "--outfile", cliBin]);
  await run([process.execPath, "build", "--compile", "--bytecode", join(work, "floor.ts"), "--outfile", floorBin]);

  // APT: an isolated configuration holding the same index.
  const apt = join(work, "apt");
  const lists = join(apt, "lists");
  const aptCache = join(apt, "cache");
  for (const d of ["lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d"]) await mkdir(join(apt, d), { recursive: true });
  await writeFile(join(apt, "status"), "");
  await writeFile(join(apt, "etc/sources.list"), `deb [signed-by=${join(FIXTURE, "debian-archive-keyring.gpg")}] http://mirror.invalid/debian bookworm main\n`);
  await copyFile(join(FIXTURE, "InRelease"), join(lists, `${LIST_PREFIX}_InRelease`));
  await run(["sh", "-c", `xz -dc "$0" > "$1"`, join(FIXTURE, "main/binary-amd64/Packages.xz"), join(lists, `${LIST_PREFIX}_main_binary-amd64_Packages`)]);
  const aptConfig = join(apt, "apt.conf");
  await writeFile(
    aptConfig,
    [
      `Dir::Etc "${join(apt, "etc")}/";`,
      `Dir::Etc::main "apt.conf";`,
      `Dir::Etc::parts "apt.conf.d/";`,
      `Dir::Etc::sourcelist "sources.list";`,
      `Dir::Etc::sourceparts "sources.list.d/";`,
      `Dir::Etc::preferences "preferences";`,
      `Dir::Etc::preferencesparts "preferences.d/";`,
      `Dir::State "${apt}/";`,
      `Dir::State::lists "${lists}/";`,
      `Dir::State::status "${join(apt, "status")}";`,
      `Dir::Cache "${aptCache}/";`,
      // Debian's container images turn the binary caches off (docker-clean); this APT keeps them.
      `Dir::Cache::pkgcache "pkgcache.bin";`,
      `Dir::Cache::srcpkgcache "srcpkgcache.bin";`,
      `APT::Architecture "amd64";`,
      `APT::Architectures { "amd64"; };`,
      "",
    ].join("\n"),
  );
  const env = childEnv({ APT_CONFIG: aptConfig });

  const ours: Side = { label: "apt-p2p", command: [resolveBin, sources, ourCache, emptyAptDir, name], prepareCold: `rm -rf ${ourCache}`, env };
  const theirs: Side = {
    label: "apt-cache",
    command: ["apt-cache", "show", name],
    prepareCold: `rm -f ${join(aptCache, "pkgcache.bin")} ${join(aptCache, "srcpkgcache.bin")}`,
    env,
  };

  // Both must find the same version before anything is timed.
  const ourLine = (await run(ours.command, env)).trim();
  const aptShow = await run(theirs.command, env);
  const aptVersion = /^Version: (.+)$/m.exec(aptShow)?.[1];
  const ourVersion = ourLine.split(" ")[1];
  if (aptVersion === undefined || ourVersion !== aptVersion) throw new Error(`versions differ: apt-p2p '${ourLine}', apt-cache '${aptVersion}'`);
  log(`both resolve ${name} to ${ourVersion}`);

  const cold = { ours: [] as number[], theirs: [] as number[], ratios: [] as number[] };
  const warm = { ours: [] as number[], theirs: [] as number[], ratios: [] as number[] };
  const start: number[] = [];
  const floor: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const [c0, c1] = await hyperfine(
      [
        { command: ours.command, prepare: ours.prepareCold },
        { command: theirs.command, prepare: theirs.prepareCold },
      ],
      coldRuns,
      0,
      env,
    );
    const [w0, w1, s, f] = await hyperfine(
      [{ command: ours.command }, { command: theirs.command }, { command: [cliBin, "--version"] }, { command: [floorBin] }],
      warmRuns,
      WARMUP_RUNS,
      env,
    );
    cold.ours.push(...c0!);
    cold.theirs.push(...c1!);
    cold.ratios.push(median(c0!) / median(c1!));
    warm.ours.push(...w0!);
    warm.theirs.push(...w1!);
    warm.ratios.push(median(w0!) / median(w1!));
    start.push(...s!);
    floor.push(...f!);
    log(
      `round ${r + 1}: cold apt-p2p ${median(c0!).toFixed(0)} ms, apt-cache ${median(c1!).toFixed(0)} ms; ` +
        `warm apt-p2p ${median(w0!).toFixed(1)} ms, apt-cache ${median(w1!).toFixed(1)} ms; apt-p2p --version ${median(s!).toFixed(1)} ms, one-line binary ${median(f!).toFixed(1)} ms`,
    );
  }

  const rows: ResultRow[] = [
    { ...compared(`cold resolve of ${name} (verify, parse, store)`, "ms", cold.ours, "apt-cache show, no pkgcache.bin", cold.theirs), ratios: cold.ratios, goal: { of: "value", op: "<", target: 2000 } },
    { ...compared(`warm resolve of ${name}, binary start included`, "ms", warm.ours, "apt-cache show, pkgcache.bin built", warm.theirs), ratios: warm.ratios, goal: { of: "value", op: "<", target: 150 } },
    { name: "apt-p2p --version (start of the compiled binary)", unit: "ms", values: start },
    { name: "a compiled one-line script (start of any Bun binary)", unit: "ms", values: floor },
  ];
  printResult({
    benchmark: "index-vs-apt",
    setup:
      `bookworm main/amd64 (63,440 packages): compiled get-resolve (gpgv + Packages.xz → SQLite) vs apt-cache show on an isolated APT; ` +
      `hyperfine -N, ${rounds} rounds of ${coldRuns} cold and ${warmRuns} warm runs`,
    rows,
  });
}

await runBenchmark("index-vs-apt benchmark", main, { cleanup });
