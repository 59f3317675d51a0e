/**
 * Binds a Request → Response handler to a TCP port: an HTTP/1.1 server of our own on Bun's sockets.
 * Bun.serve with an async handler drops pipelined requests, and APT pipelines; node:http under Bun
 * answers them, but writes every response through Node's stream layers. Here each connection parses
 * requests as they arrive (src/http/request-head.ts), starts every handler at once (a proxy's downloads
 * for pipelined requests overlap), and writes the responses strictly in request order; a direct body is
 * read into pooled buffers and leaves with its head in one write, and reading pauses while 16 requests
 * wait. Handlers stay plain functions, testable without a socket.
 */
import type { Socket } from "bun";
import { BufferPool } from "../transfer/buffer-pool.ts";
import { directBodyOf, type BodyOutcome, type DirectBody } from "./direct-body.ts";
import { parseRequestHead, type RequestHead } from "./request-head.ts";
import { SocketWriter } from "./socket-writer.ts";
import { textResponse as text } from "./text-response.ts";

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

export interface HttpServer {
  readonly port: number;
  readonly address: string;
  /** TCP connections accepted so far (keep-alive and pipelining keep this low). */
  readonly connections: number;
  close(): Promise<void>;
}

/** An idle keep-alive connection is closed after this long. */
const KEEP_ALIVE_SECONDS = 30;
/** Requests of one connection parsed ahead of the response being written; past it, reading pauses. */
const MAX_PIPELINED = 16;
/** Largest chunk of a direct body, and the body part of the reused buffers. */
const DIRECT_CHUNK_BYTES = 512 * 1024;
/** Room before the body in a reused buffer: a response head that fits goes out in the same write. */
const HEAD_ROOM_BYTES = 8 * 1024;
/** Buffers kept for reuse: bounds what an idle daemon keeps after a burst of uploads (about 8 MiB). */
const DIRECT_BUFFERS_KEPT = 16;
const directBuffers = new BufferPool(HEAD_ROOM_BYTES + DIRECT_CHUNK_BYTES, DIRECT_BUFFERS_KEPT);

export async function listen(handler: Handler, options: { hostname: string; port: number }): Promise<HttpServer> {
  let connections = 0;
  const listener = Bun.listen<Connection | undefined>({
    hostname: options.hostname,
    port: options.port,
    data: undefined,
    socket: {
      open(socket) {
        connections += 1;
        socket.data = new Connection(socket, handler);
      },
      data: (socket, bytes) => socket.data?.received(bytes),
      drain: (socket) => socket.data?.writer.drain(),
      close: (socket) => socket.data?.closed(),
      error: (socket) => socket.data?.closed(),
      timeout: (socket) => socket.data?.cut(),
    },
  });
  let closing: Promise<void> | undefined;
  return {
    port: listener.port,
    address: listener.hostname,
    get connections() {
      return connections;
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        listener.stop(true);
        setImmediate(resolve);
      });
      return closing;
    },
  };
}

interface Exchange {
  method: string;
  version: "1.0" | "1.1";
  keepAlive: boolean;
  response: Promise<Response>;
}

const EMPTY = Buffer.alloc(0);
const LAST_CHUNK = Buffer.from("0\r\n\r\n");
const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");

class Connection {
  readonly writer: SocketWriter;
  private input: Buffer = EMPTY;
  private readonly queue: Exchange[] = [];
  private pumping = false;
  private paused = false;
  /** No more requests are read: the last one asked to close, or could not be parsed. */
  private stopped = false;
  private gone = false;
  private continued = false;
  /** The stream body being sent, cancelled at once when the client goes away. */
  private activeReader: { cancel(reason?: unknown): Promise<void> } | undefined;

  constructor(
    private readonly socket: Socket<Connection | undefined>,
    private readonly handler: Handler,
  ) {
    this.writer = new SocketWriter(socket);
    socket.timeout(KEEP_ALIVE_SECONDS);
  }

  received(bytes: Buffer): void {
    if (this.stopped) return;
    this.input = this.input.length === 0 ? bytes : Buffer.concat([this.input, bytes]);
    this.parse();
  }

  /** The socket closed (or failed): nothing more is written; the pump discards what is still queued. */
  closed(): void {
    if (this.gone) return;
    this.gone = true;
    this.stopped = true;
    this.writer.close();
    this.activeReader?.cancel().catch(() => undefined);
  }

