/**
 * Settings from configuration files and the environment, and their precedence: flag > environment >
 * file > default, resolved once per run. The files are /etc/apt-p2p/apt-p2p.conf, then
 * $XDG_CONFIG_HOME/apt-p2p/apt-p2p.conf, then --config FILE; a later file overrides an earlier one.
 *
 *     # keys are the long option names; before any section they apply to every command that has them
 *     cache-dir = /var/cache/apt-p2p
 *     [serve]
 *     port = 9977
 *     seed-dir = /srv/debs        # repeatable options may be given on several lines
 *     seed-dir = /srv/more-debs
 *
 * The catalog of settings (names, commands, defaults, checks) lives in src/config.ts; this file knows
 * only how to read and rank them.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { AptP2pError, ErrorCode } from "./errors.ts";

export const SYSTEM_CONFIG_FILE = "/etc/apt-p2p/apt-p2p.conf";

/** A `[section]` scopes keys to one command's settings. */
export const SECTIONS = ["serve", "get"] as const;
export type Section = (typeof SECTIONS)[number];

export type Env = Record<string, string | undefined>;

/** A setting's value: text, the items of a repeatable option, or on/off. Undefined: not set. */
export type SettingValue = string | string[] | boolean | undefined;

export interface SettingSpec {
  /** The long option name: flag `--name`, key `name` in a file, variable APT_P2P_NAME. */
  name: string;
  /** "value" takes text, "list" is repeatable, "switch" is on/off (`--name` and `--no-name`). */
  kind: "value" | "list" | "switch";
  /** Commands that take it, as their commander paths ("serve", "dht lookup"). */
  commands: readonly string[];
  /** The value when nothing sets it; a function for defaults that depend on the machine. */
  default?: SettingValue | ((env: Env) => SettingValue);
  /** Throws a usage error naming `what` (the flag, variable or key) when `text` is not accepted. */
  check?: (text: string, what: string) => void;
}

export interface SettingCatalog {
  specs: readonly SettingSpec[];
  /** The section each command reads ("apt-config" reads [serve], "dht lookup" reads [get]). */
  sectionOf: Readonly<Record<string, Section>>;
}

/** Where a resolved value came from, for `apt-p2p config` and for error messages. */
export type Origin =
  | { kind: "flag"; flag: string }
  | { kind: "env"; name: string }
  | { kind: "file"; path: string; lines: number[] }
  | { kind: "default" };

export interface Resolved {
  value: SettingValue;
  origin: Origin;
}

/** One `key = value` line of a file. */
export interface ConfigLine {
  key: string;
  value: string;
  line: number;
  section: Section | undefined;
}

export interface ConfigFile {
  path: string;
  /** False for a default file that does not exist. */
  found: boolean;
  lines: ConfigLine[];
}

export function envName(name: string): string {
  return `APT_P2P_${name.toUpperCase().replaceAll("-", "_")}`;
}

export function userConfigFile(env: Env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg !== undefined && xdg !== "" && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), ".config");
  return join(base, "apt-p2p", "apt-p2p.conf");
}

/** The settings a scope accepts: a section's commands' settings, or before any section every setting. */
export function specsIn(catalog: SettingCatalog, section: Section | undefined): SettingSpec[] {
  if (section === undefined) return [...catalog.specs];
  return catalog.specs.filter((spec) => spec.commands.some((command) => catalog.sectionOf[command] === section));
}

const SWITCH_WORDS: Record<string, boolean> = { true: true, yes: true, on: true, "1": true, false: false, no: false, off: false, "0": false };

export function parseSwitch(text: string, what: string): boolean {
  const value = SWITCH_WORDS[text.trim().toLowerCase()];
  if (value === undefined) throw new AptP2pError(ErrorCode.Usage, `Invalid ${what} '${text}': expected true or false (also yes/no, on/off, 1/0)`);
  return value;
}

/**
 * Parses a file and checks every key and value, so that a broken file is refused by every command,
 * not only by the one that would read the broken line.
 */
