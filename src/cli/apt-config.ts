/**
 * `apt-p2p apt-config`: the setup an administrator copies to send APT through the proxy, in either of
 * the two ways APT can be pointed at it. Pure: the command reads the sources and prints this text.
 *
 * - Forward proxy: one apt.conf line; http:// sources then go through apt-p2p as written. APT would
 *   tunnel https:// sources with CONNECT, which the proxy refuses, so they are set to stay direct.
 * - Prefix form: the machine's sources rewritten as a deb822 file whose URIs name apt-p2p, then the
 *   mirror: http://<apt-p2p>/<mirror>/<path>, or http://<apt-p2p>/https/<mirror>/<path> for https.
 */

import type { SignedBy, SourceEntry } from "../debian/sources.ts";
import { parseHostPort } from "../proxy/target.ts";

export interface AptConfigOptions {
  /** The proxy's address as APT reaches it, such as "127.0.0.1" (an IPv6 address with or without brackets). */
  host: string;
  port: number;
  /** Where the entries came from, for the comment that asks to disable the originals. */
  sourcesOrigin: string;
}

export const APT_CONF_FILE = "/etc/apt/apt.conf.d/30apt-p2p";
export const SOURCES_FILE = "/etc/apt/sources.list.d/apt-p2p.sources";

const DEFAULT_PORTS = { http: 80, https: 443 } as const;

/** The proxy's base URL, such as "http://127.0.0.1:9977". */
function proxyBase(options: AptConfigOptions): string {
  const host = options.host.includes(":") && !options.host.startsWith("[") ? `[${options.host}]` : options.host;
  return `http://${host}:${options.port}`;
}

