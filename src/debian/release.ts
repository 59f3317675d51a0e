/**
 * Release / InRelease files: parsing (pure) and signature verification with gpgv (at the edge).
 * The text that is parsed is always gpgv's output of the signed part, never the file as received,
 * so nothing outside the signature can slip in.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AptP2pError, ErrorCode } from "../errors.ts";

export interface IndexFileEntry {
  size: number;
  sha256: string;
}

export interface Release {
  /** Every single-line field, keyed by lower-case name. */
  fields: Map<string, string>;
  /** The SHA256 section: path relative to the Release's directory → size and hash. */
  files: Map<string, IndexFileEntry>;
  acquireByHash: boolean;
  components: string[];
  architectures: string[];
  /** True when arch "all" packages are listed in each binary-<arch>/Packages (No-Support-for-Architecture-all: Packages). */
  allInArchIndexes: boolean;
  date?: Date;
  validUntil?: Date;
}

export function parseRelease(text: string): Release {
  const fields = new Map<string, string>();
  const files = new Map<string, IndexFileEntry>();
  let section = "";
  for (const rawLine of text.split("\n")) {
    const line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    if (line === "") continue;
    if (line.startsWith(" ") || line.startsWith("\t")) {
      if (section !== "sha256") continue;
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 3) continue;
      const [sha256, size, path] = parts as [string, string, string];
      if (!/^[0-9a-f]{64}$/i.test(sha256) || !/^\d+$/.test(size)) continue;
      files.set(path, { size: Number(size), sha256: sha256.toLowerCase() });
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    section = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (value !== "") fields.set(section, value);
  }
  const words = (name: string) => (fields.get(name) ?? "").split(/\s+/).filter(Boolean);
  return {
    fields,
    files,
    acquireByHash: (fields.get("acquire-by-hash") ?? "").toLowerCase() === "yes",
    components: words("components"),
    architectures: words("architectures"),
    allInArchIndexes: (fields.get("no-support-for-architecture-all") ?? "") === "Packages",
    date: parseDate(fields.get("date")),
    validUntil: parseDate(fields.get("valid-until")),
  };
}

function parseDate(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Where gpgv finds the keys allowed to sign a source. */
export interface KeyringSpec {
  /** Keyring files: binary (.gpg) or ASCII-armored (.asc). */
  paths: string[];
  /** ASCII-armored key blocks given inline (deb822 Signed-By). */
  inline: string[];
  /** When non-empty, only signatures by these fingerprints (primary or subkey) count. */
  fingerprints: string[];
}

export interface VerifyResult {
  /** The signed text, as gpgv extracted it. */
  text: string;
  /** Fingerprints of the keys that made a good signature. */
  signers: string[];
}

/** Verifies a clearsigned InRelease file; returns its signed text. */
export async function verifyInRelease(what: string, inRelease: Uint8Array, keys: KeyringSpec): Promise<VerifyResult> {
  return withWorkDir(async (dir) => {
    const input = join(dir, "InRelease");
    const output = join(dir, "Release.out");
    await writeFile(input, inRelease);
    const signers = await runGpgv(what, dir, keys, ["--output", output, input]);
    return { text: await readFile(output, "utf8"), signers };
  });
}

/** Verifies a Release file against its detached Release.gpg signature. */
export async function verifyDetached(
  what: string,
  release: Uint8Array,
  signature: Uint8Array,
  keys: KeyringSpec,
): Promise<VerifyResult> {
  return withWorkDir(async (dir) => {
    const data = join(dir, "Release");
    const sig = join(dir, "Release.gpg");
    await writeFile(data, release);
    await writeFile(sig, signature);
    const signers = await runGpgv(what, dir, keys, [sig, data]);
    return { text: new TextDecoder().decode(release), signers };
  });
}

async function withWorkDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "apt-p2p-gpgv-"));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runGpgv(what: string, dir: string, keys: KeyringSpec, args: string[]): Promise<string[]> {
  const keyrings: string[] = [];
  let n = 0;
  for (const path of keys.paths) {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(path));
    } catch {
      continue; // A listed keyring that is absent holds no keys; gpgv would reject it the same way.
    }
    keyrings.push(await writeKeyring(dir, `keyring-${n++}.gpg`, bytes));
  }
  for (const block of keys.inline) {
    keyrings.push(await writeKeyring(dir, `keyring-${n++}.gpg`, new TextEncoder().encode(block)));
  }
  if (keyrings.length === 0) {
    throw AptP2pError.badSignature(what, `no keyring found (looked for ${keys.paths.join(", ") || "inline keys"})`);
  }

  let proc;
  try {
    proc = Bun.spawn(["gpgv", "--status-fd", "1", ...keyrings.flatMap((k) => ["--keyring", k]), ...args], {
      cwd: dir,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, LC_ALL: "C" },
    });
  } catch (err) {
    throw new AptP2pError(ErrorCode.BadSignature, `Cannot verify ${what}: gpgv could not be started`, {
      cause: err,
      hints: ["Install it with: apt-get install gpgv"],
    });
  }
  const [status, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  const verdict = readGpgvStatus(status, keys.fingerprints);
  if (verdict.signers.length > 0) return verdict.signers;
  const detail = verdict.problem ?? (stderr.trim().split("\n").pop() || `gpgv exited with ${proc.exitCode}`);
  throw AptP2pError.badSignature(what, detail);
}