export function parseConfigFile(text: string, path: string, catalog: SettingCatalog): ConfigFile {
  const lines: ConfigLine[] = [];
  let section: Section | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const at = (message: string) => new AptP2pError(ErrorCode.Usage, `${path}:${line}: ${message}`);
    // A comment starts a line, or follows a blank: "#" inside a value (a URL's fragment) stays.
    const content = raw.replace(/(^|\s)#.*$/, "").trim();
    if (content === "") return;
    const header = /^\[(.*)\]$/.exec(content);
    if (header !== null) {
      const name = header[1]!.trim();
      if (!(SECTIONS as readonly string[]).includes(name)) {
        throw at(`Unknown section '[${name}]': expected ${SECTIONS.map((s) => `[${s}]`).join(" or ")}`);
      }
      section = name as Section;
      return;
    }
    const pair = /^([^=\s]+)\s*=\s*(.*)$/.exec(content);
    if (pair === null) throw at(`Cannot read '${content}': expected 'key = value', a [serve] or [get] section header, or a # comment`);
    const [, key = "", value = ""] = pair;
    const accepted = specsIn(catalog, section);
    const spec = accepted.find((s) => s.name === key);
    if (spec === undefined) {
      const scope = section === undefined ? "" : ` in [${section}]`;
      throw at(`Unknown key '${key}'${scope}: expected one of ${accepted.map((s) => s.name).sort().join(", ")}`);
    }
    try {
      if (spec.kind === "switch") parseSwitch(value, key);
      else spec.check?.(value, key);
    } catch (err) {
      throw located(err, `${path}:${line}: `, key);
    }
    lines.push({ key, value, line, section });
  });
  return { path, found: true, lines };
}

/**
 * Reads the files in order. A missing file is skipped when optional (the default files) and an error
 * when required (--config); any other read error is an error, so that a file the daemon may not read
 * is never silently ignored.
 */
export async function loadConfigFiles(files: { path: string; required: boolean }[], catalog: SettingCatalog): Promise<ConfigFile[]> {
  const loaded: ConfigFile[] = [];
  for (const { path, required } of files) {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" && !required) {
        loaded.push({ path, found: false, lines: [] });
        continue;
      }
      const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "it is a directory" : String(err);
      throw new AptP2pError(ErrorCode.Usage, `Cannot read configuration file ${path}: ${why}`, { cause: err });
    }
    loaded.push(parseConfigFile(text, path, catalog));
  }
  return loaded;
}

export interface ResolveInput {
  /** Values given on the command line, by setting name. */
  flags: ReadonlyMap<string, SettingValue>;
  env: Env;
  files: readonly ConfigFile[];
}

/**
 * Resolves the settings of one command: its flag, else its variable (an empty variable counts as
 * unset), else the last file that sets it (the section's lines come after the unscoped ones, so they
 * win), else its default. A repeatable option takes all the lines of that file, and a variable's items
 * are separated by ':' as in PATH. `only` limits the work to some names.
 */
export function resolveSettings(catalog: SettingCatalog, command: string, input: ResolveInput, only?: readonly string[]): Map<string, Resolved> {
  const section = catalog.sectionOf[command];
  const resolved = new Map<string, Resolved>();
  for (const spec of catalog.specs) {
    if (!spec.commands.includes(command) || (only !== undefined && !only.includes(spec.name))) continue;
    resolved.set(spec.name, resolveOne(spec, section, input));
  }
  return resolved;
}

