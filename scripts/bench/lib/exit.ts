/**
 * How a benchmark ends when it is interrupted or runs too long: SIGINT or SIGTERM, or the watchdog after
 * `watchdogMs`, runs `cleanup` (processes, tc rules, temp dirs) and exits, 130 after a signal, 124 after
 * the watchdog. Returns the watchdog's timer: clear it once the benchmark has finished.
 */
export function cleanUpOnExit(cleanup: () => Promise<void>, options: { log: (line: string) => void; watchdogMs: number }): ReturnType<typeof setTimeout> {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      options.log(`${signal}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  return setTimeout(() => {
    options.log(`watchdog: still running after ${options.watchdogMs / 60_000} min; cleaning up`);
    void cleanup().finally(() => process.exit(124));
  }, options.watchdogMs);
}
