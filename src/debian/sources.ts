/**
 * APT sources, in both formats APT reads (see sources.list(5)), parsed into one entry type:
 *
 * - one-line (`.list`):  deb [ arch=amd64 signed-by=/usr/share/keyrings/x.gpg ] http://mirror.example/debian bookworm main
 * - deb822 (`.sources`): stanzas of Types/URIs/Suites/Components/... fields, one entry per Types × URIs × Suites.
 *
 * The parsers are pure; loadSystemSources() and loadSourcesFile() do the file reading. URI schemes are not
 * checked here beyond "looks like a URI": callers keep the schemes they support (http, https, file).
 */

import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { AptP2pError, ErrorCode } from "../errors.ts";

export interface SignedBy {
  /** Keyring files (absolute paths). */
  paths: string[];
  /** Key fingerprints: 40 (v4) or 64 (v5) hex digits, uppercase. A trailing `!` (exact subkey) is dropped. */
  fingerprints: string[];
  /** An ASCII-armored key block given inline in a deb822 Signed-By field, one line per line, ending in "\n". */
  inline?: string;
}

export interface SourceEntry {
  type: "deb" | "deb-src";
  /** As written, without trailing slashes. Any scheme; callers keep the ones they support. */
  uri: string;
  /** E.g. "bookworm"; for a flat repository the exact path, such as "./" or "sub/". */
  suite: string;
  /** Empty for a flat repository (suite ending with "/"). */
  components: string[];
  architectures?: string[];
  signedBy?: SignedBy;
  trusted: boolean;
  /** "file:line" of the line (one-line) or stanza (deb822) the entry came from. */
  origin: string;
}

const DEFAULT_ROOT = "/etc/apt";
/** APT ignores files in sources.list.d whose names have other characters (apt-pkg/contrib/fileutl.cc). */
const PART_FILE_NAME = /^[A-Za-z0-9_.-]+\.(?:list|sources)$/;
const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const FINGERPRINT = /^(?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})!?$/;
const KEY_BLOCK_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const KEY_BLOCK_END = "-----END PGP PUBLIC KEY BLOCK-----";
/** The words APT's StringToBool() accepts. */
const TRUE_WORDS = new Set(["yes", "true", "with", "on", "enable", "1"]);
const FALSE_WORDS = new Set(["no", "false", "without", "off", "disable", "0"]);

function malformed(where: string, why: string): AptP2pError {
  return new AptP2pError(ErrorCode.BadSources, `Cannot parse APT source ${where}: ${why}`, {
    hints: ["Fix or disable that entry (see sources.list(5)), or pass another sources file with --sources FILE."],
  });
}

function isBlank(c: string): boolean {
  return c === " " || c === "\t" || c === "\v" || c === "\f" || c === "\r";
}

function parseBoolean(value: string, what: string, where: string): boolean {
  const word = value.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw malformed(where, `${what} must be yes or no, not '${value.trim()}'`);
}

function parseType(value: string, where: string): SourceEntry["type"] {
  if (value === "deb" || value === "deb-src") return value;
  throw malformed(where, `unknown type '${value}' (expected deb or deb-src)`);
}

function parseUri(value: string, where: string): string {
  if (!URI_SCHEME.test(value)) throw malformed(where, `'${value}' is not a URI`);
  const trimmed = value.replace(/\/+$/, "");
  // Keep "file:/" rather than reduce it to a bare scheme.
  return trimmed.endsWith(":") ? value : trimmed;
}

/** Signed-By values: paths and fingerprints separated by commas or blanks. */
function parseSignedBy(items: string[], where: string): SignedBy {
  const signedBy: SignedBy = { paths: [], fingerprints: [] };
  for (const item of items) {
    if (FINGERPRINT.test(item)) signedBy.fingerprints.push(item.replace("!", "").toUpperCase());
    else if (item.startsWith("/")) signedBy.paths.push(item);
    else throw malformed(where, `Signed-By '${item}' is neither an absolute keyring path nor a key fingerprint`);
  }
  if (signedBy.paths.length === 0 && signedBy.fingerprints.length === 0) {
    throw malformed(where, "Signed-By is empty");
  }
  return signedBy;
}

function splitList(value: string): string[] {
  return value.split(/[\s,]+/).filter((item) => item !== "");
}

