import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import {
  loadSourcesFile,
  loadSystemSources,
  parseDeb822Sources,
  parseOneLineSources,
  parseSourcesFile,
  type SourceEntry,
} from "../../src/debian/sources.ts";

const FPR_V4 = "0123456789ABCDEF0123456789ABCDEF01234567";
const FPR_V5 = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";

function entry(fields: Partial<SourceEntry> & Pick<SourceEntry, "uri" | "suite" | "origin">): SourceEntry {
  return { type: "deb", components: ["main"], trusted: false, ...fields };
}

/** Runs `parse` and returns the AptP2pError it throws. */
function errorOf(parse: () => unknown): AptP2pError {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(AptP2pError);
    return err as AptP2pError;
  }
  throw new Error("expected an AptP2pError, nothing was thrown");
}

describe("parseOneLineSources()", () => {
  test.each<[string, string, SourceEntry[]]>([
    [
      "a plain entry with several components",
      "deb http://mirror.example/debian bookworm main contrib non-free-firmware",
      [entry({ uri: "http://mirror.example/debian", suite: "bookworm", components: ["main", "contrib", "non-free-firmware"], origin: "s.list:1" })],
    ],
    [
      "a trailing slash on the URI",
      "deb https://mirror.example/debian/ bookworm main",
      [entry({ uri: "https://mirror.example/debian", suite: "bookworm", origin: "s.list:1" })],
    ],
    [
      "a deb-src line",
      "deb-src http://mirror.example/debian bookworm main",
      [entry({ type: "deb-src", uri: "http://mirror.example/debian", suite: "bookworm", origin: "s.list:1" })],
    ],
    [
      "comments, blank lines and a trailing comment",
      "# whole-line comment\n\n   \n#deb http://mirror.example/old buster main\ndeb http://mirror.example/debian bookworm main # trailing\n",
      [entry({ uri: "http://mirror.example/debian", suite: "bookworm", origin: "s.list:5" })],
    ],
    [
      "options with spaces inside the brackets",
      "deb [ arch=amd64,arm64 signed-by=/usr/share/keyrings/example.gpg ] http://mirror.example/debian bookworm main",
      [
        entry({
          uri: "http://mirror.example/debian",
          suite: "bookworm",
          architectures: ["amd64", "arm64"],
          signedBy: { paths: ["/usr/share/keyrings/example.gpg"], fingerprints: [] },
          origin: "s.list:1",
        }),
      ],
    ],
    [
      "options without spaces, trusted=yes and an ignored option",
      "deb [trusted=yes lang=none] file:/srv/repo ./",
      [entry({ uri: "file:/srv/repo", suite: "./", components: [], trusted: true, origin: "s.list:1" })],
    ],
    [
      "trusted=no",
      "deb [trusted=no] http://mirror.example/debian bookworm main",
      [entry({ uri: "http://mirror.example/debian", suite: "bookworm", origin: "s.list:1" })],
    ],
    [
      "signed-by with fingerprints (lowercase, v5, exact-subkey '!') and a path",
      `deb [signed-by=${FPR_V4.toLowerCase()},${FPR_V5}!,/etc/apt/keyrings/extra.asc] http://mirror.example/debian bookworm main`,
      [
        entry({
          uri: "http://mirror.example/debian",
          suite: "bookworm",
          signedBy: { paths: ["/etc/apt/keyrings/extra.asc"], fingerprints: [FPR_V4, FPR_V5] },
          origin: "s.list:1",
        }),
      ],
    ],
    [
      "arch+= and arch-= adjust the default architectures and are ignored",
      "deb [arch+=i386 arch-=armel] http://mirror.example/debian bookworm main",
      [entry({ uri: "http://mirror.example/debian", suite: "bookworm", origin: "s.list:1" })],
    ],
    [
      "a flat repository in a subdirectory",
      "deb http://mirror.example/repo sub/",
      [entry({ uri: "http://mirror.example/repo", suite: "sub/", components: [], origin: "s.list:1" })],
    ],
    [
      "a cdrom entry with blanks inside brackets, kept as written",
      "deb cdrom:[Example GNU/Linux 12 _Bookworm_ - amd64 DVD-1 20240210-11:28]/ bookworm contrib main",
      [
        entry({
          uri: "cdrom:[Example GNU/Linux 12 _Bookworm_ - amd64 DVD-1 20240210-11:28]",
          suite: "bookworm",
          components: ["contrib", "main"],
          origin: "s.list:1",
        }),
      ],
    ],
    [
      "an unsupported scheme, left for the caller to filter",
      "deb mirror+http://mirror.example/mirrors.txt bookworm main",
      [entry({ uri: "mirror+http://mirror.example/mirrors.txt", suite: "bookworm", origin: "s.list:1" })],
    ],
    [
      "tabs and CRLF line endings",
      "deb\thttp://mirror.example/debian\tbookworm\tmain\r\ndeb http://mirror.example/debian bookworm-updates main\r\n",
      [
        entry({ uri: "http://mirror.example/debian", suite: "bookworm", origin: "s.list:1" }),
        entry({ uri: "http://mirror.example/debian", suite: "bookworm-updates", origin: "s.list:2" }),
      ],
    ],
  ])("parses %s", (_name, text, expected) => {
    expect(parseOneLineSources(text, "s.list")).toEqual(expected);
  });

  test.each([
    ["an unknown type", "deb http://mirror.example/debian bookworm main\nrpm http://mirror.example/rpm fc40 os", "s.list:2", "unknown type 'rpm'"],
    ["a missing URI", "deb", "s.list:1", "missing URI"],
    ["a missing suite", "deb http://mirror.example/debian", "s.list:1", "missing suite"],
    ["a suite without components", "\ndeb http://mirror.example/debian bookworm", "s.list:2", "has no components"],
    ["components after a flat suite", "deb http://mirror.example/repo ./ main", "s.list:1", "cannot have components"],
    ["a URI without a scheme", "deb bookworm main contrib", "s.list:1", "'bookworm' is not a URI"],
    ["an unterminated option list", "deb [arch=amd64 http://mirror.example/debian bookworm main", "s.list:1", "no closing ']'"],
    ["an option without a value", "deb [arch=] http://mirror.example/debian bookworm main", "s.list:1", "option 'arch' has no value"],
    ["an option without '='", "deb [trusted] http://mirror.example/debian bookworm main", "s.list:1", "'trusted' is not of the form"],
    ["a bad trusted value", "deb [trusted=maybe] http://mirror.example/debian bookworm main", "s.list:1", "trusted must be yes or no"],
    ["a relative signed-by", "deb [signed-by=keys/x.gpg] http://mirror.example/debian bookworm main", "s.list:1", "'keys/x.gpg' is neither"],
    ["a short key id in signed-by", "deb [signed-by=01234567] http://mirror.example/debian bookworm main", "s.list:1", "'01234567' is neither"],
  ])("rejects %s, naming file:line", (_name, text, where, why) => {
    const err = errorOf(() => parseOneLineSources(text, "s.list"));
    expect(err.code).toBe(ErrorCode.BadSources);
    expect(err.message).toContain(where);
    expect(err.message).toContain(why);
  });
});

