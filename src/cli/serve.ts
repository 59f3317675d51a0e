/** `apt-p2p serve`: runs the daemon until SIGINT or SIGTERM. */
import { Daemon, type ServeConfig } from "../daemon/daemon.ts";
import type { CliIO } from "./io.ts";

export async function runServe(config: ServeConfig, io: CliIO, stop: Promise<void>): Promise<void> {
  const log = (line: string) => io.stderr(`${new Date().toISOString()} ${line}\n`);
  const daemon = await Daemon.start(config, log);
  await stop;
  log("shutting down");
  await daemon.close();
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}