/** Checks the suite/components pairing APT requires and returns the components to store. */
function checkComponents(suite: string, components: string[], where: string): string[] {
  if (suite.endsWith("/")) {
    if (components.length > 0) throw malformed(where, `flat repository suite '${suite}' cannot have components`);
    return [];
  }
  if (components.length === 0) throw malformed(where, `suite '${suite}' has no components (a flat repository's suite ends with '/')`);
  return components;
}

// ---------------------------------------------------------------------------------------------------
// One-line format

/** Drops a `#` comment, except for a `#` inside [options] or "quotes". */
function stripComment(line: string): string {
  let closer = "";
  for (let i = 0; i < line.length; i++) {
    const c = line.charAt(i);
    if (closer !== "") {
      if (c === closer) closer = "";
    } else if (c === "[") closer = "]";
    else if (c === '"') closer = '"';
    else if (c === "#") return line.slice(0, i);
  }
  return line;
}

/**
 * Splits on blanks like APT's ParseQuoteWord(): "double quotes" group blanks and are removed, [brackets]
 * group blanks and are kept (as in `cdrom:[Debian GNU/Linux 12 ...]/`). %-escapes are left as written.
 */
function splitWords(text: string, where: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && isBlank(text.charAt(i))) i++;
    if (i >= text.length) break;
    let word = "";
    while (i < text.length && !isBlank(text.charAt(i))) {
      const c = text.charAt(i);
      if (c === '"' || c === "[") {
        const close = text.indexOf(c === '"' ? '"' : "]", i + 1);
        if (close < 0) throw malformed(where, `unterminated ${c} in '${text.trim()}'`);
        word += c === '"' ? text.slice(i + 1, close) : text.slice(i, close + 1);
        i = close + 1;
      } else {
        word += c;
        i++;
      }
    }
    words.push(word);
  }
  return words;
}

interface LineOptions {
  architectures?: string[];
  signedBy?: SignedBy;
  trusted: boolean;
}

/**
 * Reads `[ opt=val ... ]`. Options other than arch, signed-by and trusted are ignored. `arch+=` and
 * `arch-=` adjust APT's configured default architectures, which apt-p2p replaces with the host's (or
 * --arch): they are accepted and ignored, so that the entry keeps following that default.
 */
function parseLineOptions(text: string, where: string): LineOptions {
  const options: LineOptions = { trusted: false };
  for (const option of text.split(/\s+/).filter((word) => word !== "")) {
    const match = /^([A-Za-z][A-Za-z-]*?)([+-]?=)(.*)$/.exec(option);
    if (match === null) throw malformed(where, `option '${option}' is not of the form name=value`);
    const [, name = "", operator, value = ""] = match;
    if (value === "") throw malformed(where, `option '${name}' has no value`);
    switch (name.toLowerCase()) {
      case "arch":
        if (operator !== "=") break;
        options.architectures = [...new Set([...(options.architectures ?? []), ...splitList(value)])];
        break;
      case "signed-by":
        if (operator !== "=") throw malformed(where, `option signed-by does not take '${operator}'`);
        options.signedBy = parseSignedBy(splitList(value), where);
        break;
      case "trusted":
        options.trusted = parseBoolean(value, "trusted", where);
        break;
      default:
        break;
    }
  }
  return options;
}

function parseSourceLine(line: string, where: string): SourceEntry | undefined {
  const text = stripComment(line).trim();
  if (text === "") return undefined;

  const typeEnd = text.search(/\s/);
  const type = parseType(typeEnd < 0 ? text : text.slice(0, typeEnd), where);
  let rest = typeEnd < 0 ? "" : text.slice(typeEnd).trimStart();

  let options: LineOptions = { trusted: false };
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw malformed(where, "option list '[' has no closing ']'");
    options = parseLineOptions(rest.slice(1, close), where);
    rest = rest.slice(close + 1);
  }

  const [uri, suite, ...components] = splitWords(rest, where);
  if (uri === undefined) throw malformed(where, "missing URI");
  if (suite === undefined) throw malformed(where, "missing suite");
  const entry: SourceEntry = {
    type,
    uri: parseUri(uri, where),
    suite,
    components: checkComponents(suite, components, where),
    trusted: options.trusted,
    origin: where,
  };
  if (options.architectures !== undefined) entry.architectures = options.architectures;
  if (options.signedBy !== undefined) entry.signedBy = options.signedBy;
  return entry;
}

