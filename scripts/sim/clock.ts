/**
 * A simulated clock: an event queue ordered by time, run as fast as the CPU allows. The DHT node takes
 * it through its `timers` and `clock` options, so the project's own code runs on simulated time.
 *
 * Promise continuations are part of an event: after each event the queue waits for a macrotask, which
 * lets every microtask the event started (an answer resolving a query, a lookup pumping the next one)
 * run at the event's time before the clock moves on.
 */
import type { Timers } from "../../src/dht/rpc.ts";

/** What the DHT's wall clock reads at simulated time 0 (any fixed date; only differences matter). */
export const SIM_EPOCH_MS = Date.UTC(2026, 6, 11);

export interface SimEvent {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class SimClock {
  private time = 0;
  private seq = 0;
  private readonly heap: SimEvent[] = [];
  /** Events run so far (for the report's cost figures). */
  executed = 0;

  /** Simulated milliseconds since the start. */
  now(): number {
    return this.time;
  }

  /** Runs `fn` at absolute time `at` (never in the past). Events at one time run in the order they were added. */
  at(at: number, fn: () => void): SimEvent {
    const event: SimEvent = { at: Math.max(at, this.time), seq: this.seq++, fn, cancelled: false };
    this.push(event);
    return event;
  }

  after(ms: number, fn: () => void): SimEvent {
    return this.at(this.time + Math.max(0, ms), fn);
  }

  cancel(event: SimEvent | undefined): void {
    if (event !== undefined) event.cancelled = true;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** The DHT transport's timer interface on this clock. */
  timers(): Timers {
    return {
      setTimeout: (fn, ms) => this.after(ms, fn),
      clearTimeout: (handle) => this.cancel(handle as SimEvent | undefined),
      now: () => this.time,
    };
  }

  /** Wall-clock ms for the DHT's storage expiry and tokens. */
  wallClock(): () => number {
    return () => SIM_EPOCH_MS + this.time;
  }

  /**
   * Runs events in time order until the queue is empty, `until` (ms) is reached, or `stop()` says so
   * (checked after each event). The clock ends at the last event run, or at `until` if given and reached.
   */
  async run(options: { until?: number; stop?: () => boolean } = {}): Promise<void> {
    const until = options.until ?? Number.POSITIVE_INFINITY;
    await settle();
    for (;;) {
      const event = this.heap[0];
      if (event === undefined) break;
      if (event.at > until) {
        this.time = until;
        return;
      }
      this.pop();
      if (event.cancelled) continue;
      this.time = event.at;
      this.executed++;
      event.fn();
      await settle();
      if (options.stop?.()) return;
    }
    if (Number.isFinite(until)) this.time = Math.max(this.time, until);
  }

  /** Runs until `promise` settles (the queue must keep it moving), and returns its value. */
  async runUntil<T>(promise: Promise<T>): Promise<T> {
    let done = false;
    const watched = promise.finally(() => {
      done = true;
    });
    await this.run({ stop: () => done });
    if (!done) throw new Error("SimClock: the event queue ran dry before the awaited work finished");
    return watched;
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = event;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
      if (!before(heap[child]!, last)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Lets every pending microtask run (a macrotask comes only after the microtask queue is empty). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
