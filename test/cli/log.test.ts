/** The Logger (src/log.ts): levels, the text and JSON line formats, and APT-style lines passed through it. */
import { describe, expect, test } from "bun:test";
import { Logger, logAptLines, type LogFormat, type LogLevel } from "../../src/log.ts";

const NOW = new Date("2024-05-01T10:00:00.000Z");

function capture(level: LogLevel, format: LogFormat): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ level, format, write: (line) => lines.push(line), now: () => NOW }), lines };
}

describe("Logger", () => {
  test("text: '<ISO time> <level> <message>' and fields as key=value, one line per event", () => {
    const { logger, lines } = capture("info", "text");
    logger.info("listening on 0.0.0.0:9977");
    logger.warn("cannot fetch", { url: "http://deb.example.org/x", bytes: 42, why: "no route to host" });
    expect(lines).toEqual([
      "2024-05-01T10:00:00.000Z info listening on 0.0.0.0:9977\n",
      '2024-05-01T10:00:00.000Z warn cannot fetch url=http://deb.example.org/x bytes=42 why="no route to host"\n',
    ]);
  });

  test("json: one object per line, time, level and msg first, then the fields", () => {
    const { logger, lines } = capture("info", "json");
    logger.error("download failed", { url: "http://m/x.deb", err: new Error("hash mismatch"), size: 10n });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith("\n")).toBe(true);
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(Object.keys(record)).toEqual(["time", "level", "msg", "url", "err", "size"]);
    expect(record).toEqual({ time: NOW.toISOString(), level: "error", msg: "download failed", url: "http://m/x.deb", err: "hash mismatch", size: "10" });
  });

  test("fields cannot replace time, level or msg", () => {
    const { logger, lines } = capture("info", "json");
    logger.info("real", { msg: "fake", level: "error", time: "then" });
    expect(JSON.parse(lines[0]!)).toEqual({ time: NOW.toISOString(), level: "info", msg: "real" });
  });

  test.each([
    ["debug", ["debug", "info", "warn", "error"]],
    ["info", ["info", "warn", "error"]],
    ["warn", ["warn", "error"]],
    ["error", ["error"]],
  ] as const)("at level %s it writes %p", (level, written) => {
    const { logger, lines } = capture(level, "text");
    for (const at of ["debug", "info", "warn", "error"] as const) logger[at](`at ${at}`);
    expect(lines.map((l) => l.split(" ")[1])).toEqual([...written]);
    expect(logger.enabled("debug")).toBe(level === "debug");
  });

  test("a message with newlines stays on one line", () => {
    const { logger, lines } = capture("info", "text");
    logger.info("failed:\nstack line 1\r\nstack line 2");
    expect(lines).toEqual(["2024-05-01T10:00:00.000Z info failed:\\nstack line 1\\nstack line 2\n"]);
  });

  test("info can be handed on as a (line: string) => void, as the daemon takes it", () => {
    const { logger, lines } = capture("info", "text");
    const log: (line: string) => void = logger.info;
    log("joined the DHT: 8 contacts");
    expect(lines).toEqual(["2024-05-01T10:00:00.000Z info joined the DHT: 8 contacts\n"]);
  });

  test("child() adds its fields to every line", () => {
    const { logger, lines } = capture("info", "json");
    logger.child({ component: "proxy" }).info("cached", { url: "u" });
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: "cached", component: "proxy", url: "u" });
  });
});

describe("logAptLines()", () => {
  test("text keeps APT's lines as written and filters them by level", () => {
    const { logger } = capture("error", "text");
    const plain: string[] = [];
    const write = logAptLines(logger, (t) => plain.push(t));
    write("W: skipping a source\n");
    write("E: fatal\n");
    expect(plain).toEqual(["E: fatal\n"]);
  });

  test("json turns each line into a record at its level, without the tag", () => {
    const { logger, lines } = capture("info", "json");
    logAptLines(logger, () => expect.unreachable())("W: one\nplain two\n");
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>).map((r) => [r.level, r.msg])).toEqual([
      ["warn", "one"],
      ["info", "plain two"],
    ]);
  });
});
