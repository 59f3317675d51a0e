/**
 * Logs: one line per event, with a level, as text (`<ISO time> <level> <message> key=value...`) or as one
 * JSON object (`{"time","level","msg",...fields}`) for journald and log shippers. Per-piece events belong
 * at debug: at info a busy daemon must stay readable.
 */
import type { CliIO } from "./cli/io.ts";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Extra facts about an event, shown as key=value in text and as members in JSON. */
export type LogFields = Record<string, unknown>;

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** Receives each line, newline included. */
  write: (line: string) => void;
  now?: () => Date;
}

/** Members of a JSON line that fields cannot replace. */
const RESERVED = new Set(["time", "level", "msg"]);

export class Logger {
  readonly level: LogLevel;
  readonly format: LogFormat;
  private readonly write: (line: string) => void;
  private readonly now: () => Date;
  private readonly fields: LogFields;

  constructor(options: LoggerOptions, fields: LogFields = {}) {
    this.level = options.level;
    this.format = options.format;
    this.write = options.write;
    this.now = options.now ?? (() => new Date());
    this.fields = fields;
  }

  /** Whether a level is written: callers skip building costly messages when it is not. */
  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(this.level);
  }

  log(level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return;
    const all = { ...this.fields, ...fields };
    const time = this.now().toISOString();
    this.write(this.format === "json" ? jsonLine(time, level, msg, all) : textLine(time, level, msg, all));
  }

  // Arrow properties, so that `logger.info` can be handed on where a `(line: string) => void` is taken.
  readonly debug = (msg: string, fields?: LogFields): void => this.log("debug", msg, fields);
  readonly info = (msg: string, fields?: LogFields): void => this.log("info", msg, fields);
  readonly warn = (msg: string, fields?: LogFields): void => this.log("warn", msg, fields);
  readonly error = (msg: string, fields?: LogFields): void => this.log("error", msg, fields);

  /** A logger that adds `fields` to every line, e.g. `{ component: "proxy" }`. */
  child(fields: LogFields): Logger {
    return new Logger({ level: this.level, format: this.format, write: this.write, now: this.now }, { ...this.fields, ...fields });
  }
}

/** A logger writing to the CLI's stderr. */
export function stderrLogger(io: Pick<CliIO, "stderr">, level: LogLevel, format: LogFormat): Logger {
  return new Logger({ level, format, write: io.stderr });
}

function textLine(time: string, level: LogLevel, msg: string, fields: LogFields): string {
  let line = `${time} ${level} ${oneLine(msg)}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = oneLine(typeof value === "string" ? value : stringify(value));
    // Quoted when a reader could not tell where the value ends.
    line += ` ${key}=${text === "" || /[\s"=]/.test(text) ? JSON.stringify(text) : text}`;
  }
  return `${line}\n`;
}

function jsonLine(time: string, level: LogLevel, msg: string, fields: LogFields): string {
  const record: LogFields = { time, level, msg };
  for (const [key, value] of Object.entries(fields)) if (!RESERVED.has(key)) record[key] = value;
  return `${stringify(record)}\n`;
}

/** JSON that does not throw on the values log calls pass: errors, bigints, byte counts. */
function stringify(value: unknown): string {
  return (
    JSON.stringify(value, (_key, v: unknown) => {
      if (v instanceof Error) return v.message;
      if (typeof v === "bigint") return v.toString();
      return v;
    }) ?? String(value)
  );
}

/** One event, one line: a message with newlines (a stack, a server's body) is kept on its line. */
function oneLine(text: string): string {
  return text.replace(/\r?\n/g, "\\n");
}

/**
 * A stderr for code that still writes APT-style lines ("W: message", as `get` does): each line is taken
 * at its level (W: warn, E: error, anything else info) so that --log-level filters it. In JSON each
 * becomes a JSON line; in text it stays as written, as a person at a terminal expects of an APT tool.
 */
export function logAptLines(logger: Logger, plain: (text: string) => void): (text: string) => void {
  return (text) => {
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const tag = /^([WEN]): /.exec(line)?.[1];
      const level: LogLevel = tag === "W" ? "warn" : tag === "E" ? "error" : "info";
      if (!logger.enabled(level)) continue;
      if (logger.format === "text") plain(`${line}\n`);
      else logger.log(level, tag === undefined ? line : line.slice(3));
    }
  };
}
