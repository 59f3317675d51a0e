import { describe, expect, test } from "bun:test";
import { parseHostPort, parseProxyTarget, type UpstreamTarget } from "../../src/proxy/target.ts";

const SHA = "a".repeat(64);

describe("parseProxyTarget() accepts what APT sends", () => {
  const cases: [string, string, UpstreamTarget][] = [
    [
      "GET",
      "http://deb.example.org/debian/dists/bookworm/InRelease",
      {
        scheme: "http",
        host: "deb.example.org",
        port: 80,
        path: "/debian/dists/bookworm/InRelease",
        url: "http://deb.example.org/debian/dists/bookworm/InRelease",
        form: "proxy",
      },
    ],
    [
      "HEAD",
      "http://deb.example.org:8080/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
      {
        scheme: "http",
        host: "deb.example.org",
        port: 8080,
        path: "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
        url: "http://deb.example.org:8080/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
        form: "proxy",
      },
    ],
    [
      "GET",
      "/deb.example.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
      {
        scheme: "http",
        host: "deb.example.org",
        port: 80,
        path: "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
        url: "http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
        form: "prefix",
      },
    ],
    [
      "GET",
      `/127.0.0.1:8080/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/${SHA}`,
      {
        scheme: "http",
        host: "127.0.0.1",
        port: 8080,
        path: `/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/${SHA}`,
        url: `http://127.0.0.1:8080/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/${SHA}`,
        form: "prefix",
      },
    ],
    [
      "GET",
      "/https/deb.example.org/debian/dists/bookworm/Release.gpg",
      {
        scheme: "https",
        host: "deb.example.org",
        port: 443,
        path: "/debian/dists/bookworm/Release.gpg",
        url: "https://deb.example.org/debian/dists/bookworm/Release.gpg",
        form: "prefix",
      },
    ],
    [
      "GET",
      "/https/deb.example.org:8443/debian/dists/bookworm/Release",
      {
        scheme: "https",
        host: "deb.example.org",
        port: 8443,
        path: "/debian/dists/bookworm/Release",
        url: "https://deb.example.org:8443/debian/dists/bookworm/Release",
        form: "prefix",
      },
    ],
    [
      "GET",
      "/https/deb.example.org:443/debian/x.deb",
      { scheme: "https", host: "deb.example.org", port: 443, path: "/debian/x.deb", url: "https://deb.example.org/debian/x.deb", form: "prefix" },
    ],
    [
      "GET",
      "http://deb.example.org:80/debian/x.deb",
      { scheme: "http", host: "deb.example.org", port: 80, path: "/debian/x.deb", url: "http://deb.example.org/debian/x.deb", form: "proxy" },
    ],
    // APT quotes "~" (and "%") in paths: "~bpo12+1" arrives as "%7ebpo12+1".
    [
      "GET",
      "/deb.example.org/debian/pool/main/h/hello/hello_2.10-3%7ebpo12+1_amd64.deb",
      {
        scheme: "http",
        host: "deb.example.org",
        port: 80,
        path: "/debian/pool/main/h/hello/hello_2.10-3~bpo12+1_amd64.deb",
        url: "http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3~bpo12+1_amd64.deb",
        form: "prefix",
      },
    ],
    // A literal "%3a" in a file name arrives as "%253a": one level of escaping, kept (hex upper-cased).
    [
      "GET",
      "/deb.example.org/debian/pool/x_1%253a2_all.deb",
      {
        scheme: "http",
        host: "deb.example.org",
        port: 80,
        path: "/debian/pool/x_1%253a2_all.deb",
        url: "http://deb.example.org/debian/pool/x_1%253a2_all.deb",
        form: "prefix",
      },
    ],
    [
      "GET",
      "/deb.example.org/debian/pool/x_1%3a2_all.deb",
      {
        scheme: "http",
        host: "deb.example.org",
        port: 80,
        path: "/debian/pool/x_1%3A2_all.deb",
        url: "http://deb.example.org/debian/pool/x_1%3A2_all.deb",
        form: "prefix",
      },
    ],
    [
      "GET",
      "HTTP://Deb.Example.ORG/debian/dists/",
      { scheme: "http", host: "deb.example.org", port: 80, path: "/debian/dists/", url: "http://deb.example.org/debian/dists/", form: "proxy" },
    ],
    [
      "GET",
      "/[::1]:8080/debian/InRelease",
      { scheme: "http", host: "[::1]", port: 8080, path: "/debian/InRelease", url: "http://[::1]:8080/debian/InRelease", form: "prefix" },
    ],
    [
      "GET",
      "http://[FD00:0:0::0001]/debian/InRelease",
      { scheme: "http", host: "[fd00::1]", port: 80, path: "/debian/InRelease", url: "http://[fd00::1]/debian/InRelease", form: "proxy" },
    ],
    // A segment of three dots is a name, not traversal.
    [
      "GET",
      "/deb.example.org/debian/.../x",
      { scheme: "http", host: "deb.example.org", port: 80, path: "/debian/.../x", url: "http://deb.example.org/debian/.../x", form: "prefix" },
    ],
    [
      "GET",
      "/mirror-1.example.net/a/.hidden/b..c",
      {
        scheme: "http",
        host: "mirror-1.example.net",
        port: 80,
        path: "/a/.hidden/b..c",
        url: "http://mirror-1.example.net/a/.hidden/b..c",
        form: "prefix",
      },
    ],
  ];
  for (const [method, raw, expected] of cases) {
    test(`${method} ${raw} → ${expected.url} (${expected.form})`, () => {
      expect(parseProxyTarget(method, raw)).toEqual({ ok: true, target: expected });
    });
  }
});