  /**
   * Ends the connection now, dropping what was not written: a client must not take a short body for a
   * whole one. `reset` sends a TCP reset instead of an orderly close.
   */
  cut(reset = false): void {
    this.closed();
    if (reset) this.socket.terminate();
    else this.socket.end();
  }

  /** A body failed midway: logged (unless the client had left anyway), and the connection cut. */
  private bodyFailed(err: unknown, reset = false): void {
    if (!this.gone) console.error(`apt-p2p: a response body failed, connection cut: ${err instanceof Error ? err.message : String(err)}`);
    this.cut(reset);
  }

  private parse(): void {
    let offset = 0;
    while (!this.stopped && this.queue.length < MAX_PIPELINED) {
      const head = parseRequestHead(this.input, offset, this.input.length);
      if (head.kind === "incomplete") break;
      if (head.kind === "error") {
        this.stopped = true;
        this.push({ method: "GET", version: "1.1", keepAlive: false, response: Promise.resolve(text(head.status, `Bad request: ${head.message}.\n`)) });
        break;
      }
      const bodyEnd = head.end + head.bodyBytes;
      if (bodyEnd > this.input.length) {
        if (head.expectContinue && !this.continued && this.queue.length === 0) {
          this.continued = true;
          this.writer.write(CONTINUE);
        }
        break;
      }
      this.continued = false;
      // A copy: the input buffer is replaced as more bytes arrive.
      const body = head.bodyBytes > 0 ? new Uint8Array(this.input.subarray(head.end, bodyEnd)) : undefined;
      offset = bodyEnd;
      if (!head.keepAlive) this.stopped = true;
      this.push({ method: head.method, version: head.version, keepAlive: head.keepAlive, response: this.respond(head, body) });
    }
    // What is left is a partial request (or requests past the pipelining bound), copied out of a buffer
    // the socket may reuse.
    this.input = this.stopped || offset >= this.input.length ? EMPTY : Buffer.from(this.input.subarray(offset));
    if (this.queue.length >= MAX_PIPELINED && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private push(exchange: Exchange): void {
    this.queue.push(exchange);
    this.socket.timeout(0);
    void this.pump();
  }

  private async respond(head: RequestHead, body: Uint8Array | undefined): Promise<Response> {
    if (head.method === "CONNECT") {
      // HTTPS tunnels are not offered: say so rather than drop the socket.
      return text(405, `CONNECT is not supported: apt-p2p does not tunnel HTTPS (${head.target}). Use the /https/<host>/... prefix form instead.\n`, { Allow: "GET, HEAD" });
    }
    let request: Request;
    try {
      request = toRequest(head, body);
    } catch (err) {
      // The fetch standard forbids some methods (TRACE, TRACK) and some header bytes in a Request.
      const why = err instanceof Error ? err.message : String(err);
      return text(head.method === "TRACE" || head.method === "TRACK" ? 405 : 400, `Cannot read the request: ${why}\n`, { Allow: "GET, HEAD" });
    }
    // Bun's Request does not throw for them: it keeps TRACE, and reads a method it does not know (TRACK,
    // FOO, a lowercase "get") as GET. A handler must not answer a request as a method it was not sent.
    if (head.method === "TRACE" || request.method !== head.method) {
      return text(405, `Cannot read the request: method ${head.method} is not supported\n`, { Allow: "GET, HEAD" });
    }
    const info: RequestInfo = {
      remoteAddress: normalizeAddress(this.socket.remoteAddress),
      remotePort: this.socket.remotePort,
      rawTarget: head.target,
    };
    try {
      return await this.handler(request, info);
    } catch (err) {
      console.error(`apt-p2p: request ${head.method} ${head.target} failed:`, err);
      return text(500, "Internal error\n");
    }
  }

  /** Writes the queued responses in request order; the only writer of response bytes. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const exchange = this.queue[0]!;
        const response = await exchange.response;
        let keepAlive = false;
        try {
          if (this.gone) discard(response);
          else keepAlive = await this.send(exchange, response);
        } catch (err) {
          // A Response that cannot be sent (its body already read, say) ends its connection, not the process.
          console.error(`apt-p2p: cannot send the response to ${exchange.method}:`, err);
          this.cut();
        }
        this.queue.shift();
        if (!keepAlive && !this.gone) {
          this.stopped = true;
          await this.writer.flushed();
          this.closed();
          this.socket.end();
        }
        if (this.paused && this.queue.length < MAX_PIPELINED && !this.stopped) {
          this.paused = false;
          this.socket.resume();
          this.parse();
        }
      }
    } finally {
      this.pumping = false;
    }
    if (!this.gone) this.socket.timeout(KEEP_ALIVE_SECONDS);
  }

  /** Sends one response; resolves with whether the connection may carry the next one. */
  private async send(exchange: Exchange, response: Response): Promise<boolean> {
    const status = response.status;
    const bodiless = status < 200 || status === 204 || status === 304;
    const direct = directBodyOf(response);
    const declared = response.headers.get("content-length");
    const declaredLength = declared !== null && /^\d{1,15}$/.test(declared) ? Number(declared) : undefined;
    const sendsBody = !bodiless && exchange.method !== "HEAD";
    // A HEAD answer keeps the length its handler declared; a GET answer without a body has none.
    const length = direct?.length ?? (response.body === null && sendsBody ? 0 : declaredLength);
    const chunked = sendsBody && length === undefined && exchange.version === "1.1";
    // An HTTP/1.0 client learns where a body of unknown length ends only from the connection closing.
    const keepAlive = exchange.keepAlive && !(sendsBody && length === undefined && !chunked);

    let head = `HTTP/1.1 ${status} ${response.statusText || REASONS[status] || ""}\r\n`;
    let hasDate = false;
    response.headers.forEach((value, name) => {
      if (FRAMING_FIELDS.has(name)) return;
      if (name === "date") hasDate = true;
      head += `${titleCase(name)}: ${value}\r\n`;
    });
    // A 304 may repeat the length of what it stands for; other bodiless statuses carry none.
    const shownLength = bodiless ? (status === 304 ? (declared ?? undefined) : undefined) : length;
    if (shownLength !== undefined) head += `Content-Length: ${shownLength}\r\n`;
    if (chunked) head += "Transfer-Encoding: chunked\r\n";
    if (!hasDate) head += `Date: ${httpDate()}\r\n`;
    if (!keepAlive) head += "Connection: close\r\n";
    else if (exchange.version === "1.0") head += "Connection: keep-alive\r\n";
    const headBytes = Buffer.from(`${head}\r\n`, "latin1");

    if (!sendsBody || response.body === null) {
      discard(response);
      // Waits for room, so that a client sending HEADs without reading cannot make the writer hold more and more.
      if (!this.writer.write(headBytes)) await this.writer.flushed();
      return keepAlive;
    }
    if (direct !== undefined) return (await this.sendDirect(headBytes, direct)) && keepAlive;
    return (await this.sendStream(headBytes, response.body, length, chunked)) && keepAlive;
  }

  /**
   * Sends a direct body (src/http/direct-body.ts) in chunks read into pooled buffers, the head in the
   * first one; a buffer goes back to the pool once the socket took it. A failed read cuts the connection.
   */
  private async sendDirect(head: Uint8Array, body: DirectBody): Promise<boolean> {
    let outcome: BodyOutcome = "error";
    try {
      let prefix: Uint8Array | undefined = head;
      if (head.length > HEAD_ROOM_BYTES || body.length === 0) {
        prefix = undefined;
        if (!this.writer.write(head)) await this.writer.flushed();
      }
      let at = 0;
      while (at < body.length) {
        const want = Math.min(body.chunkBytes, DIRECT_CHUNK_BYTES, body.length - at);
        const pacing = body.pace?.(want);
        if (pacing !== undefined) await pacing;
        if (this.gone) {
          outcome = "cancelled";
          return false;
        }
        const buffer = directBuffers.take();
        const offset = prefix?.length ?? 0;
        if (prefix !== undefined) buffer.set(prefix);
        let n: number;
        try {
          n = await body.read(buffer.subarray(offset, offset + want));
          if (!(n > 0 && n <= want)) throw new Error(`a body read gave ${n} bytes of ${want}`);
        } catch (err) {
          directBuffers.give(buffer);
          throw err;
        }
        prefix = undefined;
        at += n;
        if (!this.writer.write(buffer.subarray(0, offset + n), () => directBuffers.give(buffer))) await this.writer.flushed();
        if (this.gone && at < body.length) {
          outcome = "cancelled";
          return false;
        }
      }
      outcome = "complete";
      return true;
    } catch (err) {
      this.bodyFailed(err);
      return false;
    } finally {
      // Settled at once, not after anything that yields: the next pipelined response may start as soon
      // as this one ends, and must find its upload slot free.
      body.settle(outcome);
    }
  }

  /**
   * Sends a stream body: `length` bytes, or chunked, or (neither: an HTTP/1.0 client) up to the connection's
   * close. A failing or mis-sized body cuts the connection.
   */
  private async sendStream(head: Uint8Array, stream: ReadableStream<Uint8Array>, length: number | undefined, chunked: boolean): Promise<boolean> {
    // Before the head: a body that cannot be read (already used) fails with nothing written.
    const reader = stream.getReader();
    this.writer.write(head);
    this.activeReader = reader;
    let sent = 0;
    try {
      for (;;) {
        const next = await reader.read();
        if (this.gone) return false;
        if (next.done) break;
        const chunk = next.value;
        if (chunk.length === 0) continue;
        sent += chunk.length;
        if (length !== undefined && sent > length) throw new Error(`the body is longer than its Content-Length ${length}`);
        const framed = chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, CRLF]) : chunk;
        if (!this.writer.write(framed)) await this.writer.flushed();
      }
      if (length !== undefined && sent !== length) throw new Error(`the body ended after ${sent} of ${length} bytes`);
      if (chunked && !this.writer.write(LAST_CHUNK)) await this.writer.flushed();
      return true;
    } catch (err) {
      // The body failed midway (for example a download that did not verify): the client must see a
      // failed transfer, never a complete wrong file.
      reader.cancel(err).catch(() => undefined);
      // A body delimited by the connection's end must not end in an orderly close: reset it.
      this.bodyFailed(err, length === undefined && !chunked);
      return false;
    } finally {
      this.activeReader = undefined;
    }
  }
}

