/**
 * The real bookworm main/binary-amd64 Packages.xz, end to end: decompress, parse, store, look up.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decompress } from "../../src/debian/decompress.ts";
import { IndexStore } from "../../src/debian/index-store.ts";
import { type PackageRecord, parsePackageBatches } from "../../src/debian/packages.ts";

const FIXTURE = join(import.meta.dir, "../../../shared/fixtures/debian-bookworm/main/binary-amd64/Packages.xz");
const FIXTURE_SIZE_BYTES = 8_790_396;
const FIXTURE_SHA256 = "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5";
const FIXTURE_STANZAS = 63_440;
/** Read by hand from `xz -dc Packages.xz | grep -A26 '^Package: hello$'`. */
const HELLO = {
  package: "hello",
  version: "2.10-3",
  architecture: "amd64",
  filename: "pool/main/h/hello/hello_2.10-3_amd64.deb",
  size: 53080,
  sha256: "2e6e2f1a0007dc43bc91c273fd36e91e40a4f1c2765a03eca68b70a42103878a",
};
const KEY = "file:///srv/debian|bookworm";

let dir: string;
let store: IndexStore;
const records: PackageRecord[] = [];
const skipped: string[] = [];
let imported = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "apt-p2p-bookworm-"));
  store = IndexStore.open(join(dir, "index.sqlite"));
  async function* keepBatches(): AsyncGenerator<PackageRecord[]> {
    const stream = decompress(Bun.file(FIXTURE).stream(), "xz");
    for await (const batch of parsePackageBatches(stream, { onSkipped: (reason) => skipped.push(reason) })) {
      for (const record of batch) records.push(record);
      yield batch;
    }
  }
  imported = await store.importIndex(FIXTURE_SHA256, keepBatches());
  store.setRelease(
    { key: KEY, uri: "file:///srv/debian", suite: "bookworm", releaseSha256: "0".repeat(64), releaseText: "", fetchedAt: 0 },
    [{ component: "main", arch: "amd64", indexSha256: FIXTURE_SHA256 }],
  );
});

afterAll(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("bookworm main/binary-amd64 Packages.xz", () => {
  test("the fixture is the published file", async () => {
    const bytes = await Bun.file(FIXTURE).bytes();
    expect(bytes.length).toBe(FIXTURE_SIZE_BYTES);
    expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(FIXTURE_SHA256);
  });

  test("parses every stanza and skips none", () => {
    expect(skipped).toEqual([]);
    expect(records).toHaveLength(FIXTURE_STANZAS);
    expect(imported).toBe(FIXTURE_STANZAS);
    expect(records.filter((r) => r.package === "hello")).toEqual([HELLO]);
  });

  test("hasIndex() is true after the import", () => {
    expect(store.hasIndex(FIXTURE_SHA256)).toBe(true);
  });

  test("findByName('hello') gives version 2.10-3 with its pool path and SHA-256", () => {
    const rows = store.findByName("hello", [KEY], ["amd64", "all"]);
    expect(rows).toEqual([{ uri: "file:///srv/debian", suite: "bookworm", component: "main", ...HELLO }]);
  });

  test("findByFilename() finds hello by .deb name and by pool path", () => {
    expect(store.findByFilename("hello_2.10-3_amd64.deb", [KEY]).map((r) => r.package)).toEqual(["hello"]);
    expect(store.findByFilename(HELLO.filename, [KEY]).map((r) => r.sha256)).toEqual([HELLO.sha256]);
  });

  test("suggestNames('helo') includes hello", () => {
    expect(store.suggestNames("helo", [KEY])).toContain("hello");
  });
});
