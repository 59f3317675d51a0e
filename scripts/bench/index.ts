/**
 * Benchmark of the index pipeline on the real bookworm main/binary-amd64 Packages.xz:
 *   1. decompress + parse, and decompress + parse + store into a fresh SQLite file (goal < 2 s);
 *   2. a fresh IndexStore on the stored file: findByName("hello") and the whole resolve step
 *      (open + findByName + pick the highest version) (goal < 50 ms);
 *   3. peak RSS while parsing, to show memory stays bounded (the text is ~50 MB), also over a stream
 *      of the text three times over.
 *
 * Usage: bun scripts/bench/index.ts [path/to/Packages.xz]
 * The last line of stdout is the result as JSON (scripts/bench/lib/report.ts), for scripts/bench/run.sh.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decompress } from "../../src/debian/decompress.ts";
import { IndexStore, type PackageRow } from "../../src/debian/index-store.ts";
import { type PackageRecord, parsePackageBatches } from "../../src/debian/packages.ts";
import { compareVersions } from "../../src/debian/version.ts";
import { BENCH_JSON_PREFIX, type BenchResult } from "./lib/report.ts";

const DEFAULT_FIXTURE = join(import.meta.dir, "../../../shared/fixtures/debian-bookworm/main/binary-amd64/Packages.xz");
const INDEX_KEY = "bench-index";
const RELEASE_KEY = "file:///srv/debian|bookworm";
const WARM_LOOKUPS = 200;
/** Parse the text this many times in one stream to show peak memory does not grow with input. */
const REPEATS = 3;
const MIB = 1024 * 1024;

const fixture = process.argv[2] ?? DEFAULT_FIXTURE;

interface Row {
  step: string;
  value: string;
  goal: string;
}
const results: Row[] = [];

/** Passes batches through while sampling RSS after each one (the parse runs on this thread). */
async function* sampled(
  batches: AsyncIterable<PackageRecord[]>,
  peak: { rss: number; records: number },
): AsyncGenerator<PackageRecord[]> {
  for await (const batch of batches) {
    peak.records += batch.length;
    const rss = process.memoryUsage.rss();
    if (rss > peak.rss) peak.rss = rss;
    yield batch;
  }
}

function batchesOf(path: string): AsyncIterable<PackageRecord[]> {
  return parsePackageBatches(decompress(Bun.file(path).stream(), "xz"));
}