function resolveOne(spec: SettingSpec, section: Section | undefined, input: ResolveInput): Resolved {
  if (input.flags.has(spec.name)) {
    const value = input.flags.get(spec.name);
    const flag = spec.kind === "switch" && value === false ? `--no-${spec.name}` : `--${spec.name}`;
    for (const text of typeof value === "boolean" || value === undefined ? [] : [value].flat()) check(spec, text, flag);
    return { value, origin: { kind: "flag", flag } };
  }
  const name = envName(spec.name);
  const text = input.env[name];
  if (text !== undefined && text !== "") {
    if (spec.kind === "switch") return { value: parseSwitch(text, name), origin: { kind: "env", name } };
    const value = spec.kind === "list" ? text.split(":").filter((item) => item !== "") : text;
    for (const item of [value].flat()) check(spec, item, name);
    return { value, origin: { kind: "env", name } };
  }
  for (const file of [...input.files].reverse()) {
    const lines = file.lines.filter((l) => l.key === spec.name && (l.section === undefined || l.section === section));
    if (lines.length === 0) continue;
    const last = lines[lines.length - 1]!;
    // Values were checked when the file was read.
    if (spec.kind === "list") return { value: lines.map((l) => l.value), origin: { kind: "file", path: file.path, lines: lines.map((l) => l.line) } };
    const value = spec.kind === "switch" ? parseSwitch(last.value, spec.name) : last.value;
    return { value, origin: { kind: "file", path: file.path, lines: [last.line] } };
  }
  const value = typeof spec.default === "function" ? spec.default(input.env) : spec.default;
  return { value: spec.kind === "list" && value === undefined ? [] : value, origin: { kind: "default" } };
}

function check(spec: SettingSpec, text: string, what: string): void {
  try {
    spec.check?.(text, what);
  } catch (err) {
    throw located(err, "", what);
  }
}

/**
 * The same usage error, with where the value came from in front; and the name of the option when the
 * parser's message does not say it (parseRate() names only "rate").
 */
function located(err: unknown, where: string, what: string): unknown {
  if (!(err instanceof AptP2pError)) return err;
  const named = err.message.includes(what) ? err.message : `${what}: ${err.message}`;
  if (where === "" && named === err.message) return err;
  return new AptP2pError(err.code, `${where}${named}`, { cause: err.cause, hints: err.hints });
}

/** "default", "FILE:LINE", "env NAME" or "flag --name", as `apt-p2p config` shows it. */
export function describeOrigin(origin: Origin): string {
  switch (origin.kind) {
    case "flag":
      return `flag ${origin.flag}`;
    case "env":
      return `env ${origin.name}`;
    case "file":
      return `${origin.path}:${origin.lines.join(",")}`;
    case "default":
      return "default";
  }
}

/**
 * The files to read, in order: the system's, the user's, then --config (or APT_P2P_CONFIG), which must
 * exist. A relative --config is taken from the working directory.
 */
export function configFileList(env: Env, cwd: string, explicit: string | undefined, systemFile = SYSTEM_CONFIG_FILE): { path: string; required: boolean }[] {
  const files = [
    { path: systemFile, required: false },
    { path: userConfigFile(env), required: false },
  ];
  const given = explicit ?? (env[envName("config")] || undefined);
  if (given !== undefined) files.push({ path: resolve(cwd, given), required: true });
  return files;
}

/** One command's resolved settings, read by name. */
export class Settings {
  constructor(
    readonly command: string,
    readonly values: ReadonlyMap<string, Resolved>,
  ) {}

  /** A setting without a default: undefined when nothing sets it. */
  optional(name: string): string | undefined {
    const value = this.get(name).value;
    if (Array.isArray(value) || typeof value === "boolean") throw new Error(`Setting ${name} is not a single value`);
    return value;
  }

  text(name: string): string {
    const value = this.optional(name);
    if (value === undefined) throw new Error(`Setting ${name} has no value and no default`);
    return value;
  }

  list(name: string): string[] {
    const value = this.get(name).value;
    if (!Array.isArray(value)) throw new Error(`Setting ${name} is not repeatable`);
    return value;
  }

  on(name: string): boolean {
    const value = this.get(name).value;
    if (typeof value !== "boolean") throw new Error(`Setting ${name} is not a switch`);
    return value;
  }

  get(name: string): Resolved {
    const resolved = this.values.get(name);
    // A programming error: the command does not declare the option in OPTIONS.
    if (resolved === undefined) throw new Error(`${this.command} has no setting ${name}`);
    return resolved;
  }
}
