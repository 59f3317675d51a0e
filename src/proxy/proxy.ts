/**
 * The APT proxy: what `apt-get` asks for, in either form (Acquire::http::Proxy, or sources rewritten to
 * http://<proxy>/<mirror-host>/...), answered as an HTTP/1.1 mirror would answer it.
 *
 *   InRelease, Release, Release.gpg   always from the mirror (conditional requests passed on); a copy is
 *                                     kept and served, marked stale, when the mirror is down; a Release
 *                                     whose signature verifies teaches us the hashes of its indexes.
 *   a file whose signed hash we know  from the cache, else peers and the mirror at once, streamed as it
 *                                     lands and checked against the hash (src/proxy/live.ts).
 *   anything else                     from the mirror, passed through; a copy is kept but never announced.
 *
 * A plain function from Request to Response, like the peer handler; src/http/server.ts binds it.
 */
import { open, rm, stat, type FileHandle } from "node:fs/promises";
import { AptP2pError, ErrorCode, HashMismatchError } from "../errors.ts";
import { directResponse, fileRangeBody } from "../http/direct-body.ts";
import { textResponse } from "../http/text-response.ts";
import type { Fetcher } from "../http/fetch.ts";
import { contentRange, parseRange } from "../http/range.ts";
import type { RequestInfo } from "../http/server.ts";
import { clientAllowed, refusedMirrorMessage, type Cidr, type MirrorAllowList } from "./allow.ts";
import type { KnownFile, KnownFiles } from "./known.ts";
import type { Learner } from "./learn.ts";
import type { LiveDownloads } from "./live.ts";
import { parseProxyTarget, type UpstreamTarget } from "./target.ts";
import type { UrlCache, UrlCopy } from "./url-cache.ts";

/** Release files are small; one larger than this is not a Release file. */
const MAX_RELEASE_BYTES = 64 * 1024 * 1024;
const RELEASE_FILES = new Set(["InRelease", "Release", "Release.gpg"]);
/** Request headers passed on to the mirror. */
const FORWARDED_REQUEST_HEADERS = ["range", "if-range", "if-modified-since", "if-none-match", "user-agent"];
/** Response headers passed back from the mirror (lower-case keys, as passedHeaders() writes them). */
const FORWARDED_RESPONSE_HEADERS = ["content-type", "content-length", "content-range", "last-modified", "etag", "accept-ranges"];

export interface ProxyStats {
  requests: number;
  /** Refused: client not allowed, bad target, mirror not allowed. */
  refused: number;
  /** Answered from a file whose signed hash we know (cache, peers, mirror). */
  verified: number;
  /** Passed through from the mirror (Release files and unknown files). */
  passedThrough: number;
  /** Release files answered from our copy because the mirror was down. */
  stale: number;
  /** Body bytes sent to APT clients. */
  bytesSent: number;
  /** Requests being answered now (until their headers are ready), and the most at once so far. */
  active: number;
  peakActive: number;
  /** Verified bytes of files with a known hash, by where they came from. */
  bytesFrom: { mirror: number; peer: number; cache: number };
}

export function newProxyStats(): ProxyStats {
  return { requests: 0, refused: 0, verified: 0, passedThrough: 0, stale: 0, bytesSent: 0, active: 0, peakActive: 0, bytesFrom: { mirror: 0, peer: 0, cache: 0 } };
}

export interface ProxyDeps {
  known: KnownFiles;
  learner: Learner;
  live: LiveDownloads;
  urls: UrlCache;
  fetcher: Fetcher;
  /** Clients allowed besides loopback (--proxy-allow). */
  clients: Cidr[];
  mirrors: MirrorAllowList;
  /** Our own port: a forward-proxy request naming us (APT set up both ways at once) is read as prefix form. */
  selfPort?: number;
  stats: ProxyStats;
  log: (line: string) => void;
  now: () => number;
}

export async function handleProxy(request: Request, info: RequestInfo, deps: ProxyDeps): Promise<Response> {
  deps.stats.requests += 1;
  deps.stats.active += 1;
  deps.stats.peakActive = Math.max(deps.stats.peakActive, deps.stats.active);
  try {
    return await answer(request, info, deps);
  } finally {
    deps.stats.active -= 1;
  }
}

