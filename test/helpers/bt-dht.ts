/**
 * `bittorrent-dht` (webtorrent's BEP 5 implementation) as a reference peer for interoperability tests
 * and benchmarks: typed, promise-returning wrappers over its callback API, on a UDP socket bound to
 * 127.0.0.1 port 0 before the node starts, with a switch that makes the node vanish silently.
 */
import { createSocket, type Socket } from "node:dgram";

/** The part of bittorrent-dht's API these helpers use (v11; see its README). */
export interface BtDht {
  readonly nodeId: Buffer;
  address(): { address: string; port: number };
  listen(port: number, address: string): void;
  addNode(node: { host: string; port: number; id?: Buffer }): void;
  lookup(infoHash: Uint8Array, cb: (err: Error | null, nodesAnswered?: number) => void): () => void;
  announce(infoHash: Uint8Array, port: number, cb: (err: Error | null, answered?: number) => void): void;
  put(opts: { v: unknown }, cb: (err: Error | null, target: Buffer, stored?: number) => void): Buffer;
  /** `cache: false` asks the network even when the item is in the node's own store. */
  get(target: Uint8Array, opts: { cache?: boolean }, cb: (err: Error | null, value: { v: unknown; id: Buffer } | null) => void): void;
  toJSON(): { nodes: { host: string; port: number }[] };
  /** `from` is the node whose answer carried the peer (null for peers from its own store). */
  on(event: "peer", listener: (peer: { host: string; port: number }, infoHash: Buffer, from: { port: number } | null) => void): this;
  on(event: "warning" | "error", listener: (err: Error) => void): this;
  once(event: "ready", listener: () => void): this;
  off(event: string, listener: (...args: never[]) => void): this;
  destroy(cb?: () => void): void;
}

interface BtDhtOptions {
  bootstrap: string[] | false;
  host: string;
  socket: Socket;
}

/*
 * bittorrent-dht ships no type declarations and this helper may not add a .d.ts file: the module is
 * imported through a specifier of type string (which TypeScript leaves untyped) and given the
 * interface above.
 */
const MODULE_NAME: string = "bittorrent-dht";
const { default: DHT } = (await import(MODULE_NAME)) as { default: new (options: BtDhtOptions) => BtDht };

/** Datagrams a node sent and received, as counted on its socket. */
export interface TrafficCounters {
  datagramsOut: number;
  bytesOut: number;
  queriesOut: number;
  /** find_node and get_peers queries: the work of lookups. */
  lookupQueriesOut: number;
  datagramsIn: number;
  bytesIn: number;
}

export function newCounters(): TrafficCounters {
  return { datagramsOut: 0, bytesOut: 0, queriesOut: 0, lookupQueriesOut: 0, datagramsIn: 0, bytesIn: 0 };
}

const QUERY_MARK = Buffer.from("1:y1:q");
const LOOKUP_MARKS = [Buffer.from("1:q9:get_peers"), Buffer.from("1:q9:find_node")];

/** Counts one outgoing KRPC datagram: dictionaries are bencoded with sorted keys, so `y` and `q` read as plain text. */
export function countOut(counters: TrafficCounters, data: Uint8Array): void {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  counters.datagramsOut++;
  counters.bytesOut += bytes.length;
  if (bytes.includes(QUERY_MARK)) {
    counters.queriesOut++;
    if (LOOKUP_MARKS.some((mark) => bytes.includes(mark))) counters.lookupQueriesOut++;
  }
}

