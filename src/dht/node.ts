/**
 * A DHT node: answers BEP 5 and BEP 44 queries, keeps its routing table, runs lookups, stores and
 * announces peers. Wires the pure parts (routing table, value store, tokens, rate limits) to the
 * transport; all network work happens here, none in those parts.
 */
import { idsEqual, idToHex, ID_BYTES, randomBytes, type Contact, type Endpoint, type NodeId } from "./id.ts";
import { decodeMessage, encodeMessage } from "./krpc.ts";
import { lookup, type LookupMethod, type LookupResult } from "./lookup.ts";
import {
  BEP44_MAX_VALUE_BYTES,
  KRPC_ERROR_GENERIC,
  KRPC_ERROR_PROTOCOL,
  KRPC_ERROR_SERVER,
  type PeerValue,
  type Query,
  type QueryMessage,
  type ResponseBody,
} from "./messages.ts";
import { RateLimiter, type RateLimitOptions } from "./rate-limit.ts";
import { RoutingTable } from "./routing-table.ts";
import { endpointKey, realTimers, Rpc, type RpcCounters, type Timers } from "./rpc.ts";
import { RttTracker } from "./rtt.ts";
import type { DatagramSocket } from "./socket.ts";
import { ValueStore, type StorageLimits } from "./storage.ts";
import { TokenManager } from "./tokens.ts";
import { estimateNetworkSize } from "./estimate.ts";
import { DurationHistogram, type HistogramSnapshot } from "./histogram.ts";

/** Contacts per bucket and per lookup result (BEP 5). */
export const K = 8;
/**
 * Queries in flight per lookup. Kademlia's paper says 3; with adaptive timeouts freeing slots held by
 * slow nodes, 4 finds the K closest in fewer round trips without flooding (measured by
 * scripts/bench/dht-lookup.ts).
 */
export const ALPHA = 4;
/**
 * Nodes returned per answer. BEP 5 implementations return K; returning 2K costs 208 more bytes and lets
 * a lookup step past contacts that died since the answering node last heard from them, which otherwise
 * hide the live nodes just beyond them (measured in test/dht/network.test.ts with 25% of nodes dead).
 */
/** Unexpected failures answering a query are written to the log at most this often. */
const SERVER_ERROR_LOG_INTERVAL_MS = 60_000;

export const NODES_PER_ANSWER = 2 * K;
/** Housekeeping: expire values, refresh idle buckets. */
export const MAINTENANCE_INTERVAL_MS = 60_000;
/** A bucket untouched this long gets a refresh lookup (BEP 5). */
export const BUCKET_REFRESH_MS = 15 * 60_000;
/**
 * Room for `values` (and their piece information) in one get_peers answer: a datagram should stay
 * under a typical 1500-byte MTU with the nodes, token and framing around it.
 */
export const VALUES_BUDGET_BYTES = 900;
/**
 * Values asked of the store per answer: as many as fit the budget when none carries piece information
 * (9 bytes each), so that the store's round-robin moves on by about what is actually sent.
 */
const MAX_VALUES_PER_ANSWER = Math.floor(VALUES_BUDGET_BYTES / 9);
/**
 * Queries per second from one address over all its ports: a host running many nodes (a test rig, or a
 * fleet behind one NAT) gets room for many, a flood from one host is still cut.
 */
export const HOST_RATE_LIMIT: Partial<RateLimitOptions> = { perSecond: 1_000, burst: 2_000 };
/** Values of our own store added to a lookup's result at most. */
const LOCAL_VALUES_MAX = 512;
/** apt-p2p's client version, sent as `v`: "AP" and version 0.1. */
export const CLIENT_VERSION = new Uint8Array([0x41, 0x50, 0x00, 0x01]);