async function answer(request: Request, info: RequestInfo, deps: ProxyDeps): Promise<Response> {
  if (!clientAllowed(info.remoteAddress, deps.clients)) {
    return refuse(deps, 403, `apt-p2p: the APT proxy answers only this machine (loopback) by default, not ${info.remoteAddress}. To serve other machines, start serve with --proxy-allow <CIDR,...>.`);
  }
  let parsed = parseProxyTarget(request.method, info.rawTarget);
  if (parsed.ok && parsed.target.form === "proxy" && parsed.target.port === deps.selfPort && isLoopbackHost(parsed.target.host)) {
    parsed = parseProxyTarget(request.method, parsed.target.path);
  }
  if (!parsed.ok) return refuse(deps, parsed.status, parsed.message, parsed.status === 405 ? { Allow: "GET, HEAD" } : {});
  const target = parsed.target;
  if (!deps.mirrors.allows(target)) return refuse(deps, 403, refusedMirrorMessage(target));

  const name = target.path.slice(target.path.lastIndexOf("/") + 1);
  if (RELEASE_FILES.has(name)) return releaseFile(request, target, name, deps);
  const known = await deps.learner.lookup(target.url);
  if (known !== null) return knownFile(request, target, name, known, deps);
  return passThrough(request, target, deps);
}

// ---- Release files --------------------------------------------------------------------------------

async function releaseFile(request: Request, target: UpstreamTarget, name: string, deps: ProxyDeps): Promise<Response> {
  let upstream: Response;
  try {
    upstream = await deps.fetcher(target.url, { headers: forwardedHeaders(request, ["if-modified-since", "if-none-match", "user-agent"]) });
  } catch (err) {
    return staleCopy(request, target, describe(err), deps);
  }
  if (upstream.status >= 500) {
    await upstream.body?.cancel();
    return staleCopy(request, target, `HTTP ${upstream.status}`, deps);
  }
  deps.stats.passedThrough += 1;
  const dir = target.url.slice(0, target.url.length - name.length - 1);
  if (upstream.status === 304 && name === "InRelease" && !deps.known.hasRelease(dir)) {
    // APT's copy is current, but we have never seen it: fetch it whole to learn what it signs.
    await learnReleaseAt(target, dir, deps);
  }
  if (upstream.status !== 200) {
    // 304 (APT's copy is current), 404 (no InRelease: APT falls back to Release), ...: as the mirror says.
    const body = upstream.status === 304 ? null : await upstream.arrayBuffer();
    return new Response(body, { status: upstream.status, headers: passedHeaders(upstream) });
  }
  const declared = Number(upstream.headers.get("content-length") ?? "0");
  if (declared > MAX_RELEASE_BYTES) {
    await upstream.body?.cancel();
    return text(502, `apt-p2p: ${target.url} is ${declared} bytes, too large for a Release file.`);
  }
  const bytes = new Uint8Array(await upstream.arrayBuffer());
  const meta = {
    url: target.url,
    fetchedAt: deps.now(),
    lastModified: upstream.headers.get("last-modified") ?? undefined,
    etag: upstream.headers.get("etag") ?? undefined,
    contentType: upstream.headers.get("content-type") ?? undefined,
  };
  await deps.urls.putBytes(bytes, meta).catch((err: unknown) => deps.log(`cannot keep a copy of ${target.url}: ${describe(err)}`));
  // Learn before answering: APT asks for the indexes the moment it has the Release.
  if (name === "InRelease") await deps.learner.inRelease(dir, bytes);
  if (name === "Release.gpg") {
    const release = await deps.urls.get(`${dir}/Release`);
    if (release !== null) await deps.learner.detachedRelease(dir, await Bun.file(release.path).bytes(), bytes);
  }
  return new Response(bytes, { status: 200, headers: { ...passedHeaders(upstream), "content-length": String(bytes.length) } });
}

async function learnReleaseAt(target: UpstreamTarget, dir: string, deps: ProxyDeps): Promise<void> {
  try {
    const response = await deps.fetcher(target.url, { headers: { "Accept-Encoding": "identity" } });
    if (response.status !== 200) {
      await response.body?.cancel();
      return;
    }
    await deps.learner.inRelease(dir, new Uint8Array(await response.arrayBuffer()));
  } catch (err) {
    deps.log(`cannot fetch ${target.url} to learn from it: ${describe(err)}`);
  }
}

/** The mirror is down: our last copy, marked stale, or an error saying there is none. */
async function staleCopy(request: Request, target: UpstreamTarget, why: string, deps: ProxyDeps): Promise<Response> {
  const copy = await deps.urls.get(target.url);
  if (copy === null) {
    const status = /no response within/.test(why) ? 504 : 502;
    return text(status, `apt-p2p: the mirror did not answer for ${target.url} (${why}), and no copy is cached.`);
  }
  deps.stats.stale += 1;
  deps.log(`mirror down for ${target.url} (${why}): answering with the copy from ${new Date(copy.fetchedAt).toUTCString()}`);
  const notice = `mirror unreachable (${why}); copy fetched ${new Date(copy.fetchedAt).toUTCString()}`;
  return serveCopy(request, copy, { "X-Apt-P2p-Stale": notice, Warning: `111 apt-p2p "Revalidation Failed"` });
}

