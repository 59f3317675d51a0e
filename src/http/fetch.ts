/**
 * One way to GET a URL of an APT source: http:, https: (Bun's fetch) and file: (read from disk, since
 * fetch() on a missing file: URL answers 200). Failures to connect become AptP2pError.mirror.
 */
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { AptP2pError } from "../errors.ts";

/** How long to wait for a mirror's response headers before calling it unreachable. */
export const RESPONSE_TIMEOUT_MS = 30_000;

export type Fetcher = (url: string, init?: { headers?: Record<string, string>; signal?: AbortSignal }) => Promise<Response>;

export const fetchUrl: Fetcher = async (url, init = {}) => {
  const parsed = new URL(url);
  if (parsed.protocol === "file:") return fetchFile(parsed, init.headers ?? {});
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw AptP2pError.mirror(url, `unsupported URI scheme ${parsed.protocol} (http, https and file are supported)`);
  }
  const timeout = AbortSignal.timeout(RESPONSE_TIMEOUT_MS);
  const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
  try {
    return await fetch(url, { headers: init.headers, signal, redirect: "follow", decompress: false });
  } catch (err) {
    if (init.signal?.aborted) throw err;
    const why = timeout.aborted ? `no response within ${RESPONSE_TIMEOUT_MS / 1000} s` : describeNetworkError(err);
    throw AptP2pError.mirror(url, why, err);
  }
};

function describeNetworkError(err: unknown): string {
  const code = (err as { code?: string } | null)?.code;
  if (code === "ConnectionRefused" || code === "ECONNREFUSED") return "connection refused";
  if (code === "FailedToOpenSocket" || code === "ENOTFOUND") return "host not found or unreachable";
  return err instanceof Error ? err.message : String(err);
}

async function fetchFile(url: URL, headers: Record<string, string>): Promise<Response> {
  const path = fileURLToPath(url);
  let info;
  try {
    info = await stat(path);
  } catch {
    return new Response("Not Found\n", { status: 404 });
  }
  if (!info.isFile()) return new Response("Not Found\n", { status: 404 });
  const lastModified = info.mtime.toUTCString();
  const since = headers["If-Modified-Since"] ?? headers["if-modified-since"];
  if (since !== undefined && Date.parse(since) >= Math.floor(info.mtimeMs / 1000) * 1000) {
    return new Response(null, { status: 304, headers: { "Last-Modified": lastModified } });
  }
  const range = headers["Range"] ?? headers["range"];
  const match = range === undefined ? null : /^bytes=(\d+)-(\d*)$/.exec(range);
  if (match) {
    const start = Number(match[1]);
    const end = match[2] === "" ? info.size - 1 : Math.min(Number(match[2]), info.size - 1);
    if (start > end) return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${info.size}` } });
    return new Response(Bun.file(path).slice(start, end + 1), {
      status: 206,
      headers: { "Content-Range": `bytes ${start}-${end}/${info.size}`, "Content-Length": String(end - start + 1) },
    });
  }
  return new Response(Bun.file(path), {
    status: 200,
    headers: { "Content-Length": String(info.size), "Last-Modified": lastModified },
  });
}
