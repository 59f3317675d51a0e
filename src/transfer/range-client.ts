/**
 * A lean HTTP/1.1 client for the one request a swarm makes over and over: GET of a byte range of a peer's
 * file (http: only), on kept-alive connections, one request at a time on each. Bun's fetch() hands a body
 * through a ReadableStream, allocating and copying every chunk twice more; for a 100 MB download from
 * eight peers that was most of the downloader's CPU time on a two-core machine where the peers run too.
 * Here the bytes go from the socket straight into the caller's buffer.
 *
 * Only what a peer server sends is understood: 206 with Content-Range, or 200 with the whole file;
 * Content-Length is required (no chunked bodies). Anything else fails the request; the caller decides
 * what a failure means.
 */
import type { Socket } from "bun";
import { AptP2pError, ErrorCode } from "../errors.ts";

/** A response head longer than this is refused (a peer's is about 200 bytes). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Idle kept-alive connections kept per origin at most. */
export const MAX_IDLE_PER_ORIGIN = 8;
/**
 * Requests in flight to one origin at most, across every download of the process; more wait their
 * turn. A peer server gives one address this many upload slots by default and answers 503 beyond them:
 * a proxy fetching four large files at once, four requests each to every peer, was refused, and a
 * download that met three refusals in a row dropped the peer and took the file from the mirror.
 */
export const MAX_REQUESTS_PER_ORIGIN = 8;

export interface RangeRequest {
  /** http://host:port/path */
  url: string;
  start: number;
  /** Exclusive. */
  end: number;
  /** The file's size, to accept a 200 (whole file) and to recognise a wrong-size file. */
  fileSize: number;
  /** Receives exactly end - start bytes. */
  into: Uint8Array;
  signal?: AbortSignal;
  /** Called as bytes land, with the count so far (for stall detection). */
  onBytes?: (received: number) => void;
}

interface Exchange {
  request: RangeRequest;
  resolve: () => void;
  reject: (err: unknown) => void;
  head: Uint8Array[];
  headBytes: number;
  /** Body bytes still to come from the server, once the head is parsed. */
  bodyLeft: number;
  /** Body bytes to drop before the range starts (a 200 answer). */
  skip: number;
  received: number;
  reusable: boolean;
  error?: AptP2pError;
}

interface Connection {
  origin: string;
  socket: Socket<Connection> | undefined;
  exchange: Exchange | undefined;
  closed: boolean;
}

export class RangeClient {
  private readonly idle = new Map<string, Connection[]>();
  /** Requests in flight per origin, and those waiting for one of them to end. */
  private readonly active = new Map<string, number>();
  private readonly queued = new Map<string, (() => void)[]>();

  constructor(private readonly maxPerOrigin = MAX_REQUESTS_PER_ORIGIN) {}

  /** Fills request.into with the range's bytes, or throws (AptP2pError; the signal's reason when aborted). */
  async get(request: RangeRequest): Promise<void> {
    const url = new URL(request.url);
    if (url.protocol !== "http:") throw new AptP2pError(ErrorCode.Internal, `RangeClient takes http: URLs only, not ${request.url}`);
    request.signal?.throwIfAborted();
    const origin = url.host;
    await this.turn(origin, request.signal);
    try {
      await this.exchange(origin, url, request);
    } finally {
      this.done(origin);
    }
  }

  /** Requests in flight to `origin` now (for tests). */
  inFlight(origin: string): number {
    return this.active.get(origin) ?? 0;
  }

