/**
 * Iterative Kademlia lookup: α queries in flight toward the target, each answer bringing closer nodes,
 * until the K closest nodes known have all answered. A query that outlives its adaptive timeout stops
 * holding an α slot (its answer is still welcome), so a slow or dead node never stalls a lookup; and a
 * lookup never waits on any node once K closer ones have answered.
 */
import { compareDistance, idsEqual, type Contact, type Endpoint, type NodeId } from "./id.ts";
import type { PeerValue, Query, ResponseBody } from "./messages.ts";
import type { Answer, QueryOptions } from "./rpc.ts";

export type LookupMethod = "find_node" | "get_peers" | "get";

export interface LookupRequest {
  target: NodeId;
  method: LookupMethod;
  /** Where to start: contacts from the routing table, and bootstrap endpoints whose ids are unknown. */
  seeds: (Contact | Endpoint)[];
  k: number;
  alpha: number;
  /** BEP 44 get: stop as soon as a node returns an item that hashes to the target. */
  stopOnItem?: boolean;
  /** get_peers: stop as soon as this many distinct peers are known (see node.ts getPeers). */
  stopAfterValues?: number;
}

export interface LookupDeps {
  ownId: NodeId;
  query(to: Endpoint, query: Query, options: QueryOptions): Promise<Answer>;
  /** A node answered (it may enter the routing table). */
  onAnswer(contact: Contact, answer: Answer): void;
  /** A node with a known id failed to answer. */
  onFailure(contact: Contact): void;
  now(): number;
  /** Runs fn after ms unless cancelled (the returned function); without it only the transport's timeouts apply. */
  schedule?(fn: () => void, ms: number): () => void;
  /** Overrides SLOW_FLOOR_MS (a test that needs exact results on a busy machine waits longer). */
  slowFloorMs?: number;
}

/** A node taking longer than this many times the lookup's median answer time is treated as slow. */
export const SLOW_FACTOR = 3;
/** ...but never sooner than this: scheduling jitter on a busy machine. */
export const SLOW_FLOOR_MS = 25;
/** Answers needed before the lookup trusts its own median. */
export const SLOW_MIN_SAMPLES = 3;

export interface LookupResult {
  /** The K closest nodes that answered, closest first, with the token each gave (get_peers, get). */
  closest: { contact: Contact; token?: Uint8Array }[];
  /** Peers found (get_peers), one per address and port. */
  values: PeerValue[];
  /** A BEP 44 item whose SHA-1 is the target (get). */
  item?: Uint8Array;
  queried: number;
  answered: number;
  durationMs: number;
}

type State = "new" | "waiting" | "slow" | "answered" | "failed";

interface Timing {
  sentAt: number;
  goSlow: () => void;
  cancel?: () => void;
}

interface Candidate {
  endpoint: Endpoint;
  /** Unknown for bootstrap endpoints until they answer. */
  id?: NodeId;
  state: State;
  token?: Uint8Array;
}

export function lookup(request: LookupRequest, deps: LookupDeps): Promise<LookupResult> {
  return new Lookup(request, deps).run();
}

class Lookup {
  private readonly byAddress = new Map<string, Candidate>();
  /** Candidates with ids, closest first. */
  private readonly ranked: Candidate[] = [];
  /** Seeds without ids: queried first, outside the ranking. */
  private readonly anonymous: Candidate[] = [];
  private readonly values = new Map<string, PeerValue>();
  /** Answer times seen in this lookup, ms. */
  private readonly rtts: number[] = [];
  /** Queries in flight: when sent, and their slowness timer once armed. */
  private readonly timing = new Map<Candidate, Timing>();
  private item?: Uint8Array;
  private queried = 0;
  private answered = 0;
  private active = 0;
  private done = false;
  private readonly started: number;
  private finish!: (result: LookupResult) => void;

  constructor(
    private readonly request: LookupRequest,
    private readonly deps: LookupDeps,
  ) {
    this.started = deps.now();
    for (const seed of request.seeds) this.add(seed);
  }

