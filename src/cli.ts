#!/usr/bin/env bun
/** Entry point of the apt-p2p command: `bun src/cli.ts ...` in development, dist/apt-p2p when compiled. */
import { runCli } from "./cli/main.ts";

process.exit(await runCli(process.argv.slice(2)));
