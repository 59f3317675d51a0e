/**
 * `apt-p2p config`: the settings `serve` and `get` resolve, each with where it came from. The text form
 * is itself a configuration file (origins in comments), so an administrator can start one from it.
 */
import { describeOrigin, type ConfigFile, type Origin, type Resolved, type SettingValue } from "../config-file.ts";
import type { CliIO } from "./io.ts";

export interface ConfigReport {
  /** Every file looked at, in the order read. */
  files: readonly ConfigFile[];
  /** Each command's settings, in the order of its options. */
  sections: readonly { command: string; settings: ReadonlyMap<string, Resolved> }[];
}

/** Past this width a long value pushes its comment right instead of widening every line. */
const MAX_ALIGN_COLUMN = 40;

export function printConfig(report: ConfigReport, io: CliIO, json: boolean): void {
  io.stdout(json ? `${JSON.stringify(configJson(report))}\n` : configText(report));
}

export function configText(report: ConfigReport): string {
  const out = ["# Files read in this order, later ones overriding earlier ones:"];
  for (const file of report.files) out.push(`#   ${file.path}${file.found ? "" : " (not found)"}`);
  out.push("# Variables (APT_P2P_*) override the files, and flags override both.");
  for (const { command, settings } of report.sections) {
    const rows: [string, string][] = [];
    for (const [name, { value, origin }] of settings) {
      const items = Array.isArray(value) ? value : [value];
      if (items.length === 0 || items[0] === undefined) {
        rows.push([`# ${name} =`, `${describeOrigin(origin)}: unset`]);
        continue;
      }
      items.forEach((item, index) => rows.push([`${name} = ${String(item)}`, describeItemOrigin(origin, index)]));
    }
    const width = Math.min(MAX_ALIGN_COLUMN, Math.max(...rows.map(([setting]) => setting.length)));
    out.push("", `[${command}]`, ...rows.map(([setting, from]) => `${setting.padEnd(width)}  # ${from}`));
  }
  return `${out.join("\n")}\n`;
}

/** The line of a repeatable option's item, when the items came from several lines of a file. */
function describeItemOrigin(origin: Origin, index: number): string {
  if (origin.kind !== "file") return describeOrigin(origin);
  return describeOrigin({ ...origin, lines: [origin.lines[index] ?? origin.lines[0]!] });
}

export function configJson(report: ConfigReport): Record<string, unknown> {
  const result: Record<string, unknown> = { files: report.files.map(({ path, found }) => ({ path, found })) };
  for (const { command, settings } of report.sections) {
    const entries: Record<string, unknown> = {};
    for (const [name, { value, origin }] of settings) entries[name] = { value: jsonValue(value), ...originJson(origin) };
    result[command] = entries;
  }
  return result;
}

function jsonValue(value: SettingValue): string | string[] | boolean | null {
  return value === undefined ? null : value;
}

function originJson(origin: Origin): Record<string, unknown> {
  switch (origin.kind) {
    case "flag":
      return { source: "flag", flag: origin.flag };
    case "env":
      return { source: "env", env: origin.name };
    case "file":
      return { source: "file", file: origin.path, lines: origin.lines };
    case "default":
      return { source: "default" };
  }
}
