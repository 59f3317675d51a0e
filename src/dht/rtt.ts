/**
 * Adaptive query timeouts from measured round-trip times, so that a lookup never waits a fixed 9 s on a
 * node that is gone (the original apt-p2p's weakness). Per node: smoothed RTT and variance as TCP does
 * (RFC 6298). For a node never measured: a high percentile of recent RTTs to any node. Pure.
 */

/** Never time out sooner than this: on a LAN RTTs are below a millisecond, but event-loop stalls on a busy machine reach tens of ms, and a premature timeout only costs a resend. */
export const MIN_TIMEOUT_MS = 50;
/** Never wait longer than this for one datagram's answer; a retry follows. */
export const MAX_TIMEOUT_MS = 2_000;
/** Before any RTT was measured (cold start). */
export const INITIAL_TIMEOUT_MS = 1_000;
/** Recent samples kept for the global estimate. */
const GLOBAL_SAMPLES = 256;
/** The global percentile is recomputed after this many new samples (and after each of the first ones). */
const P90_REFRESH_SAMPLES = 16;
/** Per-node estimates kept (least recently used go first): bounds memory whatever the traffic. */
const MAX_TRACKED_NODES = 4_096;

interface Estimate {
  srtt: number;
  rttvar: number;
}

export class RttTracker {
  private readonly nodes = new Map<string, Estimate>();
  private readonly recent: number[] = [];
  private next = 0;
  /** Samples taken so far, rounded down to a multiple of P90_REFRESH_SAMPLES (when the cache was made). */
  private samples = 0;
  private taken = 0;
  private cachedAt = -1;
  private cachedP90: number | undefined;
  private readonly minTimeoutMs: number;
  private readonly maxTimeoutMs: number;

  constructor(options: { minTimeoutMs?: number; maxTimeoutMs?: number } = {}) {
    this.minTimeoutMs = options.minTimeoutMs ?? MIN_TIMEOUT_MS;
    this.maxTimeoutMs = options.maxTimeoutMs ?? MAX_TIMEOUT_MS;
  }

  sample(node: string, rttMs: number): void {
    const rtt = Math.max(0, rttMs);
    const known = this.nodes.get(node);
    if (known === undefined) {
      this.nodes.set(node, { srtt: rtt, rttvar: rtt / 2 });
      if (this.nodes.size > MAX_TRACKED_NODES) this.nodes.delete(this.nodes.keys().next().value!);
    } else {
      known.rttvar = 0.75 * known.rttvar + 0.25 * Math.abs(known.srtt - rtt);
      known.srtt = 0.875 * known.srtt + 0.125 * rtt;
      this.nodes.delete(node); // Re-insert: the Map's order is the LRU order.
      this.nodes.set(node, known);
    }
    if (this.recent.length < GLOBAL_SAMPLES) this.recent.push(rtt);
    else this.recent[this.next] = rtt;
    this.next = (this.next + 1) % GLOBAL_SAMPLES;
    this.taken++;
    if (this.taken < P90_REFRESH_SAMPLES || this.taken % P90_REFRESH_SAMPLES === 0) this.samples = this.taken;
  }

  /**
   * How long to wait for this node's answer to send number `attempt` (1 or 2) before resending, then
   * failing. The first wait is capped by what recent answers from any node took: a node's own estimate
   * may be stale (measured while the network was busy, or before it went away), and a node that misses
   * the cap is only marked slow and asked again. The second wait allows the larger of the two.
   */
  timeoutFor(node: string, attempt = 1): number {
    const global = this.unknownNodeTimeout();
    const own = this.estimateFor(node) ?? global;
    const raw = attempt === 1 ? Math.min(own, global) : Math.max(own, global);
    return Math.min(this.maxTimeoutMs, Math.max(this.minTimeoutMs, raw));
  }

  /** A measured node's own estimate (smoothed RTT + 4 × variance), unclamped; undefined if never measured. */
  estimateFor(node: string): number | undefined {
    const known = this.nodes.get(node);
    return known === undefined ? undefined : known.srtt + 4 * known.rttvar;
  }

  /** Median of recent RTTs, for stats; undefined before any sample. */
  median(): number | undefined {
    return this.percentile(0.5);
  }

  percentile(p: number): number | undefined {
    if (this.recent.length === 0) return undefined;
    const sorted = [...this.recent].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  }

  private unknownNodeTimeout(): number {
    // Nodes we never measured are a mix of near and far: their timeout is a high percentile of what
    // we see, with room for the slower tail. Recomputed every few samples, not on every query.
    if (this.cachedAt !== this.samples) {
      this.cachedP90 = this.percentile(0.9);
      this.cachedAt = this.samples;
    }
    return this.cachedP90 === undefined ? INITIAL_TIMEOUT_MS : 2 * this.cachedP90;
  }
}