describe("parseProxyTarget() refuses", () => {
  /** [method, target, status, a fragment the message must contain] */
  const cases: [string, string, 400 | 405, string][] = [
    // Methods.
    ["CONNECT", "deb.example.org:443", 405, "/https/<mirror host>"],
    ["POST", "/deb.example.org/debian/x", 405, "only GET and HEAD"],
    ["PUT", "http://deb.example.org/debian/x", 405, "only GET and HEAD"],
    ["get", "/deb.example.org/debian/x", 405, "only GET and HEAD"],
    ["OPTIONS", "*", 405, "only GET and HEAD"],
    // Traversal, raw and encoded.
    ["GET", "/127.0.0.1:8080/../../etc/passwd", 400, "'..' segment"],
    ["GET", "/deb.example.org/debian/./InRelease", 400, "'..' segment"],
    ["GET", "/deb.example.org/debian/..", 400, "'..' segment"],
    ["GET", "/%2e%2e/x", 400, "Bad mirror host"],
    ["GET", "/deb.example.org/%2e%2e/x", 400, "'..' segment"],
    ["GET", "http://h/a/%2E%2E/b", 400, "'..' segment"],
    ["GET", "/deb.example.org/a/.%2E/b", 400, "'..' segment"],
    ["GET", "/deb.example.org/a/%2e./b", 400, "'..' segment"],
    ["GET", "/deb.example.org/a/%2e/b", 400, "'..' segment"],
    ["GET", "/deb.example.org/a/%252e%252e/b", 400, "'..' segment"],
    ["GET", "/deb.example.org/a/%25252e%25252E/b", 400, "'..' segment"],
    ["GET", "/deb.example.org/a/%252E./b", 400, "'..' segment"],
    // Encoded separators.
    ["GET", "/h/a%2fb", 400, "hides a '/'"],
    ["GET", "/h/a%2Fb", 400, "hides a '/'"],
    ["GET", "/h/..%2f..%2fetc", 400, "hides a '/'"],
    ["GET", "/h/a%5cb", 400, "hides a '/' or '\\'"],
    ["GET", "/h/a%255cb", 400, "hides a '/' or '\\'"],
    ["GET", "/h/a\\..\\b", 400, "backslash"],
    // Control characters, raw and encoded.
    ["GET", "/h/a\u0000b", 400, "control character"],
    ["GET", "/h/a\tb", 400, "control character"],
    ["GET", "/h/a\u007fb", 400, "control character"],
    ["GET", "/h/a%00b", 400, "hides a control character"],
    ["GET", "/h/a%250Ab", 400, "hides a control character"],
    ["GET", "/h/a%0d%0aX-Injected:%20yes", 400, "hides a control character"],
    // Other characters.
    ["GET", "/h/a b", 400, "percent-encode"],
    ["GET", "/h/a\"b", 400, "must be percent-encoded"],
    ["GET", "/h/a<b>", 400, "must be percent-encoded"],
    ["GET", "/h/\u00e9", 400, "percent-encode"],
    ["GET", "/h/a%zzb", 400, "not a percent-escape"],
    ["GET", "/h/a%2", 400, "not a percent-escape"],
    // Empty segments.
    ["GET", "//h/x", 400, "no mirror host"],
    ["GET", "/h//x", 400, "empty segment"],
    ["GET", "http://h/a//b", 400, "empty segment"],
    ["GET", "http:///x", 400, "no mirror host"],
    ["GET", "/https//h/x", 400, "no mirror host"],
    // Userinfo.
    ["GET", "http://user@deb.example.org/debian/x", 400, "credentials"],
    ["GET", "http://user:secret@deb.example.org/debian/x", 400, "credentials"],
    ["GET", "/user@deb.example.org/debian/x", 400, "credentials"],
    // Query and fragment.
    ["GET", "/h/debian/x?y=1", 400, "query"],
    ["GET", "http://h/debian/x?", 400, "query"],
    ["GET", "/h/debian/x#frag", 400, "fragment"],
    // Hosts and ports.
    ["GET", "/h:99999/x", 400, "from 1 to 65535"],
    ["GET", "/h:0/x", 400, "from 1 to 65535"],
    ["GET", "/h:/x", 400, "from 1 to 65535"],
    ["GET", "/h:80a/x", 400, "from 1 to 65535"],
    ["GET", "/h:+80/x", 400, "from 1 to 65535"],
    ["GET", "/h:1:2/x", 400, "HOST[:PORT]"],
    ["GET", "/::1/x", 400, "HOST[:PORT]"],
    ["GET", "/[::1/x", 400, "bracketed IPv6"],
    ["GET", "/[not-ip]/x", 400, "bracketed IPv6"],
    ["GET", "/[fe80::1%25eth0]/x", 400, "bracketed IPv6"],
    ["GET", "/[::1]x/x", 400, "after the IPv6"],
    ["GET", "/-h.example.org/x", 400, "not a valid host name"],
    ["GET", "/h-.example.org/x", 400, "not a valid host name"],
    ["GET", "/h_1.example.org/x", 400, "not a valid host name"],
    ["GET", "/h.example.org./x", 400, "empty label"],
    ["GET", "/h..example.org/x", 400, "empty label"],
    ["GET", `/${"a".repeat(64)}.example.org/x`, 400, "longer than 63"],
    ["GET", `/${"abcdefghi.".repeat(26)}org/x`, 400, "longer than 253"],
    ["GET", "/256.0.0.1/x", 400, "four decimal numbers"],
    ["GET", "/127.0.0.01/x", 400, "four decimal numbers"],
    ["GET", "/127.1/x", 400, "four decimal numbers"],
    ["GET", "/2130706433/x", 400, "four decimal numbers"],
    ["GET", "/0x7f.0.0.1/x", 400, "not a valid host name"],
    ["GET", "/h.0x7f/x", 400, "four decimal numbers"],
    ["GET", "/%68/x", 400, "not a valid host name"],
    // Schemes and forms.
    ["GET", "https://deb.example.org/debian/InRelease", 400, "/https/<mirror host>"],
    ["GET", "ftp://deb.example.org/debian/InRelease", 400, "forwards only http"],
    ["GET", "deb.example.org:80", 400, "Unsupported request target"],
    ["GET", "*", 400, "Unsupported request target"],
    ["GET", "", 400, "Unsupported request target"],
    // No mirror, or no file.
    ["GET", "/", 400, "names no mirror"],
    ["GET", "/https", 400, "no mirror host"],
    ["GET", "/https/", 400, "no mirror host"],
    ["GET", "/deb.example.org", 400, "names no file"],
    ["GET", "/deb.example.org/", 400, "names no file"],
    ["GET", "http://deb.example.org", 400, "names no file"],
    ["GET", "http://deb.example.org:8080/", 400, "names no file"],
  ];
  for (const [method, raw, status, fragment] of cases) {
    test(`${method} ${JSON.stringify(raw)} → ${status}`, () => {
      const result = parseProxyTarget(method, raw);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.status).toBe(status);
      expect(result.message).toContain(fragment);
      // One line, and no raw control character echoed back.
      expect(result.message).not.toMatch(/[\u0000-\u001f\u007f]/);
    });
  }

  test("a refusal for a missing file names the mirror's origin, so the message says which source is wrong", () => {
    const result = parseProxyTarget("GET", "/https/deb.example.org:8443");
    expect(result).toMatchObject({ ok: false, status: 400 });
    if (!result.ok) expect(result.message).toContain("https://deb.example.org:8443/debian");
  });

  test("a long attacker-supplied segment is cut short in the message", () => {
    const result = parseProxyTarget("GET", `/h/${"x".repeat(1000)}%2f`);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message.length).toBeLessThan(300);
  });
});

describe("parseHostPort()", () => {
  test.each<[string, ReturnType<typeof parseHostPort>]>([
    ["deb.example.org", { ok: true, host: "deb.example.org", port: undefined }],
    ["DEB.Example.org:8080", { ok: true, host: "deb.example.org", port: 8080 }],
    ["localhost", { ok: true, host: "localhost", port: undefined }],
    ["10.0.0.1:65535", { ok: true, host: "10.0.0.1", port: 65535 }],
    ["0.0.0.0:1", { ok: true, host: "0.0.0.0", port: 1 }],
    ["[::1]", { ok: true, host: "[::1]", port: undefined }],
    ["[0:0:0:0:0:0:0:1]:9977", { ok: true, host: "[::1]", port: 9977 }],
    ["[::ffff:127.0.0.1]", { ok: true, host: "[::ffff:7f00:1]", port: undefined }],
    ["1example.org", { ok: true, host: "1example.org", port: undefined }],
  ])("parses %p", (text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });

  test.each(["", ":80", "h:65536", "h:00000", "a b", "[::1]:", "h.example.org:8080:1"])("refuses %p", (text) => {
    expect(parseHostPort(text).ok).toBe(false);
  });
});
