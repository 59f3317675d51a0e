/**
 * End to end: a real repository built with dpkg-deb and apt-ftparchive, signed with a throwaway key,
 * served on 127.0.0.1; `apt-p2p get` runs as a subprocess against it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_CODES } from "../../src/cli/exit-codes.ts";
import { jsonLines, runApt } from "../helpers/cli.ts";
import { startMirror, type TestMirror } from "../helpers/mirror.ts";
import { buildDeb, buildFlatRepo, buildRepo, dropGpgKey, exportArmoredKey, makeGpgKey, publishIndexes, run, sha256File, signRelease, type GpgKey, type Repo } from "../helpers/repo.ts";

const BIG_BYTES = 6 * 1024 * 1024;

let work: string;
let key: GpgKey;
let stranger: GpgKey;
let repo: Repo;
let mirror: TestMirror;
const extraMirrors: TestMirror[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-e2e-"));
  [key, stranger] = await Promise.all([makeGpgKey("repo"), makeGpgKey("stranger")]);
  repo = await buildRepo(join(work, "repo"), {
    key,
    packages: [
      { name: "hello", version: "2.10-2", payloadBytes: 3000 },
      { name: "hello", version: "2.10-3", payloadBytes: 4000 },
      { name: "hello", version: "2.10~rc1-1", payloadBytes: 2000 },
      { name: "bigpkg", version: "1:1.0-1", payloadBytes: BIG_BYTES },
      { name: "docs-common", version: "0.5", arch: "all", payloadBytes: 500 },
    ],
  });
  mirror = await startMirror(repo.root);
});

afterAll(async () => {
  await mirror?.stop();
  for (const m of extraMirrors) await m.stop();
  await Promise.all([key && dropGpgKey(key), stranger && dropGpgKey(stranger)]);
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
/** A fresh destination and cache, and a sources file for `url` signed by `keyring`. */
async function scene(url = mirror.url, options: string = `signed-by=${key.keyring}`) {
  const dir = join(work, `scene-${counter++}`);
  const dest = join(dir, "dest");
  const cache = join(dir, "cache");
  const sources = join(dir, "test.list");
  await Bun.write(sources, `# test repository\ndeb [${options}] ${url} stable main\n`);
  const args = (...rest: string[]) => ["get", "--sources", sources, "--cache-dir", cache, "--dest", dest, "--arch", "amd64", ...rest];
  return { dir, dest, cache, sources, args };
}

async function listFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true }).catch(() => [] as string[])).map(String).sort();
}

/** Files in the cache's content store (not its databases). */
async function cachedFiles(cache: string): Promise<string[]> {
  return (await listFiles(join(cache, "files"))).filter((p) => /[0-9a-f]{64}$/.test(p));
}

async function withTinyDisk(path: string, body: (path: string) => Promise<void>): Promise<void> {
  await mkdir(path, { recursive: true });
  await run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", path]);
  try {
    await body(path);
  } finally {
    await run(["umount", path]);
  }
}

/** A copy of the repository, altered by `change`, on its own mirror. */
async function variant(change: (root: string) => Promise<void>): Promise<TestMirror> {
  const root = join(work, `variant-${counter++}`);
  await cp(repo.root, root, { recursive: true });
  await change(root);
  const m = await startMirror(root);
  extraMirrors.push(m);
  return m;
}

