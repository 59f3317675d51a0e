import { describe, expect, test } from "bun:test";
import { parseSourcesFile } from "../../src/debian/sources.ts";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import {
  clientAllowed,
  MirrorAllowList,
  parseCidrList,
  parseMirrorAllow,
  refusedMirrorMessage,
} from "../../src/proxy/allow.ts";
import { parseProxyTarget } from "../../src/proxy/target.ts";

/** Runs `run` and returns the AptP2pError it throws. */
function errorOf(run: () => unknown): AptP2pError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(AptP2pError);
    return err as AptP2pError;
  }
  throw new Error("expected an AptP2pError, nothing was thrown");
}

describe("parseCidrList()", () => {
  test("reads IPv4 and IPv6 blocks and single addresses, separated by commas or blanks", () => {
    const blocks = parseCidrList("10.0.0.0/8,192.168.1.5 fd00::/8,  ::1", "--proxy-allow");
    expect(blocks.map(({ family, prefix, text }) => ({ family, prefix, text }))).toEqual([
      { family: 4, prefix: 8, text: "10.0.0.0/8" },
      { family: 4, prefix: 32, text: "192.168.1.5" },
      { family: 6, prefix: 8, text: "fd00::/8" },
      { family: 6, prefix: 128, text: "::1" },
    ]);
    expect([...(blocks[0]?.bytes ?? [])]).toEqual([10, 0, 0, 0]);
    expect([...(blocks[2]?.bytes ?? [])]).toEqual([0xfd, ...new Array(15).fill(0)]);
  });

  test("empty text is no blocks", () => {
    expect(parseCidrList("", "--proxy-allow")).toEqual([]);
    expect(parseCidrList(" , ", "--proxy-allow")).toEqual([]);
  });

  test("clears host bits: 192.168.1.5/24 is the /24", () => {
    const [block] = parseCidrList("192.168.1.5/24", "--proxy-allow");
    expect([...(block?.bytes ?? [])]).toEqual([192, 168, 1, 0]);
    expect(clientAllowed("192.168.1.200", parseCidrList("192.168.1.5/24", "--proxy-allow"))).toBe(true);
  });

  test("reads the IPv6 forms: compressed, full, embedded IPv4", () => {
    const bytesOf = (text: string) => [...(parseCidrList(text, "x")[0]?.bytes ?? [])];
    expect(bytesOf("1:2:3:4:5:6:7:8")).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    expect(bytesOf("1::8")).toEqual([0, 1, ...new Array(12).fill(0), 0, 8]);
    expect(bytesOf("::")).toEqual(new Array(16).fill(0));
    expect(bytesOf("::ffff:10.1.2.3")).toEqual([...new Array(10).fill(0), 0xff, 0xff, 10, 1, 2, 3]);
    expect(bytesOf("64:ff9b::192.0.2.33")).toEqual([0, 0x64, 0xff, 0x9b, ...new Array(8).fill(0), 192, 0, 2, 33]);
  });

  test.each([
    ["10.0.0.0/33", "from 0 to 32"],
    ["fd00::/129", "from 0 to 128"],
    ["10.0.0.0/-1", "from 0 to 32"],
    ["10.0.0.0/", "from 0 to 32"],
    ["10.0.0.0/8a", "from 0 to 32"],
    ["10.0.0.0/0008", "from 0 to 32"],
    ["10.0.0.0/8/8", "more than one '/'"],
    ["256.0.0.0/8", "not an IPv4 or IPv6 address"],
    ["10.0.0/8", "not an IPv4 or IPv6 address"],
    ["10.0.0.0.0", "not an IPv4 or IPv6 address"],
    ["01.2.3.4", "not an IPv4 or IPv6 address"],
    ["1.2.3.4a", "not an IPv4 or IPv6 address"],
    ["1.2.3.-4", "not an IPv4 or IPv6 address"],
    ["fd00:::1", "not an IPv4 or IPv6 address"],
    ["1::2::3", "not an IPv4 or IPv6 address"],
    ["1:2:3:4:5:6:7", "not an IPv4 or IPv6 address"],
    ["1:2:3:4:5:6:7:8:9", "not an IPv4 or IPv6 address"],
    ["1:2:3:4::5:6:7:8", "not an IPv4 or IPv6 address"],
    ["12345::", "not an IPv4 or IPv6 address"],
    ["g::1", "not an IPv4 or IPv6 address"],
    ["1.2.3.4::", "not an IPv4 or IPv6 address"],
    ["::ffff:1.2.3", "not an IPv4 or IPv6 address"],
    ["[::1]", "not an IPv4 or IPv6 address"],
    ["fe80::1%eth0", "not an IPv4 or IPv6 address"],
    ["host.example.org", "not an IPv4 or IPv6 address"],
    ["/8", "not an IPv4 or IPv6 address"],
  ])("refuses %p, naming the item and the expected form", (item, why) => {
    const err = errorOf(() => parseCidrList(`127.0.0.1,${item}`, "--proxy-allow"));
    expect(err.code).toBe(ErrorCode.Usage);
    expect(err.message).toContain(`Invalid --proxy-allow item '${item}'`);
    expect(err.message).toContain(why);
    expect(err.message).toContain("ADDRESS/BITS");
  });
});

