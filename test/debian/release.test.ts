import { describe, expect, test } from "bun:test";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode } from "../../src/errors.ts";
import { dearmor, parseRelease, readGpgvStatus, stripClearsign, verifyDetached, verifyInRelease } from "../../src/debian/release.ts";

const FIXTURE = join(import.meta.dir, "../../../shared/fixtures/debian-bookworm");
const KEYRING = join(FIXTURE, "debian-archive-keyring.gpg");

const SAMPLE = `Origin: Test
Suite: stable
Codename: bookworm
Date: Sat, 11 Jul 2026 10:16:37 UTC
Valid-Until: Sat, 18 Jul 2026 10:16:37 UTC
Acquire-By-Hash: yes
No-Support-for-Architecture-all: Packages
Architectures: all amd64 arm64
Components: main contrib
MD5Sum:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/binary-amd64/Packages.xz
SHA256:
 9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5  8790396 main/binary-amd64/Packages.xz
 E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855        0 main/binary-amd64/Packages
 not-a-hash 12 main/broken
`;

describe("parseRelease()", () => {
  const release = parseRelease(SAMPLE);

  test("reads the SHA256 section with sizes, lower-casing hashes", () => {
    expect(release.files.get("main/binary-amd64/Packages.xz")).toEqual({
      size: 8790396,
      sha256: "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5",
    });
    expect(release.files.get("main/binary-amd64/Packages")?.sha256).toBe(
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
  });

  test("ignores MD5Sum lines and malformed hash lines", () => {
    expect(release.files.size).toBe(2);
    expect(release.files.has("main/broken")).toBe(false);
  });

  test("reads the fields APT acts on", () => {
    expect(release.acquireByHash).toBe(true);
    expect(release.allInArchIndexes).toBe(true);
    expect(release.components).toEqual(["main", "contrib"]);
    expect(release.architectures).toEqual(["all", "amd64", "arm64"]);
    expect(release.validUntil?.toISOString()).toBe("2026-07-18T10:16:37.000Z");
    expect(release.fields.get("codename")).toBe("bookworm");
  });

  test("defaults: no by-hash, no Valid-Until, arch all in its own index", () => {
    const bare = parseRelease("Suite: x\nSHA256:\n");
    expect(bare.acquireByHash).toBe(false);
    expect(bare.validUntil).toBeUndefined();
    expect(bare.allInArchIndexes).toBe(false);
  });

  test("tolerates CRLF line ends", () => {
    expect(parseRelease(SAMPLE.replace(/\n/g, "\r\n")).files.size).toBe(2);
  });
});

describe("stripClearsign()", () => {
  test("returns the signed body with dash-escaping undone", () => {
    const signed = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: a\n- -----not armor\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n";
    expect(stripClearsign(signed)).toBe("Suite: a\n-----not armor\n");
  });
  test("leaves an unsigned text alone", () => {
    expect(stripClearsign("Suite: a\n")).toBe("Suite: a\n");
  });
});

describe("readGpgvStatus()", () => {
  const good = [
    "[GNUPG:] NEWSIG",
    "[GNUPG:] GOODSIG 6ED0E7B82643E131 Debian",
    "[GNUPG:] VALIDSIG 4CB50190207B4758A3F73A796ED0E7B82643E131 2026-07-11 1 0 4 0 1 8 01 B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",
  ].join("\n");

  test("a good signature yields the primary key's fingerprint", () => {
    expect(readGpgvStatus(good, []).signers).toEqual(["B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8"]);
  });
  test("a fingerprint restriction accepts the subkey or the primary key", () => {
    expect(readGpgvStatus(good, ["4cb50190207b4758a3f73a796ed0e7b82643e131"]).signers).toHaveLength(1);
    expect(readGpgvStatus(good, ["AAAA"]).signers).toHaveLength(0);
    expect(readGpgvStatus(good, ["AAAA"]).problem).toContain("not among the allowed fingerprints");
  });
  test("any BADSIG fails the whole file", () => {
    const status = `${good}\n[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 1234 Mallory`;
    expect(readGpgvStatus(status, [])).toEqual({ signers: [], problem: "bad signature from key 1234: the file was altered" });
  });
  test("VALIDSIG without GOODSIG (expired key) does not count", () => {
    const status = "[GNUPG:] NEWSIG\n[GNUPG:] EXPKEYSIG 1234 Old\n[GNUPG:] VALIDSIG 1234 x x x x x x x x x 1234";
    expect(readGpgvStatus(status, [])).toEqual({ signers: [], problem: "signed by expired key 1234" });
  });
  test("a missing key is named", () => {
    expect(readGpgvStatus("[GNUPG:] ERRSIG 99 1 8 01 0 9\n[GNUPG:] NO_PUBKEY 99", []).problem).toBe("signed by key 99, which is not in the keyring");
  });
});

describe("verifyInRelease() on the real bookworm InRelease", () => {
  test("accepts it with the Debian archive keyring and returns the signed text", async () => {
    const bytes = new Uint8Array(await readFile(join(FIXTURE, "InRelease")));
    const result = await verifyInRelease("bookworm InRelease", bytes, { paths: [KEYRING], inline: [], fingerprints: [] });
    expect(result.signers.length).toBeGreaterThanOrEqual(1);
    expect(result.text.startsWith("Origin: Debian\n")).toBe(true);
    expect(result.text).not.toContain("BEGIN PGP");
    const release = parseRelease(result.text);
    expect(release.files.get("main/binary-amd64/Packages.xz")).toEqual({
      size: 8790396,
      sha256: "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5",
    });
  });

  test("rejects a copy with one changed byte in the signed text", async () => {
    const text = await readFile(join(FIXTURE, "InRelease"), "utf8");
    const tampered = new TextEncoder().encode(text.replace("8790396 main/binary-amd64/Packages.xz", "8790397 main/binary-amd64/Packages.xz"));
    const err = await verifyInRelease("tampered", tampered, { paths: [KEYRING], inline: [], fingerprints: [] }).catch((e) => e);
    expect(err.code).toBe(ErrorCode.BadSignature);
    expect(err.message).toContain("bad signature");
  });

  test("rejects it when the keyring holds none of the signing keys", async () => {
    const bytes = new Uint8Array(await readFile(join(FIXTURE, "InRelease")));
    const dir = await mkdtemp(join(tmpdir(), "apt-p2p-test-"));
    try {
      const empty = join(dir, "empty.gpg");
      await writeFile(empty, new Uint8Array(0));
      const err = await verifyInRelease("InRelease", bytes, { paths: [empty], inline: [], fingerprints: [] }).catch((e) => e);
      expect(err.code).toBe(ErrorCode.BadSignature);
      expect(err.message).toContain("not in the keyring");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("rejects it when the allowed fingerprint did not sign", async () => {
    const bytes = new Uint8Array(await readFile(join(FIXTURE, "InRelease")));
    const err = await verifyInRelease("InRelease", bytes, { paths: [KEYRING], inline: [], fingerprints: ["0".repeat(40)] }).catch((e) => e);
    expect(err.code).toBe(ErrorCode.BadSignature);
  });

  test("names the keyring when none exists", async () => {
    const bytes = new Uint8Array(await readFile(join(FIXTURE, "InRelease")));
    const err = await verifyInRelease("InRelease", bytes, { paths: ["/nonexistent/k.gpg"], inline: [], fingerprints: [] }).catch((e) => e);
    expect(err.code).toBe(ErrorCode.BadSignature);
    expect(err.message).toContain("/nonexistent/k.gpg");
  });

  test("verifyDetached() rejects a signature that is not one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "apt-p2p-test-"));
    try {
      await copyFile(KEYRING, join(dir, "k.gpg"));
      const err = await verifyDetached("Release", new TextEncoder().encode("Suite: x\n"), new TextEncoder().encode("garbage"), {
        paths: [join(dir, "k.gpg")],
        inline: [],
        fingerprints: [],
      }).catch((e) => e);
      expect(err.code).toBe(ErrorCode.BadSignature);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("dearmor()", () => {
  test("decodes an armored block to the same bytes as gpg --dearmor", async () => {
    const binary = new Uint8Array(await readFile(KEYRING)).subarray(0, 3000);
    const b64 = Buffer.from(binary).toString("base64").match(/.{1,64}/g)!.join("\n");
    const armored = `-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\n${b64}\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n`;
    expect(Buffer.from(dearmor(armored)).equals(Buffer.from(binary))).toBe(true);
  });
  test("decodes a block without armor headers", () => {
    const armored = `-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAQID\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----`;
    expect([...dearmor(armored)]).toEqual([1, 2, 3]);
  });
});
