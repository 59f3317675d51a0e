/**
 * Where a request to the APT proxy goes: the HTTP request-target, exactly as received, turned into an
 * upstream URL, or refused. Pure.
 *
 * APT reaches the proxy in two ways:
 * - forward proxy (`Acquire::http::Proxy "http://127.0.0.1:9977";`): absolute-form
 *   `GET http://<mirror>[:port]/<path>`;
 * - prefix (sources written as `http://127.0.0.1:9977/<mirror>[:port]/debian`): origin-form
 *   `GET /<mirror>[:port]/<path>`, and `GET /https/<mirror>[:port]/<path>` for an HTTPS mirror (so a
 *   first segment "https" is always that marker, never a mirror host named "https").
 *
 * The target must not have gone through a URL parser first: that would resolve `..` and hide the
 * traversal this module exists to refuse. Paths are checked segment by segment, after undoing
 * percent-encoding as many times as it was applied, so `%2e%2e` and `%252e%252e` are refused as `..` is.
 */

import { isIPv6 } from "../ip.ts";

export interface UpstreamTarget {
  scheme: "http" | "https";
  /** Lower-cased host name, dotted IPv4, or canonical IPv6 in brackets ("[::1]"). */
  host: string;
  /** Explicit, or the scheme's default (80/443). */
  port: number;
  /**
   * Normalised: begins with "/", no query, no dot or empty segments. Escapes of unreserved characters
   * are decoded (APT sends "~" as "%7e") and the others upper-cased ("%3A").
   */
  path: string;
  /** `${scheme}://${host}${port is the default ? "" : ":" + port}${path}`. */
  url: string;
  form: "proxy" | "prefix";
}

export type TargetResult = { ok: true; target: UpstreamTarget } | { ok: false; status: 400 | 405; message: string };

export type HostPortResult = { ok: true; host: string; port: number | undefined } | { ok: false; message: string };

const DEFAULT_PORTS = { http: 80, https: 443 } as const;
const MAX_PORT = 65535;
/** DNS limits (RFC 1035 §2.3.4): 63 octets a label, 253 characters a name written without the final dot. */
const MAX_LABEL_LENGTH = 63;
const MAX_NAME_LENGTH = 253;
/** Longest piece of a client's target quoted back in a message. */
const MAX_QUOTED_LENGTH = 80;

const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const IPV4_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
/** A last label that the WHATWG URL parser would read as a number (so "2130706433" means 127.0.0.1). */
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;
/** RFC 3986 pchar, less "%" (checked on its own): what may appear raw in a path segment. */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%]*$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const PERCENT_ESCAPE = /%([0-9A-Fa-f]{2})/g;

const PREFIX_FORM_HINT = "http://<apt-p2p host:port>/<mirror host>/<path>";
const HTTPS_PREFIX_HINT = "http://<apt-p2p host:port>/https/<mirror host>/<path>";

function refuse(message: string): TargetResult {
  return { ok: false, status: 400, message };
}

/** A piece of the client's input, quoted for a message: escaped, and cut short. */
function quote(text: string): string {
  const cut = text.length > MAX_QUOTED_LENGTH ? `${text.slice(0, MAX_QUOTED_LENGTH)}...` : text;
  return JSON.stringify(cut);
}

function isControl(code: number): boolean {
  return code < 0x20 || code === 0x7f;
}

/**
 * Parses "HOST", "HOST:PORT", "[IPV6]" or "[IPV6]:PORT", the authority of a mirror. Host names are
 * letters, digits, hyphens and dots; a name ending in a numeric label must be a dotted-quad IPv4 address
 * (no octal or single-number forms, which URL parsers turn into other addresses).
 */
