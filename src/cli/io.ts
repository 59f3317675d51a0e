/** What a command may touch of the process, injected so that commands run in-process in tests. */
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

export function processIO(): CliIO {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    isTTY: process.stdout.isTTY === true,
    env: process.env,
    cwd: process.cwd(),
    ttyStream: process.stdout.isTTY === true ? process.stdout : undefined,
  };
}
