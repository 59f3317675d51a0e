/**
 * The peer HTTP handler: files we hashed ourselves, by content address only, and the piece lists of the
 * large ones. Nothing else on disk is reachable: a request names a SHA-256 (or a piece-list key), never
 * a path. Uploads are bounded by a global token bucket and a cap on concurrent uploads per address.
 *
 *   GET|HEAD /~/<64 lower-hex sha256>       the file (Range: 206 / 416)
 *   GET|HEAD /~/pieces/<40 lower-hex key>   its piece-list item (src/transfer/pieces.ts pieceListItem)
 *
 * A plain function from Request to Response; src/http/server.ts `listen()` binds it to a socket with
 * keep-alive and pipelining.
 */
import { statSync } from "node:fs";
import { contentRange, parseRange } from "../http/range.ts";
import { directResponse, fileRangeBody, memoryBody } from "../http/direct-body.ts";
import { textResponse as text } from "../http/text-response.ts";
import type { HotFiles } from "./hot-files.ts";
import type { RequestInfo } from "../http/server.ts";
import type { ServedFile, ServedFiles } from "../store/served.ts";
import { THROTTLE_CHUNK_BYTES, type TokenBucket, type UploadSlots } from "../transfer/throttle.ts";

export const PEER_PREFIX = "/~/";

/** How long a peer refused for too many concurrent uploads should wait: about one piece's transfer. */
export const DEFAULT_RETRY_AFTER_SECONDS = 2;

/** Content addresses never change, so caches may keep them for a year (the longest RFC 9111 advises). */
const IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable";

const FILE_PATH = /^\/~\/([0-9a-f]{64})$/;
const PIECE_LIST_PATH = /^\/~\/pieces\/([0-9a-f]{40})$/;

/** Counters the handler keeps up to date; make one with `newPeerServerStats()` and read it any time. */
export interface PeerServerStats {
  /** Requests handled, whatever their answer. */
  requests: number;
  /** Body bytes handed to the socket (files and piece lists). */
  bytesSent: number;
  /** Requests refused with 503 because their address had all its upload slots in use. */
  refused503: number;
  /** Requests answered 404 (unknown, malformed or changed on disk). */
  notFound: number;
}

export function newPeerServerStats(): PeerServerStats {
  return { requests: 0, bytesSent: 0, refused503: 0, notFound: 0 };
}

export interface PeerServerDeps {
  served: ServedFiles;
  /** The global upload rate; null for unlimited. */
  bucket: TokenBucket | null;
  slots: UploadSlots;
  stats: PeerServerStats;
  /** How the body waits when the bucket asks it to. Default: a timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Retry-After of a 503. Default DEFAULT_RETRY_AFTER_SECONDS. */
  retryAfterSeconds?: number;
  /** Keeps a cached file from eviction while it is sent (the cache's pin); returns the release. */
  pin?: (sha256: string) => () => void;
  /** Small files held in memory once verified (src/daemon/hot-files.ts); none when absent. */
  hot?: HotFiles;
}

export async function handlePeer(request: Request, info: RequestInfo, deps: PeerServerDeps): Promise<Response> {
  deps.stats.requests += 1;
  if (request.method !== "GET" && request.method !== "HEAD") {
    return text(405, "Method not allowed: the peer port answers GET and HEAD only\n", { Allow: "GET, HEAD" });
  }
  // The URL parser has already resolved dot segments (also %2e%2e), so a traversal attempt arrives
  // here as some other path and matches neither pattern.
  const path = new URL(request.url).pathname;
  const file = FILE_PATH.exec(path);
  if (file !== null) return serveFile(request, info, deps, file[1]!);
  const pieces = PIECE_LIST_PATH.exec(path);
  if (pieces !== null) return servePieceList(request, deps, pieces[1]!);
  return notFound(deps);
}

async function serveFile(request: Request, info: RequestInfo, deps: PeerServerDeps, sha256: string): Promise<Response> {
  const file = deps.served.bySha256(sha256);
  if (file === null) return notFound(deps);
  const unpin = deps.pin?.(sha256) ?? (() => {});
  try {
    return await serveKnownFile(request, info, deps, file, unpin);
  } catch (err) {
    unpin();
    throw err;
  }
}

