/** `apt-p2p serve`: runs the daemon until SIGINT or SIGTERM. */
import { Daemon, type ServeConfig } from "../daemon/daemon.ts";
import { stderrLogger, type Logger } from "../log.ts";
import type { CliIO } from "./io.ts";

export async function runServe(config: ServeConfig, io: CliIO, stop: Promise<void>, logger: Logger = stderrLogger(io, "info", "text")): Promise<void> {
  // The daemon logs through `(line) => void` today, each line at info; it may take the Logger itself
  // (logger.warn, logger.debug) as its log calls learn their levels.
  const daemon = await Daemon.start(config, logger.info);
  await stop;
  logger.info("shutting down");
  await daemon.close();
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}
