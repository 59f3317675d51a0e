/**
 * `apt-p2p serve`: the DHT node on UDP and the HTTP side on TCP, both on the same port number. The HTTP
 * side answers peers (/~/...), the local control API (/api/...), the status page (exactly /) and the
 * Prometheus metrics (exactly /metrics), and APT (everything else: the proxy).
 * The routing table is saved in the state dir so a restart rejoins through old contacts; the traffic
 * totals of the status page too (traffic.json).
 */
import { ID_BYTES, randomBytes, type Endpoint } from "../dht/id.ts";
import { DhtNode } from "../dht/node.ts";
import { DhtState } from "../dht/persist.ts";
import { bindUdp, type DatagramSocket } from "../dht/socket.ts";
import { join } from "node:path";
import { AptP2pError, ErrorCode, asDestinationError } from "../errors.ts";
import { fetchUrl } from "../http/fetch.ts";
import { listen, type HttpServer, type RequestInfo } from "../http/server.ts";
import { ContentCache } from "../store/cache.ts";
import { MAX_REQUESTS_PER_ORIGIN, RangeClient } from "../transfer/range-client.ts";
import { parseCacheSize, resolveCacheLimit } from "../store/quota.ts";
import { SeedIndex } from "../store/seed-index.ts";
import { UploadSlots, uploadBucket } from "../transfer/throttle.ts";
import { CONTROL_PREFIX, handleControl } from "./control-api.ts";
import { HotFiles } from "./hot-files.ts";
import { peersOf, runDownload } from "./downloads.ts";
import { handlePeer, newPeerServerStats, PEER_PREFIX, type PeerServerDeps } from "./peer-server.ts";
import { Seeder } from "./seeder.ts";
import { SeedQueue } from "./seed-queue.ts";
import type { SourceEntry } from "../debian/sources.ts";
import type { KeyringSpec } from "../debian/release.ts";
import { keysFor, releaseBase, systemKeyrings } from "../debian/archive.ts";
import { MirrorAllowList, type Cidr } from "../proxy/allow.ts";
import { KnownFiles } from "../proxy/known.ts";
import { Learner } from "../proxy/learn.ts";
import { LiveDownloads, type LiveDeps, type LiveDownload } from "../proxy/live.ts";
import type { DownloadTarget } from "../transfer/download.ts";
import type { Obtained } from "../transfer/obtain.ts";
import { handleProxy, newProxyStats, type ProxyDeps } from "../proxy/proxy.ts";
import { parseProxyTarget } from "../proxy/target.ts";
import { UrlCache } from "../proxy/url-cache.ts";
import { hostArchitecture } from "../config.ts";
import { Monitor } from "./monitor.ts";
import { handleStatus, METRICS_PATH, STATUS_PAGE_PATH } from "./status-page.ts";
import { TrafficTotals } from "./totals.ts";

/** How often the routing table is saved while running (and always at shutdown). */
export const SAVE_CONTACTS_MS = 5 * 60_000;
/** Attempts to find a port free for both TCP and UDP when asked for port 0. */
const PORT_ATTEMPTS = 10;

export interface ServeConfig {
  port: number;
  bind: string;
  bootstrap: Endpoint[];
  stateDir: string;
  cacheDir: string;
  version: string;
  /** Directories of .deb files to seed besides the cache (such as /var/cache/apt/archives). */
  seedDirs: string[];
  /** Upload rate for all peers together, bytes per second; 0 = unlimited. */
  uploadLimit: number;
  /** Concurrent uploads to one address. */
  maxUploadsPerAddress: number;
  /** The APT sources: the mirrors the proxy forwards to, and the keys their Release files are signed with. */
  sources: SourceEntry[];
  /** APT's configuration directory, for the system keyrings (trusted.gpg, trusted.gpg.d). */
  aptDir: string;
  /** Proxy clients allowed besides loopback (--proxy-allow). */
  proxyAllow: Cidr[];
  /** Mirrors allowed besides those of the sources (--mirror-allow "HOST[:PORT]"). */
  mirrorAllow: string[];
  /** Status page and /metrics clients allowed besides loopback (--status-allow). */
  statusAllow?: Cidr[];
  /** The cache quota as given (--cache-size): "10G", "500MiB", "5%" of the disk; absent = unlimited. */
  cacheSize?: string;
}

