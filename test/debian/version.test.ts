import { describe, expect, test } from "bun:test";
import { compareVersions, isValidVersion, parseVersion } from "../../src/debian/version.ts";
import { mulberry32 } from "../helpers/random.ts";

type Relation = "<" | "=" | ">";

function relation(n: number): Relation {
  return n < 0 ? "<" : n > 0 ? ">" : "=";
}

function flip(r: Relation): Relation {
  return r === "<" ? ">" : r === ">" ? "<" : "=";
}

// Every row was confirmed with `dpkg --compare-versions A op B`; the dpkg test below re-checks them.
const CASES: [string, Relation, string][] = [
  // Debian Policy 5.6.12
  ["1.0~rc1", "<", "1.0"],
  ["1.0~~", "<", "1.0~~a"], // ~~ < ~~a < ~ < (end) < a
  ["1.0~~a", "<", "1.0~"],
  ["1.0~", "<", "1.0"],
  ["1.0", "<", "1.0a"],
  ["1.0~~", "<", "1.0a"],
  // epochs
  ["1:0.1", ">", "2.0"],
  ["0:1.0", "=", "1.0"],
  ["00:1.0", "=", "1.0"],
  ["2:1.0", ">", "1:9.9"],
  ["10:1", ">", "9:1"],
  ["1:1.0-1", "<", "1:1.0-2"],
  // revisions
  ["1.0-1", "<", "1.0-2"],
  ["1.0", "=", "1.0-0"],
  ["1.0-1", "<", "1.0-10"],
  ["1.0-1", ">", "1.0"],
  ["1.0-1~bpo1", "<", "1.0-1"],
  ["1.0-1+deb12u1", ">", "1.0-1"],
  ["1.0-1.1", ">", "1.0-1"],
  ["1.0-a", ">", "1.0"],
  ["1.0-0~", "<", "1.0"],
  ["1.2-3-4", ">", "1.2-3-3"], // the revision is after the last hyphen
  ["1.2-3-4", "<", "1.2-4-1"],
  // leading zeros and numeric comparison
  ["1.01", "=", "1.1"],
  ["1.001", "=", "1.1"],
  ["1.10", ">", "1.9"],
  ["1.0010", ">", "1.9"],
  ["01.0", "=", "1.0"],
  ["1.000", "=", "1.0"],
  // letters sort before non-letters
  ["1.0a", "<", "1.0+"],
  ["1.0a", "<", "1.0."],
  ["1.0Z", "<", "1.0a"],
  ["1.0+", "<", "1.0."],
  ["1.0+a", ">", "1.0a"],
  ["1.0.a", "<", "1.0.+"],
  // more parts
  ["1.0.0", ">", "1.0"],
  ["1.0", "<", "1.0.1"],
  ["1.0.0", "<", "1.0.1"],
  ["2.0", ">", "1.99999"],
  ["1.2.3", "=", "1.2.3"],
  ["1a", "<", "1b"],
  ["1aa", ">", "1a"],
  ["1+dfsg", ">", "1"],
  ["1+dfsg-1", "<", "1+dfsg1-1"],
  ["7.4.052+git20230501", "<", "7.4.052+git20230502"],
  ["1.0+git20230501~1", "<", "1.0+git20230501"],
  // digit runs longer than a double can hold exactly
  ["1.99999999999999999999", "<", "1.100000000000000000000"],
  ["1.12345678901234567890123", ">", "1.12345678901234567890122"],
  ["1.000000000000000000000000000001", "=", "1.1"],
  ["99999999999999999999999", "<", "100000000000000000000000"],
  // colons and hyphens inside the upstream version (allowed with an epoch / a revision)
  ["1:1:1.0-1", ">", "1:1:0.9-1"],
  ["1:1.0-beta-1", "<", "1:1.0-rc-1"],
  // surrounding blanks are ignored, as dpkg does
  [" 1.0 ", "=", "1.0"],
];

describe("compareVersions()", () => {
  test.each(CASES)("%p %s %p", (a, expected, b) => {
    expect(relation(compareVersions(a, b))).toBe(expected);
    expect(relation(compareVersions(b, a))).toBe(flip(expected));
  });

  test("is reflexive on every version of the table", () => {
    for (const [a, , b] of CASES) {
      expect(compareVersions(a, a)).toBe(0);
      expect(compareVersions(b, b)).toBe(0);
    }
  });

  test("sorts the Policy example ~~ < ~~a < ~ < (end) < a", () => {
    const sorted = ["1.0a", "1.0", "1.0~", "1.0~~a", "1.0~~"].sort(compareVersions);
    expect(sorted).toEqual(["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"]);
  });

  test("orders malformed versions consistently instead of throwing", () => {
    expect(() => compareVersions("", "1.0")).not.toThrow();
    expect(compareVersions("", "1.0")).toBeLessThan(0);
    expect(compareVersions("a:1", "a:1")).toBe(0);
    expect(compareVersions("1.0-", "1.0")).toBe(0);
  });

  test("compares 100 000 pairs quickly", () => {
    const versions = ["1.0-1", "1:2.36-9+deb12u4", "2.36-9+deb12u10", "1.0~rc1-1", "7.88.1-10+deb12u5"];
    let sum = 0;
    for (let i = 0; i < 100_000; i++) {
      sum += Math.sign(compareVersions(versions[i % 5] ?? "", versions[(i * 3 + 1) % 5] ?? ""));
    }
    // Only checks that the loop ran; timing is not asserted (see STYLE.md).
    expect(Number.isFinite(sum)).toBe(true);
  });
});

