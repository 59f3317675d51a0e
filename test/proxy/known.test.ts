/** What the proxy learns from signed data: Release entries, by-hash names, Packages and Sources listings. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseRelease } from "../../src/debian/release.ts";
import { parseSourceFiles } from "../../src/debian/source-index.ts";
import { KnownFiles, kindOfIndexPath, urlKey } from "../../src/proxy/known.ts";
import { indexRoot } from "../../src/proxy/learn.ts";

const h = (c: string) => c.repeat(64);
const RELEASE = `Origin: Test
Suite: stable
SHA256:
 ${h("a")} 1000 main/binary-amd64/Packages
 ${h("b")} 300 main/binary-amd64/Packages.xz
 ${h("c")} 400 main/binary-amd64/Packages.gz
 ${h("d")} 500 main/binary-arm64/Packages.xz
 ${h("e")} 600 main/source/Sources.xz
 ${h("f")} 700 main/i18n/Translation-en
`;
const DIR = "http://mirror.example.org/debian/dists/stable";

let dir: string;
let known: KnownFiles;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-known-"));
  known = KnownFiles.open(join(dir, "proxy.sqlite"));
  known.learnRelease(DIR, parseRelease(RELEASE), 1);
});
afterAll(async () => {
  known.close();
  await rm(dir, { recursive: true, force: true });
});

describe("KnownFiles", () => {
  test("knows each file a verified Release lists, by URL, and by its by-hash name", () => {
    expect(known.lookup(`${DIR}/main/binary-amd64/Packages.xz`)).toEqual({ sha256: h("b"), size: 300 });
    expect(known.lookup(`${DIR}/main/binary-amd64/by-hash/SHA256/${h("b")}`)).toEqual({ sha256: h("b"), size: 300 });
    expect(known.lookup(`${DIR}/main/binary-amd64/by-hash/SHA256/${h("9")}`)).toBeNull();
    expect(known.lookup(`${DIR}/main/binary-amd64/Packages.bz2`)).toBeNull();
    expect(known.hasRelease(DIR)).toBe(true);
    expect(known.hasRelease("http://mirror.example.org/other/dists/stable")).toBe(false);
  });

  test("tells the indexes it reads, and their names behind a by-hash URL", () => {
    expect(known.indexOf(`${DIR}/main/binary-amd64/by-hash/SHA256/${h("b")}`)).toEqual({ kind: "packages", listedAs: `${DIR}/main/binary-amd64/Packages.xz` });
    expect(known.indexOf(`${DIR}/main/source/Sources.xz`)?.kind).toBe("sources");
    expect(known.indexOf(`${DIR}/main/i18n/Translation-en`)).toBeNull();
    expect(kindOfIndexPath("main/binary-amd64/Packages.gz")).toBe("packages");
    expect(kindOfIndexPath("main/binary-amd64/Packages.diff/Index")).toBeNull();
  });

  test("offers the smallest form of each unread Packages index of an architecture", () => {
    const root = "http://mirror.example.org/debian";
    expect(known.unreadPackagesIndexes(root, "amd64")).toEqual([{ url: `${DIR}/main/binary-amd64/Packages.xz`, sha256: h("b"), size: 300 }]);
    known.markRead(h("b"), root, 2);
    expect(known.unreadPackagesIndexes(root, "amd64")).toEqual([]);
    expect(known.unreadPackagesIndexes(root, "arm64").map((i) => i.size)).toEqual([500]);
    expect(known.unreadPackagesIndexes("http://mirror.example.org/debia", "arm64")).toEqual([]);
  });

  test("files listed by an index are known by URL, however the client escapes the name", () => {
    const root = "http://mirror.example.org/debian";
    known.learnListed(root, [{ path: "pool/main/g/gcc/libstdc++6_12_amd64.deb", sha256: h("7"), size: 42 }], 3);
    expect(known.lookup(`${root}/pool/main/g/gcc/libstdc%2B%2B6_12_amd64.deb`)).toEqual({ sha256: h("7"), size: 42 });
    expect(urlKey("http://h/a%7eb")).toBe("http://h/a~b");
    expect(urlKey("http://h/bad%zz")).toBe("http://h/bad%zz");
  });
});

test("indexRoot(): the archive root before /dists/, or a flat repository's directory", () => {
  expect(indexRoot(`${DIR}/main/binary-amd64/Packages.xz`)).toBe("http://mirror.example.org/debian");
  expect(indexRoot("http://h:8080/repo/Packages.gz")).toBe("http://h:8080/repo");
});

test("parseSourceFiles(): each source package's files under its Directory, across chunk boundaries", async () => {
  const text = `Package: hello
Binary: hello
Directory: pool/main/h/hello
Checksums-Sha256:
 ${h("1")} 1183 hello_2.10-3.dsc
 ${h("2")} 725946 hello_2.10.orig.tar.gz
Files:
 00000000000000000000000000000000 1183 hello_2.10-3.dsc

Package: evil
Directory: ../../etc
Checksums-Sha256:
 ${h("3")} 1 passwd

Package: nodir
Checksums-Sha256:
 ${h("4")} 1 x.dsc
`;
  const bytes = new TextEncoder().encode(text);
  const chunks = (async function* () {
    for (let at = 0; at < bytes.length; at += 7) yield bytes.subarray(at, at + 7);
  })();
  const files = [];
  for await (const batch of parseSourceFiles(chunks)) files.push(...batch);
  expect(files).toEqual([
    { path: "pool/main/h/hello/hello_2.10-3.dsc", size: 1183, sha256: h("1") },
    { path: "pool/main/h/hello/hello_2.10.orig.tar.gz", size: 725946, sha256: h("2") },
  ]);
});