export interface BtPeer {
  dht: BtDht;
  port: number;
  counters: TrafficCounters;
  /** From now on the node drops every datagram in and out, as a machine that vanished would. */
  kill(): void;
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 20_000;

export interface StartOptions {
  /**
   * Bind the socket before bittorrent-dht gets it instead of through dht.listen(). It then never sees
   * 'listening', and a node that was never told to listen announces itself in its own store with port 0
   * (bittorrent-dht's announce() with `host` set), as a real one that only ever sent queries does.
   */
  bindFirst?: boolean;
}

/**
 * Starts a bittorrent-dht node on 127.0.0.1 port 0 and waits until it listens and is 'ready' (the end of
 * its bootstrap lookup, at once when `bootstrap` is empty). dht.listen() is called before its bootstrap
 * lookup (next tick) sends anything: that first send would otherwise bind the socket to 0.0.0.0.
 */
export async function startBtDht(bootstrap: { address: string; port: number }[] = [], options: StartOptions = {}): Promise<BtPeer> {
  const socket = createSocket("udp4");
  const bound = new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.once("listening", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  if (options.bindFirst) {
    socket.bind(0, "127.0.0.1");
    await bound;
  }
  const counters = newCounters();
  let dead = false;
  // Count and (when dead) drop at the socket, below k-rpc-socket, which calls send(buf, 0, len, port, host, cb).
  const send = socket.send.bind(socket) as (...args: unknown[]) => void;
  const patched = (...args: unknown[]): void => {
    const callback = args[args.length - 1];
    if (dead) {
      if (typeof callback === "function") queueMicrotask(() => (callback as (err: Error | null) => void)(null));
      return;
    }
    if (args[0] instanceof Uint8Array) countOut(counters, args[0]);
    send(...args);
  };
  Object.assign(socket, { send: patched });
  const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
  const patchedEmit = (event: string | symbol, ...args: unknown[]): boolean => {
    if (event === "message") {
      if (dead) return false;
      const data = args[0];
      if (data instanceof Uint8Array) {
        counters.datagramsIn++;
        counters.bytesIn += data.length;
      }
    }
    return emit(event, ...args);
  };
  Object.assign(socket, { emit: patchedEmit });

  const dht = new DHT({ bootstrap: bootstrap.length > 0 ? bootstrap.map((b) => `${b.address}:${b.port}`) : false, host: "127.0.0.1", socket });
  const ready = new Promise<void>((resolve) => dht.once("ready", resolve));
  if (!options.bindFirst) {
    dht.listen(0, "127.0.0.1");
    await withTimeout(bound, READY_TIMEOUT_MS, "bittorrent-dht did not bind");
  }
  const port = socket.address().port;
  await withTimeout(ready, READY_TIMEOUT_MS, `bittorrent-dht on port ${port} did not get ready`);
  let closed: Promise<void> | undefined;
  return {
    dht,
    port,
    counters,
    kill: () => {
      dead = true;
    },
    close: () => (closed ??= new Promise<void>((resolve) => dht.destroy(() => resolve()))),
  };
}

export interface BtLookupResult {
  /** "host:port" of every peer heard of. */
  peers: string[];
  /** Ports of the nodes whose answers carried peers. */
  sources: number[];
  /** bittorrent-dht's count of nodes that answered. */
  answered: number;
}

/** Runs their get_peers lookup to its end (their callback), collecting the 'peer' events for the key. */
export function btLookup(dht: BtDht, key: Uint8Array, timeoutMs: number): Promise<BtLookupResult> {
  const peers = new Set<string>();
  const sources = new Set<number>();
  const wanted = Buffer.from(key);
  const onPeer = (peer: { host: string; port: number }, infoHash: Buffer, from: { port: number } | null) => {
    if (!infoHash.equals(wanted)) return;
    peers.add(`${peer.host}:${peer.port}`);
    if (from !== null) sources.add(from.port);
  };
  dht.on("peer", onPeer);
  const done = new Promise<BtLookupResult>((resolve, reject) => {
    dht.lookup(key, (err, answered) => (err ? reject(err) : resolve({ peers: [...peers], sources: [...sources], answered: answered ?? 0 })));
  });
  return withTimeout(done, timeoutMs, "bittorrent-dht lookup did not finish").finally(() => dht.off("peer", onPeer));
}

export function btAnnounce(dht: BtDht, key: Uint8Array, port: number, timeoutMs: number): Promise<number> {
  const done = new Promise<number>((resolve, reject) => dht.announce(key, port, (err, answered) => (err ? reject(err) : resolve(answered ?? 0))));
  return withTimeout(done, timeoutMs, "bittorrent-dht announce did not finish");
}

/** BEP 44 immutable put of `v` (bittorrent-dht bencodes it); resolves with the target and how many stored it. */
export function btPut(dht: BtDht, v: unknown, timeoutMs: number): Promise<{ target: Buffer; stored: number }> {
  const done = new Promise<{ target: Buffer; stored: number }>((resolve, reject) =>
    dht.put({ v }, (err, target, stored) => (err ? reject(err) : resolve({ target, stored: stored ?? 0 }))),
  );
  return withTimeout(done, timeoutMs, "bittorrent-dht put did not finish");
}

/** BEP 44 get from the network (never the node's own store); resolves with the decoded `v`, null when no node had it. */
export function btGet(dht: BtDht, target: Uint8Array, timeoutMs: number): Promise<unknown> {
  const done = new Promise<unknown>((resolve, reject) =>
    dht.get(target, { cache: false }, (err, value) => (err ? reject(err) : resolve(value?.v ?? null))),
  );
  return withTimeout(done, timeoutMs, "bittorrent-dht get did not finish");
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