describe("parseVersion()", () => {
  test.each([
    ["1.0", { epoch: 0, upstream: "1.0", revision: "" }],
    ["1.0-1", { epoch: 0, upstream: "1.0", revision: "1" }],
    ["2:1.0-1", { epoch: 2, upstream: "1.0", revision: "1" }],
    ["1:2.36-9+deb12u4", { epoch: 1, upstream: "2.36", revision: "9+deb12u4" }],
    ["1.2-3-4", { epoch: 0, upstream: "1.2-3", revision: "4" }],
    ["1:1:1.0-1", { epoch: 1, upstream: "1:1.0", revision: "1" }],
    ["0:1.0", { epoch: 0, upstream: "1.0", revision: "" }],
    [" 3:4.5-6 ", { epoch: 3, upstream: "4.5", revision: "6" }],
  ])("splits %p", (v, expected) => {
    expect(parseVersion(v)).toEqual(expected);
  });

  test("keeps a non-numeric prefix before a colon in the upstream version", () => {
    expect(parseVersion("a:1-2")).toEqual({ epoch: 0, upstream: "a:1", revision: "2" });
  });
});

describe("isValidVersion()", () => {
  test.each(["1.0", "1.0-1", "1:1.0-1", "0:0", "1.0~rc1+dfsg-1~bpo12+1", "1:1:1.0", "1.0-1-1", " 1.0 ", "2147483647:1"])(
    "accepts %p",
    (v) => {
      expect(isValidVersion(v)).toBe(true);
    },
  );

  test.each([
    ["", "empty"],
    ["   ", "blank"],
    ["1.0 1", "embedded space"],
    ["1.0\t-1", "embedded tab"],
    [":1.0", "empty epoch"],
    ["a:1.0", "non-numeric epoch"],
    ["-1:1.0", "negative epoch"],
    ["2147483648:1", "epoch above INT_MAX"],
    ["1:", "nothing after the colon"],
    ["1.0-", "empty revision"],
    ["-1", "empty upstream version"],
    ["1:-1", "empty upstream version after an epoch"],
    ["a1.0", "upstream not starting with a digit"],
    ["~1", "upstream starting with a tilde"],
  ])("rejects %p (%s)", (v) => {
    expect(isValidVersion(v)).toBe(false);
  });
});

const dpkgAvailable = Bun.which("dpkg") !== null;

const seededRandom = mulberry32;

// Small pieces so that generated pairs often share prefixes and hit the interesting branches.
const PIECES = ["0", "1", "2", "9", "00", "01", "10", "99", "a", "b", "Z", "z", ".", "+", "~", "~~", "12345678901234567890"];
const REVISION_PIECES = ["0", "1", "2", "10", "a", ".", "+", "~", "deb12u", "bpo"];

function generateVersion(random: () => number): string {
  const pick = (pieces: string[]) => pieces[Math.floor(random() * pieces.length)] ?? "";
  let v = random() < 0.2 ? `${Math.floor(random() * 3)}:` : "";
  v += pick(["0", "1", "2", "10", "01"]);
  const upstreamPieces = Math.floor(random() * 5);
  for (let i = 0; i < upstreamPieces; i++) v += pick(PIECES);
  if (random() < 0.5) {
    v += `-${pick(REVISION_PIECES)}`;
    const revisionPieces = Math.floor(random() * 3);
    for (let i = 0; i < revisionPieces; i++) v += pick(REVISION_PIECES);
  }
  return v;
}

/** A version close to `v`: one piece appended, replaced or removed. */
function mutate(v: string, random: () => number): string {
  const at = 1 + Math.floor(random() * (v.length - 1));
  const piece = PIECES[Math.floor(random() * PIECES.length)] ?? "";
  const roll = random();
  if (roll < 0.4) return v + piece;
  if (roll < 0.8) return v.slice(0, at) + piece + v.slice(at + 1);
  return v.slice(0, at) + v.slice(at + 1);
}

/** Asks dpkg for the relation of every pair in one shell process (one spawn per pair is too slow). */
function dpkgRelations(pairs: [string, string][]): Relation[] {
  const script = pairs
    .map(([a, b]) => `if dpkg --compare-versions '${a}' lt '${b}'; then echo '<'; elif dpkg --compare-versions '${a}' eq '${b}'; then echo '='; else echo '>'; fi`)
    .join("\n");
  const result = Bun.spawnSync(["sh", "-c", script], { stderr: "pipe" });
  const lines = result.stdout.toString().trim().split("\n");
  expect(result.stderr.toString()).toBe("");
  return lines as Relation[];
}

describe.skipIf(!dpkgAvailable)("compareVersions() agrees with dpkg --compare-versions", () => {
  test("on every row of the table", () => {
    const rows = CASES.map(([a, , b]) => [a.trim(), b.trim()] as [string, string]);
    expect(CASES.map(([a, r, b]) => `${a} ${r} ${b}`)).toEqual(
      dpkgRelations(rows).map((r, i) => `${CASES[i]?.[0]} ${r} ${CASES[i]?.[2]}`),
    );
  });

  test("on 200 generated pairs", () => {
    const random = seededRandom(20240601);
    const pairs: [string, string][] = [];
    while (pairs.length < 200) {
      const a = generateVersion(random);
      const b = random() < 0.6 ? mutate(a, random) : generateVersion(random);
      // Only valid versions: dpkg refuses the others, so there is nothing to compare against.
      if (isValidVersion(a) && isValidVersion(b)) pairs.push([a, b]);
    }
    const ours = pairs.map(([a, b]) => `${a} ${relation(compareVersions(a, b))} ${b}`);
    const theirs = dpkgRelations(pairs).map((r, i) => `${pairs[i]?.[0]} ${r} ${pairs[i]?.[1]}`);
    expect(ours).toEqual(theirs);
  }, 30_000);
});
