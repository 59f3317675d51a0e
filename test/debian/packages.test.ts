import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import { compressionOf, decompress } from "../../src/debian/decompress.ts";
import { type PackageRecord, parsePackageBatches, parsePackages, parsePackagesBytes } from "../../src/debian/packages.ts";
import { mulberry32 } from "../helpers/random.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "0123456789abcdef".repeat(4);

const SAMPLE = `Package: alpha
Version: 1.0-1
Installed-Size: 12
Architecture: amd64
Description: first package
 with a long description
 .
 Package: not-a-field
Filename: pool/main/a/alpha/alpha_1.0-1_amd64.deb
Size: 1234
SHA256: ${SHA_A}

Package: beta
Source: beta-src (2.0-1)
Version: 2:2.0-1+b1
Architecture: all
Multi-Arch: foreign
Tag: role::program,
 scope::utility
Filename: pool/main/b/beta-src/beta_2.0-1+b1_all.deb
Size: 99
SHA256: ${SHA_B.toUpperCase()}
`;

const SAMPLE_RECORDS: PackageRecord[] = [
  {
    package: "alpha",
    version: "1.0-1",
    architecture: "amd64",
    filename: "pool/main/a/alpha/alpha_1.0-1_amd64.deb",
    size: 1234,
    sha256: SHA_A,
  },
  {
    package: "beta",
    version: "2:2.0-1+b1",
    architecture: "all",
    filename: "pool/main/b/beta-src/beta_2.0-1+b1_all.deb",
    size: 99,
    sha256: SHA_B,
    source: "beta-src (2.0-1)",
    multiArch: "foreign",
  },
];

const encoder = new TextEncoder();

async function* chunked(bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  let start = 0;
  for (const cut of cuts) {
    yield bytes.subarray(start, cut);
    start = cut;
  }
  yield bytes.subarray(start);
}

async function parseAll(chunks: AsyncIterable<Uint8Array>): Promise<{ records: PackageRecord[]; skipped: string[] }> {
  const skipped: string[] = [];
  const records: PackageRecord[] = [];
  for await (const record of parsePackages(chunks, { onSkipped: (reason) => skipped.push(reason) })) records.push(record);
  return { records, skipped };
}

function parseText(text: string): { records: PackageRecord[]; skipped: string[] } {
  const skipped: string[] = [];
  const records = parsePackagesBytes(encoder.encode(text), { onSkipped: (reason) => skipped.push(reason) });
  return { records, skipped };
}

const seeded = mulberry32;

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of source) parts.push(part);
  return Buffer.concat(parts);
}

