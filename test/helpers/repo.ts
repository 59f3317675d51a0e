/**
 * Builds a real Debian repository with dpkg-deb and apt-ftparchive, signed with a throwaway gpg key.
 * Layout: pool/main/<l>/<name>/<name>_<version>_<arch>.deb and dists/<suite>/{InRelease,Release,Release.gpg}.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PackageSpec {
  name: string;
  version: string;
  arch?: string;
  /** Size of an incompressible payload file in the package, in bytes. */
  payloadBytes?: number;
}

export interface GpgKey {
  home: string;
  /** Binary keyring holding the public key. */
  keyring: string;
  fingerprint: string;
}

export interface Repo {
  root: string;
  suite: string;
  key: GpgKey;
  /** Pool path of each package, by "name_version". */
  debs: Map<string, string>;
}

export async function run(cmd: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  const proc = Bun.spawn(cmd, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if ((await proc.exited) !== 0) throw new Error(`${cmd.join(" ")} failed (${proc.exitCode}): ${err}`);
  return out;
}

export async function makeGpgKey(name: string): Promise<GpgKey> {
  const home = await mkdtemp(join(tmpdir(), "apt-p2p-gpg-"));
  await run(["gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-gen-key", `${name} <${name}@example.invalid>`, "ed25519", "sign", "never"]);
  const keyring = join(home, "public.gpg");
  await writeFile(keyring, await runBytes(["gpg", "--homedir", home, "--export"]));
  const colons = await run(["gpg", "--homedir", home, "--with-colons", "--list-keys"]);
  const fingerprint = colons.split("\n").find((l) => l.startsWith("fpr:"))!.split(":")[9]!;
  return { home, keyring, fingerprint };
}

export async function dropGpgKey(key: GpgKey): Promise<void> {
  await run(["gpgconf", "--homedir", key.home, "--kill", "gpg-agent"]).catch(() => undefined);
  await rm(key.home, { recursive: true, force: true });
}

async function runBytes(cmd: string[]): Promise<Uint8Array> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const out = new Uint8Array(await new Response(proc.stdout).arrayBuffer());
  if ((await proc.exited) !== 0) throw new Error(`${cmd.join(" ")} failed`);
  return out;
}

