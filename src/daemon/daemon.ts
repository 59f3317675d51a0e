/**
 * `apt-p2p serve`: the DHT node on UDP and the HTTP side (control API now; peer server and APT proxy in
 * later work) on TCP, both on the same port number. The routing table is saved in the state dir so a
 * restart rejoins through old contacts.
 */
import { randomBytes } from "node:crypto";
import { ID_BYTES, type Endpoint } from "../dht/id.ts";
import { DhtNode } from "../dht/node.ts";
import { DhtState } from "../dht/persist.ts";
import { bindUdp, type DatagramSocket } from "../dht/socket.ts";
import { join } from "node:path";
import { AptP2pError, ErrorCode, asDestinationError } from "../errors.ts";
import { fetchUrl } from "../http/fetch.ts";
import { listen, type HttpServer, type RequestInfo } from "../http/server.ts";
import { ContentCache } from "../store/cache.ts";
import { SeedIndex } from "../store/seed-index.ts";
import { UploadSlots, uploadBucket } from "../transfer/throttle.ts";
import { CONTROL_PREFIX, handleControl } from "./control-api.ts";
import { runDownload } from "./downloads.ts";
import { handlePeer, newPeerServerStats, PEER_PREFIX, type PeerServerDeps } from "./peer-server.ts";
import { Seeder } from "./seeder.ts";

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
}

/** Concurrent uploads to one address by default: a downloader keeps a few requests in flight. */
export const DEFAULT_UPLOADS_PER_ADDRESS = 8;

interface DaemonParts {
  cache: ContentCache;
  index: SeedIndex;
  seeder: Seeder;
}

export class Daemon {
  private saveTimer: ReturnType<typeof setInterval> | undefined;
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
      const id = state.nodeId(() => new Uint8Array(randomBytes(ID_BYTES)));
      const cache = await ContentCache.open(config.cacheDir).catch((err: unknown) => {
        throw asDestinationError(config.cacheDir, err);
      });
      opened.push(cache);
      const index = SeedIndex.open(join(config.stateDir, "seed.sqlite"));
      opened.push(index);
      const startedAt = Date.now();
      const peerDeps: PeerServerDeps = {
        served: index,
        bucket: uploadBucket(config.uploadLimit, () => performance.now()),
        slots: new UploadSlots(config.maxUploadsPerAddress),
        stats: newPeerServerStats(),
      };
      let wired: { node: DhtNode; seeder: Seeder; port: number } | undefined;
      const handler = async (request: Request, info: RequestInfo) => {
        const path = new URL(request.url).pathname;
        if (path.startsWith(PEER_PREFIX)) return handlePeer(request, info, peerDeps);
        if (path.startsWith(CONTROL_PREFIX) && wired !== undefined) {
          const { node, seeder, port } = wired;
          return handleControl(request, info, {
            node,
            peerPort: port,
            startedAt,
            version: config.version,
            download: (req, emit) =>
              runDownload(req, { node, cache, fetcher: fetchUrl, self: { port }, seed: (sha) => seeder.addCachedFile(sha), log }, emit),
          });
        }
        return new Response("Not found\n", { status: 404 });
      };
      const { http, socket } = await bindBoth(handler, config);
      const node = new DhtNode({ socket, id, bootstrap: config.bootstrap, savedContacts: state.contacts() });
      const seeder = new Seeder(index, node, { cacheDir: config.cacheDir, seedDirs: config.seedDirs, peerPort: http.port, log });
      wired = { node, seeder, port: http.port };
      log(`listening on ${config.bind}:${http.port} (HTTP and DHT UDP), node id ${Buffer.from(id).toString("hex")}`);
      return new Daemon(node, http, state, { cache, index, seeder }, log);
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
    await this.parts.seeder.close();
    this.node.close();
    await this.http.close();
    this.parts.index.close();
    this.parts.cache.close();
    this.state.close();
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
