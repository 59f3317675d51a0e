/** src/ip.ts, checked against node:net, which it stands in for in the binary. */
import { describe, expect, test } from "bun:test";
import { isIPv4 as netIPv4, isIPv6 as netIPv6 } from "node:net";
import { isIPv4, isIPv6, parseIpv4, parseIpv6 } from "../src/ip.ts";

const V4 = ["0.0.0.0", "127.0.0.1", "192.168.1.10", "255.255.255.255", "10.0.0.1"];
const NOT_V4 = ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "a.b.c.d", "1.2.3.4 ", "::1", "localhost", "0x7f.0.0.1"];
const V6 = ["::", "::1", "fe80::1", "2001:db8::8a2e:370:7334", "1:2:3:4:5:6:7:8", "::ffff:192.0.2.1", "64:ff9b::192.0.2.33", "FD00::A"];
const NOT_V6 = ["", ":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "g::1", "::ffff:256.0.0.1", "1.2.3.4", "[::1]"];

describe("ip literals", () => {
  test("IPv4: dotted quads without leading zeros, as node:net's isIPv4", () => {
    for (const text of V4) expect([text, isIPv4(text)]).toEqual([text, true]);
    for (const text of NOT_V4) expect([text, isIPv4(text)]).toEqual([text, false]);
    for (const text of [...V4, ...NOT_V4]) expect([text, isIPv4(text)]).toEqual([text, netIPv4(text)]);
    expect([...parseIpv4("192.168.1.10")!]).toEqual([192, 168, 1, 10]);
  });

  test("IPv6: hex groups with at most one ::, an IPv4 tail allowed, as node:net's isIPv6", () => {
    for (const text of V6) expect([text, isIPv6(text)]).toEqual([text, true]);
    for (const text of NOT_V6) expect([text, isIPv6(text)]).toEqual([text, false]);
    for (const text of [...V6, ...NOT_V6]) expect([text, isIPv6(text)]).toEqual([text, netIPv6(text)]);
    expect([...parseIpv6("::ffff:192.0.2.1")!.subarray(10)]).toEqual([0xff, 0xff, 192, 0, 2, 1]);
  });
});
