/**
 * The machine-readable result every benchmark of scripts/bench/ prints as its last line of stdout, and
 * the helpers to print it: one JSON object `{"benchmark": ..., "setup": ..., "rows": [...]}` on a line
 * starting with BENCH_JSON_PREFIX. scripts/bench/lib/write-report.ts reads these lines (or, for the
 * benchmarks that print only a table, parses the table) and writes BENCHMARKS.md.
 *
 * A row holds every sample of one figure (one per run), and optionally the anchor's samples taken in the
 * same runs and the ratio ours/anchor of each run: ratios are only quoted between figures measured side
 * by side, since the machine is shared and its speed drifts between runs.
 */

export const BENCH_JSON_PREFIX = "BENCH_JSON ";

export type Comparison = "<" | "<=" | ">" | ">=";

export interface Goal {
  /** What the goal is checked against: the median value, or the median ratio ours/anchor. */
  of: "value" | "ratio";
  op: Comparison;
  target: number;
}

export interface ResultRow {
  name: string;
  unit: string;
  /** One sample per run. */
  values: number[];
  /** The anchor's samples, taken in the same runs as `values`. */
  anchor?: { name: string; values: number[] };
  /** ours / anchor, one per run (not the ratio of the medians). */
  ratios?: number[];
  /** What the ratio is when it is not ours / anchor (e.g. "speed-up: anchor / ours"). */
  ratioLabel?: string;
  goal?: Goal;
}

export interface BenchResult {
  benchmark: string;
  /** The setup in one line, for the report. */
  setup: string;
  rows: ResultRow[];
}

/** A row comparing our samples with an anchor's, run by run. */
export function compared(name: string, unit: string, ours: number[], anchorName: string, theirs: number[], goal?: Goal): ResultRow {
  const ratios = ours.map((v, i) => v / theirs[i]!);
  return { name, unit, values: ours, anchor: { name: anchorName, values: theirs }, ratios, ...(goal === undefined ? {} : { goal }) };
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function meets(value: number, goal: Goal): boolean {
  switch (goal.op) {
    case "<":
      return value < goal.target;
    case "<=":
      return value <= goal.target;
    case ">":
      return value > goal.target;
    case ">=":
      return value >= goal.target;
  }
}

/** "ratio >= 0.8", "< 150 ms": the goal as the report writes it. */
export function describeGoal(goal: Goal, unit: string): string {
  return goal.of === "ratio" ? `ratio ${goal.op} ${goal.target}` : `${goal.op} ${goal.target} ${unit}`.trimEnd();
}

/** A number with about three significant digits. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return "-";
  const abs = Math.abs(x);
  if (abs >= 100) return x.toFixed(0);
  if (abs >= 10) return x.toFixed(1);
  if (abs >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

/** Prints the rows as a table (median, min–max, anchor, ratio, goal) and then the JSON line. */
export function printResult(result: BenchResult): void {
  const header = ["", "median", "min-max", "anchor", "anchor median", "ratio", "goal", "met"];
  const body = result.rows.map((r) => {
    const goalValue = r.goal === undefined ? Number.NaN : r.goal.of === "ratio" ? median(r.ratios ?? []) : median(r.values);
    return [
      `${r.name} (${r.unit})`,
      formatNumber(median(r.values)),
      `${formatNumber(Math.min(...r.values))}-${formatNumber(Math.max(...r.values))}`,
      r.anchor?.name ?? "",
      r.anchor === undefined ? "" : formatNumber(median(r.anchor.values)),
      r.ratios === undefined ? "" : formatNumber(median(r.ratios)),
      r.goal === undefined ? "" : describeGoal(r.goal, r.unit),
      r.goal === undefined ? "" : meets(goalValue, r.goal) ? "yes" : "NO",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`\n${result.benchmark}: ${result.setup}`);
  console.log(line(header));
  for (const b of body) console.log(line(b));
  console.log(`${BENCH_JSON_PREFIX}${JSON.stringify(result)}`);
}
