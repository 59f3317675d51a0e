/** Runs the apt-p2p CLI as a subprocess, the way a user would. */
import { join } from "node:path";
import type { CliIO } from "../../src/cli/io.ts";

export const REPO_ROOT = join(import.meta.dir, "../..");
export const BOOKWORM = join(REPO_ROOT, "../shared/fixtures/debian-bookworm");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runApt(args: string[], options: { env?: Record<string, string>; cwd?: string; binary?: string } = {}): Promise<CliResult> {
  const cmd = options.binary !== undefined ? [options.binary, ...args] : [process.execPath, join(REPO_ROOT, "src/cli.ts"), ...args];
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, stdout, stderr };
}

/** The JSON lines of a --json run. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A CliIO that keeps what the program writes, for in-process runs; not a terminal. */
export function memoryIO(options: { env?: Record<string, string | undefined>; cwd?: string } = {}): CliIO & { out: string; err: string } {
  const io = {
    out: "",
    err: "",
    stdout: (text: string) => {
      io.out += text;
    },
    stderr: (text: string) => {
      io.err += text;
    },
    isTTY: false,
    env: options.env ?? {},
    cwd: options.cwd ?? "/",
  };
  return io;
}
