/**
 * A raw HTTP/1.1 client for tests of our own server: requests are written byte for byte in one write, and
 * responses are parsed off the received bytes exactly as they came (RFC 9112 framing), so that a test sees
 * pipelining order, framing and how a connection ends — things a fetch client hides.
 */
import { expect } from "bun:test";
import type { Socket as BunSocket } from "bun";
import { connect, type Socket } from "node:net";
import { listen, type Handler, type HttpServer } from "../../src/http/server.ts";

/** How long a wait for a socket event lasts before it fails naming what it waited for. */
export const RAW_WAIT_MS = 3000;

export interface RawResponse {
  status: number;
  /** Field names lowercased; a repeated field's values joined with ", ". */
  headers: Map<string, string>;
  body: Buffer;
}

/** An HTTP/1.1 request with a Host field, then `fields`, and no body. */
export function rawRequest(method: string, target: string, ...fields: string[]): string {
  return [`${method} ${target} HTTP/1.1`, "Host: 127.0.0.1", ...fields, "", ""].join("\r\n");
}

/** An HTTP/1.1 GET with a Host field, then `fields`. */
export function rawGet(target: string, ...fields: string[]): string {
  return rawRequest("GET", target, ...fields);
}

/**
 * Parses one response off `buffer` at `start`, framed as RFC 9112 section 6.3 says: no body for HEAD,
 * 1xx, 204 and 304; chunked; Content-Length; else up to the connection's end (`ended`). Undefined while
 * incomplete. The body may share memory with `buffer`.
 */
