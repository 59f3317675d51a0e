/**
 * Writes BENCHMARKS.md from the outputs scripts/bench/run.sh kept: for each benchmark, files
 * `<name>-<run>.out`, `.err` and `.status` ("<exit code> <seconds>") and `<name>.cmd` (how to rerun it).
 * Benchmarks that print a BENCH_JSON line (scripts/bench/lib/report.ts) are read from it; the DHT
 * lookup, swarm and APT benchmarks print tables and log lines, which are parsed here. Whatever cannot
 * be parsed is still shown: the report includes the last lines of every benchmark's output.
 *
 * Usage: bun scripts/bench/lib/write-report.ts <results dir> <out file> [--quick] [--note TEXT]
 *   --note  a sentence for the top of the report (e.g. that some benchmarks were rerun alone and their
 *           outputs copied into the results directory)
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { BENCH_JSON_PREFIX, describeGoal, formatNumber, median, meets, type BenchResult, type ResultRow } from "./report.ts";
import { REPO_ROOT } from "./fixture.ts";

interface RunOutput {
  out: string;
  err: string;
  code: number;
  seconds: number;
}

interface Benchmark {
  name: string;
  title: string;
  /** Turns one run's output into a result; the default reads the BENCH_JSON line. */
  parse?: (run: RunOutput) => BenchResult;
}

const BENCHMARKS: Benchmark[] = [
  { name: "dht-lookup", title: "DHT lookup: apt-p2p vs bittorrent-dht", parse: parseDhtLookup },
  { name: "swarm", title: "Swarm: apt-p2p get vs aria2c", parse: parseSwarm },
  { name: "apt", title: "APT through the proxy vs direct and apt-cacher-ng", parse: parseApt },
  { name: "peer-serving", title: "Peer serving: apt-p2p serve vs nginx" },
  { name: "index-vs-apt", title: "Index: resolve vs apt-cache (compiled binary)" },
  { name: "index", title: "Index pipeline in-process" },
  { name: "footprint", title: "Footprint of an idle serve" },
];

// ---- parsers of the benchmarks that print tables ----
function num(text: string | undefined): number {
  return text === undefined || text === "-" ? Number.NaN : Number(text);
}

function parseDhtLookup(run: RunOutput): BenchResult {
  const pick = (label: string) => new RegExp(`^${label}\\s+(\\S+?)%?\\s+(\\S+?)%?(?:\\s|$)`, "m").exec(run.out);
  const p50 = pick("lookup p50 \\(ms\\)");
  const p99 = pick("lookup p99 \\(ms\\)");
  const success = pick("success, all");
  const queries = pick("queries per lookup \\(mean\\)");
  const maintenance = /^maintenance sent, B\/s per node\s+(\S+)/m.exec(run.out);
  if (p50 === null || p99 === null || success === null) throw new Error("no lookup table in the output");
  const pair = (name: string, unit: string, m: RegExpExecArray, goal?: ResultRow["goal"]): ResultRow => ({
    name,
    unit,
    values: [num(m[1])],
    anchor: { name: "bittorrent-dht", values: [num(m[2])] },
    ratios: [num(m[1]) / num(m[2])],
    ...(goal === undefined ? {} : { goal }),
  });
  const rows = [
    pair("lookup p50", "ms", p50, { of: "ratio", op: "<=", target: 0.25 }),
    pair("lookup p99", "ms", p99, { of: "value", op: "<", target: 1000 }),
    pair("success (every announcer / the K closest found)", "%", success, { of: "value", op: ">=", target: 99 }),
  ];
  if (queries !== null) rows.push(pair("queries per lookup", "queries", queries));
  if (maintenance !== null) {
    rows.push({ name: "maintenance sent per node (15-min refresh cycle, simulated clock)", unit: "B/s", values: [num(maintenance[1])], goal: { of: "value", op: "<", target: 300 } });
  }
  return { benchmark: "dht-lookup", setup: firstLine(run.out, /^DHT lookup benchmark: (.+)$/m), rows };
}