/** A copy from the URL cache, with If-Modified-Since and Range. */
function serveCopy(request: Request, copy: UrlCopy, extra: Record<string, string> = {}): Response {
  const headers: Record<string, string> = { "Accept-Ranges": "bytes", "Content-Type": copy.contentType ?? "application/octet-stream", ...extra };
  if (copy.lastModified !== undefined) headers["Last-Modified"] = copy.lastModified;
  if (copy.etag !== undefined) headers.ETag = copy.etag;
  const since = request.headers.get("if-modified-since");
  if (since !== null && copy.lastModified !== undefined && Date.parse(since) >= Date.parse(copy.lastModified)) {
    return new Response(null, { status: 304, headers });
  }
  return rangedFile(request, copy.path, copy.size, headers);
}

// ---- files with a signed hash ---------------------------------------------------------------------

async function knownFile(request: Request, target: UpstreamTarget, name: string, known: KnownFile, deps: ProxyDeps): Promise<Response> {
  const headers: Record<string, string> = {
    "Accept-Ranges": "bytes",
    "Content-Type": name.endsWith(".deb") ? "application/vnd.debian.binary-package" : "application/octet-stream",
    ETag: `"${known.sha256}"`,
  };
  // The bytes are fixed by their signed hash: whatever validator APT sends with If-Range (the date of its
  // partial file) names this content or a file APT will reject by its hash anyway, so Range is honoured.
  const range = parseRange(request.headers.get("range"), known.size);
  if (range.kind === "unsatisfiable") {
    return new Response(null, { status: 416, headers: { ...headers, "Content-Range": contentRange(range, known.size), "Content-Length": "0" } });
  }
  const start = range.kind === "range" ? range.start : 0;
  const end = range.kind === "range" ? range.end : known.size - 1;
  const status = range.kind === "range" ? 206 : 200;
  if (range.kind === "range") headers["Content-Range"] = contentRange(range, known.size);
  headers["Content-Length"] = String(end - start + 1);
  deps.stats.verified += 1;
  if (request.method === "HEAD") return new Response(null, { status, headers });

  const live = deps.live.get({ name, size: known.size, sha256: known.sha256 }, [target.url]);
  const index = deps.known.indexOf(target.url);
  if (index !== null) {
    void live.done.then(
      (file) => deps.learner.readIndex(target.url, index.kind, file.path, known.sha256, index.listedAs),
      () => undefined,
    );
  }
  // Wait for the first byte, so that a download failing outright is an HTTP error APT can show, not a cut.
  try {
    await live.ready(Math.min(start, Math.max(0, known.size - 1)));
  } catch (err) {
    return downloadFailed(target, err, deps);
  }
  if (live.file !== undefined) headers["Last-Modified"] = new Date((await stat(live.file.path)).mtimeMs).toUTCString();
  const body = live.direct(start, end, (bytes) => {
    deps.stats.bytesSent += bytes;
  });
  return directResponse(body, { status, headers });
}

function downloadFailed(target: UpstreamTarget, err: unknown, deps: ProxyDeps): Response {
  deps.log(`download of ${target.url} failed: ${describe(err)}`);
  if (err instanceof HashMismatchError || (err instanceof AptP2pError && err.code === ErrorCode.FileHashMismatch)) {
    return text(502, `apt-p2p: ${target.url} does not match the hash in the signed index (${describe(err)}); nothing was kept.`);
  }
  const http = /HTTP (4\d\d)/.exec(describe(err));
  if (http !== null) return text(Number(http[1]), `apt-p2p: the mirror answered ${target.url} with HTTP ${http[1]}, and no peer has it.`);
  const status = /no response within/.test(describe(err)) ? 504 : 502;
  return text(status, `apt-p2p: cannot get ${target.url} from peers or the mirror: ${describe(err)}`);
}

// ---- everything else: from the mirror -------------------------------------------------------------