/** A realistic armored key as written in a deb822 field: indented, with " ." for its empty line. */
const INLINE_KEY_FIELD = [
  "Signed-By:",
  " -----BEGIN PGP PUBLIC KEY BLOCK-----",
  " .",
  " mDMEZk3mVBYJKwYBBAHaRw8BAQdAq0rC0yWv7rV7o0tq3Hn1H2G6k7WcZ3Vb1yBq",
  " 5i0+Jx60H0V4YW1wbGUgQXJjaGl2ZSA8YXJjaGl2ZUBleGFtcGxlPoiTBBMWCgA7",
  " FiEEASNFZ4mrze8BI0VniavN7wEjRWcFAmZN5lQCGwMFCwkIBwICIgIGFQoJCAsC",
  " =x3Qa",
  " -----END PGP PUBLIC KEY BLOCK-----",
].join("\n");

const INLINE_KEY = [
  "-----BEGIN PGP PUBLIC KEY BLOCK-----",
  "",
  "mDMEZk3mVBYJKwYBBAHaRw8BAQdAq0rC0yWv7rV7o0tq3Hn1H2G6k7WcZ3Vb1yBq",
  "5i0+Jx60H0V4YW1wbGUgQXJjaGl2ZSA8YXJjaGl2ZUBleGFtcGxlPoiTBBMWCgA7",
  "FiEEASNFZ4mrze8BI0VniavN7wEjRWcFAmZN5lQCGwMFCwkIBwICIgIGFQoJCAsC",
  "=x3Qa",
  "-----END PGP PUBLIC KEY BLOCK-----",
  "",
].join("\n");

