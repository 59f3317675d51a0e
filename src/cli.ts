#!/usr/bin/env bun
/** Entry point of the apt-p2p command: `bun src/cli.ts ...` in development, dist/apt-p2p when compiled. */
import { runCli } from "./cli/main.ts";

// No top-level await: `bun build --compile --bytecode` (a start about a third faster) does not allow it.
void runCli(process.argv.slice(2)).then((code) => process.exit(code));