describe("parsePackages()", () => {
  test("parses multiple stanzas, keeping only the fields it needs, in order", () => {
    expect(parseText(SAMPLE)).toEqual({ records: SAMPLE_RECORDS, skipped: [] });
  });

  test("ignores continuation lines, even ones that look like fields", () => {
    const { records } = parseText(SAMPLE);
    expect(records.map((r) => r.package)).toEqual(["alpha", "beta"]);
  });

  test("matches field names case-insensitively", () => {
    const text = `PACKAGE: alpha\nversion: 1.0-1\nArChItEcTuRe: amd64\nfilename: pool/main/a/alpha/alpha_1.0-1_amd64.deb\nSIZE: 1234\nsha256: ${SHA_A}\n`;
    expect(parseText(text).records).toEqual([SAMPLE_RECORDS[0]!]);
  });

  test("skips and reports a stanza without a required field", () => {
    const text = SAMPLE.replace("Size: 1234\n", "") + `\nPackage: gamma\nVersion: 1\n`;
    const { records, skipped } = parseText(text);
    expect(records).toEqual([SAMPLE_RECORDS[1]!]);
    expect(skipped).toEqual(["stanza 1 (alpha): no Size field", "stanza 3 (gamma): no Architecture field"]);
  });

  test("skips a stanza with an invalid Size or SHA256", () => {
    const badSize = SAMPLE.replace("Size: 1234", "Size: 12x");
    expect(parseText(badSize).skipped).toEqual(['stanza 1 (alpha): invalid Size "12x"']);
    const badHash = SAMPLE.replace(`SHA256: ${SHA_A}`, "SHA256: abc");
    expect(parseText(badHash).skipped).toEqual(['stanza 1 (alpha): invalid SHA256 "abc"']);
  });

  test("accepts CRLF line ends", () => {
    expect(parseText(SAMPLE.replaceAll("\n", "\r\n")).records).toEqual(SAMPLE_RECORDS);
  });

  test("accepts a last stanza without a trailing newline", () => {
    expect(parseText(SAMPLE.trimEnd()).records).toEqual(SAMPLE_RECORDS);
    expect(parseText(SAMPLE.replaceAll("\n", "\r\n").trimEnd()).records).toEqual(SAMPLE_RECORDS);
  });

  test("treats runs of blank and whitespace-only lines as one separator", () => {
    const text = "\n\n" + SAMPLE.replace("\n\n", "\n\n \n\t\n\n") + "\n\n\n";
    expect(parseText(text)).toEqual({ records: SAMPLE_RECORDS, skipped: [] });
  });

  test("trims values and tolerates space before the colon", () => {
    const text = SAMPLE.replace("Package: alpha", "Package :   alpha  ");
    expect(parseText(text).records[0]!.package).toBe("alpha");
  });

  test("decodes UTF-8 in kept values", () => {
    const text = SAMPLE.replace("Source: beta-src (2.0-1)", "Source: bêta-src");
    expect(parseText(text).records[1]!.source).toBe("bêta-src");
  });

  test("yields nothing for empty input", async () => {
    expect(await parseAll(chunked(new Uint8Array(0), []))).toEqual({ records: [], skipped: [] });
  });

  test("gives the same records for every split of the input into two chunks", async () => {
    for (const text of [SAMPLE, SAMPLE.replaceAll("\n", "\r\n").replace("beta-src", "bêta-src")]) {
      const bytes = encoder.encode(text);
      const expected = parseText(text).records;
      for (let cut = 0; cut <= bytes.length; cut++) {
        expect(await parseAll(chunked(bytes, [cut]))).toEqual({ records: expected, skipped: [] });
      }
    }
  });

  test("gives the same records when fed one byte at a time", async () => {
    const bytes = encoder.encode(SAMPLE.replaceAll("\n", "\r\n"));
    const cuts = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
    expect(await parseAll(chunked(bytes, cuts))).toEqual({ records: SAMPLE_RECORDS, skipped: [] });
  });

  test("gives the same records for random splits (seeded)", async () => {
    const random = seeded(42);
    const bytes = encoder.encode((SAMPLE + "\n").repeat(20));
    const expected = parseText((SAMPLE + "\n").repeat(20)).records;
    expect(expected).toHaveLength(40);
    for (let round = 0; round < 50; round++) {
      const cuts = new Set<number>();
      const count = 1 + Math.floor(random() * 30);
      for (let i = 0; i < count; i++) cuts.add(Math.floor(random() * bytes.length));
      const sorted = [...cuts].sort((a, b) => a - b);
      expect(await parseAll(chunked(bytes, sorted))).toEqual({ records: expected, skipped: [] });
    }
  });

  test("parsePackageBatches() yields one non-empty array per chunk that completes stanzas", async () => {
    const bytes = encoder.encode(SAMPLE);
    const split = SAMPLE.indexOf("\n\n") + 2;
    const batches: PackageRecord[][] = [];
    for await (const batch of parsePackageBatches(chunked(bytes, [3, split]))) batches.push(batch);
    expect(batches).toEqual([[SAMPLE_RECORDS[0]!], [SAMPLE_RECORDS[1]!]]);
  });
});

describe("compressionOf()", () => {
  test.each([
    ["main/binary-amd64/Packages.xz", "xz"],
    ["Packages.gz", "gz"],
    ["main/binary-amd64/Packages", "none"],
  ] as const)("%s is %s", (path, kind) => {
    expect(compressionOf(path)).toBe(kind);
  });
});