function parseSwarm(run: RunOutput): BenchResult {
  const series = (re: RegExp) => [...run.err.matchAll(re)].map((m) => Number(m[1]));
  const apt = series(/case 1 run \d+: apt-p2p ([\d.]+) s/g);
  const download = series(/case 1 run \d+: apt-p2p [\d.]+ s \(file ([\d.]+) s\)/g);
  const aria = series(/case 1 run \d+: aria2c ([\d.]+) s/g);
  const tMin = Number(/T_min ([\d.]+) s/.exec(run.err)?.[1]);
  const viaSwarm = series(/case 2 run \d+: swarm ([\d.]+) s/g);
  const noDht = series(/case 2 run \d+: --no-dht ([\d.]+) s/g);
  if (apt.length === 0 || aria.length !== apt.length || download.length !== apt.length) throw new Error("no case 1 runs in the log");
  const size = /^1\. (.+?) file/m.exec(run.out)?.[1] ?? "large";
  const small = /^2\. (\d+) small files/m.exec(run.out)?.[1];
  const rows: ResultRow[] = [
    {
      name: `${size} file, apt-p2p get (whole process)`,
      unit: "s",
      values: apt,
      anchor: { name: "aria2c, all URLs", values: aria },
      ratios: apt.map((a, i) => a / aria[i]!),
      goal: { of: "ratio", op: "<", target: 1 },
    },
    { name: `${size} file, download: T_min / T (share of the ideal rate reached)`, unit: "", values: download.map((d) => tMin / d), goal: { of: "value", op: ">=", target: 0.9 } },
    { name: `${size} file, whole process: T_min / T`, unit: "", values: apt.map((a) => tMin / a) },
  ];
  if (viaSwarm.length > 0 && noDht.length === viaSwarm.length) {
    rows.push({
      name: `${small ?? "small"} small files, get --jobs 8 via the swarm`,
      unit: "s",
      values: viaSwarm,
      anchor: { name: "get --no-dht (mirror only)", values: noDht },
      ratios: viaSwarm.map((s, i) => s / noDht[i]!),
      goal: { of: "ratio", op: "<=", target: 1 },
    });
  }
  return { benchmark: "swarm", setup: firstLine(run.out, /^swarm benchmark: (.+)$/m), rows };
}

function parseApt(run: RunOutput): BenchResult {
  const cases = new Map<number, { name: string; runs: number[]; mirrorShare: string }>();
  for (const m of run.out.matchAll(/^(\d)\. (.+?)\s{2,}[\d.]+\s{2,}([\d. ]+?)\s{2,}(\d+%)/gm)) {
    cases.set(Number(m[1]), { name: m[2]!, runs: m[3]!.trim().split(/\s+/).map(Number), mirrorShare: m[4]! });
  }
  if (cases.size === 0) throw new Error("no case table in the output");
  const rows: ResultRow[] = [];
  const versus = (c: number, base: number, ratio: "ours/anchor" | "anchor/ours", goal: ResultRow["goal"]) => {
    const ours = cases.get(c);
    const anchor = cases.get(base);
    if (ours === undefined) return;
    const row: ResultRow = { name: `${c}. ${ours.name} (${ours.mirrorShare} from the mirror)`, unit: "s", values: ours.runs };
    if (anchor !== undefined && anchor.runs.length === ours.runs.length) {
      row.anchor = { name: `${base}. ${anchor.name}`, values: anchor.runs };
      row.ratios = ours.runs.map((v, i) => (ratio === "ours/anchor" ? v / anchor.runs[i]! : anchor.runs[i]! / v));
      if (ratio === "anchor/ours") row.ratioLabel = "speed-up: anchor / this";
      if (goal !== undefined) row.goal = goal;
    }
    rows.push(row);
  };
  versus(1, 0, "ours/anchor", undefined);
  versus(2, 0, "ours/anchor", undefined);
  versus(3, 2, "ours/anchor", { of: "ratio", op: "<=", target: 1 });
  versus(4, 1, "anchor/ours", { of: "ratio", op: ">=", target: 3 });
  versus(5, 1, "ours/anchor", { of: "ratio", op: "<=", target: 1.1 });
  return { benchmark: "apt", setup: firstLine(run.out, /^APT benchmark: (.+)$/m), rows };
}

function firstLine(text: string, re: RegExp): string {
  return re.exec(text)?.[1] ?? "";
}

function parseJsonLine(run: RunOutput): BenchResult {
  const line = run.out.split("\n").reverse().find((l) => l.startsWith(BENCH_JSON_PREFIX));
  if (line === undefined) throw new Error("no BENCH_JSON line in the output");
  return JSON.parse(line.slice(BENCH_JSON_PREFIX.length)) as BenchResult;
}

/** Rows of several runs of one benchmark, joined by name: every sample kept. */
function merge(results: BenchResult[]): BenchResult {
  const rows = new Map<string, ResultRow>();
  for (const result of results) {
    for (const row of result.rows) {
      const seen = rows.get(row.name);
      if (seen === undefined) {
        rows.set(row.name, structuredClone(row));
        continue;
      }
      seen.values.push(...row.values);
      if (seen.anchor !== undefined && row.anchor !== undefined) seen.anchor.values.push(...row.anchor.values);
      if (seen.ratios !== undefined && row.ratios !== undefined) seen.ratios.push(...row.ratios);
    }
  }
  return { benchmark: results[0]!.benchmark, setup: results[results.length - 1]!.setup, rows: [...rows.values()] };
}