/**
 * Concurrent uploads to one address by default: as many requests as one of our downloaders keeps in
 * flight to a peer across all its downloads (src/transfer/range-client.ts).
 */
export const DEFAULT_UPLOADS_PER_ADDRESS = MAX_REQUESTS_PER_ORIGIN;

interface DaemonParts {
  cache: ContentCache;
  seedQueue: SeedQueue;
  rangeClient: RangeClient;
  index: SeedIndex;
  seeder: Seeder;
  known: KnownFiles;
  monitor: Monitor;
  hot: HotFiles;
}

/** How often held small files are checked for idleness (src/daemon/hot-files.ts). */
const HOT_SWEEP_MS = 15_000;

export class Daemon {
  private saveTimer: ReturnType<typeof setInterval> | undefined;
  private hotTimer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  readonly joined: Promise<void>;

  private constructor(
    readonly node: DhtNode,
    readonly http: HttpServer,
    private readonly state: DhtState,
    private readonly parts: DaemonParts,
    private readonly log: (line: string) => void,
  ) {
    this.joined = node.start().then(
      () => log(`joined the DHT: ${node.stats().tableSize} contacts`),
      (err: unknown) => log(`joining the DHT failed: ${err instanceof Error ? err.message : String(err)}`),
    );
    this.saveTimer = setInterval(() => this.saveContacts(), SAVE_CONTACTS_MS);
    this.saveTimer.unref?.();
    this.hotTimer = setInterval(() => parts.hot.sweep(), HOT_SWEEP_MS);
    this.hotTimer.unref?.();
    // Announcing before the node has joined would store nothing: seed once the table is filled.
    void this.joined.then(() => {
      if (!this.closed) parts.seeder.start();
    });
  }

  get port(): number {
    return this.http.port;
  }