describe("apt-p2p get against a signed local repository", () => {
  test("downloads the newest version, byte-identical to the pool, and reports it as JSON", async () => {
    const s = await scene();
    const r = await runApt(s.args("--json", "hello"));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [line] = jsonLines(r.stdout);
    const pool = join(repo.root, repo.debs.get("hello_2.10-3")!);
    const size = (await readFile(pool)).length;
    expect(line).toEqual({
      package: "hello",
      version: "2.10-3",
      filename: "pool/main/h/hello/hello_2.10-3_amd64.deb",
      path: join(s.dest, "hello_2.10-3_amd64.deb"),
      size,
      sha256: await sha256File(pool),
      sources: { mirror: size, cache: 0, peers: 0, perPeer: {} },
      seconds: expect.any(Number),
    });
    expect(await sha256File(join(s.dest, "hello_2.10-3_amd64.deb"))).toBe(await sha256File(pool));
    expect(await listFiles(s.dest)).toEqual(["hello_2.10-3_amd64.deb"]);
  });

  test("a fresh download shares one copy of its bytes with the cache; a destination on another file system gets a copy", async () => {
    const s = await scene();
    expect((await runApt(s.args("hello"))).code).toBe(0);
    const dest = await stat(join(s.dest, "hello_2.10-3_amd64.deb"));
    const [cached] = await cachedFiles(s.cache);
    const inCache = await stat(join(s.cache, "files", cached!));
    expect(dest.ino).toBe(inCache.ino);
    expect(dest.nlink).toBe(2);
    expect(await listFiles(s.dest)).toEqual(["hello_2.10-3_amd64.deb"]);
    if (process.getuid?.() !== 0) return; // a second file system needs a tmpfs mount, which needs root (CI runs as root)
    await withTinyDisk(join(s.dir, "other-fs"), async (other) => {
      const fresh = await scene();
      expect((await runApt(["get", "--sources", fresh.sources, "--cache-dir", fresh.cache, "--dest", other, "--arch", "amd64", "hello"])).code).toBe(0);
      const copy = await stat(join(other, "hello_2.10-3_amd64.deb"));
      expect(copy.nlink).toBe(1);
      expect(await sha256File(join(other, "hello_2.10-3_amd64.deb"))).toBe(await sha256File(join(repo.root, repo.debs.get("hello_2.10-3")!)));
      expect(await listFiles(other)).toEqual(["hello_2.10-3_amd64.deb"]);
    });
  });

  test("NAME=VERSION picks that version; a file name and a pool path pick their entry", async () => {
    const s = await scene();
    const r = await runApt(s.args("--json", "hello=2.10~rc1-1", "hello_2.10-2_amd64.deb", "pool/main/b/bigpkg/bigpkg_1.0-1_amd64.deb"));
    expect(r.code).toBe(0);
    const got = jsonLines(r.stdout).map((l) => `${l.package}=${l.version}`).sort();
    expect(got).toEqual(["bigpkg=1:1.0-1", "hello=2.10-2", "hello=2.10~rc1-1"]);
    expect(await listFiles(s.dest)).toEqual(["bigpkg_1.0-1_amd64.deb", "hello_2.10-2_amd64.deb", "hello_2.10~rc1-1_amd64.deb"]);
    for (const name of await listFiles(s.dest)) {
      const pool = [...repo.debs.values()].find((p) => p.endsWith(name))!;
      expect(await sha256File(join(s.dest, name))).toBe(await sha256File(join(repo.root, pool)));
    }
  });

  test("takes architecture-independent packages and prints a plain line per file when not on a terminal", async () => {
    const s = await scene();
    const r = await runApt(s.args("docs-common", "hello"));
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines.some((l) => l.includes("docs-common_0.5_all.deb") && l.includes("docs-common 0.5"))).toBe(true);
  });

  test("a second get takes the file from the cache and the index from a 304", async () => {
    const s = await scene();
    const first = await runApt(s.args("--json", "bigpkg"));
    expect(first.code).toBe(0);
    const before = mirror.requests.length;
    await rm(s.dest, { recursive: true });
    const second = await runApt(s.args("--json", "bigpkg"));
    expect(second.code).toBe(0);
    const [line] = jsonLines(second.stdout);
    expect(line?.sources).toEqual({ mirror: 0, cache: line?.size, peers: 0, perPeer: {} });
    const after = mirror.requests.slice(before);
    expect(after.map((r) => `${r.path} ${r.status}`)).toEqual(["/dists/stable/InRelease 304"]);
    expect(await sha256File(join(s.dest, "bigpkg_1.0-1_amd64.deb"))).toBe(await sha256File(join(repo.root, repo.debs.get("bigpkg_1:1.0-1")!)));
  });

  test("two mirrors of one archive in one sources file sync at once without conflict", async () => {
    const m = await variant(async () => {});
    const s = await scene();
    await writeFile(s.sources, `deb [signed-by=${key.keyring}] ${mirror.url} stable main\ndeb [signed-by=${key.keyring}] ${m.url} stable main\n`);
    const r = await runApt(s.args("--json", "hello"));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const fetchedIndexes = [...mirror.requests, ...m.requests].filter((q) => q.path.includes("/binary-amd64/"));
    expect(fetchedIndexes.length).toBeGreaterThanOrEqual(1);
    expect(m.requests.filter((q) => q.path.endsWith("InRelease"))).toHaveLength(1);
  });

  test("a changed Release brings in the new index; --refresh re-verifies an unchanged one", async () => {
    let root = "";
    const m = await variant(async (r) => {
      root = r;
    });
    const s = await scene(m.url);
    expect(jsonLines((await runApt(s.args("--json", "hello"))).stdout)[0]?.version).toBe("2.10-3");

    await buildDeb(join(work, "newer"), { name: "hello", version: "2.11-1", payloadBytes: 1234 }, join(root, "pool/main/h/hello/hello_2.11-1_amd64.deb"));
    // Keep the Release's mtime from matching the previous one to the second, as a real mirror's would differ.
    await Bun.sleep(1100);
    await publishIndexes(root, "stable", { key });
    const r = await runApt(s.args("--json", "hello"));
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)[0]?.version).toBe("2.11-1");

    const before = m.requests.length;
    expect((await runApt(s.args("--refresh", "hello"))).code).toBe(0);
    const refreshed = m.requests.slice(before).map((q) => `${q.path} ${q.status}`);
    expect(refreshed).toContain("/dists/stable/InRelease 200");
    expect(refreshed.some((q) => q.startsWith("/dists/stable/main/binary-amd64/Packages"))).toBe(true);
  });

  test("--quiet prints nothing on success", async () => {
    const s = await scene();
    const r = await runApt(s.args("--quiet", "hello"));
    expect([r.code, r.stdout, r.stderr]).toEqual([0, "", ""]);
  });

  test("a file: URI source works like a mirror", async () => {
    const s = await scene(`file://${repo.root}`);
    const r = await runApt(s.args("--json", "hello"));
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)[0]?.version).toBe("2.10-3");
  });

  test("with the mirror gone, the verified index and the cache still serve a cached file", async () => {
    const m = await variant(async () => {});
    const s = await scene(m.url);
    expect((await runApt(s.args("hello"))).code).toBe(0);
    await m.stop();
    await rm(s.dest, { recursive: true });
    const r = await runApt(s.args("--json", "hello"));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("using the index verified at");
    expect(jsonLines(r.stdout)[0]?.sources).toMatchObject({ mirror: 0 });
  });
});