/** Parses the one-line format (sources.list, *.list). `origin` names the file in entries and errors. */
export function parseOneLineSources(text: string, origin: string): SourceEntry[] {
  const entries: SourceEntry[] = [];
  text.split("\n").forEach((line, index) => {
    const entry = parseSourceLine(line, `${origin}:${index + 1}`);
    if (entry !== undefined) entries.push(entry);
  });
  return entries;
}

// ---------------------------------------------------------------------------------------------------
// deb822 format

interface Field {
  line: number;
  /** The text after the colon, then each continuation line, all as written. */
  lines: string[];
}

interface Stanza {
  line: number;
  /** By lowercase field name. */
  fields: Map<string, Field>;
}

/** Splits deb822 text into stanzas. Comment lines are dropped without ending a stanza. */
function readStanzas(text: string, origin: string): Stanza[] {
  const stanzas: Stanza[] = [];
  let stanza: Stanza | undefined;
  let field: Field | undefined;
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const lineNumber = index + 1;
    if (line.startsWith("#")) continue;
    if (line.trim() === "") {
      stanza = undefined;
      field = undefined;
      continue;
    }
    if (isBlank(line.charAt(0))) {
      if (field === undefined) throw malformed(`${origin}:${lineNumber}`, "continuation line outside a field");
      field.lines.push(line);
      continue;
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? "" : line.slice(0, colon);
    if (name === "" || /\s/.test(name)) throw malformed(`${origin}:${lineNumber}`, `expected 'Field: value', got '${line}'`);
    if (stanza === undefined) {
      stanza = { line: lineNumber, fields: new Map() };
      stanzas.push(stanza);
    }
    if (stanza.fields.has(name.toLowerCase())) throw malformed(`${origin}:${lineNumber}`, `duplicate field ${name}`);
    field = { line: lineNumber, lines: [line.slice(colon + 1)] };
    stanza.fields.set(name.toLowerCase(), field);
  }
  return stanzas;
}

function fieldWords(field: Field): string[] {
  return field.lines.join(" ").split(/\s+/).filter((word) => word !== "");
}

/**
 * Rebuilds an inline armored key: one line per field line without its indentation, " ." standing for
 * an empty line, each line ending in "\n".
 */
function inlineKey(field: Field, where: string): string {
  const lines = field.lines.map((line) => line.trim());
  if (lines[0] === "") lines.shift();
  const key = lines.map((line) => (line === "." ? "" : line));
  if (key[0] !== KEY_BLOCK_BEGIN || key[key.length - 1] !== KEY_BLOCK_END) {
    throw malformed(where, `inline Signed-By key must run from '${KEY_BLOCK_BEGIN}' to '${KEY_BLOCK_END}'`);
  }
  return `${key.join("\n")}\n`;
}

function stanzaEntries(stanza: Stanza, origin: string): SourceEntry[] {
  const at = (field: Field) => `${origin}:${field.line}`;
  const required = (name: string): [Field, string[]] => {
    const field = stanza.fields.get(name.toLowerCase());
    const words = field === undefined ? [] : fieldWords(field);
    if (field === undefined || words.length === 0) throw malformed(`${origin}:${stanza.line}`, `stanza has no ${name}`);
    return [field, words];
  };

  const enabled = stanza.fields.get("enabled");
  if (enabled !== undefined && !parseBoolean(enabled.lines.join(" "), "Enabled", at(enabled))) return [];

  const [typesField, typeWords] = required("Types");
  const types = typeWords.map((type) => parseType(type, at(typesField)));
  const [urisField, uriWords] = required("URIs");
  const uris = uriWords.map((uri) => parseUri(uri, at(urisField)));
  const [suitesField, suites] = required("Suites");
  const componentsField = stanza.fields.get("components");
  const components = componentsField === undefined ? [] : fieldWords(componentsField);
  for (const suite of suites) checkComponents(suite, components, at(componentsField ?? suitesField));

  const architecturesField = stanza.fields.get("architectures");
  const trustedField = stanza.fields.get("trusted");
  const trusted = trustedField === undefined ? false : parseBoolean(trustedField.lines.join(" "), "Trusted", at(trustedField));
  const signedByField = stanza.fields.get("signed-by");
  let signedBy: SignedBy | undefined;
  if (signedByField !== undefined) {
    signedBy = signedByField.lines.some((line) => line.includes(KEY_BLOCK_BEGIN))
      ? { paths: [], fingerprints: [], inline: inlineKey(signedByField, at(signedByField)) }
      : parseSignedBy(splitList(signedByField.lines.join(" ")), at(signedByField));
  }

  const entries: SourceEntry[] = [];
  for (const type of types) {
    for (const uri of uris) {
      for (const suite of suites) {
        const entry: SourceEntry = {
          type,
          uri,
          suite,
          components: suite.endsWith("/") ? [] : [...components],
          trusted,
          origin: `${origin}:${stanza.line}`,
        };
        if (architecturesField !== undefined) entry.architectures = splitList(architecturesField.lines.join(" "));
        if (signedBy !== undefined) entry.signedBy = structuredClone(signedBy);
        entries.push(entry);
      }
    }
  }
  return entries;
}

