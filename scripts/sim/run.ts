/**
 * The deployment story, simulated: `bun scripts/sim/run.ts [--machines N] [--seed S]` sweeps adoption
 * of apt-p2p over an update day on a simulated network and writes docs/adoption.svg and the adoption
 * section of docs/sim-results.md; `--dht-only --nodes N` measures the DHT alone with a share of dead
 * nodes and writes the DHT section. See docs/sim-results.md for the model and its simplifications.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildWorkload, loadArchive } from "./archive.ts";
import { simulateLevel, type LevelResult } from "./day.ts";
import { runDhtOnly } from "./dht-only.ts";
import { seeded } from "./random.ts";
import { adoptionSvg, pct, dhtOnlyLines, markdownTable, replaceSection, TABLE_HEADER, tableRows, textTable, workloadLines } from "./report.ts";
import { buildWorld } from "./world.ts";
import { PROJECT_POLICY, type SwarmPolicy } from "./swarm.ts";

/** Adoption levels of the sweep: the story's four pictures, from a few users to everyone. */
export const DEFAULT_LEVELS = [0.01, 0.05, 0.1, 0.25, 0.5, 1];
/** Share of the day's source packages simulated by default: bounds the DHT work to minutes (see archive.ts). */
export const DEFAULT_FILES_SHARE = 0.25;

const DOCS = new URL("../../docs/", import.meta.url).pathname;
const RESULTS_MD = "sim-results.md";
const SVG = "adoption.svg";

const { values } = parseArgs({
  options: {
    machines: { type: "string", default: "2000" },
    seed: { type: "string", default: "1" },
    levels: { type: "string" },
    "files-share": { type: "string", default: String(DEFAULT_FILES_SHARE) },
    "dht-only": { type: "boolean", default: false },
    nodes: { type: "string", default: "10000" },
    dead: { type: "string", default: "0.25" },
    lookups: { type: "string", default: "200" },
    "no-docs": { type: "boolean", default: false },
    "endgame-delay-ms": { type: "string" },
    "mirror-delay-ms": { type: "string" },
  },
});

function number(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max) {
    console.error(`sim: --${name} ${text}: expected a number from ${min} to ${max}`);
    process.exit(2);
  }
  return n;
}

const seed = number("seed", values.seed!, 0, 2 ** 31);
const writeDocs = !values["no-docs"];