/** The entry's URI in the prefix form, or why it is kept as written. */
function rewriteUri(uri: string, base: string): { uri: string } | { note: string } {
  const match = /^(https?):\/\/([^/?#]*)(.*)$/i.exec(uri);
  if (match === null) {
    const scheme = /^[^:]*:/.exec(uri)?.[0] ?? uri;
    return { note: `${scheme} sources are read by APT itself, not through apt-p2p; kept as written.` };
  }
  const scheme = (match[1] ?? "").toLowerCase() as keyof typeof DEFAULT_PORTS;
  const authority = match[2] ?? "";
  if (authority.includes("@")) {
    return { note: "This URI holds credentials, which apt-p2p does not forward; kept as written, so APT fetches it directly." };
  }
  const parsed = parseHostPort(authority);
  if (!parsed.ok) return { note: `apt-p2p cannot forward to this URI (${parsed.message}); kept as written.` };
  const hostPort = parsed.port === undefined || parsed.port === DEFAULT_PORTS[scheme] ? parsed.host : `${parsed.host}:${parsed.port}`;
  return { uri: `${base}/${scheme === "https" ? "https/" : ""}${hostPort}${match[3] ?? ""}` };
}

/** One output stanza: Types × URIs × Suites of deb822, with one URI. */
interface Stanza {
  types: SourceEntry["type"][];
  uri: string;
  suites: string[];
  components: string[];
  architectures?: string[];
  signedBy?: SignedBy;
  trusted: boolean;
  origins: string[];
  note?: string;
}

/** Everything but types and suites, for grouping entries that may share a stanza. */
function sharedKey(stanza: Stanza): unknown[] {
  const signedBy = stanza.signedBy;
  return [
    stanza.uri,
    stanza.note ?? null,
    stanza.components,
    stanza.architectures ?? null,
    signedBy === undefined ? null : [signedBy.paths, signedBy.fingerprints, signedBy.inline ?? null],
    stanza.trusted,
  ];
}

/** Merges stanzas with equal keys, in order of first appearance; `merge` folds the second into the first. */
function groupBy(stanzas: Stanza[], key: (stanza: Stanza) => unknown[], merge: (into: Stanza, from: Stanza) => void): Stanza[] {
  const groups = new Map<string, Stanza>();
  for (const stanza of stanzas) {
    const id = JSON.stringify(key(stanza));
    const group = groups.get(id);
    if (group === undefined) groups.set(id, stanza);
    else merge(group, stanza);
  }
  return [...groups.values()];
}

function addNew<T>(into: T[], from: T[]): void {
  for (const item of from) if (!into.includes(item)) into.push(item);
}

/**
 * Groups entries into stanzas: first deb and deb-src of one suite, then the suites of equal stanzas.
 * Each step keeps Types × Suites equal to the entries grouped, so the stanza means exactly those entries.
 */
function toStanzas(entries: SourceEntry[], base: string): Stanza[] {
  const single = entries.map((entry): Stanza => {
    const rewritten = rewriteUri(entry.uri, base);
    const stanza: Stanza = {
      types: [entry.type],
      uri: "uri" in rewritten ? rewritten.uri : entry.uri,
      suites: [entry.suite],
      components: entry.components,
      trusted: entry.trusted,
      origins: [entry.origin],
    };
    if ("note" in rewritten) stanza.note = rewritten.note;
    if (entry.architectures !== undefined) stanza.architectures = entry.architectures;
    if (entry.signedBy !== undefined) stanza.signedBy = entry.signedBy;
    return stanza;
  });
  const mergeOrigins = (into: Stanza, from: Stanza) => addNew(into.origins, from.origins);
  const byTypes = groupBy(
    single,
    (stanza) => [...sharedKey(stanza), stanza.suites],
    (into, from) => {
      addNew(into.types, from.types);
      mergeOrigins(into, from);
    },
  );
  for (const stanza of byTypes) stanza.types.sort();
  return groupBy(
    byTypes,
    (stanza) => [...sharedKey(stanza), stanza.types],
    (into, from) => {
      addNew(into.suites, from.suites);
      mergeOrigins(into, from);
    },
  );
}

/** A Signed-By field: paths and fingerprints on one line, or an inline key as a multi-line field. */
function signedByField(signedBy: SignedBy): string {
  if (signedBy.inline !== undefined) {
    const lines = signedBy.inline.replace(/\n$/, "").split("\n");
    // In deb822 a continuation line holding only "." stands for an empty line.
    return ["Signed-By:", ...lines.map((line) => ` ${line === "" ? "." : line}`)].join("\n");
  }
  return `Signed-By: ${[...signedBy.paths, ...signedBy.fingerprints].join(" ")}`;
}

function stanzaText(stanza: Stanza): string {
  const lines = [`# From ${stanza.origins.join(", ")}`];
  if (stanza.note !== undefined) lines.push(`# ${stanza.note}`);
  lines.push(`Types: ${stanza.types.join(" ")}`, `URIs: ${stanza.uri}`, `Suites: ${stanza.suites.join(" ")}`);
  if (stanza.components.length > 0) lines.push(`Components: ${stanza.components.join(" ")}`);
  if (stanza.architectures !== undefined && stanza.architectures.length > 0) lines.push(`Architectures: ${stanza.architectures.join(" ")}`);
  if (stanza.signedBy !== undefined) lines.push(signedByField(stanza.signedBy));
  if (stanza.trusted) lines.push("Trusted: yes");
  return lines.join("\n");
}

/** The apt.conf lines of the forward-proxy form, with their comments: the content of APT_CONF_FILE. */
export function aptConfFileText(options: AptConfigOptions): string {
  return [
    "# Send APT's http:// downloads through apt-p2p.",
    `Acquire::http::Proxy "${proxyBase(options)}";`,
    "# APT would reach https:// sources through a proxy with CONNECT, which apt-p2p refuses:",
    "# they stay direct. To have them go through apt-p2p too, use the rewritten sources instead.",
    'Acquire::https::Proxy "DIRECT";',
    "",
  ].join("\n");
}

/**
 * The sources rewritten for the prefix form, as deb822 stanzas: the content of SOURCES_FILE. A URI
 * with blanks (cdrom:[Debian GNU/Linux 12 ...]/) cannot be written in a URIs field, which blanks
 * separate: such entries are only named, in a comment, to be kept in their original file.
 */
export function proxiedSourcesText(entries: SourceEntry[], options: AptConfigOptions): string {
  const header = [
    `# APT sources sent through apt-p2p at ${proxyBase(options)}, rewritten from ${options.sourcesOrigin}.`,
    `# http://<mirror>/<path> became ${proxyBase(options)}/<mirror>/<path>,`,
    `# https://<mirror>/<path> became ${proxyBase(options)}/https/<mirror>/<path>.`,
  ].join("\n");
  if (entries.length === 0) return `${header}\n# (No enabled sources were found.)\n`;
  const writable = entries.filter((entry) => !/\s/.test(entry.uri));
  const unwritable = entries.filter((entry) => /\s/.test(entry.uri));
  const parts = [header, ...toStanzas(writable, proxyBase(options)).map(stanzaText)];
  if (unwritable.length > 0) {
    parts.push(
      [
        "# Not rewritten: a .sources file cannot hold a URI with blanks. Keep these entries where they are:",
        ...unwritable.map((entry) => `#   ${entry.origin}: ${entry.type} ${entry.uri} ${entry.suite}`),
      ].join("\n"),
    );
  }
  return `${parts.join("\n\n")}\n`;
}

/** What `apt-p2p apt-config` prints: both ways to point APT at the proxy, each ready to copy. */
export function aptConfigText(entries: SourceEntry[], options: AptConfigOptions): string {
  const base = proxyBase(options);
  return [
    `# apt-p2p answers APT at ${base}. Point APT at it in ONE of these two ways, not both.`,
    "",
    `# ---- Way 1, forward proxy: write these lines to ${APT_CONF_FILE}`,
    "#      and leave the sources as they are.",
    "",
    aptConfFileText(options),
    `# ---- Way 2, rewritten sources: write the text below to ${SOURCES_FILE}`,
    `#      and disable the originals in ${options.sourcesOrigin}: comment out their lines,`,
    "#      or add 'Enabled: no' to their stanzas, so that APT does not use both.",
    "",
    proxiedSourcesText(entries, options),
  ].join("\n");
}
