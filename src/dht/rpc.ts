/**
 * KRPC transport: transaction ids, the in-flight table, adaptive timeouts with one resend, and
 * counters, over an injected datagram socket. Knows the wire format (through krpc.ts) but not what
 * the methods mean: queries that arrive are handed to the node.
 */
import type { Endpoint } from "./id.ts";
import { decodeMessage, encodeMessage } from "./krpc.ts";
import { KRPC_ERROR_PROTOCOL, type Method, type Query, type QueryMessage, type ResponseBody, type ResponseMessage } from "./messages.ts";
import type { RttTracker } from "./rtt.ts";
import type { DatagramSocket } from "./socket.ts";

/** Sends per query: the first and one resend, as a dropped UDP packet is common and cheap to repeat. */
export const SENDS_PER_QUERY = 2;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  now: () => performance.now(),
};

export class RpcTimeoutError extends Error {
  constructor(readonly to: Endpoint, readonly method: Method) {
    super(`${method} to ${to.address}:${to.port} timed out`);
    this.name = "RpcTimeoutError";
  }
}

export class RpcRemoteError extends Error {
  constructor(readonly to: Endpoint, readonly code: number, readonly remoteMessage: string) {
    super(`${to.address}:${to.port} answered with KRPC error ${code}: ${remoteMessage}`);
    this.name = "RpcRemoteError";
  }
}

export class RpcClosedError extends Error {
  constructor() {
    super("DHT transport is closed");
    this.name = "RpcClosedError";
  }
}

export interface Answer {
  body: ResponseBody;
  from: Endpoint;
  rttMs: number;
  yourAddress?: Endpoint;
}

export interface QueryOptions {
  /** Called once if the first send went unanswered within its timeout (the node is slow or dropped it). */
  onSlow?: () => void;
}

export interface RpcCounters {
  queriesOut: Record<string, number>;
  queriesIn: Record<string, number>;
  responsesIn: number;
  errorsIn: number;
  timeouts: number;
  resends: number;
  invalidIn: number;
  unknownTransactions: number;
  bytesIn: number;
  bytesOut: number;
  sendFailures: number;
  /** How our queries ended, by method: answered, answered with a KRPC error, or never answered. */
  outcomesOut: Record<string, QueryOutcomes>;
}

export interface QueryOutcomes {
  response: number;
  error: number;
  timeout: number;
}

interface Pending {
  to: Endpoint;
  method: Method;
  message: Uint8Array;
  sentAt: number;
  sends: number;
  timer: unknown;
  options: QueryOptions;
  resolve: (answer: Answer) => void;
  reject: (err: Error) => void;
}

export interface RpcOptions {
  socket: DatagramSocket;
  rtt: RttTracker;
  timers?: Timers;
  /** Client version sent as `v` (4 bytes by convention: 2 letters and a version). */
  version?: Uint8Array;
  /** A query arrived; the node answers with respond() or sendError(). */
  onQuery: (message: QueryMessage, from: Endpoint) => void;
  /**
   * Whether a malformed query from `from` may be answered with its KRPC error: the node's per-address
   * rate limit, so that a flood of bad queries is not answered at any rate. Default: always.
   */
  mayAnswer?: (from: Endpoint) => boolean;
  /** Mark every query read-only (BEP 43): others then leave us out of their routing tables. */
  readOnly?: boolean;
  /** First byte of the transaction id counter, for tests that want distinct ids across nodes. */
  randomBytes: (n: number) => Uint8Array;
}

export class Rpc {
  readonly counters: RpcCounters = {
    queriesOut: {},
    queriesIn: {},
    responsesIn: 0,
    errorsIn: 0,
    timeouts: 0,
    resends: 0,
    invalidIn: 0,
    unknownTransactions: 0,
    bytesIn: 0,
    bytesOut: 0,
    sendFailures: 0,
    outcomesOut: {},
  };
  private readonly pending = new Map<number, Pending>();
  private nextTid: number;
  private closed = false;
  private readonly timers: Timers;

  constructor(private readonly options: RpcOptions) {
    this.timers = options.timers ?? realTimers;
    const seed = options.randomBytes(2);
    this.nextTid = ((seed[0]! << 8) | seed[1]!) & 0xffff;
    options.socket.onDatagram((data, from) => this.receive(data, from));
  }

