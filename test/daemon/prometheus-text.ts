/**
 * A strict reader of the Prometheus text exposition format (0.0.4) for tests: it throws, naming the line,
 * on anything the format does not allow or that a well-behaved exporter should not do — a sample before
 * its family's TYPE, a family split in two, a duplicate series, a bad name or escape, a counter that is
 * negative, histogram buckets that are not cumulative or lack +Inf.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string | undefined;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|NaN)$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parsePrometheusText(text: string): Map<string, PromFamily> {
  if (!text.endsWith("\n")) throw new Error("the exposition must end with a line feed");
  const families = new Map<string, PromFamily>();
  const finished = new Set<string>();
  const series = new Set<string>();
  let current: PromFamily | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, index) => {
    const fail = (why: string): never => {
      throw new Error(`line ${index + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line === "") fail("empty line");
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (match === null) return; // a plain comment
      const [, keyword, name, rest] = match as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) fail("bad metric name");
      if (current?.name !== name) {
        if (current !== undefined) finished.add(current.name);
        if (finished.has(name) || families.has(name)) fail(`family ${name} appears twice`);
        current = { name, type: "untyped", help: undefined, samples: [] };
        families.set(name, current);
      }
      if (keyword === "HELP") {
        if (current.help !== undefined) fail("second HELP");
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) fail("bad escape in HELP");
        current.help = rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      } else {
        if (!TYPES.has(rest)) fail("unknown TYPE");
        if (current.samples.length > 0) fail("TYPE after samples");
        current.type = rest as PromFamily["type"];
      }
      return;
    }
    const sample = parseSample(line, fail);
    if (current === undefined || !belongsTo(sample.name, current)) return fail("sample outside its family (no TYPE line before it, or the family was split)");
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (series.has(key)) fail("duplicate series");
    series.add(key);
    if (current.type === "counter" && !(sample.value >= 0)) fail("a counter must be a non-negative number");
    current.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

function belongsTo(sampleName: string, family: PromFamily): boolean {
  if (family.type === "histogram") return ["_bucket", "_sum", "_count"].some((suffix) => sampleName === family.name + suffix);
  if (family.type === "summary") return sampleName === family.name || ["_sum", "_count"].some((suffix) => sampleName === family.name + suffix);
  return sampleName === family.name;
}

function parseSample(line: string, fail: (why: string) => never): PromSample {
  let at = 0;
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (nameMatch === null) fail("bad metric name");
  const name = nameMatch![0];
  at = name.length;
  const labels: Record<string, string> = {};
  if (line[at] === "{") {
    at++;
    while (line[at] !== "}") {
      const labelMatch = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(at));
      if (labelMatch === null) fail(`bad label at column ${at + 1}`);
      const label = labelMatch![1]!;
      if (!LABEL_NAME.test(label) || label.startsWith("__")) fail(`reserved or bad label name ${label}`);
      if (label in labels) fail(`label ${label} twice`);
      at += labelMatch![0].length;
      let value = "";
      for (;;) {
        const c = line[at];
        if (c === undefined) fail("unterminated label value");
        if (c === '"') break;
        if (c === "\\") {
          const next = line[at + 1];
          if (next === "\\") value += "\\";
          else if (next === '"') value += '"';
          else if (next === "n") value += "\n";
          else fail(`bad escape \\${next} in a label value`);
          at += 2;
        } else {
          value += c;
          at++;
        }
      }
      labels[label] = value;
      at++; // the closing quote
      if (line[at] === ",") at++;
      else if (line[at] !== "}") fail(`expected , or } at column ${at + 1}`);
    }
    at++;
  }
  if (line[at] !== " ") fail(`expected one space before the value at column ${at + 1}`);
  const parts = line.slice(at + 1).split(" ");
  if (parts.length > 2 || !FLOAT.test(parts[0]!)) fail("bad value");
  if (parts.length === 2 && !/^-?\d+$/.test(parts[1]!)) fail("bad timestamp");
  const raw = parts[0]!;
  const value = raw.endsWith("Inf") ? (raw.startsWith("-") ? -Infinity : Infinity) : Number(raw);
  return { name, labels, value };
}

function checkHistogram(family: PromFamily): void {
  const fail = (why: string): never => {
    throw new Error(`histogram ${family.name}: ${why}`);
  };
  const buckets = family.samples.filter((s) => s.name === `${family.name}_bucket`);
  const count = family.samples.find((s) => s.name === `${family.name}_count`);
  const sum = family.samples.find((s) => s.name === `${family.name}_sum`);
  if (count === undefined || sum === undefined) fail("needs _sum and _count");
  if (buckets.some((b) => b.labels.le === undefined)) fail("a bucket without le");
  const bounds = buckets.map((b) => (b.labels.le === "+Inf" ? Infinity : Number(b.labels.le)));
  if (bounds.some((b) => Number.isNaN(b))) fail("an le that is not a number");
  for (let i = 1; i < buckets.length; i++) {
    if (!(bounds[i]! > bounds[i - 1]!)) fail("bucket bounds must ascend");
    if (buckets[i]!.value < buckets[i - 1]!.value) fail("buckets must be cumulative");
  }
  if (bounds.at(-1) !== Infinity) fail('the last bucket must be le="+Inf"');
  if (buckets.at(-1)!.value !== count!.value) fail('le="+Inf" must equal _count');
}

/** The value of one series; throws when it is missing, so that a test cannot pass on an absent metric. */
export function metricValue(families: Map<string, PromFamily>, family: string, labels: Record<string, string> = {}, sampleName = family): number {
  const f = families.get(family);
  if (f === undefined) throw new Error(`no metric family ${family}`);
  const want = JSON.stringify(Object.entries(labels).sort());
  const sample = f.samples.find((s) => s.name === sampleName && JSON.stringify(Object.entries(s.labels).sort()) === want);
  if (sample === undefined) throw new Error(`no series ${sampleName}${want} in ${family}`);
  return sample.value;
}