export function parseHostPort(text: string): HostPortResult {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    const inside = close < 0 ? "" : text.slice(1, close);
    if (close < 0 || inside.includes("%") || !isIPv6(inside)) {
      return { ok: false, message: `${quote(text)} is not a valid bracketed IPv6 address` };
    }
    // The URL parser writes IPv6 in its canonical short form, so that equal addresses compare equal.
    host = new URL(`http://[${inside}]/`).hostname;
    const after = text.slice(close + 1);
    if (after !== "") {
      if (!after.startsWith(":")) return { ok: false, message: `${quote(text)} has text after the IPv6 address` };
      portText = after.slice(1);
    }
  } else {
    const parts = text.split(":");
    if (parts.length > 2) return { ok: false, message: `${quote(text)} is not HOST[:PORT] (write an IPv6 address in brackets)` };
    host = (parts[0] ?? "").toLowerCase();
    portText = parts[1];
    const why = hostNameProblem(host);
    if (why !== undefined) return { ok: false, message: `${quote(parts[0] ?? "")} is not a valid host name: ${why}` };
  }
  if (portText === undefined) return { ok: true, host, port: undefined };
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= MAX_PORT)) {
    return { ok: false, message: `port ${quote(portText)} is not a number from 1 to ${MAX_PORT}` };
  }
  return { ok: true, host, port };
}

/** Why a lower-cased name is not a host name or dotted-quad IPv4 address, or undefined if it is one. */
function hostNameProblem(name: string): string | undefined {
  if (name === "") return "it is empty";
  if (name.length > MAX_NAME_LENGTH) return `it is longer than ${MAX_NAME_LENGTH} characters`;
  const labels = name.split(".");
  for (const label of labels) {
    if (label === "") return "it has an empty label (a leading, trailing or doubled dot)";
    if (label.length > MAX_LABEL_LENGTH) return `a label is longer than ${MAX_LABEL_LENGTH} characters`;
    if (!HOST_LABEL.test(label)) return "only letters, digits, hyphens and dots are allowed, and no label starts or ends with a hyphen";
  }
  if (NUMERIC_LABEL.test(labels[labels.length - 1] ?? "")) {
    const dottedQuad = labels.length === 4 && labels.every((label) => IPV4_OCTET.test(label) && Number(label) <= 255);
    if (!dottedQuad) return "a numeric address must be four decimal numbers from 0 to 255, without leading zeros";
  }
  return undefined;
}