describe("apt-p2p get refuses bad input with its own exit code and writes nothing", () => {
  async function expectRefused(r: { code: number; stderr: string }, code: number, s: { dest: string; cache: string }, message: RegExp) {
    expect(r.stderr).toMatch(message);
    expect(r.code).toBe(code);
    expect(await listFiles(s.dest)).toEqual([]);
    expect(await cachedFiles(s.cache)).toEqual([]);
  }

  test("unknown package: names the suites searched and suggests close names", async () => {
    const s = await scene();
    const r = await runApt(s.args("helo"));
    await expectRefused(r, EXIT_CODES.UNKNOWN_PACKAGE, s, /Unknown package 'helo': not found in stable \(main\)/);
    expect(r.stderr).toContain("Did you mean: hello");
    expect(await stat(s.dest).catch(() => null)).toBeNull(); // not even an empty destination directory
  });

  test("unknown version: lists the available ones, newest first", async () => {
    const s = await scene();
    const r = await runApt(s.args("hello=9.9"));
    await expectRefused(r, EXIT_CODES.UNKNOWN_VERSION, s, /available versions are 2\.10-3, 2\.10-2, 2\.10~rc1-1/);
  });

  test("no APT sources: says how to pass --sources", async () => {
    const s = await scene();
    await writeFile(s.sources, "# nothing here\ndeb-src http://127.0.0.1:9/ stable main\n");
    const r = await runApt(s.args("hello"));
    await expectRefused(r, EXIT_CODES.NO_SOURCES, s, /No APT sources found[\s\S]*--sources FILE/);
  });

  test("a changed Packages file is refused as an index hash mismatch", async () => {
    const m = await variant(async (root) => {
      const bin = join(root, "dists/stable/main/binary-amd64");
      const text = (await readFile(join(bin, "Packages"), "utf8")).replace(/^(SHA256: )[0-9a-f]{64}$/m, `$1${"0".repeat(64)}`);
      await writeFile(join(bin, "Packages"), text);
      await run(["sh", "-c", "xz -kf Packages && gzip -kfn Packages"], { cwd: bin });
    });
    const s = await scene(m.url);
    await expectRefused(await runApt(s.args("hello")), EXIT_CODES.INDEX_HASH_MISMATCH, s, /Rejected .*Packages\.xz/);
  });

  test("a changed .deb is refused as a file hash mismatch", async () => {
    const m = await variant(async (root) => {
      const deb = join(root, repo.debs.get("hello_2.10-3")!);
      const bytes = new Uint8Array(await readFile(deb));
      bytes[bytes.length - 10]! ^= 0xff;
      await writeFile(deb, bytes);
    });
    const s = await scene(m.url);
    await expectRefused(await runApt(s.args("hello")), EXIT_CODES.FILE_HASH_MISMATCH, s, /Rejected hello_2\.10-3_amd64\.deb: SHA-256/);
  });

  test("an unsigned Release is refused", async () => {
    const m = await variant(async (root) => {
      await rm(join(root, "dists/stable/InRelease"));
      await rm(join(root, "dists/stable/Release.gpg"));
    });
    const s = await scene(m.url);
    await expectRefused(await runApt(s.args("hello")), EXIT_CODES.BAD_SIGNATURE, s, /not signed/);
  });

  test("a Release signed by a key not in the keyring is refused", async () => {
    const m = await variant(async (root) => {
      await signRelease(root, "stable", { key: stranger });
    });
    const s = await scene(m.url);
    await expectRefused(await runApt(s.args("hello")), EXIT_CODES.BAD_SIGNATURE, s, /Cannot verify .*InRelease: signed by key .* not in the keyring/);
  });

  test("a detached Release.gpg by the wrong key is refused too", async () => {
    const m = await variant(async (root) => {
      await signRelease(root, "stable", { key: stranger });
      await rm(join(root, "dists/stable/InRelease"));
    });
    const s = await scene(m.url);
    await expectRefused(await runApt(s.args("hello")), EXIT_CODES.BAD_SIGNATURE, s, /Cannot verify .*dists\/stable\/Release:/);
  });

  test("an unreachable mirror is named", async () => {
    const m = await variant(async () => {});
    await m.stop();
    const s = await scene(m.url);
    await expectRefused(await runApt(s.args("hello")), EXIT_CODES.MIRROR_UNREACHABLE, s, /Cannot fetch http:\/\/127\.0\.0\.1:\d+\/dists\/stable\/InRelease/);
  });

  test("an HTTP error from the mirror is named with its status", async () => {
    const m = await variant(async () => {});
    m.failWith = 500;
    const s = await scene(m.url);
    await expectRefused(await runApt(s.args("hello")), EXIT_CODES.MIRROR_UNREACHABLE, s, /HTTP 500/);
  });

  test("a destination that cannot be a directory is refused before any download", async () => {
    const s = await scene();
    const notDir = join(s.dir, "plain-file");
    await writeFile(notDir, "x");
    const r = await runApt(["get", "--sources", s.sources, "--cache-dir", s.cache, "--dest", join(notDir, "sub"), "hello"]);
    expect(r.code).toBe(EXIT_CODES.DESTINATION_UNWRITABLE);
    expect(r.stderr).toContain(`Cannot write ${join(notDir, "sub")}`);
  });

  // A full disk needs a small file system: a 64 KiB tmpfs, which needs root (CI runs as root).
  const canMount = process.getuid?.() === 0;
  test.skipIf(!canMount)("a full destination disk is refused, leaving no partial file there", async () => {
    const s = await scene();
    await withTinyDisk(join(s.dir, "small"), async (small) => {
      const r = await runApt(["get", "--sources", s.sources, "--cache-dir", s.cache, "--dest", small, "--arch", "amd64", "bigpkg"]);
      expect(r.stderr).toContain(`Cannot write ${join(small, "bigpkg_1.0-1_amd64.deb")}: no space left on device`);
      expect(r.code).toBe(EXIT_CODES.DESTINATION_UNWRITABLE);
      expect(await listFiles(small)).toEqual([]);
    });
  });

  test.skipIf(!canMount)("a full cache disk is refused, leaving nothing in the cache", async () => {
    const s = await scene();
    await withTinyDisk(join(s.dir, "small"), async (small) => {
      const r = await runApt(["get", "--sources", s.sources, "--cache-dir", small, "--dest", s.dest, "--arch", "amd64", "bigpkg"]);
      expect(r.stderr).toContain("no space left on device");
      expect(r.code).toBe(EXIT_CODES.DESTINATION_UNWRITABLE);
      expect(await cachedFiles(small)).toEqual([]);
      expect(await listFiles(join(small, "tmp"))).toEqual([]);
      expect(await listFiles(s.dest)).toEqual([]);
    });
  });

  test("a bad command line is a usage error", async () => {
    const r = await runApt(["get", "--jobs", "zero", "hello"]);
    expect(r.code).toBe(EXIT_CODES.USAGE);
    expect(r.stderr).toContain("--jobs");
  });
});