/**
 * Parses the deb822 format (*.sources). Field names are case-insensitive; stanzas with `Enabled: no`
 * are skipped; fields other than Types, URIs, Suites, Components, Architectures, Signed-By, Trusted and
 * Enabled are ignored.
 */
export function parseDeb822Sources(text: string, origin: string): SourceEntry[] {
  return readStanzas(text, origin).flatMap((stanza) => stanzaEntries(stanza, origin));
}

/** Chooses the format by file name (.list / .sources) and otherwise by content (a "Types:" field => deb822). */
export function parseSourcesFile(text: string, fileName: string): SourceEntry[] {
  const name = basename(fileName);
  if (name.endsWith(".list")) return parseOneLineSources(text, fileName);
  if (name.endsWith(".sources")) return parseDeb822Sources(text, fileName);
  return /^types:/im.test(text) ? parseDeb822Sources(text, fileName) : parseOneLineSources(text, fileName);
}

// ---------------------------------------------------------------------------------------------------
// Reading files

/** errno codes meaning "nothing to read there", which APT passes over silently. */
const ABSENT = new Set(["ENOENT", "ENOTDIR", "EISDIR"]);

function errnoCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

function unreadable(path: string, err: unknown): AptP2pError {
  const code = errnoCode(err);
  const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(code ?? err);
  return new AptP2pError(ErrorCode.BadSources, `Cannot read sources file ${path}: ${why}`, { cause: err });
}

/** The file's text, or undefined when it does not exist. */
async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (ABSENT.has(errnoCode(err) ?? "")) return undefined;
    throw unreadable(path, err);
  }
}

async function listIfPresent(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (ABSENT.has(errnoCode(err) ?? "")) return [];
    throw unreadable(dir, err);
  }
}

/**
 * Reads <root>/sources.list, then <root>/sources.list.d/*.list and *.sources sorted by name, as APT
 * does. Missing files are fine. `searched` lists the files looked at (the directory itself when it holds
 * none), for "no sources found" messages.
 */
export async function loadSystemSources(root: string = DEFAULT_ROOT): Promise<{ entries: SourceEntry[]; searched: string[] }> {
  const mainList = join(root, "sources.list");
  const partsDir = join(root, "sources.list.d");
  const entries: SourceEntry[] = [];
  const searched = [mainList];

  const mainText = await readIfPresent(mainList);
  if (mainText !== undefined) entries.push(...parseOneLineSources(mainText, mainList));

  const parts = (await listIfPresent(partsDir)).filter((name) => PART_FILE_NAME.test(name)).sort();
  if (parts.length === 0) searched.push(partsDir);
  for (const name of parts) {
    const path = join(partsDir, name);
    searched.push(path);
    const text = await readIfPresent(path);
    if (text !== undefined) entries.push(...parseSourcesFile(text, path));
  }
  return { entries, searched };
}

/** Reads one file given by --sources; a missing or unreadable file is a BadSources error naming it. */
export async function loadSourcesFile(path: string): Promise<SourceEntry[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw unreadable(path, err);
  }
  return parseSourcesFile(text, path);
}
