import { describe, expect, test } from "bun:test";
import {
  APT_CONF_FILE,
  aptConfFileText,
  aptConfigText,
  proxiedSourcesText,
  SOURCES_FILE,
} from "../../src/cli/apt-config.ts";
import { parseSourcesFile, type SourceEntry } from "../../src/debian/sources.ts";

const OPTIONS = { host: "127.0.0.1", port: 9977, sourcesOrigin: "/etc/apt/sources.list" };
const PROXY = "http://127.0.0.1:9977";
const FPR = "0123456789ABCDEF0123456789ABCDEF01234567";
const KEY = [
  "-----BEGIN PGP PUBLIC KEY BLOCK-----",
  "",
  "mDMEZQAAABYJKwYBBAHaRw8BAQdAexampleexampleexampleexampleexample",
  "=AbCd",
  "-----END PGP PUBLIC KEY BLOCK-----",
  "",
].join("\n");

const ONE_LINE = [
  "deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/example.gpg] http://deb.example.org/debian bookworm main contrib",
  "deb-src [arch=amd64,arm64 signed-by=/usr/share/keyrings/example.gpg] http://deb.example.org/debian bookworm main contrib",
  "deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/example.gpg] http://deb.example.org/debian bookworm-updates main contrib",
  `deb [signed-by=${FPR}] http://deb.example.org:80/debian-security bookworm-security main`,
  "deb https://secure.example.org/debian bookworm main",
  "deb https://secure.example.org:8443/debian bookworm main",
  "deb [trusted=yes] http://127.0.0.1:8080/repo ./",
  "deb http://[FD00::1]:3142/debian bookworm main",
  "deb file:/srv/repo ./",
  "deb cdrom:[Debian GNU/Linux 12]/ bookworm main",
  "deb http://user:secret@private.example.net/debian bookworm main",
  "",
].join("\n");

const DEB822 = [
  "Types: deb deb-src",
  "URIs: http://deb.example.org/debian https://secure.example.org/debian",
  "Suites: bookworm bookworm-updates",
  "Components: main non-free-firmware",
  "Signed-By:",
  ...KEY.replace(/\n$/, "")
    .split("\n")
    .map((line) => ` ${line === "" ? "." : line}`),
  "",
  "Types: deb",
  "URIs: http://127.0.0.1:8080/flat",
  "Suites: ./",
  "Trusted: yes",
  "Architectures: i386",
  "",
  "Types: deb",
  "URIs: http://deb.example.org/old",
  "Suites: buster",
  "Components: main",
  "Enabled: no",
  "",
].join("\n");

/** The prefix-form URI each original http(s) URI must become; the others stay as written. */
const PROXIED: Record<string, string> = {
  "http://deb.example.org/debian": `${PROXY}/deb.example.org/debian`,
  "http://deb.example.org:80/debian-security": `${PROXY}/deb.example.org/debian-security`,
  "https://secure.example.org/debian": `${PROXY}/https/secure.example.org/debian`,
  "https://secure.example.org:8443/debian": `${PROXY}/https/secure.example.org:8443/debian`,
  "http://127.0.0.1:8080/repo": `${PROXY}/127.0.0.1:8080/repo`,
  "http://127.0.0.1:8080/flat": `${PROXY}/127.0.0.1:8080/flat`,
  "http://[FD00::1]:3142/debian": `${PROXY}/[fd00::1]:3142/debian`,
};

