/** What a command may touch of the process, injected so that commands run in-process in tests. */
import { fstatSync, statSync, writeSync } from "node:fs";

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stdout is a terminal (progress bars) or not (plain lines). */
  isTTY: boolean;
  env: Record<string, string | undefined>;
  cwd: string;
  /** The terminal stream for progress bars, when isTTY. */
  ttyStream?: NodeJS.WriteStream;
}

/**
 * The process's own. Text goes to the descriptors with write(2): touching process.stdout or
 * process.stderr loads Node's stream machinery, which cost every start of the compiled binary about
 * 20 ms. The stream progress bars draw on is made only when stdout is a terminal, and only when asked for.
 */
export function processIO(): CliIO {
  const isTTY = isTerminal(1);
  return {
    stdout: (text) => writeText(1, text),
    stderr: (text) => writeText(2, text),
    isTTY,
    env: process.env,
    cwd: process.cwd(),
    get ttyStream() {
      return isTTY ? process.stdout : undefined;
    },
  };
}

/** A terminal is a character device other than /dev/null that isatty() accepts (node:tty is loaded only then). */
function isTerminal(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    if (!stat.isCharacterDevice() || stat.rdev === statSync("/dev/null").rdev) return false;
  } catch {
    return false;
  }
  return (require("node:tty") as typeof import("node:tty")).isatty(fd);
}

const encoder = new TextEncoder();

/**
 * Writes all of the text, waiting out a full non-blocking pipe. A reader that went away (EPIPE) or a
 * closed descriptor ends the output silently: the command's work does not depend on it being read.
 */
function writeText(fd: number, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) {
    try {
      bytes = bytes.subarray(writeSync(fd, bytes));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EAGAIN") Bun.sleepSync(1);
      else if (code === "EPIPE" || code === "EBADF") return;
      else throw err;
    }
  }
}