async function passThrough(request: Request, target: UpstreamTarget, deps: ProxyDeps): Promise<Response> {
  // Pool files never change in a Debian archive: a copy we hold needs no trip to the mirror.
  const poolCopy = target.path.includes("/pool/") ? await deps.urls.get(target.url) : null;
  if (poolCopy !== null) return serveCopy(request, poolCopy);
  let upstream: Response;
  try {
    upstream = await deps.fetcher(target.url, { headers: forwardedHeaders(request, FORWARDED_REQUEST_HEADERS) });
  } catch (err) {
    return staleCopy(request, target, describe(err), deps);
  }
  if (upstream.status >= 500) {
    const copy = await deps.urls.get(target.url);
    if (copy !== null) {
      await upstream.body?.cancel();
      return staleCopy(request, target, `HTTP ${upstream.status}`, deps);
    }
  }
  deps.stats.passedThrough += 1;
  const headers = passedHeaders(upstream);
  const length = Number(upstream.headers.get("content-length") ?? "NaN");
  if (request.method === "HEAD" || upstream.body === null || upstream.status !== 200 || !Number.isSafeInteger(length)) {
    return new Response(request.method === "HEAD" ? null : upstream.body, { status: upstream.status, headers });
  }
  const meta = {
    url: target.url,
    fetchedAt: deps.now(),
    lastModified: headers["last-modified"],
    etag: headers.etag,
    contentType: headers["content-type"],
  };
  return new Response(keepingCopy(upstream.body, length, meta, deps), { status: 200, headers });
}

/** Passes `body` on while writing it to the URL cache; the copy is kept only if all `length` bytes came. */
function keepingCopy(
  body: ReadableStream<Uint8Array>,
  length: number,
  meta: { url: string; fetchedAt: number; lastModified?: string; etag?: string; contentType?: string },
  deps: ProxyDeps,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const temp = deps.urls.tempPath();
  let file: FileHandle | null | undefined;
  let written = 0;
  const drop = async () => {
    await file?.close().catch(() => undefined);
    file = null;
    await rm(temp, { force: true });
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (file === undefined) file = await open(temp, "wx").catch(() => null);
        const next = await reader.read().catch(async (err: unknown) => {
          await drop();
          throw err;
        });
        if (next.done) {
          if (file !== null && written === length) {
            await file.close();
            file = null;
            await deps.urls.put(temp, { ...meta, size: length }).catch((err: unknown) => deps.log(`cannot keep a copy of ${meta.url}: ${describe(err)}`));
          } else {
            await drop();
          }
          controller.close();
          return;
        }
        if (file !== null) {
          await file.write(next.value).then(
            () => {
              written += next.value.length;
            },
            () => drop(),
          );
        }
        deps.stats.bytesSent += next.value.length;
        controller.enqueue(next.value);
      },
      async cancel(reason) {
        await drop();
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

// ---- helpers ---------------------------------------------------------------------------------------

/** A file on disk with Range (206/416) against its size. */
function rangedFile(request: Request, path: string, size: number, headers: Record<string, string>): Response {
  const range = parseRange(request.headers.get("range"), size);
  if (range.kind === "unsatisfiable") {
    return new Response(null, { status: 416, headers: { ...headers, "Content-Range": contentRange(range, size), "Content-Length": "0" } });
  }
  const start = range.kind === "range" ? range.start : 0;
  const end = range.kind === "range" ? range.end : size - 1;
  const out: Record<string, string> = { ...headers, "Content-Length": String(end - start + 1) };
  if (range.kind === "range") out["Content-Range"] = contentRange(range, size);
  const init = { status: range.kind === "range" ? 206 : 200, headers: out };
  if (request.method === "HEAD" || end < start) return new Response(null, init);
  return directResponse(fileRangeBody({ path, start, length: end - start + 1, chunkBytes: Number.POSITIVE_INFINITY, settle: () => {} }), init);
}

function forwardedHeaders(request: Request, names: string[]): Record<string, string> {
  // Identity: a compressed transfer would change the bytes and lengths APT checks.
  const headers: Record<string, string> = { "Accept-Encoding": "identity" };
  for (const name of names) {
    const value = request.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  return headers;
}

function passedHeaders(upstream: Response): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of FORWARDED_RESPONSE_HEADERS) {
    const value = upstream.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  return headers;
}

function refuse(deps: ProxyDeps, status: number, message: string, extra: Record<string, string> = {}): Response {
  deps.stats.refused += 1;
  return text(status, message, extra);
}

/** A one-line message as a plain-text answer, ending in a newline as APT shows it. */
function text(status: number, message: string, extra: Record<string, string> = {}): Response {
  return textResponse(status, message.endsWith("\n") ? message : `${message}\n`, extra);
}

function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