  get local(): Endpoint {
    return this.options.socket.local;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends a query; resolves with the answer, or rejects with RpcTimeoutError / RpcRemoteError. */
  query(to: Endpoint, query: Query, options: QueryOptions = {}): Promise<Answer> {
    if (this.closed) return Promise.reject(new RpcClosedError());
    const tid = this.allocateTid();
    const t = new Uint8Array([tid >> 8, tid & 0xff]);
    let message: Uint8Array;
    try {
      message = encodeMessage({ kind: "query", t, version: this.options.version, readOnly: this.options.readOnly, query });
    } catch (err) {
      // A bad argument (an id that is not 20 bytes, say) fails this query like any other failure, rather
      // than throwing out of a caller that only handles the promise (a lookup's pump, a ping's .then).
      return Promise.reject(err);
    }
    return new Promise<Answer>((resolve, reject) => {
      const entry: Pending = {
        to: { address: to.address, port: to.port },
        method: query.method,
        message,
        sentAt: 0,
        sends: 0,
        timer: undefined,
        options,
        resolve,
        reject,
      };
      this.pending.set(tid, entry);
      this.counters.queriesOut[query.method] = (this.counters.queriesOut[query.method] ?? 0) + 1;
      this.transmit(tid, entry);
    });
  }

  respond(to: Endpoint, t: Uint8Array, body: ResponseBody): void {
    const response: ResponseMessage = { kind: "response", t, version: this.options.version, body, yourAddress: to };
    this.send(encodeMessage(response), to);
  }

  sendError(to: Endpoint, t: Uint8Array, code: number, message: string): void {
    this.send(encodeMessage({ kind: "error", t, version: this.options.version, code, message }), to);
  }

  /** Rejects every pending query and stops; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [tid, entry] of this.pending) {
      this.timers.clearTimeout(entry.timer);
      this.pending.delete(tid);
      entry.reject(new RpcClosedError());
    }
    this.options.socket.close();
  }

  private transmit(tid: number, entry: Pending): void {
    entry.sends++;
    entry.sentAt = this.timers.now();
    if (!this.send(entry.message, entry.to)) {
      this.finish(tid, entry);
      this.outcome(entry.method, "timeout");
      entry.reject(new RpcTimeoutError(entry.to, entry.method));
      return;
    }
    const wait = this.options.rtt.timeoutFor(endpointKey(entry.to), entry.sends);
    entry.timer = this.timers.setTimeout(() => this.expire(tid, entry), wait);
  }

  private expire(tid: number, entry: Pending): void {
    if (this.pending.get(tid) !== entry) return;
    if (entry.sends < SENDS_PER_QUERY && !this.closed) {
      this.counters.resends++;
      entry.options.onSlow?.();
      this.transmit(tid, entry);
      return;
    }
    this.counters.timeouts++;
    this.outcome(entry.method, "timeout");
    this.finish(tid, entry);
    entry.reject(new RpcTimeoutError(entry.to, entry.method));
  }

  private finish(tid: number, entry: Pending): void {
    this.timers.clearTimeout(entry.timer);
    this.pending.delete(tid);
  }

  private send(data: Uint8Array, to: Endpoint): boolean {
    if (this.closed) return false;
    const ok = this.options.socket.send(data, to);
    if (ok) this.counters.bytesOut += data.length;
    else this.counters.sendFailures++;
    return ok;
  }

  private receive(data: Uint8Array, from: Endpoint): void {
    if (this.closed) return;
    this.counters.bytesIn += data.length;
    const message = decodeMessage(data);
    if (message.kind === "invalid") {
      this.counters.invalidIn++;
      if (message.t !== undefined && message.reply !== undefined && (this.options.mayAnswer?.(from) ?? true)) {
        this.sendError(from, message.t, message.reply.code, message.reply.message);
      } else if (message.t !== undefined && message.reply === undefined) {
        this.failMalformedAnswer(message.t, from, message.reason);
      }
      return;
    }
    if (message.kind === "query") {
      this.counters.queriesIn[message.query.method] = (this.counters.queriesIn[message.query.method] ?? 0) + 1;
      this.options.onQuery(message, from);
      return;
    }
    const tid = message.t.length === 2 ? (message.t[0]! << 8) | message.t[1]! : -1;
    const entry = this.pending.get(tid);
    // An answer must come from where the query went: anything else is stale or spoofed.
    if (entry === undefined || entry.to.address !== from.address || entry.to.port !== from.port) {
      this.counters.unknownTransactions++;
      return;
    }
    this.finish(tid, entry);
    const rttMs = this.timers.now() - entry.sentAt;
    // Only a first-send answer measures the RTT cleanly (Karn's rule).
    if (entry.sends === 1) this.options.rtt.sample(endpointKey(from), rttMs);
    if (message.kind === "error") {
      this.counters.errorsIn++;
      this.outcome(entry.method, "error");
      entry.reject(new RpcRemoteError(from, message.code, message.message));
      return;
    }
    this.counters.responsesIn++;
    this.outcome(entry.method, "response");
    entry.resolve({ body: message.body, from, rttMs, yourAddress: message.yourAddress });
  }

  /** An answer to one of our queries that cannot be read: fail that query now rather than at its timeout. */
  private failMalformedAnswer(t: Uint8Array, from: Endpoint, reason: string): void {
    const tid = t.length === 2 ? (t[0]! << 8) | t[1]! : -1;
    const entry = this.pending.get(tid);
    if (entry === undefined || entry.to.address !== from.address || entry.to.port !== from.port) return;
    this.finish(tid, entry);
    this.outcome(entry.method, "error");
    entry.reject(new RpcRemoteError(from, KRPC_ERROR_PROTOCOL, `malformed answer: ${reason}`));
  }

  private outcome(method: Method, outcome: keyof QueryOutcomes): void {
    const outcomes = (this.counters.outcomesOut[method] ??= { response: 0, error: 0, timeout: 0 });
    outcomes[outcome] += 1;
  }

  /**
   * A random free transaction id, so that an off-path attacker cannot guess the next one from the last
   * (answers must also come from the queried address). Falls back to a scan when the table is crowded.
   */
  private allocateTid(): number {
    for (let i = 0; i < 8; i++) {
      const bytes = this.options.randomBytes(2);
      const tid = (bytes[0]! << 8) | bytes[1]!;
      if (!this.pending.has(tid)) return tid;
    }
    for (let i = 0; i < 0x10000; i++) {
      const tid = this.nextTid;
      this.nextTid = (this.nextTid + 1) & 0xffff;
      if (!this.pending.has(tid)) return tid;
    }
    throw new Error("DHT transport: 65,536 queries in flight");
  }
}

export function endpointKey(endpoint: Endpoint): string {
  return `${endpoint.address}:${endpoint.port}`;
}