/** Deterministic incompressible bytes (xorshift), so that repositories are reproducible. */
export function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export async function buildDeb(workDir: string, spec: PackageSpec, outPath: string): Promise<void> {
  const arch = spec.arch ?? "amd64";
  const root = join(workDir, `${spec.name}_${spec.version}_${arch}`);
  await mkdir(join(root, "DEBIAN"), { recursive: true });
  await mkdir(join(root, "usr/share", spec.name), { recursive: true });
  await writeFile(
    join(root, "DEBIAN/control"),
    [
      `Package: ${spec.name}`,
      `Version: ${spec.version}`,
      `Architecture: ${arch}`,
      "Maintainer: apt-p2p tests <tests@example.invalid>",
      "Section: misc",
      "Priority: optional",
      `Description: test package ${spec.name}`,
      " Built by the apt-p2p test suite.",
      "",
    ].join("\n"),
  );
  await writeFile(join(root, "usr/share", spec.name, "payload"), noise(spec.payloadBytes ?? 1000, hash(spec.name + spec.version)));
  await run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", root, outPath]);
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export interface RepoOptions {
  suite?: string;
  key: GpgKey;
  packages: PackageSpec[];
  /** Publish by-hash copies of the indexes and say Acquire-By-Hash: yes. */
  byHash?: boolean;
}

export async function buildRepo(root: string, options: RepoOptions): Promise<Repo> {
  const suite = options.suite ?? "stable";
  const work = await mkdtemp(join(tmpdir(), "apt-p2p-debs-"));
  const debs = new Map<string, string>();
  try {
    for (const spec of options.packages) {
      const arch = spec.arch ?? "amd64";
      const dir = join("pool/main", spec.name[0]!, spec.name);
      await mkdir(join(root, dir), { recursive: true });
      // Debian's file names leave out the epoch.
      const poolPath = join(dir, `${spec.name}_${spec.version.replace(/^\d+:/, "")}_${arch}.deb`);
      await buildDeb(work, spec, join(root, poolPath));
      debs.set(`${spec.name}_${spec.version}`, poolPath);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  await publishIndexes(root, suite, options);
  return { root, suite, key: options.key, debs };
}

/**
 * The hashes Debian's archive lists for each file (MD5sum and SHA256 in Packages, MD5Sum and SHA256 in
 * Release), not apt-ftparchive's default four: APT computes every hash listed for a file as it receives
 * it, and SHA1 plus SHA512 would double its CPU per byte, unlike any real install.
 */
const DEBIAN_HASHES = ["-oAPT::FTPArchive::SHA1=false", "-oAPT::FTPArchive::SHA512=false"];

/** (Re)writes Packages, Release, InRelease and Release.gpg from the pool. */
export async function publishIndexes(root: string, suite: string, options: { key: GpgKey; byHash?: boolean }): Promise<void> {
  const binDir = join(root, "dists", suite, "main/binary-amd64");
  await mkdir(binDir, { recursive: true });
  const packages = await run(["apt-ftparchive", ...DEBIAN_HASHES, "packages", "pool"], { cwd: root });
  await writePackagesFiles(binDir, packages, options.byHash ?? false);
  await signRelease(root, suite, options);
}

export async function writePackagesFiles(binDir: string, packages: string, byHash: boolean): Promise<void> {
  await writeFile(join(binDir, "Packages"), packages);
  await run(["sh", "-c", "xz -kf Packages && gzip -kfn Packages"], { cwd: binDir });
  if (byHash) {
    await mkdir(join(binDir, "by-hash/SHA256"), { recursive: true });
    for (const name of ["Packages", "Packages.xz", "Packages.gz"]) {
      const bytes = await readFile(join(binDir, name));
      const sha = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
      await writeFile(join(binDir, "by-hash/SHA256", sha), bytes);
    }
  }
}

export interface SignOptions {
  key: GpgKey;
  byHash?: boolean;
  /** Adds a Valid-Until field with this date. */
  validUntil?: Date;
}

export async function signRelease(root: string, suite: string, options: SignOptions): Promise<void> {
  await signReleaseIn(join(root, "dists", suite), suite, options);
}

/** Writes Release, InRelease and Release.gpg for the indexes under `dist` (a dists/<suite> or a flat repository). */
export async function signReleaseIn(dist: string, suite: string, options: SignOptions): Promise<void> {
  const opts = [
    `-oAPT::FTPArchive::Release::Suite=${suite}`,
    `-oAPT::FTPArchive::Release::Codename=${suite}`,
    "-oAPT::FTPArchive::Release::Components=main",
    "-oAPT::FTPArchive::Release::Architectures=amd64",
  ];
  if (options.byHash) opts.push("-oAPT::FTPArchive::Release::Acquire-By-Hash=yes");
  for (const name of ["Release", "InRelease", "Release.gpg"]) await rm(join(dist, name), { force: true });
  let release = await run(["apt-ftparchive", ...DEBIAN_HASHES, ...opts, "release", "."], { cwd: dist });
  if (options.validUntil !== undefined) release = release.replace(/^(Date: .*)$/m, `$1\nValid-Until: ${options.validUntil.toUTCString()}`);
  await writeFile(join(dist, "Release"), release);
  const gpg = ["gpg", "--homedir", options.key.home, "--batch", "--yes", "--local-user", options.key.fingerprint];
  await run([...gpg, "--clearsign", "-o", join(dist, "InRelease"), join(dist, "Release")]);
  await run([...gpg, "--armor", "--detach-sign", "-o", join(dist, "Release.gpg"), join(dist, "Release")]);
}

/** A flat repository ("deb URI ./"): the .debs, Packages and the signed Release side by side. */
export async function buildFlatRepo(root: string, options: { key: GpgKey; packages: PackageSpec[] }): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "apt-p2p-debs-"));
  try {
    await mkdir(root, { recursive: true });
    for (const spec of options.packages) {
      await buildDeb(work, spec, join(root, `${spec.name}_${spec.version.replace(/^\d+:/, "")}_${spec.arch ?? "amd64"}.deb`));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  await writePackagesFiles(root, await run(["apt-ftparchive", ...DEBIAN_HASHES, "packages", "."], { cwd: root }), false);
  await signReleaseIn(root, "flat", options);
}

export async function exportArmoredKey(key: GpgKey): Promise<string> {
  return run(["gpg", "--homedir", key.home, "--armor", "--export", key.fingerprint]);
}

export async function sha256File(path: string): Promise<string> {
  return new Bun.CryptoHasher("sha256").update(await readFile(path)).digest("hex");
}

/**
 * Adds a native source package (dpkg-source) to the pool, writes dists/<suite>/main/source/Sources{,.xz}
 * and signs the Release again. Returns the pool paths of its files (.dsc and .tar.xz).
 */
export async function addSourcePackage(root: string, suite: string, spec: { name: string; version: string }, options: SignOptions): Promise<string[]> {
  const work = await mkdtemp(join(tmpdir(), "apt-p2p-src-"));
  try {
    const tree = join(work, `${spec.name}-${spec.version}`);
    await mkdir(join(tree, "debian/source"), { recursive: true });
    await writeFile(join(tree, "debian/source/format"), "3.0 (native)\n");
    await writeFile(
      join(tree, "debian/control"),
      `Source: ${spec.name}\nMaintainer: apt-p2p tests <tests@example.invalid>\nSection: misc\nPriority: optional\nStandards-Version: 4.6.2\n\nPackage: ${spec.name}\nArchitecture: all\nDescription: test source ${spec.name}\n Built by the apt-p2p test suite.\n`,
    );
    await writeFile(
      join(tree, "debian/changelog"),
      `${spec.name} (${spec.version}) unstable; urgency=medium\n\n  * Test.\n\n -- apt-p2p tests <tests@example.invalid>  Thu, 01 Jan 2026 00:00:00 +0000\n`,
    );
    await writeFile(join(tree, "README"), noise(20_000, hash(spec.name)));
    await run(["dpkg-source", "-b", tree], { cwd: work });
    const poolDir = join("pool/main", spec.name[0]!, spec.name);
    await mkdir(join(root, poolDir), { recursive: true });
    const files = [`${spec.name}_${spec.version}.dsc`, `${spec.name}_${spec.version}.tar.xz`];
    for (const file of files) await writeFile(join(root, poolDir, file), await readFile(join(work, file)));
    const srcDir = join(root, "dists", suite, "main/source");
    await mkdir(srcDir, { recursive: true });
    await writeFile(join(srcDir, "Sources"), await run(["apt-ftparchive", "sources", "pool"], { cwd: root }));
    await run(["xz", "-kf", "Sources"], { cwd: srcDir });
    await signRelease(root, suite, options);
    return files.map((file) => join(poolDir, file));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