/** Decodes ASCII armor when present; gpgv only reads binary keyrings. */
async function writeKeyring(dir: string, name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  const head = new TextDecoder().decode(bytes.subarray(0, 64));
  await writeFile(path, head.includes("-----BEGIN PGP") ? dearmor(new TextDecoder().decode(bytes)) : bytes);
  return path;
}

/** Concatenates the binary packets of every armored block in the text. */
export function dearmor(text: string): Uint8Array {
  const parts: Uint8Array[] = [];
  const blocks = text.split(/-----BEGIN PGP [A-Z ]+-----/).slice(1);
  for (const block of blocks) {
    const body = block.split(/-----END PGP [A-Z ]+-----/)[0] ?? "";
    const lines = body.replace(/\r/g, "").split("\n");
    // Armor headers ("Version: ...") end at the first blank line; the CRC line starts with "=".
    const blank = lines.findIndex((l, i) => i > 0 && l.trim() === "");
    const data = (lines.slice(0, blank).some((l) => l.includes(":")) ? lines.slice(blank + 1) : lines)
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("="));
    parts.push(Buffer.from(data.join(""), "base64"));
  }
  return Buffer.concat(parts);
}

/** Reads gpgv's --status-fd output the way APT does: good signatures count, any bad one fails. */
export function readGpgvStatus(status: string, allowed: string[]): { signers: string[]; problem?: string } {
  const allow = new Set(allowed.map((f) => f.toUpperCase()));
  const signers: string[] = [];
  let problem: string | undefined;
  let good = false; // GOODSIG seen for the current signature: not expired, not revoked
  for (const line of status.split("\n")) {
    const words = line.trim().split(" ");
    if (words[0] !== "[GNUPG:]") continue;
    const [, tag, arg1] = words;
    switch (tag) {
      case "NEWSIG":
        good = false;
        break;
      case "GOODSIG":
        good = true;
        break;
      case "VALIDSIG": {
        if (!good) break;
        const fpr = (arg1 ?? "").toUpperCase();
        const primary = (words[11] ?? fpr).toUpperCase();
        if (allow.size === 0 || allow.has(fpr) || allow.has(primary)) signers.push(primary);
        else problem ??= `signed by ${primary}, which is not among the allowed fingerprints`;
        break;
      }
      case "BADSIG":
        return { signers: [], problem: `bad signature from key ${arg1}: the file was altered` };
      case "NO_PUBKEY":
        problem ??= `signed by key ${arg1}, which is not in the keyring`;
        break;
      case "EXPKEYSIG":
        problem ??= `signed by expired key ${arg1}`;
        break;
      case "REVKEYSIG":
        problem ??= `signed by revoked key ${arg1}`;
        break;
      case "NODATA":
        problem ??= "no signature found";
        break;
    }
  }
  return { signers, problem };
}

/** The signed text of a clearsigned file, unverified: only for sources marked [trusted=yes]. */
export function stripClearsign(text: string): string {
  const begin = text.indexOf("-----BEGIN PGP SIGNED MESSAGE-----");
  if (begin < 0) return text;
  const bodyStart = text.indexOf("\n\n", begin);
  const end = text.indexOf("\n-----BEGIN PGP SIGNATURE-----", bodyStart);
  if (bodyStart < 0 || end < 0) return text;
  return (
    text
      .slice(bodyStart + 2, end)
      .split("\n")
      .map((line) => (line.startsWith("- ") ? line.slice(2) : line))
      .join("\n") + "\n"
  );
}