describe("clientAllowed()", () => {
  test.each(["127.0.0.1", "127.255.255.254", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::ffff:7f00:2"])(
    "always allows loopback %p",
    (address) => {
      expect(clientAllowed(address, [])).toBe(true);
    },
  );

  test.each(["10.0.0.1", "128.0.0.1", "::ffff:10.0.0.1", "fd00::1", "::2", "::", "::127.0.0.1", "", "garbage", "localhost"])(
    "refuses %p when nothing else is allowed",
    (address) => {
      expect(clientAllowed(address, [])).toBe(false);
    },
  );

  const cases: [string, string, boolean][] = [
    ["10.0.0.0/8", "10.255.255.255", true],
    ["10.0.0.0/8", "11.0.0.0", false],
    ["10.0.0.0/8", "9.255.255.255", false],
    ["10.0.0.0/8", "::ffff:10.1.2.3", true],
    ["10.0.0.0/8", "::ffff:a01:203", true],
    ["10.0.0.0/8", "::ffff:11.1.2.3", false],
    ["10.0.0.0/8", "fd00::1", false],
    ["192.168.0.0/23", "192.168.1.255", true],
    ["192.168.0.0/23", "192.168.2.0", false],
    ["192.168.1.5", "192.168.1.5", true],
    ["192.168.1.5/32", "192.168.1.6", false],
    ["0.0.0.0/0", "203.0.113.9", true],
    ["0.0.0.0/0", "::ffff:203.0.113.9", true],
    ["0.0.0.0/0", "2001:db8::1", false],
    ["::/0", "2001:db8::1", true],
    ["::/0", "203.0.113.9", false],
    ["fd00::1/128", "fd00:0::0:1", true],
    ["fd00::1", "fd00::2", false],
    ["fc00::/7", "fdff:1::1", true],
    ["fc00::/7", "fc00::1", true],
    ["fc00::/7", "fe00::1", false],
    ["fe80::/10", "fe80::1%eth0", true],
    ["fe80::/10", "fec0::1", false],
    ["::ffff:0:0/96", "::ffff:198.51.100.7", true],
    ["2001:db8::/32", "2001:DB8:FFFF::1", true],
  ];
  for (const [block, address, expected] of cases) {
    test(`${block} ${expected ? "allows" : "refuses"} ${address}`, () => {
      expect(clientAllowed(address, parseCidrList(block, "--proxy-allow"))).toBe(expected);
    });
  }

  test("any matching block in the list is enough", () => {
    const allowed = parseCidrList("10.0.0.0/8,fd00::/8", "--proxy-allow");
    expect(clientAllowed("fd12::3", allowed)).toBe(true);
    expect(clientAllowed("10.9.8.7", allowed)).toBe(true);
    expect(clientAllowed("192.0.2.1", allowed)).toBe(false);
  });
});

describe("parseMirrorAllow()", () => {
  test("normalises host names, IPv4, bracketed IPv6 and ports", () => {
    expect(parseMirrorAllow("Mirror.Example.org, 192.168.1.10:8080 [FD00:0::1]:3142,[::1]")).toEqual([
      "mirror.example.org",
      "192.168.1.10:8080",
      "[fd00::1]:3142",
      "[::1]",
    ]);
    expect(parseMirrorAllow("")).toEqual([]);
  });

  test.each([
    ["http://mirror.example.org", "without a scheme or path"],
    ["mirror.example.org/debian", "without a scheme or path"],
    ["mirror.example.org:0", "from 1 to 65535"],
    ["mirror.example.org:99999", "from 1 to 65535"],
    ["fd00::1", "IPv6 address in brackets"],
    ["bad_host.example.org", "not a valid host name"],
    ["user@mirror.example.org", "not a valid host name"],
  ])("refuses %p, naming the item and the expected form", (item, why) => {
    const err = errorOf(() => parseMirrorAllow(`ok.example.org,${item}`));
    expect(err.code).toBe(ErrorCode.Usage);
    expect(err.message).toContain(`Invalid --mirror-allow item '${item}'`);
    expect(err.message).toContain(why);
    expect(err.message).toContain("HOST:PORT");
  });
});

describe("MirrorAllowList", () => {
  const sources = parseSourcesFile(
    [
      "deb http://deb.example.org/debian bookworm main",
      "deb-src https://secure.example.org/debian bookworm main",
      "deb http://127.0.0.1:8080/debian bookworm main",
      "deb http://[FD00::1]:3142/debian bookworm main",
      "deb HTTP://Upper.Example.NET/debian bookworm main",
      "deb http://user:secret@auth.example.org/debian bookworm main",
      "deb https://deb.example.org:443/debian bookworm-updates main",
      "deb file:/srv/repo ./",
      "deb cdrom:[Debian GNU/Linux 12]/ bookworm main",
      "deb mirror+http://list.example.net/mirrors.txt bookworm main",
      "deb http://bad_host.example.org/debian bookworm main",
      "",
    ].join("\n"),
    "test.list",
  );
  const list = MirrorAllowList.fromSources(sources, ["extra.example.org", "extra.example.net:3142"]);

  test("lists each http/https source's host:port once, default ports filled in, then the extra hosts", () => {
    expect(list.describe()).toEqual([
      "deb.example.org:80",
      "secure.example.org:443",
      "127.0.0.1:8080",
      "[fd00::1]:3142",
      "upper.example.net:80",
      "auth.example.org:80",
      "deb.example.org:443",
      "extra.example.org:80",
      "extra.example.org:443",
      "extra.example.net:3142",
    ]);
  });

  test("keeps a source whose host it cannot read out, and says why", () => {
    expect(list.unusable).toEqual([
      { uri: "http://bad_host.example.org/debian", origin: "test.list:11", why: expect.stringContaining("not a valid host name") },
    ]);
  });

  const cases: [string, number, boolean][] = [
    ["deb.example.org", 80, true],
    ["DEB.example.ORG", 80, true],
    ["deb.example.org", 8080, false],
    ["secure.example.org", 443, true],
    ["secure.example.org", 80, false],
    ["127.0.0.1", 8080, true],
    ["127.0.0.1", 80, false],
    ["[fd00::1]", 3142, true],
    ["upper.example.net", 80, true],
    ["extra.example.org", 80, true],
    ["extra.example.org", 443, true],
    ["extra.example.org", 8080, false],
    ["extra.example.net", 3142, true],
    ["extra.example.net", 80, false],
    ["list.example.net", 80, false],
    ["bad_host.example.org", 80, false],
    ["other.example.org", 80, false],
  ];
  for (const [host, port, expected] of cases) {
    test(`${expected ? "allows" : "refuses"} ${host}:${port}`, () => {
      expect(list.allows({ host, port })).toBe(expected);
    });
  }

  test("matches targets as parseProxyTarget() writes them, whatever spelling APT used", () => {
    for (const raw of ["/[fd00:0:0::1]:3142/debian/InRelease", "http://DEB.EXAMPLE.ORG:80/debian/InRelease", "/https/deb.example.org/debian/x"]) {
      const result = parseProxyTarget("GET", raw);
      if (!result.ok) throw new Error(result.message);
      expect(list.allows(result.target)).toBe(true);
    }
    const other = parseProxyTarget("GET", "/https/secure.example.org:8443/debian/x");
    if (!other.ok) throw new Error(other.message);
    expect(list.allows(other.target)).toBe(false);
  });

  test("a bad extra host is a usage error", () => {
    expect(errorOf(() => MirrorAllowList.fromSources([], ["http://x.example.org"])).code).toBe(ErrorCode.Usage);
  });

  test("no sources and no extras allows nothing", () => {
    const empty = MirrorAllowList.fromSources([], []);
    expect(empty.describe()).toEqual([]);
    expect(empty.allows({ host: "deb.example.org", port: 80 })).toBe(false);
  });
});

describe("refusedMirrorMessage()", () => {
  test("names the refused host:port and the option that allows it", () => {
    expect(refusedMirrorMessage({ host: "[fd00::2]", port: 8080 })).toBe(
      "Refused to forward to [fd00::2]:8080: apt-p2p forwards only to the mirrors in the APT sources; add --mirror-allow [fd00::2]:8080",
    );
  });
});
