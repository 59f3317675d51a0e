import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AptP2pError } from "../../src/errors.ts";
import { IndexStore, type ReleaseRow } from "../../src/debian/index-store.ts";
import { editDistance } from "../../src/debian/suggest.ts";
import type { PackageRecord } from "../../src/debian/packages.ts";

const URI = "file:///srv/repo";
const INDEX_1 = "1".repeat(64);
const INDEX_2 = "2".repeat(64);

function record(name: string, version: string, arch = "amd64", extra: Partial<PackageRecord> = {}): PackageRecord {
  return {
    package: name,
    version,
    architecture: arch,
    filename: `pool/main/${name[0]}/${name}/${name}_${version}_${arch}.deb`,
    size: 1000 + version.length,
    sha256: (name + version).padEnd(64, "0").replace(/[^0-9a-f]/g, "e"),
    ...extra,
  };
}

function release(suite: string, fetchedAt = 1): ReleaseRow {
  return { key: `${URI}|${suite}`, uri: URI, suite, releaseSha256: "f".repeat(64), releaseText: `Suite: ${suite}\n`, fetchedAt };
}

async function* batches(...groups: PackageRecord[][]): AsyncGenerator<PackageRecord[]> {
  yield* groups;
}

let dir: string;
let store: IndexStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "apt-p2p-index-store-"));
  store = IndexStore.open(join(dir, "sub", "index.sqlite"));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("IndexStore", () => {
  test("getRelease() returns what setRelease() stored, without absent optional fields", () => {
    expect(store.getRelease("nope")).toBeNull();
    store.setRelease({ ...release("bookworm"), etag: '"abc"' }, []);
    expect(store.getRelease(`${URI}|bookworm`)).toEqual({ ...release("bookworm"), etag: '"abc"' });
    store.setRelease({ ...release("bookworm", 2), lastModified: "Sat, 11 Jul 2026 09:00:00 GMT" }, []);
    expect(store.getRelease(`${URI}|bookworm`)).toEqual({
      ...release("bookworm", 2),
      lastModified: "Sat, 11 Jul 2026 09:00:00 GMT",
    });
  });

  test("importIndex() stores records from batches or single records and counts them", async () => {
    expect(store.hasIndex(INDEX_1)).toBe(false);
    expect(await store.importIndex(INDEX_1, batches([record("a", "1")], [record("b", "1"), record("c", "1")]))).toBe(3);
    expect(store.hasIndex(INDEX_1)).toBe(true);
    async function* single(): AsyncGenerator<PackageRecord> {
      yield record("d", "1");
    }
    expect(await store.importIndex(INDEX_2, single())).toBe(1);
  });

  test("importIndex() of an index already stored does not read the records again", async () => {
    await store.importIndex(INDEX_1, batches([record("a", "1")]));
    let read = false;
    async function* again(): AsyncGenerator<PackageRecord[]> {
      read = true;
      yield [record("zzz", "1")];
    }
    expect(await store.importIndex(INDEX_1, again())).toBe(1);
    expect(read).toBe(false);
  });

  test("findByName() returns the rows of an index once per release that lists it", async () => {
    await store.importIndex(INDEX_1, batches([record("hello", "2.10-3"), record("hello", "2.10-3", "i386")]));
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    store.setRelease(release("stable"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    const keys = [`${URI}|bookworm`, `${URI}|stable`];

    const rows = store.findByName("hello", keys, ["amd64", "all"]);
    expect(rows.map((r) => [r.suite, r.component, r.architecture, r.version])).toEqual([
      ["bookworm", "main", "amd64", "2.10-3"],
      ["stable", "main", "amd64", "2.10-3"],
    ]);
    expect(rows[0]).toEqual({ uri: URI, suite: "bookworm", component: "main", ...record("hello", "2.10-3") });
    expect(store.findByName("hello", [`${URI}|stable`], ["i386"])).toHaveLength(1);
    expect(store.findByName("hello", [], ["amd64"])).toEqual([]);
    expect(store.findByName("hell", keys, ["amd64"])).toEqual([]);
  });

  test("findByName() keeps Source and Multi-Arch", async () => {
    const withExtras = record("libfoo1", "1.0", "amd64", { source: "foo", multiArch: "same" });
    await store.importIndex(INDEX_1, batches([withExtras]));
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    expect(store.findByName("libfoo1", [`${URI}|bookworm`], ["amd64"])[0]).toMatchObject({ source: "foo", multiArch: "same" });
  });

  test("findByFilename() matches a basename or a pool path suffix, not a partial name", async () => {
    await store.importIndex(INDEX_1, batches([record("hello", "1"), record("ohello", "1")]));
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    const keys = [`${URI}|bookworm`];
    expect(store.findByFilename("hello_1_amd64.deb", keys).map((r) => r.package)).toEqual(["hello"]);
    expect(store.findByFilename("pool/main/h/hello/hello_1_amd64.deb", keys).map((r) => r.package)).toEqual(["hello"]);
    expect(store.findByFilename("hello/hello_1_amd64.deb", keys).map((r) => r.package)).toEqual(["hello"]);
    expect(store.findByFilename("ello/hello_1_amd64.deb", keys)).toEqual([]);
    expect(store.findByFilename("pool/main/x/hello/hello_1_amd64.deb", keys)).toEqual([]);
    expect(store.findByFilename("", keys)).toEqual([]);
  });

  test("setRelease() replaces the index set, and pruneIndexes() drops indexes no release lists", async () => {
    await store.importIndex(INDEX_1, batches([record("old", "1")]));
    await store.importIndex(INDEX_2, batches([record("new", "1")]));
    const key = `${URI}|bookworm`;
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    expect(store.pruneIndexes()).toBe(1); // INDEX_2 was never listed
    expect(store.hasIndex(INDEX_2)).toBe(false);

    await store.importIndex(INDEX_2, batches([record("new", "1")]));
    store.setRelease(release("bookworm", 2), [{ component: "main", arch: "amd64", indexSha256: INDEX_2 }]);
    expect(store.findByName("old", [key], ["amd64"])).toEqual([]);
    expect(store.findByName("new", [key], ["amd64"])).toHaveLength(1);
    expect(store.pruneIndexes()).toBe(1);
    expect(store.hasIndex(INDEX_1)).toBe(false);
    expect(store.hasIndex(INDEX_2)).toBe(true);
    expect(store.pruneIndexes()).toBe(0);
    expect(store.findByName("new", [key], ["amd64"])).toHaveLength(1);
  });

  test("dropIndex() removes one index and its rows so that it can be imported again", async () => {
    await store.importIndex(INDEX_1, batches([record("a", "1")]));
    await store.importIndex(INDEX_2, batches([record("b", "1")]));
    store.setRelease(release("bookworm"), [
      { component: "main", arch: "amd64", indexSha256: INDEX_1 },
      { component: "main", arch: "amd64", indexSha256: INDEX_2 },
    ]);
    expect(store.dropIndex(INDEX_1)).toBe(true);
    expect(store.dropIndex(INDEX_1)).toBe(false);
    expect(store.hasIndex(INDEX_1)).toBe(false);
    expect(store.findByName("a", [`${URI}|bookworm`], ["amd64"])).toEqual([]);
    expect(store.findByName("b", [`${URI}|bookworm`], ["amd64"])).toHaveLength(1);
    expect(await store.importIndex(INDEX_1, batches([record("a", "2")]))).toBe(1);
    expect(store.findByName("a", [`${URI}|bookworm`], ["amd64"]).map((r) => r.version)).toEqual(["2"]);
  });

  test("pruneIndexes() keeps an index that another release still lists", async () => {
    await store.importIndex(INDEX_1, batches([record("shared", "1")]));
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    store.setRelease(release("stable"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    store.setRelease(release("bookworm", 2), []);
    expect(store.pruneIndexes()).toBe(0);
    expect(store.findByName("shared", [`${URI}|stable`], ["amd64"])).toHaveLength(1);
  });

  test("an import that fails midway stores nothing, and a retry succeeds", async () => {
    async function* failing(): AsyncGenerator<PackageRecord[]> {
      yield [record("a", "1"), record("b", "1")];
      throw new Error("decompression failed");
    }
    await expect(store.importIndex(INDEX_1, failing())).rejects.toThrow("decompression failed");
    expect(store.hasIndex(INDEX_1)).toBe(false);
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    expect(store.findByName("a", [`${URI}|bookworm`], ["amd64"])).toEqual([]);

    expect(await store.importIndex(INDEX_1, batches([record("c", "1")]))).toBe(1);
    expect(store.findByName("a", [`${URI}|bookworm`], ["amd64"])).toEqual([]);
    expect(store.findByName("c", [`${URI}|bookworm`], ["amd64"])).toHaveLength(1);
  });

  test("a half-done import is invisible to reads made while it waits for more records", async () => {
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    let resume!: () => void;
    const gate = new Promise<void>((resolve) => (resume = resolve));
    async function* slow(): AsyncGenerator<PackageRecord[]> {
      yield [record("a", "1")];
      await gate;
      yield [record("b", "1")];
    }
    const importing = store.importIndex(INDEX_1, slow());
    await Bun.sleep(0);
    expect(store.hasIndex(INDEX_1)).toBe(false);
    expect(store.findByName("a", [`${URI}|bookworm`], ["amd64"])).toEqual([]);
    expect(() => store.setRelease(release("other"), [])).toThrow(AptP2pError);
    resume();
    expect(await importing).toBe(2);
    expect(store.findByName("a", [`${URI}|bookworm`], ["amd64"])).toHaveLength(1);
  });

  test("concurrent imports run one after the other", async () => {
    const results = await Promise.all([
      store.importIndex(INDEX_1, batches([record("a", "1")], [record("b", "1")])),
      store.importIndex(INDEX_2, batches([record("c", "1")])),
      store.importIndex(INDEX_1, batches([record("x", "1")])),
    ]);
    expect(results).toEqual([2, 1, 2]);
  });

  test("data persists across close() and open()", async () => {
    await store.importIndex(INDEX_1, batches([record("hello", "1")]));
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    store.close();
    store = IndexStore.open(join(dir, "sub", "index.sqlite"));
    expect(store.hasIndex(INDEX_1)).toBe(true);
    expect(store.findByName("hello", [`${URI}|bookworm`], ["amd64"])).toHaveLength(1);
  });

  test("close() is idempotent and later calls fail with an AptP2pError", () => {
    store.close();
    store.close();
    expect(() => store.hasIndex(INDEX_1)).toThrow(AptP2pError);
    expect(() => store.findByName("a", [], [])).toThrow("the index store is closed");
  });

  test("suggestNames() offers close names, best first, without the name itself", async () => {
    const names = ["hello", "help", "shellcheck", "hello-traditional", "jello", "world", "hellox"];
    await store.importIndex(INDEX_1, batches(names.map((n) => record(n, "1"))));
    store.setRelease(release("bookworm"), [{ component: "main", arch: "amd64", indexSha256: INDEX_1 }]);
    const keys = [`${URI}|bookworm`];
    expect(store.suggestNames("helo", keys)).toEqual(["help", "hello"]); // equal distance: nearer length first
    expect(store.suggestNames("hello", keys)).toEqual(["jello", "hellox", "help", "hello-traditional"]);
    expect(store.suggestNames("hlelo", keys, 1)).toEqual(["hello"]);
    expect(store.suggestNames("hello", [], 3)).toEqual([]);
  });
});

describe("editDistance()", () => {
  test.each([
    ["hello", "hello", 0],
    ["helo", "hello", 1],
    ["hello", "hlelo", 1],
    ["kitten", "sitting", 3],
    ["", "abc", 3],
  ] as const)("%s → %s is %d", (a, b, expected) => {
    expect(editDistance(a, b, 5)).toBe(expected);
  });

  test("stops at max + 1", () => {
    expect(editDistance("abcdef", "uvwxyz", 2)).toBe(3);
    expect(editDistance("a", "abcdef", 2)).toBe(3);
  });
});
