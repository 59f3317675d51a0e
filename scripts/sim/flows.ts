/**
 * Byte streams on simulated time, as a fluid model: every flow gets a rate, and the rates are the max-min
 * fair share of what each host can upload and download (progressive filling), recomputed whenever a flow
 * starts or ends. A flow first waits one round trip (the request going out and the first byte coming
 * back), then moves its bytes at its share. Event-driven: between two changes nothing is computed.
 */
import type { SimClock, SimEvent } from "./clock.ts";

export interface HostCapacity {
  /** Bytes per second this host may send (its line, or a lower upload limit). */
  upBps: number;
  /** Bytes per second this host can receive. */
  downBps: number;
}

export interface FlowEnd {
  /** Bytes that reached the receiver (all of them unless aborted). */
  bytes: number;
  aborted: boolean;
}

export interface Flow {
  readonly from: number;
  readonly to: number;
  readonly size: number;
  /** Stops the flow; the bytes already moved stay counted. The flow's callback gets `aborted: true`. */
  abort(): void;
}

interface FlowState extends Flow {
  remaining: number;
  rate: number;
  active: boolean;
  done: boolean;
  startEvent?: SimEvent;
  onEnd: (end: FlowEnd) => void;
}

/** Bytes below this count as moved (floating-point residue of rate × time). */
const EPSILON_BYTES = 1e-6;

export class FlowNetwork {
  private readonly hosts: HostCapacity[] = [];
  private readonly active = new Set<FlowState>();
  private lastUpdate = 0;
  private nextEnd: SimEvent | undefined;
  /** Per host: bytes sent and received, and the highest total upload rate it was ever given. */
  readonly sent: number[] = [];
  readonly received: number[] = [];
  readonly peakUpBps: number[] = [];
  /** Rate allocations computed (the cost of the model). */
  allocations = 0;

  constructor(private readonly clock: SimClock) {}

  addHost(capacity: HostCapacity): number {
    this.hosts.push({ ...capacity });
    this.sent.push(0);
    this.received.push(0);
    this.peakUpBps.push(0);
    return this.hosts.length - 1;
  }

  capacity(host: number): HostCapacity {
    return this.hosts[host]!;
  }

  get activeFlows(): number {
    return this.active.size;
  }

  /** Starts moving `size` bytes from one host to another after `rttMs`; `onEnd` runs when they arrived or the flow was aborted. */
  start(from: number, to: number, size: number, rttMs: number, onEnd: (end: FlowEnd) => void): Flow {
    const flow: FlowState = {
      from,
      to,
      size,
      remaining: size,
      rate: 0,
      active: false,
      done: false,
      onEnd,
      abort: () => this.abort(flow),
    };
    flow.startEvent = this.clock.after(rttMs, () => {
      flow.startEvent = undefined;
      this.advance();
      flow.active = true;
      this.active.add(flow);
      this.reallocate();
    });
    return flow;
  }

  private abort(flow: FlowState): void {
    if (flow.done) return;
    flow.done = true;
    if (flow.startEvent !== undefined) {
      this.clock.cancel(flow.startEvent);
      flow.onEnd({ bytes: 0, aborted: true });
      return;
    }
    this.advance();
    this.active.delete(flow);
    this.reallocate();
    flow.onEnd({ bytes: flow.size - flow.remaining, aborted: true });
  }

  /** Moves every active flow forward to now at its current rate. */
  private advance(): void {
    const now = this.clock.now();
    const dt = (now - this.lastUpdate) / 1000;
    this.lastUpdate = now;
    if (dt <= 0) return;
    for (const flow of this.active) {
      const moved = Math.min(flow.remaining, flow.rate * dt);
      flow.remaining -= moved;
      this.sent[flow.from]! += moved;
      this.received[flow.to]! += moved;
    }
  }

  /** Max-min fair rates for the active flows, then the event for the next flow to finish. */
  private reallocate(): void {
    this.allocations++;
    this.clock.cancel(this.nextEnd);
    this.nextEnd = undefined;
    maxMinFair([...this.active], this.hosts);
    const upTotals = new Map<number, number>();
    let soonest = Number.POSITIVE_INFINITY;
    for (const flow of this.active) {
      upTotals.set(flow.from, (upTotals.get(flow.from) ?? 0) + flow.rate);
      if (flow.rate > 0) soonest = Math.min(soonest, (flow.remaining / flow.rate) * 1000);
    }
    for (const [host, total] of upTotals) if (total > this.peakUpBps[host]!) this.peakUpBps[host] = total;
    if (Number.isFinite(soonest)) this.nextEnd = this.clock.after(soonest, () => this.finishDue());
  }

  private finishDue(): void {
    this.nextEnd = undefined;
    this.advance();
    const finished: FlowState[] = [];
    for (const flow of this.active) {
      // Within a microsecond of its end: done (rounding of the event's time).
      if (flow.remaining <= EPSILON_BYTES || flow.remaining <= flow.rate * 1e-6) finished.push(flow);
    }
    for (const flow of finished) {
      this.sent[flow.from]! += flow.remaining;
      this.received[flow.to]! += flow.remaining;
      flow.remaining = 0;
      flow.done = true;
      this.active.delete(flow);
    }
    this.reallocate();
    for (const flow of finished) flow.onEnd({ bytes: flow.size, aborted: false });
  }
}

/**
 * Progressive filling: raise every flow's rate together; when a host's upload or download is used up,
 * the flows through it keep the rate they have and the others go on. Sets `rate` on each flow.
 */
export function maxMinFair(flows: { from: number; to: number; rate: number }[], hosts: HostCapacity[]): void {
  // Resources: 2h is host h's upload, 2h+1 its download.
  const left = new Map<number, number>();
  const users = new Map<number, number>();
  for (const flow of flows) {
    flow.rate = -1;
    for (const r of [2 * flow.from, 2 * flow.to + 1]) {
      if (!left.has(r)) left.set(r, r % 2 === 0 ? hosts[r >> 1]!.upBps : hosts[r >> 1]!.downBps);
      users.set(r, (users.get(r) ?? 0) + 1);
    }
  }
  let open = flows.length;
  while (open > 0) {
    let bottleneck = -1;
    let share = Number.POSITIVE_INFINITY;
    for (const [r, count] of users) {
      if (count === 0) continue;
      const s = left.get(r)! / count;
      if (s < share) {
        share = s;
        bottleneck = r;
      }
    }
    for (const flow of flows) {
      if (flow.rate >= 0) continue;
      const up = 2 * flow.from;
      const down = 2 * flow.to + 1;
      if (up !== bottleneck && down !== bottleneck) continue;
      flow.rate = Math.max(0, share);
      open--;
      for (const r of [up, down]) {
        left.set(r, left.get(r)! - flow.rate);
        users.set(r, users.get(r)! - 1);
      }
    }
  }
}
