/**
 * Configuration: flag > environment > file > default, the files' order and sections, the errors a bad
 * file gives, and `apt-p2p config`. Runs the real program in-process with its files in a temp dir.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_CODES } from "../../src/cli/exit-codes.ts";
import { runCli } from "../../src/cli/main.ts";
import { memoryIO as cliMemoryIO } from "../helpers/cli.ts";

let work: string;
let systemFile: string;
let userHome: string;

/** XDG_CONFIG_HOME points at our user file, so that the tester's own ~/.config is never read. */
function memoryIO(env: Record<string, string> = {}) {
  return cliMemoryIO({ env: { XDG_CONFIG_HOME: userHome, HOME: work, ...env }, cwd: work });
}

let fileCounter = 0;
async function confFile(...lines: string[]): Promise<string> {
  const path = join(work, `test-${fileCounter++}.conf`);
  await writeFile(path, lines.map((l) => `${l}\n`).join(""));
  return path;
}

async function setFiles(system: string[] | null, user: string[] | null): Promise<void> {
  await rm(systemFile, { force: true });
  await rm(join(userHome, "apt-p2p", "apt-p2p.conf"), { force: true });
  if (system !== null) await writeFile(systemFile, system.map((l) => `${l}\n`).join(""));
  if (user !== null) await writeFile(join(userHome, "apt-p2p", "apt-p2p.conf"), user.map((l) => `${l}\n`).join(""));
}

interface Entry {
  value: unknown;
  source: string;
  file?: string;
  lines?: number[];
  env?: string;
  flag?: string;
}