/** Answers for a file we serve; `unpin` is called once the answer no longer needs the file on disk. */
async function serveKnownFile(request: Request, info: RequestInfo, deps: PeerServerDeps, file: ServedFile, unpin: () => void): Promise<Response> {
  const sha256 = file.sha256;
  // Bytes held in memory were hashed when they were loaded: they are the content, whatever the disk says.
  let held = deps.hot?.get(sha256);
  if (held === undefined) {
    let current = unchangedOnDisk(file);
    if (current && request.method === "GET" && deps.hot?.admits(file.size) === true) {
      held = deps.hot.load(file);
      current = held !== undefined;
    }
    if (!current) {
      unpin();
      deps.served.invalidate(sha256);
      return notFound(deps);
    }
  }
  const etag = `"${file.sha256}"`;
  const headers: Record<string, string> = {
    "Accept-Ranges": "bytes",
    "Content-Type": "application/octet-stream",
    ETag: etag,
    "Cache-Control": IMMUTABLE_CACHE_CONTROL,
  };
  // If-Range naming another representation asks for the whole file; ours never changes, so only a
  // mismatching validator (or a date, which we do not send) turns Range off.
  const ifRange = request.headers.get("if-range");
  const range = ifRange === null || ifRange === etag ? parseRange(request.headers.get("range"), file.size) : { kind: "full" as const };
  if (range.kind === "unsatisfiable") {
    unpin();
    return new Response(null, { status: 416, headers: { ...headers, "Content-Range": contentRange(range, file.size), "Content-Length": "0" } });
  }
  const start = range.kind === "range" ? range.start : 0;
  const end = range.kind === "range" ? range.end : file.size - 1;
  const length = end - start + 1;
  headers["Content-Length"] = String(length);
  const status = range.kind === "range" ? 206 : 200;
  if (range.kind === "range") headers["Content-Range"] = contentRange(range, file.size);
  if (request.method === "HEAD" || length === 0) {
    unpin();
    return new Response(null, { status, headers });
  }

  const release = deps.slots.acquire(info.remoteAddress);
  if (release === null) {
    unpin();
    deps.stats.refused503 += 1;
    const retryAfter = deps.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
    return text(503, "Too many concurrent downloads from your address; retry later\n", { "Retry-After": String(retryAfter) });
  }
  if (held !== undefined) {
    const settle = () => {
      release();
      unpin();
    };
    return directResponse(memoryBody(held.subarray(start, end + 1), { ...pacing(deps), settle }), { status, headers });
  }
  const body = fileRangeBody({
    path: file.path,
    start,
    length,
    ...pacing(deps),
    settle: (outcome) => {
      release();
      unpin();
      // The file shrank after it was checked: it no longer is what we hashed.
      if (outcome === "short") deps.served.invalidate(sha256);
    },
  });
  return directResponse(body, { status, headers });
}

/** Chunks and waits by the upload bucket (none: whole 512 KiB chunks at once), and bytes counted as sent. */
function pacing(deps: PeerServerDeps): { chunkBytes: number; pace: (bytes: number) => Promise<void> | undefined; onRead: (bytes: number) => void } {
  const { bucket, stats } = deps;
  const sleep = deps.sleep ?? defaultSleep;
  return {
    chunkBytes: bucket === null ? Number.POSITIVE_INFINITY : THROTTLE_CHUNK_BYTES,
    pace: (bytes) => {
      const waitMs = bucket === null ? 0 : bucket.take(bytes);
      return waitMs > 0 ? sleep(waitMs) : undefined;
    },
    onRead: (bytes) => {
      stats.bytesSent += bytes;
    },
  };
}

function servePieceList(request: Request, deps: PeerServerDeps, keyHex: string): Response {
  const item = deps.served.pieceListByKey(keyHex);
  if (item === null) return notFound(deps);
  const headers = {
    "Content-Type": "application/octet-stream",
    "Content-Length": String(item.length),
    ETag: `"${keyHex}"`,
    "Cache-Control": IMMUTABLE_CACHE_CONTROL,
  };
  if (request.method === "HEAD") return new Response(null, { status: 200, headers });
  // Piece lists are small (20 bytes a piece) and held in memory: they take no upload slot, but their
  // bytes count against the global rate like any other upload.
  return directResponse(memoryBody(item, { ...pacing(deps), settle: () => {} }), { status: 200, headers });
}

/**
 * The file is still the one we hashed: same size and modification time (to the millisecond). A
 * synchronous stat: it reads metadata the kernel holds, and a thread-pool round trip per request
 * cost more than the stat.
 */
function unchangedOnDisk(file: ServedFile): boolean {
  try {
    const info = statSync(file.path);
    return info.isFile() && info.size === file.size && Math.floor(info.mtimeMs) === Math.floor(file.mtimeMs);
  } catch (err) {
    const code = (err as { code?: string } | null)?.code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw err;
  }
}

function notFound(deps: PeerServerDeps): Response {
  deps.stats.notFound += 1;
  return text(404, "Not found\n");
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