  static async start(config: ServeConfig, log: (line: string) => void): Promise<Daemon> {
    const state = DhtState.open(config.stateDir);
    const opened: { close(): void }[] = [state];
    try {
      const id = state.nodeId(() => randomBytes(ID_BYTES));
      const limitBytes = config.cacheSize === undefined ? null : await resolveCacheLimit(parseCacheSize(config.cacheSize), config.cacheDir);
      // The seeder exists only once the sockets are bound; until then an eviction has nothing to unseed.
      let unseed: (sha256: string) => void = () => undefined;
      const cache = await ContentCache.open(config.cacheDir, { limitBytes, onEvicted: (sha256) => unseed(sha256), log }).catch((err: unknown) => {
        throw asDestinationError(config.cacheDir, err);
      });
      opened.push(cache);
      /** Peers' pieces are read on kept-alive connections into reused buffers (src/transfer/range-client.ts). */
      const rangeClient = new RangeClient();
      const index = SeedIndex.open(join(config.stateDir, "seed.sqlite"));
      opened.push(index);
      const known = KnownFiles.open(join(config.stateDir, "proxy.sqlite"));
      opened.push(known);
      const urls = await UrlCache.open(config.cacheDir);
      const mirrors = MirrorAllowList.fromSources(config.sources, config.mirrorAllow);
      for (const bad of mirrors.unusable) log(`source ${bad.uri} (${bad.origin}) is not proxied: ${bad.why}`);
      const keyrings = await systemKeyrings(config.aptDir);
      const totals = await TrafficTotals.load(join(config.stateDir, "traffic.json"), Date.now(), log);
      const startedAt = Date.now();
      const hot = new HotFiles();
      const peerDeps: PeerServerDeps = {
        served: index,
        bucket: uploadBucket(config.uploadLimit, () => performance.now()),
        slots: new UploadSlots(config.maxUploadsPerAddress),
        stats: newPeerServerStats(),
        pin: (sha256) => cache.pin(sha256),
        hot,
      };
      const statusClients = config.statusAllow ?? [];
      let wired: { node: DhtNode; seeder: Seeder; port: number; proxy: ProxyDeps; monitor: Monitor } | undefined;
      const handler = async (request: Request, info: RequestInfo) => {
        // Only an origin-form target ("/...") can be for us; "http://host/..." is always a proxy request.
        const path = info.rawTarget.startsWith("/") ? new URL(request.url).pathname : "";
        if (path.startsWith(PEER_PREFIX)) {
          wired?.monitor.peers.servedTo(info.remoteAddress, Date.now());
          return handlePeer(request, info, peerDeps);
        }
        if (wired === undefined) return new Response("Starting\n", { status: 503, headers: { "Retry-After": "1" } });
        const { node, seeder, port, proxy, monitor } = wired;
        if (path === STATUS_PAGE_PATH || path === METRICS_PATH) return handleStatus(request, info, { clients: statusClients, metrics: () => monitor.metrics() });
        if (!path.startsWith(CONTROL_PREFIX)) return handleProxy(request, info, proxy);
        return handleControl(request, info, {
          node,
          peerPort: port,
          startedAt,
          version: config.version,
          statusClients,
          download: (req, emit) => {
            const { promise, resolve, reject } = Promise.withResolvers<Obtained>();
            const watch = monitor.watchDownload(req, promise);
            runDownload(req, { node, cache, fetcher: fetchUrl, rangeClient, self: { port }, seed: (sha) => seeder.addCachedFile(sha), log }, (event) => {
              watch(event);
              emit(event);
            }).then(resolve, reject);
            return promise;
          },
          status: () => ({
            connections: httpServer?.connections ?? 0,
            proxy: { ...proxy.stats, knownFiles: proxy.known.count(), downloading: proxy.live.active, mirrors: mirrors.describe() },
            peerServer: peerDeps.stats,
            ...monitor.status(),
          }),
        });
      };
      const { http, socket } = await bindBoth(handler, config);
      const httpServer = http;
      const node = new DhtNode({ socket, id, bootstrap: config.bootstrap, savedContacts: state.contacts() });
      const seeder = new Seeder(index, node, { cacheDir: config.cacheDir, seedDirs: config.seedDirs, peerPort: http.port, log });
      unseed = (sha256) => {
        hot.drop(sha256);
        seeder.removeCachedFile(sha256).catch((err: unknown) => log(`unseeding ${sha256} failed: ${err instanceof Error ? err.message : String(err)}`));
      };
      // A quota lowered since the last run is applied now, not at the next download.
      if (limitBytes !== null) void cache.gc().catch((err: unknown) => log(`cache gc failed: ${err instanceof Error ? err.message : String(err)}`));
      const self = http.port;
      const proxyStats = newProxyStats();
      let monitor: Monitor | undefined;
      const seedQueue: SeedQueue = new SeedQueue({ seed: (sha256) => seeder.addCachedFile(sha256), busy: (): boolean => live.active > 0, log });
      const live = new WatchedDownloads((download) => monitor?.watch(download), {
        cache,
        fetcher: fetchUrl,
        findPeers: async (sha256, size) => {
          const peers = await peersOf(node, sha256, size, self);
          for (const peer of peers) monitor?.peers.found(peer.address, peer.port, Date.now());
          return peers;
        },
        getItem: (key) => node.getItem(key),
        rangeClient,
        onBadPiece: () => {
          if (monitor !== undefined) monitor.pieceFailures += 1;
        },
        onBanned: () => {
          if (monitor !== undefined) monitor.bannedPeers += 1;
        },
        seed: async (sha256): Promise<void> => seedQueue.add(sha256),
        onBytes: (kind, bytes) => {
          proxyStats.bytesFrom[kind] += bytes;
          monitor?.received(kind, bytes);
        },
        log,
      });
      const proxy: ProxyDeps = {
        known,
        learner: new Learner({
          known,
          keysFor: releaseKeys(config.sources, keyrings),
          fetchVerified: async (url, file) => (await live.get({ name: url.slice(url.lastIndexOf("/") + 1), ...file }, [url]).done).path,
          arches: [hostArchitecture()],
          log,
          now: Date.now,
        }),
        live,
        selfPort: self,
        urls,
        fetcher: fetchUrl,
        clients: config.proxyAllow,
        mirrors,
        stats: proxyStats,
        log,
        now: Date.now,
      };
      monitor = new Monitor(totals, { node, proxy: proxyStats, live, peerServer: peerDeps.stats, hot, cache, version: config.version, startedAt, log });
      monitor.start();
      wired = { node, seeder, port: http.port, proxy, monitor };
      log(`listening on ${config.bind}:${http.port} (HTTP and DHT UDP), node id ${Buffer.from(id).toString("hex")}`);
      return new Daemon(node, http, state, { cache, seedQueue, rangeClient, index, seeder, known, monitor, hot }, log);
    } catch (err) {
      for (const part of opened.reverse()) part.close();
      throw err;
    }
  }

