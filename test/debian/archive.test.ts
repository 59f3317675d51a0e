import { describe, expect, test } from "bun:test";
import { describeEntries, keysFor, mergeEntries, releaseBase, releaseKey } from "../../src/debian/archive.ts";
import type { SourceEntry } from "../../src/debian/sources.ts";

function entry(fields: Partial<SourceEntry>): SourceEntry {
  return { type: "deb", uri: "http://mirror.example/debian", suite: "bookworm", components: ["main"], trusted: false, origin: "t:1", ...fields };
}

describe("releaseBase()", () => {
  test.each([
    ["http://m/debian", "bookworm", "http://m/debian/dists/bookworm"],
    ["http://m/debian", "bookworm/updates", "http://m/debian/dists/bookworm/updates"],
    ["http://m/repo", "./", "http://m/repo"],
    ["http://m/repo", "sub/", "http://m/repo/sub"],
    ["http://m/repo", "sub/dir/", "http://m/repo/sub/dir"],
  ])("%s %s → %s", (uri, suite, base) => {
    expect(releaseBase({ uri, suite })).toBe(base);
  });
});

describe("mergeEntries()", () => {
  test("joins the components of entries for one (uri, suite), keeping the first's options", () => {
    const merged = mergeEntries([
      entry({ components: ["main"], origin: "a:1" }),
      entry({ components: ["contrib", "main"], origin: "b:1", trusted: true }),
      entry({ suite: "bookworm-updates", components: ["main"] }),
    ]);
    expect(merged.map((e) => [releaseKey(e), e.components, e.origin, e.trusted])).toEqual([
      ["http://mirror.example/debian|bookworm", ["main", "contrib"], "a:1", false],
      ["http://mirror.example/debian|bookworm-updates", ["main"], "t:1", false],
    ]);
  });

  test("does not change its input", () => {
    const first = entry({ components: ["main"] });
    mergeEntries([first, entry({ components: ["contrib"] })]);
    expect(first.components).toEqual(["main"]);
  });
});

describe("keysFor()", () => {
  const system = ["/etc/apt/trusted.gpg", "/etc/apt/trusted.gpg.d/debian.asc"];
  test("no Signed-By: the system keyrings", () => {
    expect(keysFor(entry({}), system)).toEqual({ paths: system, inline: [], fingerprints: [] });
  });
  test("Signed-By paths replace the system keyrings", () => {
    expect(keysFor(entry({ signedBy: { paths: ["/k.gpg"], fingerprints: [] } }), system).paths).toEqual(["/k.gpg"]);
  });
  test("Signed-By fingerprints alone restrict the system keyrings to those keys", () => {
    expect(keysFor(entry({ signedBy: { paths: [], fingerprints: ["ABCD"] } }), system)).toEqual({ paths: system, inline: [], fingerprints: ["ABCD"] });
  });
  test("an inline key is used alone", () => {
    expect(keysFor(entry({ signedBy: { paths: [], fingerprints: [], inline: "KEY" } }), system)).toEqual({ paths: [], inline: ["KEY"], fingerprints: [] });
  });
});

test("describeEntries() names suites and components once each", () => {
  expect(describeEntries([entry({}), entry({ suite: "bookworm-updates", components: ["main", "contrib"] })])).toBe(
    "bookworm, bookworm-updates (main, contrib)",
  );
});