// ---- the report ----
function readRuns(dir: string, name: string): RunOutput[] {
  const runs: RunOutput[] = [];
  for (let i = 1; existsSync(join(dir, `${name}-${i}.status`)); i++) {
    const [code, seconds] = readFileSync(join(dir, `${name}-${i}.status`), "utf8").trim().split(" ").map(Number);
    runs.push({
      out: readFileSync(join(dir, `${name}-${i}.out`), "utf8"),
      err: readFileSync(join(dir, `${name}-${i}.err`), "utf8"),
      code: code!,
      seconds: seconds!,
    });
  }
  return runs;
}

function goalValue(row: ResultRow): number {
  return row.goal?.of === "ratio" ? median(row.ratios ?? []) : median(row.values);
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

function table(rows: ResultRow[]): string[] {
  const lines = ["| figure | median | min – max | anchor | anchor median | ratio (median of runs) | goal | met |", "| --- | ---: | ---: | --- | ---: | ---: | --- | --- |"];
  for (const r of rows) {
    const unit = r.unit === "" ? "" : ` ${r.unit}`;
    const ratio = r.ratios === undefined ? "" : `${formatNumber(median(r.ratios))}${r.ratioLabel !== undefined ? ` (${r.ratioLabel})` : ""}`;
    lines.push(
      `| ${cell(r.name)} | ${formatNumber(median(r.values))}${unit} | ${formatNumber(Math.min(...r.values))} – ${formatNumber(Math.max(...r.values))} | ` +
        `${cell(r.anchor?.name ?? "")} | ${r.anchor === undefined ? "" : `${formatNumber(median(r.anchor.values))}${unit}`} | ${ratio} | ` +
        `${r.goal === undefined ? "" : describeGoal(r.goal, r.unit)} | ${r.goal === undefined ? "" : meets(goalValue(r), r.goal) ? "yes" : "**no**"} |`,
    );
  }
  return lines;
}

function tail(text: string, lines: number): string {
  return text
    .split("\n")
    .filter((l) => !l.startsWith(BENCH_JSON_PREFIX))
    .join("\n")
    .trimEnd()
    .split("\n")
    .slice(-lines)
    .join("\n");
}

async function version(cmd: string[], pattern: RegExp = /(\d+\.\d+(?:\.\d+)?)/): Promise<string> {
  try {
    const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
    const text = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
    await proc.exited;
    return pattern.exec(text)?.[1] ?? "?";
  } catch {
    return "not installed";
  }
}

async function machine(): Promise<string[]> {
  const cpu = cpus();
  const bittorrentDht = JSON.parse(readFileSync(join(REPO_ROOT, "node_modules/bittorrent-dht/package.json"), "utf8")) as { version: string };
  const kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  return [
    `- CPU: ${cpu.length} × ${cpu[0]?.model.trim() ?? "?"}; memory ${(totalmem() / 2 ** 30).toFixed(1)} GiB; Linux ${kernel}`,
    `- Bun ${Bun.version}; anchors: nginx-light ${await version(["nginx", "-v"])}, wrk ${await version(["wrk", "-v"])}, ` +
      `hyperfine ${await version(["hyperfine", "--version"])}, aria2c ${await version(["aria2c", "--version"])}, ` +
      `apt-cacher-ng ${await version(["dpkg-query", "-W", "-f", "${Version}", "apt-cacher-ng"], /(\S+)/)}, apt ${await version(["apt-cache", "--version"])}, bittorrent-dht ${bittorrentDht.version}`,
    `- load average when the report was written: ${loadavg().map((x) => x.toFixed(1)).join(", ")} (the machine is shared: absolute numbers are noisy, ratios are taken within each run)`,
  ];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const noteAt = args.indexOf("--note");
  const note = noteAt >= 0 ? args.splice(noteAt, 2)[1] : undefined;
  const [dir, out] = args.filter((a) => !a.startsWith("--"));
  const quick = args.includes("--quick");
  if (dir === undefined || out === undefined) throw new Error("usage: write-report.ts <results dir> <out file> [--quick]");
  const lines: string[] = [
    "# Benchmarks",
    "",
    `Written by \`scripts/bench/run.sh${quick ? " --quick" : ""}\` on ${new Date().toISOString().slice(0, 10)}${quick ? " — a QUICK smoke run with small parameters, not the reference figures" : ""}.`,
    "Every benchmark runs beside its anchor in the same run; a ratio is the median over runs of the ratio within each run.",
    "Benchmarks are not run by CI. Everything runs on 127.0.0.1; bandwidth shaping, where a benchmark uses it, is `tc` htb on `lo`.",
    ...(note === undefined ? [] : ["", note]),
    "",
    "## Machine",
    "",
    ...(await machine()),
    "",
    "Rerun everything: `bun run bench` (or `scripts/bench/run.sh`, as root: it installs the anchors and shapes `lo`); `--quick` for a smoke run,",
    "`--only NAME,...` for some benchmarks. Each benchmark is a script that also runs alone; its command is given below.",
    "",
  ];
  const summary: string[] = ["## Goals at a glance", "", "| benchmark | figure | value | goal | met |", "| --- | --- | ---: | --- | --- |"];
  const sections: string[] = [];
  for (const bench of BENCHMARKS) {
    const runs = readRuns(dir, bench.name);
    if (runs.length === 0) continue;
    const cmdFile = join(dir, `${bench.name}.cmd`);
    const cmd = existsSync(cmdFile) ? readFileSync(cmdFile, "utf8").trim() : "";
    const seconds = runs.reduce((a, r) => a + r.seconds, 0);
    sections.push(`## ${bench.title}`, "");
    const ok = runs.filter((r) => r.code === 0);
    const failed = runs.filter((r) => r.code !== 0);
    let result: BenchResult | undefined;
    let parseError = "";
    try {
      if (ok.length > 0) result = merge(ok.map(bench.parse ?? parseJsonLine));
    } catch (err) {
      parseError = err instanceof Error ? err.message : String(err);
    }
    if (result !== undefined) {
      sections.push(`Setup: ${result.setup}.`, "");
      sections.push(...table(result.rows), "");
      for (const r of result.rows) {
        if (r.goal === undefined) continue;
        const v = goalValue(r);
        summary.push(`| ${bench.name} | ${cell(r.name)} | ${r.goal.of === "ratio" ? `ratio ${formatNumber(v)}` : `${formatNumber(v)}${r.unit === "" ? "" : ` ${r.unit}`}`} | ${describeGoal(r.goal, r.unit)} | ${meets(v, r.goal) ? "yes" : "**no**"} |`);
      }
    } else {
      sections.push(ok.length === 0 ? "No run succeeded." : `No figures could be read from the output (${parseError}); its last lines are below.`, "");
      summary.push(`| ${bench.name} | (no figures) | | | **no** |`);
    }
    for (const f of failed) sections.push(`A run failed (exit ${f.code}):`, "", "```text", tail(f.err, 15), "```", "");
    sections.push(`${runs.length} run(s), ${seconds < 90 ? `${seconds} s` : `${Math.round(seconds / 60)} min`} in all. Rerun alone: \`${cmd}\` (or \`bun run bench -- --only ${bench.name}\`, which writes its report into the results directory).`, "");
    const last = ok[ok.length - 1];
    if (last !== undefined) sections.push("<details><summary>Output of the last run</summary>", "", "```text", tail(last.out, 30), tail(last.err, 25), "```", "", "</details>", "");
  }
  lines.push(...summary, "", ...sections);
  const sim = join(REPO_ROOT, "docs/sim-results.md");
  lines.push("## Simulation of the deployment story", "");
  if (existsSync(sim)) {
    lines.push("From `docs/sim-results.md` (`bun scripts/sim/run.ts`), included as it was when this report was written:", "");
    // One heading level down, under this section; relative links point into docs/.
    const text = readFileSync(sim, "utf8")
      .replace(/^#/gm, "##")
      .replace(/\]\((?!https?:|\/|#|docs\/)([^)]+)\)/g, "](docs/$1)");
    lines.push(text.trim(), "");
    const picture = ["docs/adoption.svg", "docs/adoption.png"].find((p) => existsSync(join(REPO_ROOT, p)));
    if (picture !== undefined && !readFileSync(sim, "utf8").includes("adoption.")) lines.push(`![Mirror load and share of bytes from peers against adoption](${picture})`, "");
  } else {
    lines.push("`docs/sim-results.md` was not there when this report was written (run `bun scripts/sim/run.ts`).", "");
  }
  writeFileSync(out, `${lines.join("\n").trimEnd()}\n`);
  const missing = BENCHMARKS.filter((b) => readRuns(dir, b.name).length === 0).map((b) => b.name);
  if (missing.length > 0) process.stderr.write(`write-report: not run: ${missing.join(", ")}\n`);
  if (readdirSync(dir).length === 0) process.stderr.write(`write-report: ${dir} is empty\n`);
}

await main();