  saveContacts(): void {
    if (this.closed) return;
    this.state.saveContacts(this.node.contacts(), Date.now());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.saveContacts();
    this.closed = true;
    if (this.saveTimer !== undefined) clearInterval(this.saveTimer);
    if (this.hotTimer !== undefined) clearInterval(this.hotTimer);
    await this.parts.monitor.close();
    await this.parts.seedQueue.close();
    await this.parts.seeder.close();
    this.node.close();
    await this.http.close();
    this.parts.index.close();
    this.parts.known.close();
    this.parts.cache.close();
    this.parts.rangeClient.close();
    this.state.close();
  }
}

/** The proxy's downloads, each shown to the monitor as it starts (for the status page's finished list). */
class WatchedDownloads extends LiveDownloads {
  constructor(
    private readonly onStart: (download: LiveDownload) => void,
    deps: LiveDeps,
  ) {
    super(deps);
  }

  override get(target: DownloadTarget, mirrors: string[]): LiveDownload {
    const download = super.get(target, mirrors);
    this.onStart(download);
    return download;
  }
}

/** TCP and UDP on the same port number; with port 0, a port free for both. */
async function bindBoth(
  handler: Parameters<typeof listen>[0],
  config: ServeConfig,
): Promise<{ http: HttpServer; socket: DatagramSocket }> {
  for (let attempt = 0; ; attempt++) {
    let http: HttpServer;
    try {
      http = await listen(handler, { hostname: config.bind, port: config.port });
    } catch (err) {
      throw portError(config, "TCP", err);
    }
    try {
      return { http, socket: await bindUdp(config.bind, http.port) };
    } catch (err) {
      await http.close();
      if (config.port !== 0 || attempt + 1 >= PORT_ATTEMPTS) throw portError({ ...config, port: http.port }, "UDP", err);
    }
  }
}

function portError(config: ServeConfig, proto: string, err: unknown): AptP2pError {
  const why = (err as { code?: string } | null)?.code === "EADDRINUSE" ? "the port is in use" : err instanceof Error ? err.message : String(err);
  return new AptP2pError(ErrorCode.AddressInUse, `Cannot listen on ${config.bind}:${config.port} (${proto}): ${why}`, {
    cause: err,
    hints: ["Stop the other program on that port, or choose another with --port."],
  });
}

/**
 * The keys for the Release in directory `dir` (a URL as the proxy forwards it): those the matching APT
 * source gives (Signed-By), else the system keyrings.
 */
function releaseKeys(sources: SourceEntry[], systemKeyrings: string[]): (dir: string) => Promise<KeyringSpec> {
  const byDir = new Map<string, KeyringSpec>();
  for (const entry of sources) {
    const parsed = parseProxyTarget("GET", `${releaseBase(entry)}/InRelease`);
    if (!parsed.ok) continue;
    const dir = parsed.target.url.slice(0, -"/InRelease".length);
    if (!byDir.has(dir)) byDir.set(dir, keysFor(entry, systemKeyrings));
  }
  return async (dir) => byDir.get(dir) ?? { paths: systemKeyrings, inline: [], fingerprints: [] };
}
