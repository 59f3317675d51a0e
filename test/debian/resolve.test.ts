import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { IndexStore } from "../../src/debian/index-store.ts";
import type { PackageRecord } from "../../src/debian/packages.ts";
import { parseRequest, resolveRequest, type ResolveScope } from "../../src/debian/resolve.ts";
import { ErrorCode } from "../../src/errors.ts";

function record(name: string, version: string, architecture = "amd64"): PackageRecord {
  const base = version.replace(/^\d+:/, "");
  return {
    package: name,
    version,
    architecture,
    filename: `pool/main/${name[0]}/${name}/${name}_${base}_${architecture}.deb`,
    size: 100,
    sha256: new Bun.CryptoHasher("sha256").update(`${name} ${version} ${architecture}`).digest("hex"),
  };
}

let store: IndexStore;
const scope: ResolveScope = { releaseKeys: ["m|stable", "m|updates"], arches: ["amd64"], describe: "stable, updates (main)" };

async function* batches(records: PackageRecord[]) {
  yield records;
}

beforeAll(async () => {
  store = IndexStore.open(":memory:");
  const stable = [
    record("hello", "2.10-2"),
    record("hello", "2.10~rc1-1"),
    record("hello", "2.10-2", "i386"),
    record("tool", "1:0.9-1"),
    record("common", "3.0", "all"),
    record("foreign", "1.0", "arm64"),
  ];
  const updates = [record("hello", "2.10-3"), record("tool", "5.0-1"), record("hello", "3.0", "i386")];
  await store.importIndex("a".repeat(64), batches(stable));
  await store.importIndex("b".repeat(64), batches(updates));
  store.setRelease({ key: "m|stable", uri: "http://m", suite: "stable", releaseSha256: "1", releaseText: "", fetchedAt: 0 }, [
    { component: "main", arch: "amd64", indexSha256: "a".repeat(64) },
  ]);
  store.setRelease({ key: "m|updates", uri: "http://m", suite: "updates", releaseSha256: "2", releaseText: "", fetchedAt: 0 }, [
    { component: "main", arch: "amd64", indexSha256: "b".repeat(64) },
  ]);
});
afterAll(() => store.close());

const resolve = (text: string, s: ResolveScope = scope) => resolveRequest(store, parseRequest(text), s);
const failure = (text: string) => {
  try {
    resolve(text);
  } catch (err) {
    return err as { code: string; message: string; hints: string[] };
  }
  throw new Error(`${text} resolved`);
};

describe("parseRequest()", () => {
  test.each([
    ["hello", { kind: "name", text: "hello", name: "hello", version: undefined, arch: undefined }],
    ["hello=2.10-3", { kind: "name", text: "hello=2.10-3", name: "hello", version: "2.10-3", arch: undefined }],
    ["libc6:i386", { kind: "name", text: "libc6:i386", name: "libc6", version: undefined, arch: "i386" }],
    ["g++:i386=1:12", { kind: "name", text: "g++:i386=1:12", name: "g++", version: "1:12", arch: "i386" }],
    ["hello_2.10-3_amd64.deb", { kind: "file", text: "hello_2.10-3_amd64.deb", path: "hello_2.10-3_amd64.deb" }],
    ["/pool/main/h/hello/x.deb", { kind: "file", text: "/pool/main/h/hello/x.deb", path: "pool/main/h/hello/x.deb" }],
  ])("%s", (text, expected) => {
    expect(parseRequest(text)).toEqual(expected as ReturnType<typeof parseRequest>);
  });

  test.each(["Hello", "hello=", "hello:", "", "a b"])("refuses %p as a usage error", (text) => {
    expect(() => parseRequest(text)).toThrow(expect.objectContaining({ code: ErrorCode.Usage }));
  });
});

describe("resolveRequest()", () => {
  test("NAME picks the highest version by dpkg order across suites", () => {
    expect(resolve("hello").version).toBe("2.10-3");
    expect(resolve("hello").suite).toBe("updates");
  });

  test("epochs outrank bigger upstream numbers", () => {
    expect(resolve("tool").version).toBe("1:0.9-1");
  });

  test("only the host architecture and all are considered", () => {
    expect(resolve("common").architecture).toBe("all");
    expect(failure("foreign").code).toBe(ErrorCode.UnknownPackage);
  });

  test("NAME:ARCH and a scope with another architecture pick that architecture", () => {
    expect(resolve("hello:i386").version).toBe("3.0");
    expect(resolve("hello", { ...scope, arches: ["i386"] }).architecture).toBe("i386");
    expect(resolve("foreign:arm64").version).toBe("1.0");
  });

  test("NAME=VERSION picks that version, even an older one", () => {
    expect(resolve("hello=2.10~rc1-1").filename).toBe("pool/main/h/hello/hello_2.10~rc1-1_amd64.deb");
  });

  test("a .deb name or a pool path picks the entry with that Filename", () => {
    expect(resolve("hello_2.10-2_i386.deb").architecture).toBe("i386");
    expect(resolve("pool/main/t/tool/tool_5.0-1_amd64.deb").version).toBe("5.0-1");
    expect(failure("main/h/hello/other.deb").code).toBe(ErrorCode.UnknownPackage);
  });

  test("releases outside the scope are not searched", () => {
    expect(resolve("hello", { ...scope, releaseKeys: ["m|stable"] }).version).toBe("2.10-2");
  });

  test("an unknown name names the suites searched and suggests close names", () => {
    const err = failure("helo");
    expect(err.code).toBe(ErrorCode.UnknownPackage);
    expect(err.message).toBe("Unknown package 'helo': not found in stable, updates (main) for amd64, all");
    expect(err.hints[0]).toBe("Did you mean: hello?");
  });

  test("an unknown version lists the available ones, newest first", () => {
    const err = failure("hello=9");
    expect(err.code).toBe(ErrorCode.UnknownVersion);
    expect(err.message).toBe("Unknown version 'hello=9': available versions are 2.10-3, 2.10-2, 2.10~rc1-1");
  });
});
