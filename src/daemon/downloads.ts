/**
 * The daemon's downloads, asked for by `apt-p2p get` over the control API (and later by the APT proxy):
 * the cache, else peers found with the daemon's warm DHT table and the mirror; a new file is seeded.
 */
import { idFromHex } from "../dht/id.ts";
import type { DhtNode } from "../dht/node.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import type { Fetcher } from "../http/fetch.ts";
import { isLoopback } from "../http/server.ts";
import type { ContentCache } from "../store/cache.ts";
import type { DownloadTarget } from "../transfer/download.ts";
import { fromSources, obtainFile, type Obtained } from "../transfer/obtain.ts";
import type { AnnouncedPeer } from "../transfer/piece-lists.ts";
import { peersEnough } from "../transfer/pieces.ts";
import type { RangeClient } from "../transfer/range-client.ts";
import { HttpSource } from "../transfer/source.ts";
import { swarmDownload, type SwarmProgress } from "../transfer/swarm.ts";

export interface DownloadRequest extends DownloadTarget {
  /** Mirror URLs of the file (from the client's verified index). */
  mirrors: string[];
}

export type DownloadEvent =
  | { type: "peers"; count: number }
  | { type: "progress"; bytes: number; kind: "mirror" | "peer" | "cache" }
  | { type: "done"; sources: { mirror: number; cache: number; peers: number; perPeer: Record<string, number> } }
  | { type: "error"; code: string; message: string; hints?: string[] };

export interface DownloadDeps {
  node: DhtNode;
  cache: ContentCache;
  fetcher: Fetcher;
  /** Reads pieces from peers with less CPU than the fetcher (the fetcher does when absent). */
  rangeClient?: RangeClient;
  /** Our own peer endpoint, left out of the peers found. */
  self: { port: number };
  /** A file just entered the cache: seed it. */
  seed: (sha256: string) => Promise<void>;
  log: (line: string) => void;
}

/** Checks a control-API download request; throws a usage error naming what is wrong. */
export function parseDownloadRequest(body: unknown): DownloadRequest {
  const r = body as Partial<DownloadRequest> | null;
  const ok =
    r !== null &&
    typeof r === "object" &&
    typeof r.sha256 === "string" &&
    /^[0-9a-f]{64}$/.test(r.sha256) &&
    typeof r.size === "number" &&
    Number.isSafeInteger(r.size) &&
    r.size >= 0 &&
    typeof r.name === "string" &&
    /^[^/\0]{1,255}$/.test(r.name) &&
    Array.isArray(r.mirrors) &&
    r.mirrors.every((m) => typeof m === "string" && /^(https?|file):\/\//.test(m));
  if (!ok) throw new AptP2pError(ErrorCode.Usage, "Invalid download request: expected {sha256, size, name, mirrors: [url...]}");
  return r as DownloadRequest;
}

export async function runDownload(request: DownloadRequest, deps: DownloadDeps, emit: (event: DownloadEvent) => void): Promise<Obtained> {
  const target: DownloadTarget = { name: request.name, size: request.size, sha256: request.sha256 };
  const progress = (event: SwarmProgress | { bytes: number; kind: "mirror" }) => emit({ type: "progress", bytes: event.bytes, kind: event.kind });
  let fresh = false;
  const obtained = await obtainFile(
    { cache: deps.cache, now: () => Date.now() },
    target,
    async (path) => {
      fresh = true;
      const peers = await peersOf(deps.node, request.sha256, request.size, deps.self.port).catch(() => [] as AnnouncedPeer[]);
      emit({ type: "peers", count: peers.length });
      if (peers.length === 0) {
        return fromSources(target, request.mirrors.map((m) => new HttpSource(m, deps.fetcher)), { onProgress: (bytes) => progress({ bytes, kind: "mirror" }) })(path);
      }
      return swarmDownload(target, { mirrors: request.mirrors, peers }, path, { fetcher: deps.fetcher, rangeClient: deps.rangeClient, getItem: (key) => deps.node.getItem(key) }, { onProgress: progress });
    },
    (bytes) => emit({ type: "progress", bytes, kind: "cache" }),
  );
  if (fresh) await deps.seed(request.sha256).catch((err: unknown) => deps.log(`seeding ${request.name} failed: ${err instanceof Error ? err.message : String(err)}`));
  return obtained;
}

/** The peers the DHT names for a file of `size` bytes, leaving out this daemon itself (announced as our port on loopback). */
export async function peersOf(node: DhtNode, sha256: string, size: number, selfPort: number): Promise<AnnouncedPeer[]> {
  // Stopping at the first peers found could stop at ourselves alone: ask for one more.
  const enough = peersEnough(size);
  const found = await node.getPeers(idFromHex(sha256.slice(0, 40)), { enough: enough === undefined ? undefined : enough + 1 });
  return found.peers.filter((p) => !(p.port === selfPort && (isLoopback(p.address) || p.address === "0.0.0.0")));
}