  run(): Promise<LookupResult> {
    const result = new Promise<LookupResult>((resolve) => {
      this.finish = resolve;
    });
    this.pump();
    return result;
  }

  private add(node: Contact | Endpoint): void {
    if (node.port === 0) return; // Nobody can be reached on port 0.
    const key = `${node.address}:${node.port}`;
    const id = "id" in node ? node.id : undefined;
    if (id !== undefined && idsEqual(id, this.deps.ownId)) return;
    if (this.byAddress.has(key)) return;
    const candidate: Candidate = { endpoint: { address: node.address, port: node.port }, id, state: "new" };
    this.byAddress.set(key, candidate);
    if (id === undefined) this.anonymous.push(candidate);
    else this.insertRanked(candidate);
  }

  /** Binary insertion keeps `ranked` sorted by distance to the target. */
  private insertRanked(candidate: Candidate): void {
    const id = candidate.id!;
    let lo = 0;
    let hi = this.ranked.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareDistance(this.request.target, this.ranked[mid]!.id!, id) < 0) lo = mid + 1;
      else hi = mid;
    }
    this.ranked.splice(lo, 0, candidate);
  }

  private pump(): void {
    if (this.done) return;
    if (this.item !== undefined && this.request.stopOnItem) return this.complete();
    if (this.request.stopAfterValues !== undefined && this.values.size >= this.request.stopAfterValues) return this.complete();

    // The K closest candidates that have not failed nor gone slow: the lookup is over when they have all
    // answered. A slow node (past its adaptive timeout) no longer holds the lookup up; if its answer
    // still comes while the lookup runs, it is used.
    const window: Candidate[] = [];
    for (const c of this.ranked) {
      if (c.state === "failed" || c.state === "slow") continue;
      window.push(c);
      if (window.length === this.request.k) break;
    }
    const seedsOpen = this.anonymous.some((c) => c.state === "new" || c.state === "waiting");
    // Slow nodes are not waited for once K others answered. With fewer than K left they are all the
    // lookup has (one lost datagram to the only bootstrap node must not end a join empty-handed), so
    // their resend's answer or final timeout is awaited.
    const slowPending = this.ranked.some((c) => c.state === "slow") || this.anonymous.some((c) => c.state === "slow");
    // A get_peers lookup that already holds peers does not wait for slow nodes either: in a DHT of a few
    // machines (an office) the K closest never fill, and one machine gone since it was last seen would
    // otherwise hold every lookup for the transport's whole timeout, and a download back with it.
    const enough = window.length === this.request.k || (this.request.method === "get_peers" && this.values.size > 0);
    if (!seedsOpen && window.every((c) => c.state === "answered") && (enough || !slowPending)) return this.complete();

    const next = [...this.anonymous.filter((c) => c.state === "new"), ...window.filter((c) => c.state === "new")];
    for (const candidate of next) {
      if (this.active >= this.request.alpha) break;
      this.send(candidate);
    }
    if (this.active === 0 && !slowPending) this.complete();
  }

  private send(candidate: Candidate): void {
    candidate.state = "waiting";
    this.active++;
    this.queried++;
    let holdsSlot = true;
    const release = () => {
      if (holdsSlot) {
        holdsSlot = false;
        this.active--;
      }
    };
    const goSlow = () => {
      if (candidate.state === "waiting") candidate.state = "slow";
      release();
      this.pump();
    };
    const options: QueryOptions = { onSlow: goSlow };
    const timing: Timing = { sentAt: this.deps.now(), goSlow };
    this.timing.set(candidate, timing);
    this.armSlowTimers();
    this.deps
      .query(candidate.endpoint, this.buildQuery(), options)
      .then(
        (answer) => {
          this.rtts.push(this.deps.now() - timing.sentAt);
          this.onAnswer(candidate, answer);
        },
        () => this.onFailure(candidate),
      )
      .finally(() => {
        timing.cancel?.();
        this.timing.delete(candidate);
        release();
        this.armSlowTimers();
        this.pump();
      });
  }

  /**
   * Once this lookup has seen how fast nodes answer right now, a node much slower than that is not waited
   * on, even before the transport's timeout (which may rest on older, busier measurements). Arms a timer
   * for every query in flight that has none yet.
   */
  private armSlowTimers(): void {
    const slowAfter = this.slowAfterMs();
    if (slowAfter === undefined || this.deps.schedule === undefined || this.done) return;
    const now = this.deps.now();
    for (const timing of this.timing.values()) {
      if (timing.cancel !== undefined) continue;
      timing.cancel = this.deps.schedule(timing.goSlow, Math.max(0, timing.sentAt + slowAfter - now));
    }
  }

  /** SLOW_FACTOR × the median answer time in this lookup so far, once there are enough answers. */
  private slowAfterMs(): number | undefined {
    if (this.rtts.length < SLOW_MIN_SAMPLES) return undefined;
    const sorted = [...this.rtts].sort((a, b) => a - b);
    return Math.max(this.deps.slowFloorMs ?? SLOW_FLOOR_MS, SLOW_FACTOR * sorted[sorted.length >> 1]!);
  }

  private buildQuery(): Query {
    const { method, target } = this.request;
    const id = this.deps.ownId;
    if (method === "find_node") return { method, id, target };
    if (method === "get_peers") return { method, id, infoHash: target };
    return { method, id, target };
  }

  private onAnswer(candidate: Candidate, answer: Answer): void {
    const body: ResponseBody = answer.body;
    if (candidate.id !== undefined && !idsEqual(candidate.id, body.id)) {
      // Another node answers at that address (or a spoofer): it is not the node we meant.
      return this.onFailure(candidate);
    }
    if (candidate.id === undefined) {
      candidate.id = body.id;
      if (!idsEqual(body.id, this.deps.ownId)) this.rank(candidate);
    }
    candidate.state = "answered";
    candidate.token = body.token;
    this.answered++;
    const contact: Contact = { id: body.id, ...candidate.endpoint };
    this.deps.onAnswer(contact, answer);
    if (this.done) return;
    for (const node of body.nodes ?? []) this.add(node);
    for (const value of body.values ?? []) {
      if (value.port === 0) continue;
      const key = `${value.address}:${value.port}`;
      if (!this.values.has(key) || value.pieces !== undefined) this.values.set(key, value);
    }
    if (body.value !== undefined && this.item === undefined && this.request.method === "get") {
      const hash = new Bun.CryptoHasher("sha1").update(body.value).digest();
      if (idsEqual(new Uint8Array(hash.buffer, hash.byteOffset, hash.byteLength), this.request.target)) this.item = body.value;
    }
  }

  /** An anonymous seed that answered joins the ranking under the id it gave. */
  private rank(candidate: Candidate): void {
    const i = this.anonymous.indexOf(candidate);
    if (i >= 0) this.anonymous.splice(i, 1);
    this.insertRanked(candidate);
  }

  private onFailure(candidate: Candidate): void {
    candidate.state = "failed";
    if (candidate.id !== undefined) this.deps.onFailure({ id: candidate.id, ...candidate.endpoint });
  }

  private complete(): void {
    if (this.done) return;
    this.done = true;
    for (const timing of this.timing.values()) timing.cancel?.();
    const closest: LookupResult["closest"] = [];
    for (const c of this.ranked) {
      if (c.state !== "answered") continue;
      closest.push({ contact: { id: c.id!, ...c.endpoint }, token: c.token });
      if (closest.length === this.request.k) break;
    }
    this.finish({
      closest,
      values: [...this.values.values()],
      item: this.item,
      queried: this.queried,
      answered: this.answered,
      durationMs: this.deps.now() - this.started,
    });
  }
}
