/**
 * Who may use the APT proxy and where it may forward, so that it is never an open proxy. Pure.
 *
 * - Clients: loopback always, plus the CIDR blocks of --proxy-allow. An IPv4 client on a dual-stack
 *   socket shows up as "::ffff:a.b.c.d" and is matched as the IPv4 address it is.
 * - Upstreams: the host:port of every http/https URI in the APT sources, plus --mirror-allow items.
 *   Other schemes (file:, cdrom:, mirror+http:, tor+http:) name no host the proxy could be asked for.
 */

import { AptP2pError, ErrorCode } from "../errors.ts";
import type { SourceEntry } from "../debian/sources.ts";
import { parseIpv4, parseIpv6 } from "../ip.ts";
import { parseHostPort } from "./target.ts";

/** An address block: the first `prefix` bits of `bytes` (4 bytes for IPv4, 16 for IPv6). */
export interface Cidr {
  readonly family: 4 | 6;
  /** The network address, host bits cleared. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** The item as written, for messages. */
  readonly text: string;
}

interface Ip {
  family: 4 | 6;
  bytes: Uint8Array;
}

const IPV4_BITS = 32;
const IPV6_BITS = 128;
const DEFAULT_PORTS = { http: 80, https: 443 } as const;
/** 127.0.0.0/8, the IPv4 loopback network. */
const IPV4_LOOPBACK_FIRST_OCTET = 127;

const CIDR_FORM = "expected ADDRESS or ADDRESS/BITS, such as 10.0.0.0/8, 192.168.1.5 or fd00::/8";
const MIRROR_FORM = "expected HOST or HOST:PORT, such as mirror.example.org, 192.168.1.10:8080 or [fd00::1]:3142";

function parseIp(text: string): Ip | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, bytes: v4 };
  const v6 = text.includes(":") ? parseIpv6(text) : undefined;
  return v6 === undefined ? undefined : { family: 6, bytes: v6 };
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), if it is one. */
function unmapped(ip: Ip): Ip | undefined {
  if (ip.family === 4) return ip;
  const isMapped = ip.bytes.subarray(0, 10).every((byte) => byte === 0) && ip.bytes[10] === 0xff && ip.bytes[11] === 0xff;
  return isMapped ? { family: 4, bytes: ip.bytes.slice(12) } : undefined;
}