/** Entries without their origin, in a stable order, for comparing what they mean. */
function meaning(entries: SourceEntry[]): Omit<SourceEntry, "origin">[] {
  return entries
    .map(({ origin: _origin, ...rest }) => rest)
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

/** Parses `text` as the rewritten .sources file would be, and checks it means `originals` with proxied URIs. */
function expectRoundTrip(text: string, originals: SourceEntry[]): SourceEntry[] {
  const parsed = parseSourcesFile(text, SOURCES_FILE);
  // A URI with blanks cannot be written in deb822: such entries stay in their original file.
  const expected = originals.filter((entry) => !/\s/.test(entry.uri)).map((entry) => ({ ...entry, uri: PROXIED[entry.uri] ?? entry.uri }));
  expect(meaning(parsed)).toEqual(meaning(expected));
  return parsed;
}

describe("aptConfFileText()", () => {
  test("sets the forward proxy for http and keeps https direct", () => {
    const lines = aptConfFileText(OPTIONS).split("\n");
    expect(lines).toContain('Acquire::http::Proxy "http://127.0.0.1:9977";');
    expect(lines).toContain('Acquire::https::Proxy "DIRECT";');
    // Everything else is a comment, so the block can be copied into apt.conf.d as it is.
    expect(lines.filter((line) => line !== "" && !line.startsWith("#") && !line.startsWith("Acquire::"))).toEqual([]);
  });

  test("brackets an IPv6 proxy address", () => {
    expect(aptConfFileText({ ...OPTIONS, host: "::1", port: 8000 })).toContain('Acquire::http::Proxy "http://[::1]:8000";');
    expect(aptConfFileText({ ...OPTIONS, host: "[::1]", port: 8000 })).toContain('Acquire::http::Proxy "http://[::1]:8000";');
  });
});

describe("proxiedSourcesText()", () => {
  test("rewrites one-line sources into deb822 stanzas that mean the same entries through the proxy", () => {
    const originals = parseSourcesFile(ONE_LINE, "/etc/apt/sources.list");
    const parsed = expectRoundTrip(proxiedSourcesText(originals, OPTIONS), originals);
    expect(parsed.map((entry) => entry.uri)).toContain(`${PROXY}/https/secure.example.org:8443/debian`);
  });

  test("rewrites deb822 sources, inline keys included, and leaves out disabled stanzas", () => {
    const originals = parseSourcesFile(DEB822, "/etc/apt/sources.list.d/example.sources");
    expect(originals).toHaveLength(9);
    const parsed = expectRoundTrip(proxiedSourcesText(originals, OPTIONS), originals);
    expect(parsed.filter((entry) => entry.signedBy?.inline === KEY)).toHaveLength(8);
    expect(parsed.some((entry) => entry.uri.includes("/old"))).toBe(false);
  });

  test("writes the expected stanzas: deb and deb-src together, suites together, options kept", () => {
    const originals = parseSourcesFile(ONE_LINE, "/etc/apt/sources.list");
    const text = proxiedSourcesText(originals, OPTIONS);
    expect(text).toContain(
      [
        "# From /etc/apt/sources.list:1, /etc/apt/sources.list:2",
        "Types: deb deb-src",
        `URIs: ${PROXY}/deb.example.org/debian`,
        "Suites: bookworm",
        "Components: main contrib",
        "Architectures: amd64 arm64",
        "Signed-By: /usr/share/keyrings/example.gpg",
        "",
      ].join("\n"),
    );
    // deb-src has no bookworm-updates, so that suite gets its own stanza rather than invent an entry.
    expect(text).toContain(
      ["# From /etc/apt/sources.list:3", "Types: deb", `URIs: ${PROXY}/deb.example.org/debian`, "Suites: bookworm-updates", "Components: main contrib"].join("\n"),
    );
    expect(text).toContain(
      ["Types: deb", `URIs: ${PROXY}/deb.example.org/debian-security`, "Suites: bookworm-security", "Components: main", `Signed-By: ${FPR}`].join(
        "\n",
      ),
    );
    expect(text).toContain(["Types: deb", `URIs: ${PROXY}/127.0.0.1:8080/repo`, "Suites: ./", "Trusted: yes"].join("\n"));
  });

  test("merges the suites of entries that differ only in suite", () => {
    const originals = parseSourcesFile(
      "deb http://deb.example.org/debian bookworm main\ndeb http://deb.example.org/debian bookworm-updates main\n",
      "/etc/apt/sources.list",
    );
    const text = proxiedSourcesText(originals, OPTIONS);
    expect(text).toContain(["Types: deb", `URIs: ${PROXY}/deb.example.org/debian`, "Suites: bookworm bookworm-updates", "Components: main"].join("\n"));
    expect(text.match(/^Types:/gm)).toHaveLength(1);
    expectRoundTrip(text, originals);
  });

  test("writes an inline key as a multi-line field, an empty line as ' .'", () => {
    const originals = parseSourcesFile(DEB822, "/etc/apt/sources.list.d/example.sources");
    const text = proxiedSourcesText(originals, OPTIONS);
    expect(text).toContain(
      [
        "Signed-By:",
        " -----BEGIN PGP PUBLIC KEY BLOCK-----",
        " .",
        " mDMEZQAAABYJKwYBBAHaRw8BAQdAexampleexampleexampleexampleexample",
        " =AbCd",
        " -----END PGP PUBLIC KEY BLOCK-----",
      ].join("\n"),
    );
  });

  test("keeps file:, cdrom: and URIs with credentials as written, each with a comment saying why", () => {
    const originals = parseSourcesFile(ONE_LINE, "/etc/apt/sources.list");
    const text = proxiedSourcesText(originals, OPTIONS);
    expect(text).toContain("# file: sources are read by APT itself, not through apt-p2p; kept as written.\nTypes: deb\nURIs: file:/srv/repo\n");
    const cdrom = proxiedSourcesText(parseSourcesFile("deb cdrom:/media/cdrom/ bookworm main\n", "/etc/apt/sources.list"), OPTIONS);
    expect(cdrom).toContain("# cdrom: sources are read by APT itself, not through apt-p2p; kept as written.\nTypes: deb\nURIs: cdrom:/media/cdrom\n");
    expect(text).toContain("does not forward; kept as written, so APT fetches it directly.\nTypes: deb\nURIs: http://user:secret@private.example.net/debian\n");
  });

  test("names, in a comment, the entries whose URI has blanks, which deb822 cannot hold", () => {
    const text = proxiedSourcesText(parseSourcesFile(ONE_LINE, "/etc/apt/sources.list"), OPTIONS);
    expect(text).toContain("Keep these entries where they are:\n#   /etc/apt/sources.list:10: deb cdrom:[Debian GNU/Linux 12] bookworm\n");
    expect(text).not.toContain("URIs: cdrom:[");
  });

  test("says so when there are no sources", () => {
    const text = proxiedSourcesText([], OPTIONS);
    expect(text).toContain("No enabled sources");
    expect(parseSourcesFile(text, SOURCES_FILE)).toEqual([]);
  });
});

describe("aptConfigText()", () => {
  const originals = parseSourcesFile(ONE_LINE, "/etc/apt/sources.list");
  const text = aptConfigText(originals, { ...OPTIONS, sourcesOrigin: "/etc/apt/sources.list and /etc/apt/sources.list.d" });

  test("shows both ways, each with the file to write it to", () => {
    expect(text).toContain(`write these lines to ${APT_CONF_FILE}`);
    expect(text).toContain(aptConfFileText(OPTIONS));
    expect(text).toContain(`write the text below to ${SOURCES_FILE}`);
    expect(text).toContain(proxiedSourcesText(originals, { ...OPTIONS, sourcesOrigin: "/etc/apt/sources.list and /etc/apt/sources.list.d" }));
    expect(text).toContain("disable the originals in /etc/apt/sources.list and /etc/apt/sources.list.d");
    expect(text).toContain("ONE of these two ways, not both");
  });

  test("the sources part, from its heading on, parses back into the proxied entries", () => {
    const sources = text.slice(text.indexOf(`write the text below to ${SOURCES_FILE}`));
    expectRoundTrip(sources.slice(sources.indexOf("\n") + 1), originals);
  });
});