describe("source forms", () => {
  test("a flat repository (deb URI ./) works", async () => {
    const root = join(work, "flat");
    await buildFlatRepo(root, { key, packages: [{ name: "flatpkg", version: "1.0", payloadBytes: 100 }] });
    const m = await startMirror(root);
    extraMirrors.push(m);
    const s = await scene();
    await writeFile(s.sources, `deb [signed-by=${key.keyring}] ${m.url} ./\n`);
    const r = await runApt(s.args("--json", "flatpkg"));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(await sha256File(join(s.dest, "flatpkg_1.0_amd64.deb"))).toBe(await sha256File(join(root, "flatpkg_1.0_amd64.deb")));
  });

  test("a deb822 .sources file with an inline Signed-By key works", async () => {
    const s = await scene();
    const armored = (await exportArmoredKey(key))
      .trimEnd()
      .split("\n")
      .map((line) => (line === "" ? " ." : ` ${line}`))
      .join("\n");
    const sources = join(s.dir, "test.sources");
    await writeFile(sources, `Types: deb\nURIs: ${mirror.url}\nSuites: stable\nComponents: main\nSigned-By:\n${armored}\n`);
    const r = await runApt(["get", "--json", "--sources", sources, "--cache-dir", s.cache, "--dest", s.dest, "--arch", "amd64", "hello"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  test("without --sources, the APT directory's sources and trusted.gpg.d keys are used", async () => {
    const s = await scene();
    const aptDir = join(s.dir, "etc-apt");
    await mkdir(join(aptDir, "sources.list.d"), { recursive: true });
    await mkdir(join(aptDir, "trusted.gpg.d"), { recursive: true });
    await writeFile(join(aptDir, "trusted.gpg.d", "test-repo.asc"), await exportArmoredKey(key));
    await writeFile(join(aptDir, "sources.list.d", "test.sources"), `Types: deb\nURIs: ${mirror.url}\nSuites: stable\nComponents: main\n`);
    await writeFile(join(aptDir, "sources.list.d", "off.sources"), `Enabled: no\nTypes: deb\nURIs: http://127.0.0.1:9\nSuites: x\nComponents: main\n`);
    const r = await runApt(["get", "--json", "--apt-dir", aptDir, "--cache-dir", s.cache, "--dest", s.dest, "--arch", "amd64", "hello"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)[0]?.version).toBe("2.10-3");
  });

  test("an APT directory with no sources says so and how to pass --sources", async () => {
    const s = await scene();
    const r = await runApt(["get", "--apt-dir", join(s.dir, "empty"), "--cache-dir", s.cache, "--dest", s.dest, "hello"]);
    expect(r.code).toBe(EXIT_CODES.NO_SOURCES);
    expect(r.stderr).toContain("No APT sources found");
    expect(r.stderr).toContain("--sources FILE");
  });

  test("a Release past its Valid-Until is refused", async () => {
    const m = await variant(async (root) => {
      await signRelease(root, "stable", { key, validUntil: new Date(Date.now() - 86_400_000) });
    });
    const s = await scene(m.url);
    const r = await runApt(s.args("hello"));
    expect(r.code).toBe(EXIT_CODES.BAD_SIGNATURE);
    expect(r.stderr).toContain("expired on");
    expect(await listFiles(s.dest)).toEqual([]);
  });
});

describe("trusted=yes and by-hash", () => {
  test("trusted=yes accepts an unsigned repository, as APT does", async () => {
    const m = await variant(async (root) => {
      await rm(join(root, "dists/stable/InRelease"));
      await rm(join(root, "dists/stable/Release.gpg"));
    });
    const s = await scene(m.url, "trusted=yes");
    const r = await runApt(s.args("--json", "hello"));
    expect(r.code).toBe(0);
  });

  test("Acquire-By-Hash: yes fetches the index by its hash", async () => {
    const m = await variant(async (root) => {
      await publishIndexes(root, "stable", { key, byHash: true });
    });
    const s = await scene(m.url);
    const r = await runApt(s.args("hello"));
    expect(r.code).toBe(0);
    expect(m.requests.some((q) => /\/main\/binary-amd64\/by-hash\/SHA256\/[0-9a-f]{64}$/.test(q.path) && q.status === 200)).toBe(true);
    expect(m.requests.some((q) => q.path.endsWith("/Packages.xz"))).toBe(false);
  });
});