/** Undoes one level of percent-encoding, byte by byte (each escape becomes one char code 0–255). */
function percentDecode(text: string): string {
  return text.replace(PERCENT_ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Why a path segment, decoded once or several times, is refused, or undefined if it is fine. */
function segmentProblem(segment: string): string | undefined {
  if (!PATH_CHARS.test(segment)) {
    const bad = [...segment].find((c) => !PATH_CHARS.test(c)) ?? "";
    return `the character ${quote(bad)} must be percent-encoded`;
  }
  const stray = /%(?![0-9A-Fa-f]{2})/.exec(segment);
  if (stray !== null) return `${quote(segment.slice(stray.index, stray.index + 3))} is not a percent-escape (% and two hex digits)`;
  let decoded = segment;
  for (;;) {
    if (decoded === "." || decoded === "..") return `the segment ${quote(segment)} is a '.' or '..' segment, which could leave the archive`;
    if (decoded.includes("/") || decoded.includes("\\")) return `the segment ${quote(segment)} hides a '/' or '\\' in percent-encoding`;
    if ([...decoded].some((c) => isControl(c.charCodeAt(0)))) return `the segment ${quote(segment)} hides a control character`;
    const next = percentDecode(decoded);
    if (next === decoded) return undefined;
    decoded = next;
  }
}

/** Decodes escapes of unreserved characters and upper-cases the rest (RFC 3986 §6.2.2). */
function normaliseEscapes(segment: string): string {
  return segment.replace(PERCENT_ESCAPE, (escape, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : escape.toUpperCase();
  });
}

/** Checks and normalises "/a/b/c" (a trailing "/" is kept); the message says what is wrong with it. */
function normalisePath(path: string): { ok: true; path: string } | { ok: false; message: string } {
  const segments = path.slice(1).split("/");
  const out: string[] = [];
  for (const [index, segment] of segments.entries()) {
    if (segment === "" && index < segments.length - 1) {
      return { ok: false, message: "Refused a path with an empty segment ('//'): write single slashes between path segments" };
    }
    const why = segmentProblem(segment);
    if (why !== undefined) return { ok: false, message: `Refused path ${quote(path)}: ${why}` };
    out.push(normaliseEscapes(segment));
  }
  return { ok: true, path: `/${out.join("/")}` };
}

/** Builds the target from the authority and path found in either form. */
function resolve(scheme: UpstreamTarget["scheme"], authority: string, rawPath: string, form: UpstreamTarget["form"]): TargetResult {
  if (authority.includes("@")) {
    return refuse("Refused a target with user credentials ('user@host'): apt-p2p forwards no credentials; remove them from the source's URI");
  }
  const parsed = parseHostPort(authority);
  if (!parsed.ok) return refuse(`Bad mirror host in the request: ${parsed.message}`);
  const port = parsed.port ?? DEFAULT_PORTS[scheme];
  const origin = `${scheme}://${parsed.host}${port === DEFAULT_PORTS[scheme] ? "" : `:${port}`}`;
  if (rawPath === "" || rawPath === "/") {
    return refuse(`Request for ${origin} names no file: the source's URI needs the archive path, as in ${origin}/debian`);
  }
  const path = normalisePath(rawPath);
  if (!path.ok) return refuse(path.message);
  return { ok: true, target: { scheme, host: parsed.host, port, path: path.path, url: `${origin}${path.path}`, form } };
}

/**
 * Where a proxied request goes. `rawTarget` is the request-target exactly as received (RequestInfo.rawTarget).
 * Refusals carry the status to answer (405 for a method, 400 for a target) and a one-line message.
 */
export function parseProxyTarget(method: string, rawTarget: string): TargetResult {
  if (method === "CONNECT") {
    return {
      ok: false,
      status: 405,
      message: `CONNECT is not supported: apt-p2p does not tunnel HTTPS; write the source's URI as ${HTTPS_PREFIX_HINT} (see apt-p2p apt-config)`,
    };
  }
  if (method !== "GET" && method !== "HEAD") {
    return { ok: false, status: 405, message: `Method ${quote(method)} is not allowed: the apt-p2p proxy answers only GET and HEAD` };
  }

  for (const c of rawTarget) {
    const code = c.charCodeAt(0);
    if (isControl(code)) return refuse("Refused a request target with a control character: APT never sends one");
    if (code > 0x7e) return refuse(`Refused a request target with the character ${quote(c)}: percent-encode it`);
  }
  if (rawTarget.includes("\\")) return refuse("Refused a request target with a backslash: write '/' between path segments");
  if (rawTarget.includes("?") || rawTarget.includes("#")) {
    return refuse("Refused a request target with a query or fragment ('?' or '#'): request the archive file's path alone");
  }

  const absolute = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(rawTarget);
  if (absolute !== null) {
    const scheme = (absolute[1] ?? "").toLowerCase();
    const rest = rawTarget.slice(absolute[0].length);
    const slash = rest.indexOf("/");
    const authority = slash < 0 ? rest : rest.slice(0, slash);
    if (scheme === "https") {
      return refuse(`Cannot forward to https://${authority} as a forward proxy: write the source's URI as ${HTTPS_PREFIX_HINT} (see apt-p2p apt-config)`);
    }
    if (scheme !== "http") return refuse(`Cannot forward ${scheme}:// URLs: the apt-p2p proxy forwards only http (and https in the prefix form)`);
    if (authority === "") return refuse("Request names no mirror host: expected http://<mirror host>/<path>");
    return resolve("http", authority, slash < 0 ? "" : rest.slice(slash), "proxy");
  }

  if (!rawTarget.startsWith("/")) {
    return refuse(`Unsupported request target ${quote(rawTarget)}: expected http://<mirror host>/<path> (forward proxy) or /<mirror host>/<path> (prefix form)`);
  }
  if (rawTarget === "/") {
    return refuse(
      `Request for / names no mirror: point APT at apt-p2p with Acquire::http::Proxy, or write sources as ${PREFIX_FORM_HINT} (see apt-p2p apt-config)`,
    );
  }
  let scheme: UpstreamTarget["scheme"] = "http";
  let rest = rawTarget.slice(1);
  if (rest === "https" || rest.startsWith("https/")) {
    scheme = "https";
    rest = rest.slice("https/".length);
  }
  const slash = rest.indexOf("/");
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  if (authority === "") {
    return refuse(`Request ${quote(rawTarget)} names no mirror host: expected ${scheme === "https" ? HTTPS_PREFIX_HINT : PREFIX_FORM_HINT}`);
  }
  return resolve(scheme, authority, slash < 0 ? "" : rest.slice(slash), "prefix");
}
