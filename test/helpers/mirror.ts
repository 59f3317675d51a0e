/**
 * A test mirror: serves a directory on 127.0.0.1 (port 0) with Range, Last-Modified/If-Modified-Since,
 * and a log of the paths requested, so tests can tell what was fetched.
 */
import { stat } from "node:fs/promises";
import { join, normalize } from "node:path";
import { parseRange } from "../../src/http/range.ts";

export interface TestMirror {
  url: string;
  requests: { method: string; path: string; status: number }[];
  /** Answer every request with this status instead (e.g. 500), or null to serve normally. */
  failWith: number | null;
  stop(): Promise<void>;
}

export async function startMirror(root: string): Promise<TestMirror> {
  const mirror: TestMirror = {
    url: "",
    requests: [],
    failWith: null,
    stop: async () => {
      await server.stop(true);
    },
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: async (req) => {
      const url = new URL(req.url);
      const response = await answer(root, req, url.pathname, mirror.failWith);
      mirror.requests.push({ method: req.method, path: decodeURIComponent(url.pathname), status: response.status });
      return response;
    },
  });
  mirror.url = `http://127.0.0.1:${server.port}`;
  return mirror;
}

async function answer(root: string, req: Request, pathname: string, failWith: number | null): Promise<Response> {
  if (failWith !== null) return new Response("failure injected by the test\n", { status: failWith });
  const relative = normalize(decodeURIComponent(pathname)).replace(/^(\.\.(\/|$))+/, "");
  const path = join(root, relative);
  const info = await stat(path).catch(() => null);
  if (info === null || !info.isFile()) return new Response("Not Found\n", { status: 404 });
  const lastModified = new Date(Math.floor(info.mtimeMs / 1000) * 1000);
  const since = req.headers.get("if-modified-since");
  if (since !== null && Date.parse(since) >= lastModified.getTime()) {
    return new Response(null, { status: 304, headers: { "Last-Modified": lastModified.toUTCString() } });
  }
  const headers = { "Last-Modified": lastModified.toUTCString(), "Accept-Ranges": "bytes" };
  const rangeHeader = req.headers.get("range");
  if (rangeHeader !== null) {
    const range = parseRange(rangeHeader, info.size);
    if (range.kind === "unsatisfiable") {
      return new Response(null, { status: 416, headers: { ...headers, "Content-Range": `bytes */${info.size}` } });
    }
    if (range.kind === "range") {
      return new Response(Bun.file(path).slice(range.start, range.end + 1), {
        status: 206,
        headers: { ...headers, "Content-Range": `bytes ${range.start}-${range.end}/${info.size}` },
      });
    }
  }
  return new Response(req.method === "HEAD" ? null : Bun.file(path), { status: 200, headers: { ...headers, "Content-Length": String(info.size) } });
}