  /** Waits until fewer than maxPerOrigin requests to `origin` are in flight, and takes a place. */
  private async turn(origin: string, signal: AbortSignal | undefined): Promise<void> {
    const active = this.active.get(origin) ?? 0;
    if (active < this.maxPerOrigin) {
      this.active.set(origin, active + 1);
      return;
    }
    const queue = this.queued.get(origin) ?? [];
    this.queued.set(origin, queue);
    await new Promise<void>((resolve, reject) => {
      // The place is handed over by done(): the count stays as it is.
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const at = queue.indexOf(wake);
        if (at >= 0) queue.splice(at, 1);
        reject(signal!.reason);
      };
      queue.push(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** A request to `origin` ended: the next waiting one goes, else the place is freed. */
  private done(origin: string): void {
    const next = this.queued.get(origin)?.shift();
    if (next !== undefined) return next();
    if (this.queued.get(origin)?.length === 0) this.queued.delete(origin);
    const active = (this.active.get(origin) ?? 1) - 1;
    if (active > 0) this.active.set(origin, active);
    else this.active.delete(origin);
  }

  private async exchange(origin: string, url: URL, request: RangeRequest): Promise<void> {
    const connection = this.idle.get(origin)?.pop() ?? (await this.connect(origin, url, request));
    const done = new Promise<void>((resolve, reject) => {
      connection.exchange = { request, resolve, reject, head: [], headBytes: 0, bodyLeft: -1, skip: 0, received: 0, reusable: true };
    });
    const onAbort = () => {
      if (connection.exchange?.request === request) this.fail(connection, request.signal!.reason);
    };
    request.signal?.addEventListener("abort", onAbort, { once: true });
    const last = request.end - 1;
    connection.socket!.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${origin}\r\nRange: bytes=${request.start}-${last}\r\n\r\n`);
    try {
      await done;
    } finally {
      request.signal?.removeEventListener("abort", onAbort);
    }
    this.release(connection);
  }

  /** Closes every idle connection. */
  close(): void {
    for (const list of this.idle.values()) for (const c of list) this.destroy(c);
    this.idle.clear();
  }

  private async connect(origin: string, url: URL, request: RangeRequest): Promise<Connection> {
    const connection: Connection = { origin, socket: undefined, exchange: undefined, closed: false };
    try {
      connection.socket = await Bun.connect<Connection>({
        hostname: url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(url.port || 80),
        data: connection,
        socket: {
          data: (socket, chunk) => this.onData(socket.data, chunk),
          close: (socket) => this.onClose(socket.data),
          end: (socket) => this.onClose(socket.data),
          error: (socket, err) => this.fail(socket.data, AptP2pError.mirror(socket.data.exchange?.request.url ?? request.url, err.message, err)),
        },
      });
    } catch (err) {
      const code = (err as { code?: string } | null)?.code;
      throw AptP2pError.mirror(request.url, code === "ECONNREFUSED" || code === "ConnectionRefused" ? "connection refused" : String(err), err);
    }
    return connection;
  }

  private onData(connection: Connection, chunk: Uint8Array): void {
    const exchange = connection.exchange;
    if (exchange === undefined) return this.destroy(connection); // bytes nobody asked for
    try {
      let body = chunk;
      if (exchange.bodyLeft < 0) {
        const rest = this.readHead(exchange, chunk);
        if (rest === undefined) return;
        body = rest;
      }
      this.readBody(connection, exchange, body);
    } catch (err) {
      this.fail(connection, err);
    }
  }

  /** Collects the head; returns the body bytes after it once it is complete. */
  private readHead(exchange: Exchange, chunk: Uint8Array): Uint8Array | undefined {
    exchange.head.push(chunk);
    exchange.headBytes += chunk.length;
    const all = exchange.head.length === 1 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length) : Buffer.concat(exchange.head);
    const end = all.indexOf("\r\n\r\n");
    if (end < 0) {
      if (exchange.headBytes > MAX_HEAD_BYTES) throw AptP2pError.mirror(exchange.request.url, "response head too long");
      if (exchange.head.length > 1) exchange.head = [all];
      return undefined;
    }
    this.parseHead(exchange, all.toString("latin1", 0, end));
    return all.subarray(end + 4);
  }

  private parseHead(exchange: Exchange, head: string): void {
    const { request } = exchange;
    const [statusLine = "", ...lines] = head.split("\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN);
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get("content-length") ?? NaN);
    exchange.reusable = headers.get("connection")?.toLowerCase() !== "close" && statusLine.startsWith("HTTP/1.1");
    if (status === 416) {
      const total = /^bytes \*\/(\d+)$/.exec(headers.get("content-range") ?? "")?.[1];
      if (total !== undefined && Number(total) !== request.fileSize) throw sizeMismatch(request.url, Number(total), request.fileSize);
    }
    if (status === 503) throw new PeerBusyError(request.url);
    if (status !== 200 && status !== 206) throw AptP2pError.mirror(request.url, `HTTP ${Number.isNaN(status) ? "response unreadable" : status}`);
    if (!Number.isSafeInteger(length) || headers.has("transfer-encoding")) throw AptP2pError.mirror(request.url, "response without a Content-Length");
    if (status === 200) {
      if (length !== request.fileSize) throw sizeMismatch(request.url, length, request.fileSize);
      exchange.skip = request.start;
    } else {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headers.get("content-range") ?? "");
      if (range === null || Number(range[1]) !== request.start || Number(range[2]) - Number(range[1]) + 1 !== length) {
        throw AptP2pError.mirror(request.url, `answered Range ${request.start}-${request.end - 1} with Content-Range ${headers.get("content-range")}`);
      }
      if (range[3] !== "*" && Number(range[3]) !== request.fileSize) throw sizeMismatch(request.url, Number(range[3]), request.fileSize);
    }
    exchange.bodyLeft = length;
  }

  private readBody(connection: Connection, exchange: Exchange, chunk: Uint8Array): void {
    const { request } = exchange;
    if (chunk.length > exchange.bodyLeft) return this.fail(connection, AptP2pError.mirror(request.url, "sent more than its Content-Length"));
    exchange.bodyLeft -= chunk.length;
    let part = chunk;
    if (exchange.skip > 0) {
      const skipped = Math.min(exchange.skip, part.length);
      exchange.skip -= skipped;
      part = part.subarray(skipped);
    }
    const wanted = request.into.length - exchange.received;
    if (part.length > wanted) part = part.subarray(0, wanted);
    request.into.set(part, exchange.received);
    exchange.received += part.length;
    if (part.length > 0) request.onBytes?.(exchange.received);
    if (exchange.received === request.into.length) {
      connection.exchange = undefined;
      // A 200 answer still sending the rest of the file, or "Connection: close": of no more use.
      if (exchange.bodyLeft > 0 || !exchange.reusable) this.destroy(connection);
      exchange.resolve();
    } else if (exchange.bodyLeft === 0) {
      this.fail(connection, AptP2pError.mirror(request.url, `response ended after ${exchange.received} of ${request.into.length} bytes`));
    }
  }

  private onClose(connection: Connection): void {
    this.destroy(connection);
    const exchange = connection.exchange;
    if (exchange !== undefined) this.fail(connection, AptP2pError.mirror(exchange.request.url, `connection closed after ${exchange.received} of ${exchange.request.into.length} bytes`));
    const list = this.idle.get(connection.origin);
    if (list !== undefined) this.idle.set(connection.origin, list.filter((c) => c !== connection));
  }

  private fail(connection: Connection, err: unknown): void {
    const exchange = connection.exchange;
    connection.exchange = undefined;
    this.destroy(connection);
    exchange?.reject(err);
  }

  private release(connection: Connection): void {
    if (connection.closed) return;
    const list = this.idle.get(connection.origin) ?? [];
    if (!connection.socket || list.length >= MAX_IDLE_PER_ORIGIN) return this.destroy(connection);
    list.push(connection);
    this.idle.set(connection.origin, list);
  }

  private destroy(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    connection.socket?.terminate();
  }
}

/** The peer answered 503: all the upload slots it gives our address are taken (by us or a neighbour behind the same address). */
export class PeerBusyError extends AptP2pError {
  constructor(url: string) {
    super(ErrorCode.MirrorUnreachable, `Cannot fetch ${url}: HTTP 503, the peer is busy`);
    this.name = "PeerBusyError";
  }
}

function sizeMismatch(url: string, actual: number, expected: number): AptP2pError {
  return new AptP2pError(ErrorCode.FileHashMismatch, `Rejected ${url}: size ${actual} bytes, the signed index says ${expected}`);
}