describe("parseDeb822Sources()", () => {
  test.each<[string, string, SourceEntry[]]>([
    [
      "one stanza with comments between fields",
      "# Example\nTypes: deb\n# URIs: http://mirror.example/old\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main contrib\nSigned-By: /usr/share/keyrings/example.gpg\n",
      [
        entry({
          uri: "http://mirror.example/debian",
          suite: "bookworm",
          components: ["main", "contrib"],
          signedBy: { paths: ["/usr/share/keyrings/example.gpg"], fingerprints: [] },
          origin: "s.sources:2",
        }),
      ],
    ],
    [
      "case-insensitive field names, Architectures and Trusted",
      "types: deb\nuris: http://mirror.example/debian\nSUITES: bookworm\ncomponents: main\narchitectures: amd64 arm64\ntrusted: yes\nX-Repolib-Name: ignored\n",
      [
        entry({
          uri: "http://mirror.example/debian",
          suite: "bookworm",
          architectures: ["amd64", "arm64"],
          trusted: true,
          origin: "s.sources:1",
        }),
      ],
    ],
    [
      "Types × URIs × Suites, in that order",
      "Types: deb deb-src\nURIs: http://a.example/debian http://b.example/debian\nSuites: bookworm\n bookworm-updates\nComponents: main\n",
      (["deb", "deb-src"] as const).flatMap((type) =>
        ["http://a.example/debian", "http://b.example/debian"].flatMap((uri) =>
          ["bookworm", "bookworm-updates"].map((suite) => entry({ type, uri, suite, origin: "s.sources:1" })),
        ),
      ),
    ],
    [
      "several stanzas, skipping Enabled: no",
      "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://b.example/debian\nSuites: bookworm\nComponents: main\n\n\nTypes: deb\nURIs: http://c.example/debian\nSuites: bookworm\nComponents: main\nEnabled: yes\n",
      [
        entry({ uri: "http://a.example/debian", suite: "bookworm", origin: "s.sources:1" }),
        entry({ uri: "http://c.example/debian", suite: "bookworm", origin: "s.sources:13" }),
      ],
    ],
    [
      "a disabled stanza that would otherwise be malformed",
      "Types: rpm\nEnabled: no\n",
      [],
    ],
    [
      "a flat repository without Components",
      "Types: deb\nURIs: file:///srv/repo/\nSuites: ./\n",
      [entry({ uri: "file:///srv/repo", suite: "./", components: [], origin: "s.sources:1" })],
    ],
    [
      "fingerprints and paths in Signed-By, separated by blanks or commas",
      `Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\nSigned-By: ${FPR_V4.toLowerCase()}, /etc/apt/keyrings/a.gpg\n ${FPR_V5}\n`,
      [
        entry({
          uri: "http://mirror.example/debian",
          suite: "bookworm",
          signedBy: { paths: ["/etc/apt/keyrings/a.gpg"], fingerprints: [FPR_V4, FPR_V5] },
          origin: "s.sources:1",
        }),
      ],
    ],
    [
      "an inline armored key",
      `Types: deb\nURIs: https://mirror.example/debian\nSuites: bookworm\nComponents: main\n${INLINE_KEY_FIELD}\n`,
      [
        entry({
          uri: "https://mirror.example/debian",
          suite: "bookworm",
          signedBy: { paths: [], fingerprints: [], inline: INLINE_KEY },
          origin: "s.sources:1",
        }),
      ],
    ],
    [
      "an inline key in a CRLF file, after the other fields",
      `Types: deb\r\n${INLINE_KEY_FIELD.replaceAll("\n", "\r\n")}\r\nURIs: https://mirror.example/debian\r\nSuites: bookworm\r\nComponents: main\r\n`,
      [
        entry({
          uri: "https://mirror.example/debian",
          suite: "bookworm",
          signedBy: { paths: [], fingerprints: [], inline: INLINE_KEY },
          origin: "s.sources:1",
        }),
      ],
    ],
  ])("parses %s", (_name, text, expected) => {
    expect(parseDeb822Sources(text, "s.sources")).toEqual(expected);
  });

  test.each([
    ["an unknown type", "Types: deb rpm\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main", "s.sources:1", "unknown type 'rpm'"],
    ["a missing URIs field", "\n\nTypes: deb\nSuites: bookworm\nComponents: main", "s.sources:3", "stanza has no URIs"],
    ["an empty Suites field", "Types: deb\nURIs: http://mirror.example/debian\nSuites:\nComponents: main", "s.sources:1", "stanza has no Suites"],
    ["missing Components", "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm", "s.sources:3", "has no components"],
    ["Components with a flat suite", "Types: deb\nURIs: http://mirror.example/repo\nSuites: ./\nComponents: main", "s.sources:4", "cannot have components"],
    ["a line that is not a field", "Types: deb\nURIs http://mirror.example/debian", "s.sources:2", "expected 'Field: value'"],
    ["a continuation line first", " deb\nTypes: deb", "s.sources:1", "continuation line outside a field"],
    ["a duplicate field", "Types: deb\ntypes: deb-src", "s.sources:2", "duplicate field types"],
    ["a bad Enabled value", "Types: deb\nEnabled: sometimes", "s.sources:2", "Enabled must be yes or no"],
    ["a bad Trusted value", "Types: deb\nURIs: http://mirror.example/debian\nSuites: ./\nTrusted: perhaps", "s.sources:4", "Trusted must be yes or no"],
    [
      "an inline key without its END line",
      "Types: deb\nURIs: http://mirror.example/debian\nSuites: ./\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mDMEZk3m\n",
      "s.sources:4",
      "inline Signed-By key must run from",
    ],
  ])("rejects %s, naming file:line", (_name, text, where, why) => {
    const err = errorOf(() => parseDeb822Sources(text, "s.sources"));
    expect(err.code).toBe(ErrorCode.BadSources);
    expect(err.message).toContain(where);
    expect(err.message).toContain(why);
  });
});