function highest(rows: PackageRow[]): PackageRow | undefined {
  let best: PackageRow | undefined;
  for (const row of rows) if (best === undefined || compareVersions(row.version, best.version) > 0) best = row;
  return best;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const dir = mkdtempSync(join(tmpdir(), "apt-p2p-bench-"));
const dbPath = join(dir, "index.sqlite");
try {
  const baselineRss = process.memoryUsage.rss();

  // 1a. decompress + parse + store into a fresh SQLite file, first thing in the process (cold JIT)
  const importPeak = { rss: 0, records: 0 };
  const writer = IndexStore.open(dbPath);
  let t0 = performance.now();
  const count = await writer.importIndex(INDEX_KEY, sampled(batchesOf(fixture), importPeak));
  const importSeconds = (performance.now() - t0) / 1000;
  writer.setRelease(
    { key: RELEASE_KEY, uri: "file:///srv/debian", suite: "bookworm", releaseSha256: "0".repeat(64), releaseText: "", fetchedAt: 0 },
    [{ component: "main", arch: "amd64", indexSha256: INDEX_KEY }],
  );
  writer.close();
  results.push({ step: `decompress + parse + store (${count} rows)`, value: `${importSeconds.toFixed(2)} s`, goal: "< 2 s" });

  // 1b. decompress + parse only (JIT now warm), then the text three times over: peak RSS must not grow
  const parsePeak = { rss: 0, records: 0 };
  t0 = performance.now();
  for await (const _ of sampled(batchesOf(fixture), parsePeak));
  const parseSeconds = (performance.now() - t0) / 1000;
  results.push({ step: `decompress + parse (${parsePeak.records} records, warm JIT)`, value: `${parseSeconds.toFixed(2)} s`, goal: "< 1 s" });
  const repeatPeak = { rss: 0, records: 0 };
  async function* repeated(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < REPEATS; i++) yield* decompress(Bun.file(fixture).stream(), "xz");
  }
  for await (const _ of sampled(parsePackageBatches(repeated()), repeatPeak));

  // 2. a fresh store on the stored file (in the OS page cache: cold for SQLite, warm for the disk)
  t0 = performance.now();
  const reader = IndexStore.open(dbPath);
  const openMs = performance.now() - t0;
  t0 = performance.now();
  const rows = reader.findByName("hello", [RELEASE_KEY], ["amd64", "all"]);
  const firstLookupMs = performance.now() - t0;
  reader.close();

  t0 = performance.now();
  const resolver = IndexStore.open(dbPath);
  const best = highest(resolver.findByName("hello", [RELEASE_KEY], ["amd64", "all"]));
  const resolveMs = performance.now() - t0;
  if (best?.version !== "2.10-3" || rows.length !== 1) throw new Error(`unexpected result: ${JSON.stringify(best)}`);

  const warm: number[] = [];
  for (let i = 0; i < WARM_LOOKUPS; i++) {
    const start = performance.now();
    resolver.findByName("hello", [RELEASE_KEY], ["amd64", "all"]);
    warm.push(performance.now() - start);
  }
  t0 = performance.now();
  resolver.findByFilename("pool/main/h/hello/hello_2.10-3_amd64.deb", [RELEASE_KEY]);
  const byFileMs = performance.now() - t0;
  t0 = performance.now();
  const suggestions = resolver.suggestNames("helo", [RELEASE_KEY]);
  const suggestMs = performance.now() - t0;
  resolver.close();

  results.push({ step: "IndexStore.open (schema check, pragmas)", value: `${openMs.toFixed(2)} ms`, goal: "" });
  results.push({ step: 'first findByName("hello") on a fresh store', value: `${firstLookupMs.toFixed(2)} ms`, goal: "< 50 ms" });
  results.push({ step: "resolve step: open + findByName + highest version", value: `${resolveMs.toFixed(2)} ms`, goal: "< 50 ms" });
  results.push({ step: `warm findByName("hello"), median of ${WARM_LOOKUPS}`, value: `${median(warm).toFixed(3)} ms`, goal: "< 1 ms" });
  results.push({ step: "findByFilename(pool path)", value: `${byFileMs.toFixed(2)} ms`, goal: "" });
  results.push({ step: `suggestNames("helo") → ${suggestions.slice(0, 3).join(", ")}`, value: `${suggestMs.toFixed(1)} ms`, goal: "" });

  // 3. memory
  const mib = (bytes: number) => `${(bytes / MIB).toFixed(0)} MiB`;
  results.push({ step: "RSS before parsing", value: mib(baselineRss), goal: "" });
  results.push({ step: "peak RSS, decompress + parse + store", value: mib(importPeak.rss), goal: "bounded (text is 48 MiB)" });
  results.push({ step: "peak RSS, decompress + parse", value: mib(parsePeak.rss), goal: "bounded" });
  results.push({
    step: `peak RSS, parse of the text ${REPEATS}× over (${repeatPeak.records} records)`,
    value: mib(repeatPeak.rss),
    goal: "same as once",
  });
  results.push({ step: "SQLite file size", value: mib(Bun.file(dbPath).size), goal: "" });

  const width = Math.max(...results.map((r) => r.step.length));
  const valueWidth = Math.max(...results.map((r) => r.value.length));
  console.log(`Index benchmark on ${fixture}\n`);
  for (const r of results) console.log(`${r.step.padEnd(width)}  ${r.value.padStart(valueWidth)}  ${r.goal}`);
  const json: BenchResult = {
    benchmark: "index",
    setup: `in-process: bookworm main/amd64 Packages.xz (${count} packages) decompressed, parsed and stored into SQLite, then resolved`,
    rows: [
      { name: "decompress + parse + store (cold JIT)", unit: "ms", values: [importSeconds * 1000], goal: { of: "value", op: "<", target: 2000 } },
      { name: "decompress + parse (warm JIT)", unit: "ms", values: [parseSeconds * 1000], goal: { of: "value", op: "<", target: 1000 } },
      { name: "resolve step: open + findByName + highest version", unit: "ms", values: [resolveMs], goal: { of: "value", op: "<", target: 50 } },
      { name: `warm findByName, median of ${WARM_LOOKUPS}`, unit: "ms", values: [median(warm)], goal: { of: "value", op: "<", target: 1 } },
      { name: "peak RSS, decompress + parse + store", unit: "MiB", values: [importPeak.rss / MIB] },
    ],
  };
  console.log(`${BENCH_JSON_PREFIX}${JSON.stringify(json)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