if (values["dht-only"]) {
  const nodes = number("nodes", values.nodes!, 10, 1_000_000);
  const result = await runDhtOnly({ nodes, seed, deadShare: number("dead", values.dead!, 0, 0.9), lookups: number("lookups", values.lookups!, 1, 100_000) });
  const lines = dhtOnlyLines(result);
  console.log(lines.join("\n"));
  if (writeDocs) writeSection("dht", [`### The DHT alone (\`bun scripts/sim/run.ts --dht-only --nodes ${nodes} --seed ${seed}\`)`, "", ...lines].join("\n"));
} else {
  const machines = number("machines", values.machines!, 2, 1_000_000);
  const filesShare = number("files-share", values["files-share"]!, 0.01, 1);
  const levels = values.levels === undefined ? DEFAULT_LEVELS : values.levels.split(",").map((t) => number("levels", t, 0.0001, 1) );
  const policy: SwarmPolicy = {
    endgameDelayMs: values["endgame-delay-ms"] === undefined ? PROJECT_POLICY.endgameDelayMs : number("endgame-delay-ms", values["endgame-delay-ms"], 0, 600_000),
    mirrorDelayMs: values["mirror-delay-ms"] === undefined ? PROJECT_POLICY.mirrorDelayMs : number("mirror-delay-ms", values["mirror-delay-ms"], 0, 600_000),
  };
  const projectPolicy = policy.endgameDelayMs === PROJECT_POLICY.endgameDelayMs && policy.mirrorDelayMs === PROJECT_POLICY.mirrorDelayMs;
  if (!projectPolicy) console.log(`what-if policy: endgame after ${policy.endgameDelayMs} ms, mirror joins after ${policy.mirrorDelayMs} ms (not written to docs)`);
  const started = performance.now();
  const packages = await loadArchive();
  const workload = buildWorkload(packages, machines, seeded(seed), { filesShare });
  const world = buildWorld(workload, seed);
  const about = workloadLines(workload, machines);
  console.log(about.join("\n"));
  const results: LevelResult[] = [];
  for (const adoption of levels) {
    const r = await simulateLevel(world, adoption, seed, policy);
    results.push(r);
    console.log(
      `adoption ${(100 * adoption).toFixed(0)}%: mirror ${(r.mirrorBytesPerMachine / 1e6).toFixed(2)} MB/machine, peers ${pct(r.bytes.peersSent / r.bytes.received)} of the bytes, ` +
        `${r.cost.datagrams.toLocaleString("en")} datagrams, ${r.cost.seconds.toFixed(0)} s`,
    );
  }
  const rows = tableRows(results);
  console.log("\n" + textTable(TABLE_HEADER, rows));
  console.log("\n" + mirrorLines(results).join("\n"));
  const full = results.find((r) => r.adoption === 1);
  const goals = full === undefined ? [] : goalLines(full);
  console.log("\n" + goals.join("\n"));
  console.log(`\n${((performance.now() - started) / 1000).toFixed(0)} s in all`);
  if (writeDocs && projectPolicy) {
    mkdirSync(DOCS, { recursive: true });
    writeFileSync(join(DOCS, SVG), adoptionSvg(results, `Update day of ${machines.toLocaleString("en")} machines (seed ${seed})`));
    const body = [
      `### Adoption sweep (\`bun scripts/sim/run.ts --machines ${machines} --seed ${seed}\`)`,
      "",
      ...about,
      "",
      markdownTable(TABLE_HEADER, rows),
      "",
      `![Mirror load and peer share against adoption](${SVG})`,
      "",
      ...mirrorLines(results),
      "",
      ...goals,
    ].join("\n");
    writeSection("adoption", body);
  }
}

function goalLines(r: LevelResult): string[] {
  const mirrorShare = r.bytes.mirrorSent / r.bytes.received;
  const overLimit = r.uploads.maxPeakOverLimit > 1 + 1e-9;
  return [
    `Goals at full adoption of ${r.machines.toLocaleString("en")} machines:`,
    `- the mirror serves under 5% of the bytes: ${mirrorShare < 0.05 ? "met" : "not met"} (${pct(mirrorShare)} of all bytes sent; ${pct(r.mirrorShare)} of the verified bytes)`,
    `- no peer uploads past its limit: ${overLimit ? "not met" : "met"} (highest upload rate ÷ limit: ${r.uploads.maxPeakOverLimit.toFixed(6)}; ${r.uploads.atLimit} of ${r.uploads.servers} serving peers reached their limit at some time)`,
  ];
}

function mirrorLines(results: LevelResult[]): string[] {
  return [
    "Where the verified bytes came from, and what was wasted (shares of all bytes received):",
    "",
    ...results.map((r) => {
      const of = (n: number) => pct(n / r.bytes.received);
      const alongside = r.bytes.mirror - r.bytes.directMirror - r.bytes.mirrorNoPeers;
      return (
        `- ${pct(r.adoption, 0)}: mirror to mirror-only machines ${of(r.bytes.directMirror)}; mirror to apt-p2p machines for files with no peer found ${of(r.bytes.mirrorNoPeers)}, ` +
        `and alongside peers ${of(alongside)}; peers ${of(r.bytes.peers)}; wasted (duplicates that lost the race, transfers cut by a departure) ${of(r.bytes.wasted)}. ` +
        `Lookups that found no peer while a reachable holder was online: ${r.missed.lookups} of ${r.lookupsMs.count} (${of(r.missed.bytes)} of the bytes)`
      );
    }),
  ];
}

function writeSection(name: string, body: string): void {
  const path = join(DOCS, RESULTS_MD);
  const doc = existsSync(path) ? readFileSync(path, "utf8") : "";
  writeFileSync(path, replaceSection(doc, name, body));
}