export interface DhtNodeOptions {
  socket: DatagramSocket;
  id?: NodeId;
  bootstrap?: Endpoint[];
  /** Contacts saved by an earlier run: tried first when joining. */
  savedContacts?: Contact[];
  k?: number;
  alpha?: number;
  timers?: Timers;
  /** Wall-clock ms for storage expiry and tokens. */
  clock?: () => number;
  randomBytes?: (n: number) => Uint8Array;
  rtt?: { minTimeoutMs?: number; maxTimeoutMs?: number };
  /** How long a lookup waits on a query before treating the node as slow, at least (default SLOW_FLOOR_MS). */
  slowFloorMs?: number;
  storage?: Partial<StorageLimits>;
  /** Per node (address and port). */
  rateLimit?: Partial<RateLimitOptions>;
  /** Per address, over all its ports. */
  hostRateLimit?: Partial<RateLimitOptions>;
  /** Run housekeeping timers (off in simulations that drive time themselves). */
  maintenance?: boolean;
  /** Refresh every bucket after joining (default true; a short-lived lookup-only node skips it). */
  refreshOnJoin?: boolean;
  /**
   * A short-lived node that only looks things up (BEP 43): its queries say so, so that other nodes do not
   * fill their tables with a contact that will be gone in a minute; it answers no queries itself.
   */
  readOnly?: boolean;
}

/** What `dht stats` shows: the transport's counters (rpc.ts) and the node's own. */
export interface DhtStats extends RpcCounters {
  id: string;
  address: string;
  port: number;
  tableSize: number;
  buckets: { depth: number; contacts: number }[];
  estimatedNetworkSize: number;
  storedKeys: number;
  storedValues: number;
  storedItems: number;
  rateLimited: number;
  /** Addresses the rate limiter holds buckets for (bounded by its maxAddresses). */
  rateLimitTracked: number;
  /** Our queries waiting for an answer. */
  inFlight: number;
  refusedAnnounces: number;
  /** Queries that hit a bug in our handling (answered with KRPC error 202). */
  serverErrors: number;
  medianRttMs: number | null;
  lookups: number;
  medianLookupMs: number | null;
  p90LookupMs: number | null;
  /** Every lookup's duration since start, in buckets (for the metrics' histogram). */
  lookupDurations: HistogramSnapshot;
  /** How queries that reached us ended, by method. */
  outcomesIn: Record<string, IncomingOutcomes>;
}

/** answered; refused with a KRPC error (bad token, storage full, our bug); dropped unanswered (rate limit, read-only). */
export interface IncomingOutcomes {
  answered: number;
  error: number;
  dropped: number;
}

export interface PeersFound {
  peers: PeerValue[];
  durationMs: number;
  queried: number;
}

const LOOKUP_TIMES_KEPT = 256;

export class DhtNode {
  readonly id: NodeId;
  private readonly socket: DatagramSocket;
  private readonly k: number;
  private readonly alpha: number;
  private readonly timers: Timers;
  private readonly clock: () => number;
  private readonly randomBytes: (n: number) => Uint8Array;
  private readonly rtt: RttTracker;
  private readonly rpc: Rpc;
  private readonly table: RoutingTable;
  private readonly store: ValueStore;
  private readonly tokens: TokenManager;
  private readonly limiter: RateLimiter;
  private readonly hostLimiter: RateLimiter;
  private readonly bootstrap: Endpoint[];
  private readonly saved: Contact[];
  private readonly pendingPings = new Set<string>();
  private readonly lookupTimes: number[] = [];
  private lookupCount = 0;
  private readonly lookupDurations = new DurationHistogram();
  private readonly outcomesIn: Record<string, IncomingOutcomes> = {};
  private networkSize = 0;
  private rateLimited = 0;
  private serverErrors = 0;
  private lastServerErrorLogAt = -Infinity;
  private refusedAnnounces = 0;
  private maintenanceTimer: ReturnType<typeof setInterval> | undefined;
  private started = false;
  private closed = false;

  constructor(private readonly options: DhtNodeOptions) {
    this.socket = options.socket;
    this.randomBytes = options.randomBytes ?? randomBytes;
    this.id = options.id ?? this.randomBytes(ID_BYTES);
    this.k = options.k ?? K;
    this.alpha = options.alpha ?? ALPHA;
    this.timers = options.timers ?? realTimers;
    this.clock = options.clock ?? (() => Date.now());
    this.rtt = new RttTracker(options.rtt);
    this.table = new RoutingTable({ ownId: this.id, now: this.clock(), randomBytes: this.randomBytes, bucketSize: this.k });
    this.store = new ValueStore(options.storage);
    this.tokens = new TokenManager({ randomBytes: this.randomBytes });
    this.limiter = new RateLimiter(options.rateLimit);
    this.hostLimiter = new RateLimiter({ ...HOST_RATE_LIMIT, ...options.hostRateLimit });
    this.bootstrap = options.bootstrap ?? [];
    this.saved = options.savedContacts ?? [];
    this.rpc = new Rpc({
      socket: this.socket,
      rtt: this.rtt,
      timers: this.timers,
      version: CLIENT_VERSION,
      readOnly: options.readOnly,
      randomBytes: this.randomBytes,
      onQuery: (message, from) => this.handleQuery(message, from),
      mayAnswer: (from) => this.admit(from),
    });
  }

