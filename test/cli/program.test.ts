import { describe, expect, test } from "bun:test";
import packageJson from "../../package.json";
import { EXIT_CODES } from "../../src/cli/exit-codes.ts";
import { reportError, runCli } from "../../src/cli/main.ts";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import { memoryIO } from "../helpers/cli.ts";


describe("the CLI program", () => {
  test("--version prints the package version", async () => {
    const io = memoryIO();
    expect(await runCli(["--version"], io)).toBe(0);
    expect(io.out.trim()).toBe(packageJson.version);
  });

  test("--help lists the commands and the exit codes", async () => {
    const io = memoryIO();
    expect(await runCli(["--help"], io)).toBe(0);
    expect(io.out).toContain("get [options] <package...>");
    expect(io.out).toContain("10  destination or cache not writable");
  });

  test("get --help documents every option", async () => {
    const io = memoryIO();
    expect(await runCli(["get", "--help"], io)).toBe(0);
    for (const option of ["--dest", "--sources", "--cache-dir", "--arch", "--refresh", "--json", "--quiet", "--jobs"]) {
      expect(io.out).toContain(option);
    }
  });

  test.each([
    [["serve", "--help"], ["--port", "--bind", "--bootstrap", "--state-dir", "--cache-dir"]],
    [["dht", "stats", "--help"], ["--json", "--daemon"]],
    [["dht", "lookup", "--help"], ["<package-or-key>", "--json", "--daemon", "--sources"]],
    [["dht", "--help"], ["stats", "lookup"]],
  ])("%p documents its options", async (argv, options) => {
    const io = memoryIO();
    expect(await runCli(argv, io)).toBe(0);
    for (const option of options) expect(io.out).toContain(option);
  });

  test("serve refuses a port that is not a port number", async () => {
    const io = memoryIO();
    expect(await runCli(["serve", "--port", "70000"], io)).toBe(EXIT_CODES.USAGE);
    expect(io.err).toContain("Invalid --port '70000'");
  });

  test("serve refuses a malformed bootstrap entry", async () => {
    const io = memoryIO();
    expect(await runCli(["serve", "--port", "0", "--bootstrap", "nocolon"], io)).toBe(EXIT_CODES.USAGE);
    expect(io.err).toContain("Invalid --bootstrap entry 'nocolon'");
  });

  test("an unknown command or option is a usage error", async () => {
    const io = memoryIO();
    expect(await runCli(["fetch", "hello"], io)).toBe(EXIT_CODES.USAGE);
    expect(io.err).toContain("unknown command");
    expect(await runCli(["get", "--no-such-flag", "hello"], io)).toBe(EXIT_CODES.USAGE);
  });

  test("get without a package is a usage error", async () => {
    const io = memoryIO();
    expect(await runCli(["get"], io)).toBe(EXIT_CODES.USAGE);
    expect(io.err).toContain("missing required argument");
  });

  test("--json and --quiet together are refused", async () => {
    const io = memoryIO();
    expect(await runCli(["get", "--json", "--quiet", "hello"], io)).toBe(EXIT_CODES.USAGE);
  });

  test("a malformed package request is a usage error naming it", async () => {
    const io = memoryIO();
    expect(await runCli(["get", "--sources", "/nonexistent", "Not A Name"], io)).toBe(EXIT_CODES.USAGE);
    expect(io.err).toContain("Invalid package request 'Not A Name'");
  });
});

describe("reportError()", () => {
  test("every error code has its own exit code, except the two kinds of sources problem", () => {
    const codes = Object.values(ErrorCode).map((c) => EXIT_CODES[c]);
    expect(new Set(codes).size).toBe(codes.length - 1);
    expect(EXIT_CODES[ErrorCode.NoSources]).toBe(EXIT_CODES[ErrorCode.BadSources]);
  });

  test("prints the message and its hints, and returns the code's exit code", () => {
    const io = memoryIO();
    const code = reportError(new AptP2pError(ErrorCode.UnknownVersion, "Unknown version 'x=1'", { hints: ["Try x=2"] }), io);
    expect(code).toBe(5);
    expect(io.err).toBe("E: Unknown version 'x=1'\n   Try x=2\n");
  });

  test("an unexpected exception is an internal error that asks for a report", () => {
    const io = memoryIO();
    expect(reportError(new TypeError("boom"), io)).toBe(1);
    expect(io.err).toContain("internal error");
    expect(io.err).toContain("please report it");
  });
});