/** `apt-p2p config --json` run with these arguments and environment. */
async function resolved(argv: string[], env: Record<string, string> = {}): Promise<{ serve: Record<string, Entry>; get: Record<string, Entry> }> {
  const io = memoryIO(env);
  const code = await runCli(["config", "--json", ...argv], io, { systemConfigFile: systemFile });
  expect(io.err).toBe("");
  expect(code).toBe(0);
  return JSON.parse(io.out) as { serve: Record<string, Entry>; get: Record<string, Entry> };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-config-"));
  systemFile = join(work, "etc", "apt-p2p.conf");
  userHome = join(work, "xdg-config");
  await mkdir(join(work, "etc"), { recursive: true });
  await mkdir(join(userHome, "apt-p2p"), { recursive: true });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("precedence: flag > environment > file > default", () => {
  const FILE = ["port = 9000", "log-level = warn", "[serve]", "seed-dir = /srv/a", "seed-dir = /srv/b", "[get]", "jobs = 8", "log-level = debug", "dht = no"];
  type Row = [string, "serve" | "get", string, string[], Record<string, string>, unknown, Partial<Entry>];
  const rows: Row[] = [
    ["a value nothing sets is the default", "serve", "upload-limit", [], {}, "0", { source: "default" }],
    ["the file beats the default", "serve", "port", [], {}, "9000", { source: "file", lines: [1] }],
    ["the environment beats the file", "serve", "port", [], { APT_P2P_PORT: "9100" }, "9100", { source: "env", env: "APT_P2P_PORT" }],
    ["a flag beats the environment", "serve", "port", ["--port", "9200"], { APT_P2P_PORT: "9100" }, "9200", { source: "flag", flag: "--port" }],
    ["a repeatable option takes every line of the file", "serve", "seed-dir", [], {}, ["/srv/a", "/srv/b"], { source: "file", lines: [4, 5] }],
    ["a repeatable variable splits on ':'", "serve", "seed-dir", [], { APT_P2P_SEED_DIR: "/c:/d" }, ["/c", "/d"], { source: "env" }],
    ["repeated flags replace the file's list", "serve", "seed-dir", ["--seed-dir", "/e", "--seed-dir", "/f"], {}, ["/e", "/f"], { source: "flag" }],
    ["a [get] key applies to get", "get", "jobs", [], {}, "8", { source: "file", lines: [7] }],
    ["a section's key beats the unscoped one for its command", "get", "log-level", [], {}, "debug", { source: "file", lines: [8] }],
    ["another section's key does not reach a command", "serve", "log-level", [], {}, "warn", { source: "file", lines: [2] }],
    ["an on/off key reads yes/no", "get", "dht", [], {}, false, { source: "file", lines: [9] }],
    ["the positive flag undoes a file's 'no'", "get", "dht", ["--dht"], {}, true, { source: "flag", flag: "--dht" }],
    ["an empty variable counts as unset", "serve", "port", [], { APT_P2P_PORT: "" }, "9000", { source: "file" }],
  ];

  test.each(rows)("%s", async (_title, command, name, argv, env, value, origin) => {
    const path = await confFile(...FILE);
    const entry = (await resolved(["--config", path, ...argv], env))[command][name]!;
    expect(entry.value).toEqual(value);
    expect(entry).toMatchObject(origin.source === "file" ? { ...origin, file: path } : origin);
  });

  test("later files override earlier ones: /etc, then the user's, then --config", async () => {
    await setFiles(["port = 1001", "bind = 10.0.0.1", "cache-size = 1G"], ["port = 1002", "bind = 10.0.0.2"]);
    try {
      const explicit = await confFile("port = 1003");
      const { serve } = await resolved(["--config", explicit]);
      expect(serve.port).toMatchObject({ value: "1003", file: explicit });
      expect(serve.bind).toMatchObject({ value: "10.0.0.2", file: join(userHome, "apt-p2p", "apt-p2p.conf") });
      expect(serve["cache-size"]).toMatchObject({ value: "1G", file: systemFile, lines: [3] });
    } finally {
      await setFiles(null, null);
    }
  });

  test("an unscoped key of a later file beats a [serve] key of an earlier file", async () => {
    await setFiles(["[serve]", "port = 1001"], ["port = 1002"]);
    try {
      expect((await resolved([])).serve.port!.value).toBe("1002");
    } finally {
      await setFiles(null, null);
    }
  });

  test("APT_P2P_CONFIG names the extra file, and --config beats it", async () => {
    const byEnv = await confFile("port = 2001");
    const byFlag = await confFile("port = 2002");
    expect((await resolved([], { APT_P2P_CONFIG: byEnv })).serve.port!.value).toBe("2001");
    expect((await resolved(["--config", byFlag], { APT_P2P_CONFIG: byEnv })).serve.port!.value).toBe("2002");
  });

  test("--config is accepted before the command too", async () => {
    const path = await confFile("port = 2003");
    const io = memoryIO();
    expect(await runCli(["--config", path, "config", "--json"], io, { systemConfigFile: systemFile })).toBe(0);
    expect(JSON.parse(io.out).serve.port.value).toBe("2003");
  });

  test("without any file every value is a default", async () => {
    const { serve, get } = await resolved([]);
    for (const entry of [...Object.values(serve), ...Object.values(get)]) expect(entry.source).toBe("default");
    expect(serve["seed-dir"]!.value).toEqual([]);
    expect(serve["cache-size"]!.value).toBeNull();
    expect(serve["cache-dir"]!.value).toBe(join(work, ".cache", "apt-p2p"));
  });
});

describe("bad configuration", () => {
  /** Runs `command` with a --config file of `lines`; returns exit code, message and the file's path. */
  async function refused(lines: string[], command: string[] = ["serve"]) {
    const path = await confFile(...lines);
    const io = memoryIO();
    const code = await runCli([...command, "--config", path], io, { systemConfigFile: systemFile });
    return { code, err: io.err, path };
  }

  test.each([
    ["an unknown key", ["# comment", "", "prot = 9977"], 3, ["Unknown key 'prot'", "expected one of", "port", "seed-dir", "upload-limit"]],
    ["a key of another command in a section", ["[serve]", "jobs = 4"], 2, ["Unknown key 'jobs' in [serve]", "expected one of", "port"]],
    ["a bad port", ["port = 70000"], 1, ["Invalid port '70000'", "expected a port number from 0 to 65535"]],
    ["a bad choice", ["log-level = verbose"], 1, ["Invalid log-level 'verbose'", "expected one of debug, info, warn, error"]],
    ["a bad on/off value", ["[serve]", "seed-apt-archives = maybe"], 2, ["Invalid seed-apt-archives 'maybe'", "expected true or false"]],
    ["a bad rate", ["upload-limit = 2Mb/s"], 1, ["upload-limit: Invalid rate '2Mb/s'", "Write a rate such as 2MB/s"]],
    ["a bad address block", ["status-allow = 10.0.0.0/33"], 1, ["Invalid status-allow item '10.0.0.0/33'", "expected ADDRESS or ADDRESS/BITS"]],
    ["an empty cache size", ["cache-size ="], 1, ["Invalid cache size ''", "a share of the disk such as 5%"]],
    ["a line that is not key = value", ["port 9977"], 1, ["Cannot read 'port 9977'", "expected 'key = value', a [serve] or [get] section header"]],
    ["an unknown section", ["[daemon]"], 1, ["Unknown section '[daemon]'", "expected [serve] or [get]"]],
  ])("%s is a usage error naming the file, the line and what is accepted", async (_title, lines, line, parts) => {
    const { code, err, path } = await refused(lines);
    expect(code).toBe(EXIT_CODES.USAGE);
    expect(err).toStartWith(`E: ${path}:${line}: `);
    for (const part of parts) expect(err).toContain(part);
  });

  test("a broken file stops every command, even one that would not read the broken key", async () => {
    const { code, err, path } = await refused(["[get]", "jobs = 0"], ["apt-config"]);
    expect(code).toBe(EXIT_CODES.USAGE);
    expect(err).toContain(`${path}:2: Invalid jobs '0': expected a whole number from 1 to 64`);
  });

  test("a missing --config file is an error; missing default files are not", async () => {
    const io = memoryIO();
    const missing = join(work, "no-such.conf");
    expect(await runCli(["config", "--config", missing], io, { systemConfigFile: join(work, "absent.conf") })).toBe(EXIT_CODES.USAGE);
    expect(io.err).toBe(`E: Cannot read configuration file ${missing}: no such file\n`);
  });

  test("a bad variable names the variable", async () => {
    const io = memoryIO({ APT_P2P_UPLOAD_LIMIT: "fast", APT_P2P_PORT: "x" });
    expect(await runCli(["config"], io, { systemConfigFile: systemFile })).toBe(EXIT_CODES.USAGE);
    expect(io.err).toContain("Invalid APT_P2P_PORT 'x'");
  });

  test("a bad flag keeps the flag's message", async () => {
    const io = memoryIO();
    expect(await runCli(["get", "--jobs", "0", "hello"], io, { systemConfigFile: systemFile })).toBe(EXIT_CODES.USAGE);
    expect(io.err).toBe("E: Invalid --jobs '0': expected a whole number from 1 to 64\n");
  });
});

describe("apt-p2p config", () => {
  test("prints serve's and get's settings as a configuration file, each with its origin", async () => {
    const path = await confFile("# mine", "[get]", "jobs = 8", "[serve]", "seed-dir = /srv/a", "seed-dir = /srv/b");
    const io = memoryIO({ APT_P2P_UPLOAD_LIMIT: "2MB/s" });
    expect(await runCli(["config", "--config", path, "--cache-size", "10G"], io, { systemConfigFile: systemFile })).toBe(0);
    const lines = io.out.split("\n").map((l) => l.replace(/ +#/, " #"));
    expect(lines).toContain(`#   ${systemFile} (not found)`);
    expect(lines).toContain(`#   ${path}`);
    const serve = lines.slice(lines.indexOf("[serve]"), lines.indexOf("[get]"));
    const get = lines.slice(lines.indexOf("[get]"));
    expect(serve).toContain("port = 9977 # default");
    expect(serve).toContain("upload-limit = 2MB/s # env APT_P2P_UPLOAD_LIMIT");
    expect(serve).toContain("cache-size = 10G # flag --cache-size");
    expect(serve).toContain(`seed-dir = /srv/a # ${path}:5`);
    expect(serve).toContain(`seed-dir = /srv/b # ${path}:6`);
    expect(serve).toContain("# sources = # default: unset");
    expect(get).toContain(`jobs = 8 # ${path}:3`);
    expect(serve.some((l) => l.startsWith("jobs"))).toBe(false);
  });

  test("its output, read back as a file, resolves to the same values", async () => {
    const path = await confFile("[serve]", "port = 9300", "status-allow = 10.0.0.0/8", "[get]", "refresh = yes");
    const io = memoryIO();
    expect(await runCli(["config", "--config", path], io, { systemConfigFile: systemFile })).toBe(0);
    const copy = await confFile(io.out);
    const { serve, get } = await resolved(["--config", copy]);
    expect(serve.port!.value).toBe("9300");
    expect(serve["status-allow"]!.value).toBe("10.0.0.0/8");
    expect(get.refresh!.value).toBe(true);
  });
});

describe("the settings reach the commands", () => {
  test("apt-config uses the port of [serve] and the host set in the environment", async () => {
    const sources = join(work, "plain.list");
    await writeFile(sources, "deb http://deb.example.org/debian bookworm main\n");
    const path = await confFile("[serve]", `sources = ${sources}`, "port = 9555");
    const io = memoryIO({ APT_P2P_HOST: "10.1.2.3" });
    expect(await runCli(["apt-config", "--config", path], io, { systemConfigFile: systemFile })).toBe(0);
    expect(io.out).toContain('Acquire::http::Proxy "http://10.1.2.3:9555";');
  });

  test("get's warnings follow --log-format and --log-level", async () => {
    const sources = join(work, "ftp.list");
    await writeFile(sources, "deb ftp://ftp.example.org/debian bookworm main\n");
    const getWith = async (...flags: string[]) => {
      const io = memoryIO();
      const code = await runCli(["get", "--sources", sources, "--cache-dir", join(work, "get-cache"), ...flags, "hello"], io, { systemConfigFile: systemFile });
      return { code, lines: io.err.trim().split("\n") };
    };
    const text = await getWith();
    expect(text.code).toBe(EXIT_CODES.NO_SOURCES);
    expect(text.lines[0]).toStartWith(`W: ${sources}:1: skipping ftp://`);

    const json = await getWith("--log-format", "json");
    expect(JSON.parse(json.lines[0]!)).toMatchObject({ level: "warn", msg: expect.stringContaining("skipping ftp://") });
    // The error that ends the run is not a log line: it is printed as always.
    expect(json.lines[1]).toStartWith("E: No APT sources found");

    const quiet = await getWith("--log-level", "error");
    expect(quiet.lines[0]).toStartWith("E: No APT sources found");
  });

  test("serve logs as the file says: JSON lines, and nothing below the level", async () => {
    const sources = join(work, "serve.list");
    await writeFile(sources, "deb [trusted=yes] http://127.0.0.1:9/debian stable main\n");
    const common = [`sources = ${sources}`, `apt-dir = ${join(work, "apt")}`, `state-dir = ${join(work, "state")}`, `cache-dir = ${join(work, "cache")}`];
    const serveWith = async (...extra: string[]) => {
      const path = await confFile("[serve]", "bind = 127.0.0.1", "port = 0", "seed-apt-archives = no", ...common, ...extra);
      const io = memoryIO();
      const code = await runCli(["serve", "--config", path], io, { systemConfigFile: systemFile, stopServe: () => Promise.resolve() });
      return { code, err: io.err };
    };

    const json = await serveWith("log-format = json");
    expect(json.code).toBe(0);
    const records = json.err.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.some((r) => r.level === "info" && /^listening on 127\.0\.0\.1:\d+ /.test(String(r.msg)))).toBe(true);
    expect(records.some((r) => r.msg === "shutting down")).toBe(true);
    for (const r of records) expect(Object.keys(r).slice(0, 3)).toEqual(["time", "level", "msg"]);

    const quiet = await serveWith("log-level = warn");
    expect(quiet).toEqual({ code: 0, err: "" });
  });
});
