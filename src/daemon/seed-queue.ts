/**
 * Files the proxy just cached are announced once it has been idle for a moment, not one by one as they
 * land: announcing hashes each file again and sends tens of DHT messages, which compete with the
 * downloads APT is waiting for (on a 2-core machine, about a second over a 200 MB install). Announces
 * can wait a few seconds; a proxy that never goes idle still announces every `maxWaitMs`.
 */

export interface SeedQueueOptions {
  /** Announces one cached file. */
  seed: (sha256: string) => Promise<void>;
  /** True while downloads are running. */
  busy: () => boolean;
  log: (line: string) => void;
  /** Idle time before the queue is announced. */
  quietMs?: number;
  /** The longest a file waits, busy or not. */
  maxWaitMs?: number;
  now?: () => number;
}

export const SEED_QUIET_MS = 2_000;
export const SEED_MAX_WAIT_MS = 60_000;

export class SeedQueue {
  private readonly pending = new Set<string>();
  private oldestAt: number | undefined;
  /** When a file last arrived: files landing one after another are an install still running. */
  private lastAddAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: SeedQueueOptions) {}

  add(sha256: string): void {
    if (this.closed) return;
    this.pending.add(sha256);
    this.lastAddAt = this.now();
    this.oldestAt ??= this.lastAddAt;
    this.schedule();
  }

  /** Files waiting to be announced. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Stops: what is waiting is dropped (the seeder's scan of the cache at the next start announces it),
   * and an announce running is let finish.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
    await this.flushing;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = this.now();
      const waited = now - (this.oldestAt ?? now);
      // Quiet means no download running now and no file landed for a while: between two files of an
      // install nothing may be running for a moment, and announcing then competes with the next ones.
      const quiet = !this.options.busy() && now - this.lastAddAt >= (this.options.quietMs ?? SEED_QUIET_MS);
      if (!quiet && waited < (this.options.maxWaitMs ?? SEED_MAX_WAIT_MS)) return this.schedule();
      void this.flush();
    }, this.options.quietMs ?? SEED_QUIET_MS);
    this.timer.unref?.();
  }

  private flush(): Promise<void> {
    const batch = [...this.pending];
    this.pending.clear();
    this.oldestAt = undefined;
    this.flushing = this.flushing.then(async () => {
      for (const sha256 of batch) {
        await this.options.seed(sha256).catch((err: unknown) => this.options.log(`seeding ${sha256} failed: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
    return this.flushing;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}
