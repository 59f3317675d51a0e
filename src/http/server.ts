/**
 * Binds a Request → Response handler to a socket with node:http, whose server answers HTTP/1.1
 * keep-alive and pipelined requests in order (Bun.serve with an async handler drops pipelined requests,
 * and APT pipelines). Handlers stay plain functions, testable without a socket.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Readable } from "node:stream";
import { BufferPool } from "../transfer/buffer-pool.ts";
import { directBodyOf, type BodyOutcome, type DirectBody } from "./direct-body.ts";

export interface RequestInfo {
  remoteAddress: string;
  remotePort: number;
  /**
   * The request-target exactly as received: "/path" (origin form) or "http://host/path" (absolute form, a
   * proxy request). Unlike request.url it is not normalised, so "..", "%2e" and the like are still visible.
   */
  rawTarget: string;
}

export type Handler = (request: Request, info: RequestInfo) => Response | Promise<Response>;

/** Largest chunk of a direct body, and the size of the reused buffers. */
const DIRECT_CHUNK_BYTES = 512 * 1024;
/** Buffers kept for reuse: bounds what an idle daemon keeps after a burst of uploads (8 MiB). */
const DIRECT_BUFFERS_KEPT = 16;
const directBuffers = new BufferPool(DIRECT_CHUNK_BYTES, DIRECT_BUFFERS_KEPT);

export interface HttpServer {
  readonly port: number;
  readonly address: string;
  /** TCP connections accepted so far (keep-alive and pipelining keep this low). */
  readonly connections: number;
  close(): Promise<void>;
}

export async function listen(handler: Handler, options: { hostname: string; port: number }): Promise<HttpServer> {
  const server = createServer({ keepAlive: true }, (req, res) => {
    void serveOne(handler, req, res);
  });
  server.keepAliveTimeout = 30_000;
  let connections = 0;
  server.on("connection", () => {
    connections += 1;
  });
  // node:http hands CONNECT to this event, not to the request handler, and drops the socket when nobody
  // listens: answer it instead, so that a client learns why (HTTPS tunnels are not offered).
  server.on("connect", (req: IncomingMessage, socket: Socket) => {
    const body = `CONNECT is not supported: apt-p2p does not tunnel HTTPS (${req.url ?? ""}). Use the /https/<host>/... prefix form instead.\n`;
    socket.end(
      `HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port: bound.port,
    address: bound.address,
    get connections() {
      return connections;
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
      return closing;
    },
  };
}

async function serveOne(handler: Handler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const info: RequestInfo = {
    remoteAddress: normalizeAddress(req.socket.remoteAddress ?? ""),
    remotePort: req.socket.remotePort ?? 0,
    rawTarget: req.url ?? "/",
  };
  let response: Response;
  try {
    response = await handler(toRequest(req), info);
  } catch (err) {
    console.error(`apt-p2p: request ${req.method} ${req.url} failed:`, err);
    response = new Response("Internal error\n", { status: 500, headers: { "Content-Type": "text/plain" } });
  }
  res.statusCode = response.status;
  if (response.statusText) res.statusMessage = response.statusText;
  response.headers.forEach((value, name) => res.setHeader(name, value));
  if (response.body === null || req.method === "HEAD") {
    await response.body?.cancel();
    res.end();
    return;
  }
  const direct = directBodyOf(response);
  if (direct !== undefined) return sendDirect(res, direct);
  try {
    for await (const chunk of response.body) {
      if (res.destroyed) break;
      // Wait for room, or for the client to go away (then "drain" never comes, "close" does).
      if (!res.write(chunk)) await drained(res);
      if (res.destroyed) break; // Leaving the loop cancels the body, releasing what it holds.
    }
    res.end();
  } catch (err) {
    // The body failed midway (for example a download that did not verify): cut the connection so that
    // the client sees a failed transfer, never a complete wrong file.
    res.destroy(err instanceof Error ? err : new Error(String(err)));
  }
}

/**
 * Sends a direct body (src/http/direct-body.ts) in chunks read into pooled buffers; a buffer goes back
 * to the pool when the socket layer is done with it. A failed read cuts the connection (the client must
 * not take a short body for a whole one); a client gone midway ends the body as "cancelled".
 */
async function sendDirect(res: ServerResponse, body: DirectBody): Promise<void> {
  let outcome: BodyOutcome = "error";
  const gone = () => res.destroyed || res.socket?.destroyed === true;
  try {
    let at = 0;
    while (at < body.length) {
      if (gone()) return void (outcome = "cancelled");
      const want = Math.min(body.chunkBytes, DIRECT_CHUNK_BYTES, body.length - at);
      await body.pace?.(want);
      if (gone()) return void (outcome = "cancelled");
      const buffer = directBuffers.take();
      let n: number;
      try {
        n = await body.read(buffer.subarray(0, want));
        if (!(n > 0 && n <= want)) throw new Error(`a body read gave ${n} bytes of ${want}`);
      } catch (err) {
        directBuffers.give(buffer);
        throw err;
      }
      at += n;
      const chunk = buffer.subarray(0, n);
      const release = () => directBuffers.give(buffer);
      if (at === body.length) {
        res.end(chunk, release);
        outcome = "complete";
        return;
      }
      if (!res.write(chunk, release)) await drained(res);
    }
    res.end();
    outcome = "complete";
  } catch (err) {
    res.destroy(err instanceof Error ? err : new Error(String(err)));
  } finally {
    // Settled at once, not after anything that yields: the next pipelined request may be handled as
    // soon as this one ends, and must find its upload slot free.
    body.settle(outcome);
  }
}

/** Resolves on "drain", or on "close" (a response whose client went away never drains). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const socket = res.socket;
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      socket?.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
    // Under Bun, a response whose client went away does not always emit "close" itself; its socket does.
    socket?.once("close", done);
    if (socket?.destroyed) done();
  });
}

function toRequest(req: IncomingMessage): Request {
  const host = req.headers.host ?? "localhost";
  // Absolute-form request targets (proxy requests) are kept as they are.
  let url = /^[a-z][a-z0-9+.-]*:\/\//i.test(req.url ?? "") ? req.url! : `http://${host}${req.url ?? "/"}`;
  // A target no URL parser accepts still reaches the handler, which judges info.rawTarget and says why.
  if (!URL.canParse(url)) url = "http://invalid.invalid/";
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.set(name, value);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
  });
}

/** "::ffff:127.0.0.1" → "127.0.0.1". */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

export function isLoopback(address: string): boolean {
  const a = normalizeAddress(address);
  return a === "::1" || a.startsWith("127.");
}
