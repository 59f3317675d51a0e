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

/**
 * Runs a benchmark's `main` to its end: a failure is printed with its stack and whatever `onFailure`
 * adds (daemons' logs); the watchdog is cleared and `cleanup` runs in every case; the process then exits
 * 0, or 1 after a failure.
 */
export async function runBenchmark(
  name: string,
  main: () => Promise<void>,
  options: { cleanup: () => Promise<void>; watchdog?: ReturnType<typeof setTimeout>; onFailure?: () => Promise<void> | void },
): Promise<never> {
  let exitCode = 0;
  try {
    await main();
  } catch (err) {
    exitCode = 1;
    console.error(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await options.onFailure?.();
  } finally {
    clearTimeout(options.watchdog);
    await options.cleanup();
  }
  process.exit(exitCode);
}
