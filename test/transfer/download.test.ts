import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, HashMismatchError } from "../../src/errors.ts";
import { downloadToFile } from "../../src/transfer/download.ts";
import type { ByteRange, ByteSource, SourceKind } from "../../src/transfer/source.ts";
import { Sha256Verifier } from "../../src/transfer/verifier.ts";

const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

/** A source over bytes in memory that can cut the stream after `cutAfter` bytes on its first reads. */
class MemorySource implements ByteSource {
  readonly reads: ByteRange[] = [];
  constructor(
    readonly id: string,
    private readonly bytes: Uint8Array,
    readonly kind: SourceKind = "mirror",
    private cuts: number[] = [],
    private readonly chunk = 1000,
  ) {}
  async *read(range: ByteRange): AsyncIterable<Uint8Array> {
    this.reads.push(range);
    const cut = this.cuts.shift();
    const end = cut === undefined ? range.end : Math.min(range.end, range.start + cut);
    for (let at = range.start; at < end; at += this.chunk) yield this.bytes.subarray(at, Math.min(end, at + this.chunk));
  }
}

class FailingSource implements ByteSource {
  readonly kind = "mirror" as const;
  calls = 0;
  constructor(readonly id: string) {}
  async *read(): AsyncIterable<Uint8Array> {
    this.calls++;
    throw new Error("connection refused");
  }
}

const data = new Uint8Array(10_000).map((_, i) => (i * 7) & 0xff);
const target = { name: "x.deb", size: data.length, sha256: sha256(data) };
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-dl-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("Sha256Verifier", () => {
  test("accepts exactly the expected bytes", () => {
    const v = new Sha256Verifier(target, "x");
    v.update(data.subarray(0, 10));
    v.update(data.subarray(10));
    expect(() => v.finish()).not.toThrow();
  });
  test("rejects a changed byte with FILE_HASH_MISMATCH", () => {
    const v = new Sha256Verifier(target, "x");
    const copy = data.slice();
    copy[5]! ^= 1;
    v.update(copy);
    const err = (() => {
      try {
        v.finish();
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(HashMismatchError);
    expect((err as HashMismatchError).code).toBe(ErrorCode.FileHashMismatch);
  });
  test("rejects a short file and names both sizes", () => {
    const v = new Sha256Verifier(target, "x");
    v.update(data.subarray(1));
    expect(() => v.finish()).toThrow(`size ${data.length - 1} bytes, the signed index says ${data.length}`);
  });
  test("stops as soon as the stream grows past the signed size", () => {
    const v = new Sha256Verifier({ ...target, size: 3 }, "x");
    expect(() => v.update(data.subarray(0, 4))).toThrow(HashMismatchError);
  });
});

describe("downloadToFile()", () => {
  test("writes a verified file and counts bytes by source kind", async () => {
    const path = join(dir, "out");
    const progress: number[] = [];
    const counts = await downloadToFile(target, [new MemorySource("m", data)], path, { onProgress: (n) => progress.push(n) });
    expect(Buffer.from(await readFile(path)).equals(Buffer.from(data))).toBe(true);
    expect(counts).toEqual({ mirror: data.length, cache: 0, peer: 0 });
    expect(progress.reduce((a, b) => a + b, 0)).toBe(data.length);
  });

  test("reports the growing written prefix, ending at the file's size", async () => {
    const path = join(dir, "out-prefix");
    const prefixes: number[] = [];
    const source = new MemorySource("m", data, "mirror", [4000]);
    await downloadToFile(target, [source], path, { onPrefix: (n) => prefixes.push(n) });
    expect(prefixes).toEqual([...prefixes].sort((a, b) => a - b));
    expect(prefixes).toContain(4000);
    expect(prefixes.at(-1)).toBe(data.length);
  });

  test("resumes a dropped stream from the byte it reached", async () => {
    const source = new MemorySource("m", data, "mirror", [4000]);
    await downloadToFile(target, [source], join(dir, "out"));
    expect(source.reads).toEqual([
      { start: 0, end: data.length },
      { start: 4000, end: data.length },
    ]);
  });

  test("moves on to the next source when one fails", async () => {
    const bad = new FailingSource("bad");
    const peer = new MemorySource("peer", data, "peer");
    const counts = await downloadToFile(target, [bad, peer], join(dir, "out"));
    expect(bad.calls).toBe(2);
    expect(counts.peer).toBe(data.length);
  });

  test("leaves no file when the bytes do not match the hash", async () => {
    const wrong = data.slice();
    wrong[9999]! ^= 0xff;
    const err = await downloadToFile(target, [new MemorySource("m", wrong)], join(dir, "out")).catch((e) => e);
    expect(err).toBeInstanceOf(HashMismatchError);
    expect(await readdir(dir)).toEqual([]);
  });

  test("leaves no file when every source fails, and reports the last failure", async () => {
    const err = await downloadToFile(target, [new FailingSource("a")], join(dir, "out")).catch((e) => e);
    expect(String(err.message)).toContain("connection refused");
    expect(await readdir(dir)).toEqual([]);
  });

  test("never overwrites an existing file at the temp path", async () => {
    await Bun.write(join(dir, "out"), "keep");
    const err = await downloadToFile(target, [new MemorySource("m", data)], join(dir, "out")).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(await readFile(join(dir, "out"), "utf8")).toBe("keep");
  });
});