export function parseResponse(buffer: Buffer, start: number, method: string, ended: boolean): { response: RawResponse; end: number } | undefined {
  const headEnd = buffer.indexOf("\r\n\r\n", start);
  if (headEnd < 0) return undefined;
  const [statusLine = "", ...lines] = buffer.toString("latin1", start, headEnd).split("\r\n");
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
  if (match === null) throw new Error(`not a status line: ${JSON.stringify(statusLine.slice(0, 80))}`);
  const status = Number(match[1]);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  const bodyStart = headEnd + 4;
  if (method === "HEAD" || status < 200 || status === 204 || status === 304) return { response: { status, headers, body: Buffer.alloc(0) }, end: bodyStart };
  if (headers.get("transfer-encoding") === "chunked") {
    const chunks: Buffer[] = [];
    let at = bodyStart;
    for (;;) {
      const lineEnd = buffer.indexOf("\r\n", at);
      if (lineEnd < 0) return undefined;
      const size = Number.parseInt(buffer.toString("latin1", at, lineEnd), 16);
      if (!Number.isInteger(size)) throw new Error(`bad chunk size line at ${at}`);
      if (buffer.length < lineEnd + 2 + size + 2) return undefined;
      if (size === 0) return { response: { status, headers, body: Buffer.concat(chunks) }, end: lineEnd + 4 };
      chunks.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  const declared = headers.get("content-length");
  if (declared !== undefined) {
    const end = bodyStart + Number(declared);
    return buffer.length < end ? undefined : { response: { status, headers, body: buffer.subarray(bodyStart, end) }, end };
  }
  return ended ? { response: { status, headers, body: buffer.subarray(bodyStart) }, end: buffer.length } : undefined;
}

/** A node:net connection to 127.0.0.1 that keeps every byte it received and waits on what arrives or on its end. */
export class RawClient {
  /** The connection has closed (either side, or reset). */
  ended = false;
  /** The error the socket failed with, if any: a reset from the server shows here as ECONNRESET. */
  error: NodeJS.ErrnoException | undefined;
  /** Received bytes at the start of a buffer that doubles when full (copying each arrival anew is quadratic). */
  private store = Buffer.alloc(64 * 1024);
  private length = 0;
  private readonly listeners = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    socket.on("data", (data: Buffer) => {
      if (this.length + data.length > this.store.length) {
        const grown = Buffer.alloc(Math.max(this.store.length * 2, this.length + data.length));
        this.store.copy(grown, 0, 0, this.length);
        this.store = grown;
      }
      data.copy(this.store, this.length);
      this.length += data.length;
      for (const listener of this.listeners) listener();
    });
    socket.on("close", () => {
      this.ended = true;
      for (const listener of this.listeners) listener();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.error ??= err;
    });
  }

  /** Connects to 127.0.0.1:`port`. Prefer `RawClients.open`, which also closes it after the test. */
  static async open(port: number): Promise<RawClient> {
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket);
  }

  /** The bytes received so far (since the last `forget()`); the memory is reused as more arrive. */
  get received(): Buffer {
    return this.store.subarray(0, this.length);
  }

  /** Drops the bytes received so far. */
  forget(): void {
    this.length = 0;
  }

  /** Writes `data` in one write; a string is sent as latin1, byte for byte. */
  send(data: string | Uint8Array): void {
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** Resolves with `check`'s first defined answer, checked on each arrival; fails if the connection ends first. */
  until<T>(what: string, check: () => T | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const listener = () => {
        let answer: T | undefined;
        try {
          answer = check();
        } catch (err) {
          finish();
          reject(err);
          return;
        }
        if (answer !== undefined) {
          finish();
          resolve(answer);
        } else if (this.ended) {
          finish();
          reject(new Error(`the connection closed before ${what} (${this.received.length} bytes received)`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${what} within ${RAW_WAIT_MS} ms (${this.received.length} bytes received)`));
      }, RAW_WAIT_MS);
      const finish = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
      listener();
    });
  }

  /**
   * The responses to requests of `methods`, parsed from the first byte received, and the bytes after them,
   * once all have arrived (copies: the buffer is reused). Each arrival parses on from the last whole
   * response, so that thousands of pipelined answers cost linear time.
   */
  async responses(methods: string[]): Promise<{ responses: RawResponse[]; rest: Buffer }> {
    const found: RawResponse[] = [];
    let at = 0;
    return this.until(`${methods.length} responses`, () => {
      while (found.length < methods.length) {
        const next = parseResponse(this.received, at, methods[found.length]!, this.ended);
        if (next === undefined) return undefined;
        found.push({ ...next.response, body: Buffer.from(next.response.body) });
        at = next.end;
      }
      return { responses: found, rest: Buffer.from(this.received.subarray(at)) };
    });
  }

  /**
   * Sends `requests` in one write and resolves with their responses; the received bytes start afresh.
   * Fails if any byte follows the last response. `methods` defaults to each request line's first word.
   */
  async exchange(requests: string[], methods = requests.map((r) => r.slice(0, r.indexOf(" ")))): Promise<RawResponse[]> {
    this.forget();
    this.send(requests.join(""));
    const { responses, rest } = await this.responses(methods);
    if (rest.length > 0) throw new Error(`${rest.length} bytes after the last response: ${JSON.stringify(rest.toString("latin1", 0, 80))}`);
    return responses;
  }

  /** Resolves once the connection closed (the server ended or reset it). */
  closed(): Promise<void> {
    return this.until("close", () => (this.ended ? true : undefined)).then(() => undefined);
  }

  /** Closes the connection from this side and waits until it is closed. */
  async destroy(): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.ended ? resolve() : this.socket.once("close", () => resolve())));
    this.socket.destroy();
    await closed;
  }
}

/** The raw clients a test opened, so that `afterEach` can close them all. */
export class RawClients {
  private opened: RawClient[] = [];

  async open(port: number): Promise<RawClient> {
    const client = await RawClient.open(port);
    this.opened.push(client);
    return client;
  }

  /** Destroys every client opened since the last call and waits until each has closed. */
  async closeAll(): Promise<void> {
    const clients = this.opened.splice(0);
    await Promise.all(clients.map((c) => c.destroy()));
  }
}

/**
 * Waits until the server on `port` has handled everything it received before now: a whole request for
 * /barrier, which its handler must answer with 200, and the response, on a fresh connection. Events reach
 * the server in order, so by then it has seen, for example, an earlier client's close.
 */
export async function serverCaughtUp(clients: RawClients, port: number): Promise<void> {
  const other = await clients.open(port);
  const [response] = await other.exchange([rawGet("/barrier", "Connection: close")]);
  expect(response!.status).toBe(200);
}

/** A server under test on 127.0.0.1 and the raw clients opened to it; `close()` (in afterEach) ends both. */
export class ServerRig {
  readonly clients = new RawClients();
  server: HttpServer | undefined;

  async serve(handler: Handler): Promise<HttpServer> {
    this.server = await listen(handler, { hostname: "127.0.0.1", port: 0 });
    return this.server;
  }

  /** Serves `handler` and opens one client to it. */
  async start(handler: Handler): Promise<RawClient> {
    const server = await this.serve(handler);
    return this.clients.open(server.port);
  }

  async close(): Promise<void> {
    await this.clients.closeAll();
    await this.server?.close();
    this.server = undefined;
  }
}

/**
 * A peer's answer to a range client's request, for raw TCP peers written in tests: the 206 with the
 * bytes of `file` that `request` (its head, as received) asked for with `Range: bytes=A-B`.
 */
export function rangeReply(request: Uint8Array, file: Uint8Array): Buffer {
  const range = /\r\nRange: bytes=(\d+)-(\d+)\r\n/.exec(Buffer.from(request).toString("latin1"));
  if (range === null) throw new Error(`no Range in ${Buffer.from(request).toString("latin1")}`);
  const [start, end] = [Number(range[1]), Number(range[2])];
  const head = `HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${start}-${end}/${file.length}\r\nContent-Length: ${end - start + 1}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), file.subarray(start, end + 1)]);
}

/** A raw TCP server on 127.0.0.1 calling `onData` with each chunk a client sends; `stop` ends it. */
export function listenRaw(onData: (socket: BunSocket<undefined>, data: Uint8Array) => void): { port: number; stop: () => void } {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: onData } });
  return { port: listener.port, stop: () => listener.stop(true) };
}