function inBlock(bytes: Uint8Array, cidr: Cidr): boolean {
  const whole = Math.floor(cidr.prefix / 8);
  for (let i = 0; i < whole; i++) if (bytes[i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefix % 8;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((bytes[whole] ?? 0) & mask) === ((cidr.bytes[whole] ?? 0) & mask);
}

function usage(message: string): AptP2pError {
  return new AptP2pError(ErrorCode.Usage, message);
}

function splitItems(text: string): string[] {
  return text.split(/[\s,]+/).filter((item) => item !== "");
}

function parseCidr(item: string, what: string): Cidr {
  const fail = (why: string) => usage(`Invalid ${what} item '${item}': ${why}; ${CIDR_FORM}`);
  const parts = item.split("/");
  if (parts.length > 2) throw fail("more than one '/'");
  const [address = "", prefixText] = parts;
  const ip = parseIp(address);
  if (ip === undefined) throw fail(`'${address}' is not an IPv4 or IPv6 address`);
  const bits = ip.family === 4 ? IPV4_BITS : IPV6_BITS;
  const prefix = prefixText === undefined ? bits : /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) throw fail(`the prefix length must be a number from 0 to ${bits} for an IPv${ip.family} address`);
  // Host bits are cleared rather than refused: "192.168.1.5/24" is taken to mean that /24.
  const bytes = ip.bytes.slice();
  for (let bit = prefix; bit < bits; bit++) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  return { family: ip.family, bytes, prefix, text: item };
}

/**
 * Parses "10.0.0.0/8,192.168.1.5,fd00::/8" (commas or blanks between items; an address alone is a
 * single host). `what` names the option in the error, such as "--proxy-allow". Empty text is no blocks.
 */
export function parseCidrList(text: string, what: string): Cidr[] {
  return splitItems(text).map((item) => parseCidr(item, what));
}

/**
 * Whether a client (a socket's remoteAddress) may use the proxy. Loopback (127.0.0.0/8, ::1 and their
 * IPv4-mapped forms) always may; an address that does not parse may not.
 */
export function clientAllowed(address: string, allowed: Cidr[]): boolean {
  // A zone ("fe80::1%eth0") names the interface, not the address.
  const zone = address.indexOf("%");
  const ip = parseIp(zone < 0 ? address : address.slice(0, zone));
  if (ip === undefined) return false;
  const v4 = unmapped(ip);
  if (v4 !== undefined && v4.bytes[0] === IPV4_LOOPBACK_FIRST_OCTET) return true;
  if (ip.family === 6 && ip.bytes.every((byte, index) => byte === (index === 15 ? 1 : 0))) return true;
  return allowed.some((cidr) => {
    if (cidr.family === 4) return v4 !== undefined && inBlock(v4.bytes, cidr);
    return ip.family === 6 && inBlock(ip.bytes, cidr);
  });
}

/** One --mirror-allow item as host and optional port, or a usage error naming it. */
function parseMirrorItem(item: string): { host: string; port: number | undefined } {
  if (item.includes("/")) throw usage(`Invalid --mirror-allow item '${item}': write the host alone, without a scheme or path; ${MIRROR_FORM}`);
  const parsed = parseHostPort(item);
  if (!parsed.ok) throw usage(`Invalid --mirror-allow item '${item}': ${parsed.message}; ${MIRROR_FORM}`);
  return parsed;
}

/**
 * Validates "HOST[:PORT],..." (commas or blanks between items) and returns the items normalised
 * (lower-cased, IPv6 canonical), ready for MirrorAllowList.fromSources().
 */
export function parseMirrorAllow(text: string): string[] {
  return splitItems(text).map((item) => {
    const { host, port } = parseMirrorItem(item);
    return port === undefined ? host : `${host}:${port}`;
  });
}

/** A source URI that names an http/https host the proxy cannot match, and why. */
export interface UnusableSource {
  uri: string;
  origin: string;
  why: string;
}

/** The upstreams the proxy forwards to, as "host:port" keys (host as parseProxyTarget() writes it). */
export class MirrorAllowList {
  /** http/https sources whose host could not be read: never allowed; worth a line in the log. */
  readonly unusable: readonly UnusableSource[];
  readonly #keys: ReadonlySet<string>;

  private constructor(keys: Set<string>, unusable: UnusableSource[]) {
    this.#keys = keys;
    this.unusable = unusable;
  }

  /**
   * Every deb/deb-src http(s) URI's host and port (80/443 when not written), plus `extraHosts`:
   * "HOST:PORT" allows that port, "HOST" ports 80 and 443. Throws a usage error for a bad extra item.
   */
  static fromSources(entries: SourceEntry[], extraHosts: string[]): MirrorAllowList {
    const keys = new Set<string>();
    const unusable: UnusableSource[] = [];
    for (const entry of entries) {
      const match = /^(https?):\/\/([^/?#]*)/i.exec(entry.uri);
      if (match === null) continue;
      const scheme = (match[1] ?? "").toLowerCase() as keyof typeof DEFAULT_PORTS;
      const authority = match[2] ?? "";
      // APT reads credentials from the URI too; they play no part in where requests go.
      const parsed = parseHostPort(authority.slice(authority.lastIndexOf("@") + 1));
      if (!parsed.ok) {
        unusable.push({ uri: entry.uri, origin: entry.origin, why: parsed.message });
        continue;
      }
      keys.add(`${parsed.host}:${parsed.port ?? DEFAULT_PORTS[scheme]}`);
    }
    for (const item of extraHosts) {
      const { host, port } = parseMirrorItem(item);
      if (port !== undefined) keys.add(`${host}:${port}`);
      else for (const defaultPort of Object.values(DEFAULT_PORTS)) keys.add(`${host}:${defaultPort}`);
    }
    return new MirrorAllowList(keys, unusable);
  }

  allows(target: { host: string; port: number }): boolean {
    return this.#keys.has(`${target.host.toLowerCase()}:${target.port}`);
  }

  /** "host:port" items in the order first seen, for messages and the status page. */
  describe(): string[] {
    return [...this.#keys];
  }
}

/** The 403 message for an upstream not in the allow list, saying how to allow it. */
export function refusedMirrorMessage(target: { host: string; port: number }): string {
  const hostPort = `${target.host}:${target.port}`;
  return `Refused to forward to ${hostPort}: apt-p2p forwards only to the mirrors in the APT sources; add --mirror-allow ${hostPort}`;
}
