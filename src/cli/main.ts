/** The process edge: run the program, turn errors into messages and exit codes. The only process.exit. */
import { CommanderError } from "commander";
import { AptP2pError } from "../errors.ts";
import { EXIT_CODES, EXIT_OK } from "./exit-codes.ts";
import { processIO, type CliIO } from "./io.ts";
import { buildProgram, type ProgramDeps } from "./program.ts";

/** Runs the CLI with argv (without node/bun and script) and returns the exit code. */
export async function runCli(argv: string[], io: CliIO = processIO(), deps: ProgramDeps = {}): Promise<number> {
  const program = buildProgram(io, deps);
  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT_OK;
  } catch (err) {
    return reportError(err, io);
  }
}

export function reportError(err: unknown, io: CliIO): number {
  if (err instanceof CommanderError) {
    // Commander has printed its own message (help, version, usage errors).
    return err.exitCode === 0 ? EXIT_OK : EXIT_CODES.USAGE;
  }
  if (err instanceof AptP2pError) {
    io.stderr(`E: ${err.message}\n`);
    for (const hint of err.hints) io.stderr(`   ${hint}\n`);
    return EXIT_CODES[err.code];
  }
  io.stderr(`E: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  io.stderr("   This is a bug in apt-p2p; please report it with the command you ran.\n");
  return EXIT_CODES.INTERNAL;
}

if (import.meta.main) {
  void runCli(process.argv.slice(2)).then((code) => process.exit(code));
}