const CRLF = Buffer.from("\r\n");

/**
 * Reason phrases of the statuses our handlers answer (RFC 9110); others go without one, which HTTP/1.1
 * allows. Kept here rather than read from node:http, whose loading alone costs the daemon 2 MB.
 */
const REASONS: Record<number, string> = {
  100: "Continue", 200: "OK", 204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
  304: "Not Modified", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
  410: "Gone", 411: "Length Required", 412: "Precondition Failed", 413: "Content Too Large", 416: "Range Not Satisfiable",
  429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
  502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
};

/** Fields the server writes itself from how it frames the body. */
const FRAMING_FIELDS = new Set(["connection", "keep-alive", "transfer-encoding", "content-length"]);

/** Releases what a response's body holds without sending it. */
function discard(response: Response): void {
  const direct = directBodyOf(response);
  if (direct !== undefined) direct.settle("cancelled");
  else response.body?.cancel().catch(() => undefined);
}

function toRequest(head: RequestHead, body: Uint8Array | undefined): Request {
  const host = head.fields.find(([name]) => name === "host")?.[1] ?? "localhost";
  // Absolute-form request targets (proxy requests) are kept as they are.
  let url = /^[a-z][a-z0-9+.-]*:\/\//i.test(head.target) ? head.target : `http://${host}${head.target}`;
  // A target no URL parser accepts still reaches the handler, which judges info.rawTarget and says why.
  if (!URL.canParse(url)) url = "http://invalid.invalid/";
  const headers = new Headers();
  for (const [name, value] of head.fields) headers.append(name, value);
  const hasBody = head.method !== "GET" && head.method !== "HEAD" && body !== undefined;
  return new Request(url, { method: head.method, headers, body: hasBody ? body : undefined });
}

const titled = new Map<string, string>();
/** "content-type" → "Content-Type", as most servers write field names (some clients' tests look for it). */
function titleCase(name: string): string {
  let t = titled.get(name);
  if (t === undefined) {
    t = name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase());
    if (titled.size < 256) titled.set(name, t);
  }
  return t;
}

let dateSecond = -1;
let dateText = "";
/** The Date field's value, made once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** "::ffff:127.0.0.1" → "127.0.0.1". */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

export function isLoopback(address: string): boolean {
  const a = normalizeAddress(address);
  return a === "::1" || a.startsWith("127.");
}