  get local(): Endpoint {
    return this.socket.local;
  }

  /** Joins the network: saved contacts first, then the bootstrap nodes, then a lookup of our own id. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.join();
    if (this.options.maintenance !== false) {
      this.maintenanceTimer = setInterval(() => void this.maintain(), MAINTENANCE_INTERVAL_MS);
      this.maintenanceTimer.unref?.();
    }
  }

  /**
   * (Re)joins: pings the saved contacts, looks up our own id through them and the bootstrap nodes (which
   * fills the buckets near us and announces us to our neighbours), then refreshes every farther bucket
   * once so that the table covers the whole id space from the start.
   */
  async join(): Promise<void> {
    await Promise.all(this.saved.map((c) => this.ping(c).catch(() => undefined)));
    await this.runLookup(this.id, "find_node", { extraSeeds: this.bootstrap });
    if (this.options.refreshOnJoin === false) return;
    const everyBucket = -1; // idle for longer than -1 ms: all of them
    await Promise.all(this.table.refreshTargets(this.clock(), everyBucket).map((t) => this.runLookup(t, "find_node").catch(() => undefined)));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.maintenanceTimer !== undefined) clearInterval(this.maintenanceTimer);
    this.rpc.close();
  }

  /** Pings a node; on an answer it may enter the routing table. */
  async ping(to: Endpoint): Promise<Contact> {
    const answer = await this.rpc.query(to, { method: "ping", id: this.id });
    const contact = { id: answer.body.id, address: answer.from.address, port: answer.from.port };
    if ("id" in to && !idsEqual((to as Contact).id, answer.body.id)) throw new Error("answered with another node id");
    this.noteAnswer(contact);
    return contact;
  }

  /** The K nodes closest to the target that answered. */
  async findNode(target: NodeId): Promise<Contact[]> {
    return (await this.runLookup(target, "find_node")).closest.map((c) => c.contact);
  }

  /**
   * Every peer the nodes closest to the key know for it; or, with `enough`, the peers known once that
   * many were found. The first node that stores the key answers with every peer it holds, so a caller
   * that needs no consensus (a file of one piece has no piece list to agree on) saves the rest of the
   * lookup: most of the time a small file takes.
   */
  async getPeers(key: NodeId, options: { enough?: number } = {}): Promise<PeersFound> {
    const result = await this.runLookup(key, "get_peers", { stopAfterValues: options.enough });
    // We may be among the closest nodes ourselves: what others announced to us counts too.
    const peers = new Map(result.values.map((p) => [`${p.address}:${p.port}`, p]));
    for (const p of this.store.peers(key, this.clock(), LOCAL_VALUES_MAX)) {
      if (!peers.has(`${p.address}:${p.port}`)) peers.set(`${p.address}:${p.port}`, p);
    }
    return { peers: [...peers.values()], durationMs: result.durationMs, queried: result.queried };
  }

  /**
   * Announces that we serve `key` on `port` (with optional piece information) to the K closest nodes
   * that gave a token. Resolves with how many accepted it and the peers already there.
   */
  async announce(key: NodeId, port: number, pieces?: Uint8Array): Promise<{ stored: number; peers: PeerValue[]; durationMs: number }> {
    const result = await this.runLookup(key, "get_peers");
    const withTokens = result.closest.filter((c) => c.token !== undefined);
    const outcomes = await Promise.allSettled(
      withTokens.map((c) =>
        this.rpc.query(c.contact, {
          method: "announce_peer",
          id: this.id,
          infoHash: key,
          port,
          token: c.token!,
          impliedPort: false,
          pieces,
        }),
      ),
    );
    return { stored: outcomes.filter((o) => o.status === "fulfilled").length, peers: result.values, durationMs: result.durationMs };
  }

  /** Stores a BEP 44 immutable item (the bencoded value) at the K closest nodes; returns its target. */
  async putItem(value: Uint8Array): Promise<{ target: NodeId; stored: number }> {
    if (value.length > BEP44_MAX_VALUE_BYTES) throw new Error(`BEP 44 item of ${value.length} bytes exceeds ${BEP44_MAX_VALUE_BYTES}`);
    // Nodes store an item under the SHA-1 of its canonical bencoding (krpc.ts decodes `v` so): a value
    // with, say, unsorted keys would be stored where no get for SHA-1(value) finds it.
    if (!sameBytes(canonicalItem(value), value)) throw new Error("Cannot put the BEP 44 item: its value is not canonical bencode");
    const target = sha1(value);
    const result = await this.runLookup(target, "get");
    const outcomes = await Promise.allSettled(
      result.closest
        .filter((c) => c.token !== undefined)
        .map((c) => this.rpc.query(c.contact, { method: "put", id: this.id, token: c.token!, value, mutable: false })),
    );
    return { target, stored: outcomes.filter((o) => o.status === "fulfilled").length };
  }

  /** Finds a BEP 44 immutable item by its target; undefined when no node has it. */
  async getItem(target: NodeId): Promise<Uint8Array | undefined> {
    const local = this.store.getItem(target, this.clock());
    if (local !== undefined) return local;
    return (await this.runLookup(target, "get", { stopOnItem: true })).item;
  }

  /** Contacts worth saving for the next start. */
  contacts(): Contact[] {
    return this.table.contacts();
  }

  stats(): DhtStats {
    const sorted = [...this.lookupTimes].sort((a, b) => a - b);
    const pick = (p: number) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!);
    const stored = this.store.stats(this.clock());
    const c = this.rpc.counters;
    return {
      ...c,
      queriesIn: { ...c.queriesIn },
      queriesOut: { ...c.queriesOut },
      id: idToHex(this.id),
      address: this.local.address,
      port: this.local.port,
      tableSize: this.table.size(),
      buckets: this.table.buckets().map((b) => ({ depth: b.depth, contacts: b.contacts })),
      estimatedNetworkSize: Math.round(this.networkSize),
      storedKeys: stored.keys,
      storedValues: stored.values,
      storedItems: stored.items,
      rateLimited: this.rateLimited,
      rateLimitTracked: this.limiter.tracked,
      inFlight: this.rpc.inFlight,
      refusedAnnounces: this.refusedAnnounces,
      serverErrors: this.serverErrors,
      medianRttMs: this.rtt.median() ?? null,
      lookups: this.lookupCount,
      medianLookupMs: pick(0.5),
      p90LookupMs: pick(0.9),
      lookupDurations: this.lookupDurations.snapshot(),
      outcomesIn: Object.fromEntries(Object.entries(this.outcomesIn).map(([method, o]) => [method, { ...o }])),
    };
  }

  /** Housekeeping, normally run by a timer: value expiry and refresh lookups for idle buckets. */
  async maintain(): Promise<void> {
    if (this.closed) return;
    const now = this.clock();
    this.store.expire(now);
    const targets = this.table.refreshTargets(now, BUCKET_REFRESH_MS);
    for (const target of targets) await this.runLookup(target, "find_node").catch(() => undefined);
    if (this.table.size() === 0 && this.bootstrap.length > 0) await this.join().catch(() => undefined);
  }

  private async runLookup(
    target: NodeId,
    method: LookupMethod,
    options: { extraSeeds?: Endpoint[]; stopOnItem?: boolean; stopAfterValues?: number } = {},
  ): Promise<LookupResult> {
    const seeds = [...this.table.closest(target, this.k * 2), ...(options.extraSeeds ?? [])];
    const result = await lookup(
      { target, method, seeds, k: this.k, alpha: this.alpha, stopOnItem: options.stopOnItem, stopAfterValues: options.stopAfterValues },
      {
        ownId: this.id,
        query: (to, query, options) => this.rpc.query(to, query, options),
        onAnswer: (contact) => this.noteAnswer(contact),
        onFailure: (contact) => this.table.observeFailure(contact.id, this.clock()),
        now: () => this.timers.now(),
        schedule: (fn, ms) => {
          const handle = this.timers.setTimeout(fn, ms);
          return () => this.timers.clearTimeout(handle);
        },
        slowFloorMs: this.options.slowFloorMs,
      },
    );
    this.lookupCount++;
    if (this.lookupTimes.length >= LOOKUP_TIMES_KEPT) this.lookupTimes.shift();
    this.lookupTimes.push(result.durationMs);
    this.lookupDurations.observe(result.durationMs);
    this.table.touched(target, this.clock());
    if (result.closest.length >= this.k) {
      const estimate = estimateNetworkSize(target, result.closest.map((c) => c.contact.id));
      this.networkSize = this.networkSize === 0 ? estimate : 0.8 * this.networkSize + 0.2 * estimate;
    } else if (result.closest.length > 0) {
      this.networkSize = Math.max(this.networkSize, result.closest.length + 1);
    }
    return result;
  }

  /** A node answered us: it may enter the table, possibly after its bucket's oldest is pinged. */
  private noteAnswer(contact: Contact): void {
    if (this.closed) return;
    const outcome = this.table.observeResponse(contact, this.clock());
    if (outcome.kind === "ping") this.checkAlive(outcome.contact);
  }

  /** Pings the least-recently-seen contact of a full bucket; the table evicts it only if it fails. */
  private checkAlive(contact: Contact): void {
    const key = endpointKey(contact);
    if (this.pendingPings.has(key) || this.closed) return;
    this.pendingPings.add(key);
    const report = (alive: boolean) => {
      this.pendingPings.delete(key);
      if (this.closed) return;
      const next = this.table.pingResult(contact.id, alive, this.clock());
      if (next !== null) this.checkAlive(next.contact);
    };
    this.rpc.query(contact, { method: "ping", id: this.id }).then(
      (answer) => report(idsEqual(answer.body.id, contact.id)),
      () => report(false),
    );
  }

  private handleQuery(message: QueryMessage, from: Endpoint): void {
    if (this.closed) return;
    const query = message.query;
    const outcomes = (this.outcomesIn[query.method] ??= { answered: 0, error: 0, dropped: 0 });
    if (!this.admit(from) || this.options.readOnly) {
      // BEP 43: a read-only node answers nothing.
      outcomes.dropped++;
      return;
    }
    const now = this.clock();
    // A read-only querier (BEP 43) is answered but never enters the table.
    if (!message.readOnly) this.considerQuerier({ id: query.id, address: from.address, port: from.port }, now);
    const reply = (body: Omit<ResponseBody, "id">) => {
      outcomes.answered++;
      this.rpc.respond(from, message.t, { id: this.id, ...body });
    };
    const refuse = (code: number, text: string) => {
      outcomes.error++;
      this.rpc.sendError(from, message.t, code, text);
    };
    try {
      this.answer(query, from, now, reply, refuse);
    } catch (err) {
      // A bug must not take the daemon down with it: answer 202, count it and say what happened.
      this.serverErrors++;
      refuse(KRPC_ERROR_SERVER, "Server Error");
      // At most one report a minute: a remote node that can trigger the bug must not flood the log.
      if (now - this.lastServerErrorLogAt >= SERVER_ERROR_LOG_INTERVAL_MS) {
        this.lastServerErrorLogAt = now;
        console.error(`apt-p2p: DHT ${query.method} from ${from.address}:${from.port} failed (${this.serverErrors} so far):`, err);
      }
    }
  }

  private answer(
    query: Query,
    from: Endpoint,
    now: number,
    reply: (body: Omit<ResponseBody, "id">) => void,
    refuse: (code: number, text: string) => void,
  ): void {
    switch (query.method) {
      case "ping":
        return reply({});
      case "find_node":
        return reply({ nodes: this.table.closest(query.target, NODES_PER_ANSWER) });
      case "get_peers": {
        const values = fitValues(this.store.peers(query.infoHash, now, MAX_VALUES_PER_ANSWER), VALUES_BUDGET_BYTES);
        const body: Omit<ResponseBody, "id"> = { token: this.tokens.issue(from.address, now), nodes: this.table.closest(query.infoHash, NODES_PER_ANSWER) };
        if (values.length > 0) body.values = values;
        return reply(body);
      }
      case "announce_peer": {
        if (!this.tokens.check(query.token, from.address, now)) return refuse(KRPC_ERROR_PROTOCOL, "Bad token");
        const port = query.impliedPort ? from.port : query.port;
        if (!Number.isInteger(port) || port < 1 || port > 65535) return refuse(KRPC_ERROR_PROTOCOL, "Bad port");
        const outcome = this.store.announce(query.infoHash, { address: from.address, port, pieces: query.pieces }, now);
        if (outcome === "refused") {
          this.refusedAnnounces++;
          return refuse(KRPC_ERROR_SERVER, "Storage full");
        }
        return reply({});
      }
      case "get": {
        const body: Omit<ResponseBody, "id"> = { token: this.tokens.issue(from.address, now), nodes: this.table.closest(query.target, NODES_PER_ANSWER) };
        const value = this.store.getItem(query.target, now);
        if (value !== undefined) body.value = value;
        return reply(body);
      }
      case "put": {
        if (query.mutable) return refuse(KRPC_ERROR_PROTOCOL, "Mutable items are not supported");
        if (!this.tokens.check(query.token, from.address, now)) return refuse(KRPC_ERROR_PROTOCOL, "Bad token");
        const outcome = this.store.putItem(sha1(query.value), query.value, now);
        if (outcome === "refused") return refuse(KRPC_ERROR_GENERIC, "Storage full");
        return reply({});
      }
    }
  }

  /**
   * Takes a token from the sender's buckets: one per node (address and port), and a looser one per
   * address, so that several nodes on one host (or behind one NAT) are not throttled as one, while a
   * single host opening many sockets still is. False (and counted) when either is empty.
   */
  private admit(from: Endpoint): boolean {
    const now = this.clock();
    if (this.limiter.allow(`${from.address}:${from.port}`, now) && this.hostLimiter.allow(from.address, now)) return true;
    this.rateLimited++;
    return false;
  }

  /**
   * A node that queried us enters the table only by answering a ping of ours: a query's source address
   * can be forged, an answer to our transaction id cannot (easily).
   */
  private considerQuerier(contact: Contact, now: number): void {
    if (idsEqual(contact.id, this.id) || !this.table.shouldPing(contact, now)) return;
    const key = endpointKey(contact);
    if (this.pendingPings.has(key)) return;
    this.pendingPings.add(key);
    this.rpc
      .query(contact, { method: "ping", id: this.id })
      .then(
        (answer) => {
          if (idsEqual(answer.body.id, contact.id)) this.noteAnswer(contact);
          else this.table.observeFailure(contact.id, this.clock());
        },
        () => this.table.observeFailure(contact.id, this.clock()),
      )
      .finally(() => this.pendingPings.delete(key));
  }
}

/** As many values as fit the byte budget of one answer (6-byte peer plus its piece information). */
export function fitValues(values: PeerValue[], budget: number): PeerValue[] {
  const out: PeerValue[] = [];
  let used = 0;
  for (const value of values) {
    const cost = 8 + (value.pieces === undefined ? 1 : value.pieces.length + 4);
    if (used + cost > budget) break;
    used += cost;
    out.push(value);
  }
  return out;
}

/** The bytes another node will hash for this BEP 44 value, as our codec decodes it. */
function canonicalItem(value: Uint8Array): Uint8Array | undefined {
  let wire: Uint8Array;
  try {
    wire = encodeMessage({ kind: "response", t: Uint8Array.of(0), body: { id: new Uint8Array(ID_BYTES), value } });
  } catch {
    return undefined; // not one bencoded value: the caller reports it as not canonical
  }
  const decoded = decodeMessage(wire);
  return decoded.kind === "response" ? decoded.body.value : undefined;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && a.length === b.length && a.every((byte, i) => byte === b[i]);
}

export function sha1(bytes: Uint8Array): NodeId {
  const digest = new Bun.CryptoHasher("sha1").update(bytes).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