describe("parseSourcesFile()", () => {
  const ONE_LINE = "deb http://mirror.example/debian bookworm main\n";
  const DEB822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n";

  test.each([
    ["x.list", ONE_LINE, "x.list:1"],
    ["/etc/apt/sources.list.d/x.sources", DEB822, "/etc/apt/sources.list.d/x.sources:1"],
    ["sources.txt", DEB822, "sources.txt:1"],
    ["sources.txt", `# comment\n${ONE_LINE}`, "sources.txt:2"],
    ["-", `# deb822 below\n\n${DEB822.replace("Types:", "types:")}`, "-:3"],
  ])("reads %p by its name or content", (fileName, text, origin) => {
    expect(parseSourcesFile(text, fileName)).toEqual([entry({ uri: "http://mirror.example/debian", suite: "bookworm", origin })]);
  });

  test("trusts the .list extension over deb822-looking content", () => {
    const err = errorOf(() => parseSourcesFile(DEB822, "x.list"));
    expect(err.message).toContain("x.list:1: unknown type 'Types:'");
  });
});

describe("loadSystemSources()", () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "apt-p2p-sources-"));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("reads sources.list, then *.list and *.sources in name order, ignoring other files", async () => {
    const parts = join(root, "sources.list.d");
    await mkdir(parts);
    await writeFile(join(root, "sources.list"), "deb http://main.example/debian bookworm main\n");
    await writeFile(join(parts, "b.sources"), "Types: deb\nURIs: http://b.example/debian\nSuites: bookworm\nComponents: main\n");
    await writeFile(join(parts, "a.list"), "deb http://a.example/debian bookworm main\n");
    await writeFile(join(parts, "c.list"), "# nothing enabled\n");
    await writeFile(join(parts, "foo.list.disabled"), "this is not a sources line\n");
    await writeFile(join(parts, "old.sources.dpkg-old"), "Types: rpm\n");
    await writeFile(join(parts, "bad name.list"), "deb http://ignored.example/debian bookworm main\n");

    const { entries, searched } = await loadSystemSources(root);

    expect(entries.map((e) => e.origin)).toEqual([
      `${join(root, "sources.list")}:1`,
      `${join(parts, "a.list")}:1`,
      `${join(parts, "b.sources")}:1`,
    ]);
    expect(entries.map((e) => e.uri)).toEqual(["http://main.example/debian", "http://a.example/debian", "http://b.example/debian"]);
    expect(searched).toEqual([join(root, "sources.list"), join(parts, "a.list"), join(parts, "b.sources"), join(parts, "c.list")]);
  });

  test("is fine with neither sources.list nor sources.list.d", async () => {
    expect(await loadSystemSources(root)).toEqual({
      entries: [],
      searched: [join(root, "sources.list"), join(root, "sources.list.d")],
    });
  });

  test("passes on a malformed file's error, naming it", async () => {
    await writeFile(join(root, "sources.list"), "deb http://main.example/debian\n");
    await expect(loadSystemSources(root)).rejects.toThrow(`${join(root, "sources.list")}:1: missing suite`);
  });

  test("parses this machine's /etc/apt without throwing", async () => {
    const { entries, searched } = await loadSystemSources();
    expect(searched[0]).toBe("/etc/apt/sources.list");
    for (const e of entries) {
      expect(["deb", "deb-src"]).toContain(e.type);
      expect(e.origin).toMatch(/^\/etc\/apt\/.+:\d+$/);
    }
  });
});

describe("loadSourcesFile()", () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "apt-p2p-sources-"));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("reads a file of either format", async () => {
    const path = join(root, "my.sources");
    await writeFile(path, "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n");
    expect(await loadSourcesFile(path)).toEqual([entry({ uri: "http://mirror.example/debian", suite: "bookworm", origin: `${path}:1` })]);
  });

  test("reports a missing file as BAD_SOURCES naming the path", async () => {
    const path = join(root, "missing.list");
    const err = await loadSourcesFile(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AptP2pError);
    expect((err as AptP2pError).code).toBe(ErrorCode.BadSources);
    expect((err as AptP2pError).message).toBe(`Cannot read sources file ${path}: no such file`);
  });
});