describe("decompress()", () => {
  const plain = encoder.encode((SAMPLE + "\n").repeat(200));

  async function xzBytes(input: Uint8Array): Promise<Uint8Array> {
    const proc = Bun.spawn(["xz", "-0", "-c"], { stdin: input, stdout: "pipe" });
    const out = new Uint8Array(await new Response(proc.stdout).arrayBuffer());
    expect(await proc.exited).toBe(0);
    return out;
  }

  test("decompresses xz data arriving in small chunks", async () => {
    const packed = await xzBytes(plain);
    const cuts = Array.from({ length: Math.floor(packed.length / 7) }, (_, i) => (i + 1) * 7);
    expect(await collect(decompress(chunked(packed, cuts), "xz"))).toEqual(Buffer.from(plain));
  });

  test("decompresses gzip data arriving in small chunks", async () => {
    const packed = gzipSync(plain);
    const cuts = Array.from({ length: Math.floor(packed.length / 5) }, (_, i) => (i + 1) * 5);
    expect(await collect(decompress(chunked(packed, cuts), "gz"))).toEqual(Buffer.from(plain));
  });

  test("accepts a ReadableStream and passes uncompressed data through", async () => {
    expect(await collect(decompress(new Blob([plain]).stream(), "none"))).toEqual(Buffer.from(plain));
    expect(await collect(decompress(new Blob([gzipSync(plain)]).stream(), "gz"))).toEqual(Buffer.from(plain));
  });

  test("feeds the parser end to end", async () => {
    const { records } = await parseAll(decompress(chunked(await xzBytes(plain), [100]), "xz"));
    expect(records).toHaveLength(400);
  });

  for (const kind of ["xz", "gz"] as const) {
    test(`rejects corrupt ${kind} data with an Internal error`, async () => {
      const packed = kind === "xz" ? await xzBytes(plain) : gzipSync(plain);
      const corrupt = Uint8Array.from(packed);
      corrupt[Math.floor(corrupt.length / 2)]! ^= 0xff;
      const error = await collect(decompress(chunked(corrupt, [10]), kind)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AptP2pError);
      expect((error as AptP2pError).code).toBe(ErrorCode.Internal);
      expect((error as AptP2pError).message).toStartWith(`Cannot decompress ${kind === "xz" ? "xz" : "gzip"} data: `);
    });

    test(`rejects truncated ${kind} data`, async () => {
      const packed = kind === "xz" ? await xzBytes(plain) : gzipSync(plain);
      const error = await collect(decompress(chunked(packed.subarray(0, packed.length - 20), []), kind)).catch((e: unknown) => e);
      expect((error as AptP2pError).code).toBe(ErrorCode.Internal);
    });

    test(`rejects ${kind} input that is not compressed at all`, async () => {
      const error = await collect(decompress(chunked(plain, []), kind)).catch((e: unknown) => e);
      expect((error as AptP2pError).code).toBe(ErrorCode.Internal);
    });

    test(`passes on an error of the ${kind} input itself`, async () => {
      const packed = kind === "xz" ? await xzBytes(plain) : gzipSync(plain);
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield packed.subarray(0, 50);
        throw new Error("network went away");
      }
      const error = await collect(decompress(failing(), kind)).catch((e: unknown) => e);
      expect((error as Error).message).toBe("network went away");
    });

    test(`stops reading the ${kind} input when the consumer stops early`, async () => {
      const random = seeded(7);
      const big = Uint8Array.from({ length: 1024 * 1024 }, () => Math.floor(random() * 256)); // incompressible
      const packed = kind === "xz" ? await xzBytes(big) : gzipSync(big);
      let pulled = 0;
      let released = false;
      async function* source(): AsyncGenerator<Uint8Array> {
        try {
          for (let i = 0; i < packed.length; i += 1024) {
            pulled++;
            yield packed.subarray(i, i + 1024);
          }
        } finally {
          released = true;
        }
      }
      for await (const chunk of decompress(source(), kind)) {
        expect(chunk.length).toBeGreaterThan(0);
        break;
      }
      // Releasing the input happens in the background once the consumer has gone; give it a moment.
      for (let wait = 0; wait < 400 && !released; wait++) await Bun.sleep(5);
      expect(pulled).toBeLessThan(Math.ceil(packed.length / 1024));
      expect(released).toBe(true);
    });
  }
});
