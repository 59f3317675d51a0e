/**
 * The HTTP/1.1 server over real sockets, as raw clients on 127.0.0.1 see it byte for byte: pipelining
 * order, keep-alive and close, response framing, failing handlers and refused requests. Request and
 * response bodies (direct, stream, backpressure, cancellation) are in server-bodies.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Handler } from "../../src/http/server.ts";
import { rawGet, rawRequest, serverCaughtUp, ServerRig } from "../helpers/raw-http.ts";
import { echoPath, mutedErrors, patterned, streamOf, textResponse } from "../helpers/responses.ts";

const rig = new ServerRig();
const clients = rig.clients;
const serve = (handler: Handler) => rig.serve(handler);
const start = (handler: Handler) => rig.start(handler);
afterEach(() => rig.close());

describe("listen() pipelining", () => {
  test("starts every pipelined handler at once and answers in request order even when the first finishes last", async () => {
    const first = Promise.withResolvers<Response>();
    const bothStarted = Promise.withResolvers<void>();
    const started: string[] = [];
    const client = await start((req) => {
      const path = new URL(req.url).pathname;
      started.push(path);
      if (started.length === 2) bothStarted.resolve();
      return path === "/first" ? first.promise : textResponse("second");
    });
    client.send(rawGet("/first") + rawGet("/second"));
    await bothStarted.promise;
    expect(started).toEqual(["/first", "/second"]);
    first.resolve(textResponse("first"));
    const { responses, rest } = await client.responses(["GET", "GET"]);
    expect(responses.map((r) => r.body.toString())).toEqual(["first", "second"]);
    expect(rest.length).toBe(0);
  });

  test("answers 40 pipelined requests in one write, in order, parsing at most 16 ahead of the answer being written", async () => {
    const held = Promise.withResolvers<void>();
    const sixteen = Promise.withResolvers<void>();
    let started = 0;
    const client = await start(async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/barrier") return textResponse("ok");
      started += 1;
      if (started === 16) sixteen.resolve();
      if (path === "/0") await held.promise;
      return textResponse(path);
    });
    const paths = Array.from({ length: 40 }, (_, i) => `/${i}`);
    client.send(paths.map((p) => rawGet(p)).join(""));
    await sixteen.promise;
    await serverCaughtUp(clients, rig.server!.port);
    expect(started).toBe(16);
    held.resolve();
    const { responses, rest } = await client.responses(paths.map(() => "GET"));
    expect(responses.map((r) => r.body.toString())).toEqual(paths);
    expect(rest.length).toBe(0);
    expect(started).toBe(40);
  });

  test("keeps the connection open for the next requests", async () => {
    const client = await start(echoPath);
    expect((await client.exchange([rawGet("/a")]))[0]!.body.toString()).toBe("/a");
    expect((await client.exchange([rawGet("/b"), rawGet("/c")])).map((r) => r.body.toString())).toEqual(["/b", "/c"]);
    expect(rig.server!.connections).toBe(1);
  });

  test("skips empty lines between pipelined requests", async () => {
    const client = await start(echoPath);
    const responses = await client.exchange([rawGet("/a"), `\r\n${rawGet("/b")}`], ["GET", "GET"]);
    expect(responses.map((r) => r.body.toString())).toEqual(["/a", "/b"]);
  });

  test("counts accepted TCP connections, not requests", async () => {
    const s = await serve(echoPath);
    const a = await clients.open(s.port);
    const b = await clients.open(s.port);
    await a.exchange([rawGet("/1"), rawGet("/2")]);
    await b.exchange([rawGet("/3")]);
    await a.exchange([rawGet("/4")]);
    expect(s.connections).toBe(2);
  });

  // Each answer carries 8 KiB of fields, 16 MB in all: far more than the socket buffers between the two
  // ends hold (a few MB), so a server that answered ahead without bound would have called every handler.
  test("stops answering pipelined HEADs once the socket takes no more from a client that does not read, then sends every answer in order", async () => {
    const count = 2000;
    const padding = "x".repeat(8 * 1024);
    let handled = 0;
    const s = await serve((req) => {
      const path = new URL(req.url).pathname;
      if (path === "/barrier") return textResponse("ok");
      handled += 1;
      return new Response(null, { headers: { "Content-Length": "5", "X-Path": path, "X-Padding": padding } });
    });
    const client = await clients.open(s.port);
    client.socket.pause();
    const paths = Array.from({ length: count }, (_, i) => `/${i}`);
    for (let i = 0; i < count; i += 500) client.send(paths.slice(i, i + 500).map((p) => rawRequest("HEAD", p)).join(""));
    // The server has stopped once a whole exchange on another connection leaves the count where it was.
    let before: number;
    do {
      before = handled;
      await serverCaughtUp(clients, s.port);
    } while (handled === 0 || handled !== before);
    expect(handled).toBeLessThan(count);
    client.socket.resume();
    const { responses, rest } = await client.responses(paths.map(() => "HEAD"));
    expect(responses.map((r) => r.headers.get("x-path"))).toEqual(paths);
    expect(responses.every((r) => r.status === 200 && r.headers.get("content-length") === "5" && r.headers.get("x-padding") === padding)).toBe(true);
    expect(rest.length).toBe(0);
    expect(handled).toBe(count);
  });
});

describe("listen() response framing", () => {
  test("sends a stream body of unknown length chunked to an HTTP/1.1 client, skipping empty chunks, and keeps the connection", async () => {
    const binary = patterned(70_000, 3);
    const client = await start(() => new Response(streamOf(["hello ", "", "world", binary])));
    const [response] = await client.exchange([rawGet("/stream")]);
    expect(response!.headers.get("transfer-encoding")).toBe("chunked");
    expect(response!.headers.has("content-length")).toBe(false);
    expect(response!.headers.has("connection")).toBe(false);
    expect(response!.body.equals(Buffer.concat([Buffer.from("hello world"), binary]))).toBe(true);
    const [again] = await client.exchange([rawGet("/stream")]);
    expect(again!.body.subarray(0, 11).toString()).toBe("hello world");
  });

  test("sends a stream body of unknown length to an HTTP/1.0 client delimited by closing the connection", async () => {
    const client = await start(() => new Response(streamOf(["hello ", "world"])));
    // Even when the client asked to keep the connection: closing it is how the body's end is told.
    client.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    await client.closed();
    // An orderly end, not a reset: the body is whole (server-bodies.test.ts has the failing case).
    expect(client.error).toBeUndefined();
    const { responses } = await client.responses(["GET"]);
    expect(responses[0]!.headers.get("connection")).toBe("close");
    expect(responses[0]!.headers.has("transfer-encoding")).toBe(false);
    expect(responses[0]!.body.toString()).toBe("hello world");
  });

  test("keeps an HTTP/1.0 connection that asked for keep-alive when the body's length is known", async () => {
    const client = await start(echoPath);
    const [first] = await client.exchange(["GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
    expect(first!.headers.get("connection")).toBe("keep-alive");
    const [second] = await client.exchange(["GET /b HTTP/1.0\r\n\r\n"]);
    expect(second!.body.toString()).toBe("/b");
    expect(second!.headers.get("connection")).toBe("close");
    await client.closed();
  });

  test("answers a `Connection: close` request with `Connection: close`, ends the connection and reads no further request", async () => {
    const started: string[] = [];
    const client = await start((req) => {
      const path = new URL(req.url).pathname;
      started.push(path);
      return textResponse(path);
    });
    client.send(rawGet("/last", "Connection: close") + rawGet("/ignored"));
    await client.closed();
    const { responses, rest } = await client.responses(["GET"]);
    expect(responses[0]!.headers.get("connection")).toBe("close");
    expect(responses[0]!.body.toString()).toBe("/last");
    expect(rest.length).toBe(0);
    expect(started).toEqual(["/last"]);
  });

  test("answers HEAD with the handler's Content-Length and no body, and the next pipelined response follows directly", async () => {
    const client = await start((req) => {
      const path = new URL(req.url).pathname;
      if (path === "/declared") return new Response(null, { headers: { "Content-Length": "1234" } });
      // A handler that does not tell HEAD from GET: the body is not sent.
      return new Response(streamOf(["hello"]), { headers: { "Content-Length": "5" } });
    });
    const responses = await client.exchange([rawRequest("HEAD", "/declared"), rawRequest("HEAD", "/body"), rawGet("/body")]);
    expect(responses.map((r) => r.headers.get("content-length"))).toEqual(["1234", "5", "5"]);
    expect(responses.map((r) => r.body.toString())).toEqual(["", "", "hello"]);
  });

  test("answers a GET whose Response has no body with Content-Length 0", async () => {
    const client = await start(() => new Response(null, { status: 200 }));
    const responses = await client.exchange([rawGet("/empty"), rawGet("/empty")]);
    expect(responses.map((r) => r.headers.get("content-length"))).toEqual(["0", "0"]);
  });

  test("sends no body for a 204 or a 304; a 304 keeps the Content-Length its handler declared", async () => {
    const client = await start((req) =>
      new URL(req.url).pathname === "/204"
        ? new Response(streamOf(["never sent"]), { status: 204 })
        : new Response(streamOf(["never sent"]), { status: 304, headers: { "Content-Length": "10" } }),
    );
    // A parser that read a body here would take "never sent" for the start of the next response.
    const responses = await client.exchange([rawGet("/204"), rawGet("/304"), rawGet("/204")]);
    expect(responses.map((r) => r.status)).toEqual([204, 304, 204]);
    expect(responses.map((r) => r.headers.get("content-length"))).toEqual([undefined, "10", undefined]);
  });
});

describe("listen() when a handler fails", () => {
  // The server logs each failure; kept off the test output, and counted where a test cares.
  const muted = mutedErrors();

  test("ends the connection, and keeps serving others, when a handler's Response body was already read", async () => {
    const s = await serve(async (req) => {
      const response = new Response(streamOf(["read once"]));
      if (new URL(req.url).pathname === "/used") await response.text();
      return response;
    });
    const client = await clients.open(s.port);
    client.send(rawGet("/used") + rawGet("/next"));
    await client.closed();
    expect(client.received.length).toBe(0);
    const other = await clients.open(s.port);
    expect((await other.exchange([rawGet("/fine")]))[0]!.body.toString()).toBe("read once");
    expect(muted.spy).toHaveBeenCalledTimes(1);
  });

  test("answers 500 when the handler throws, logs it, and the connection stays usable", async () => {
    const client = await start((req) => {
      if (new URL(req.url).pathname === "/throw") throw new Error("handler bug");
      return textResponse("fine");
    });
    const responses = await client.exchange([rawGet("/throw"), rawGet("/ok")]);
    expect(responses.map((r) => r.status)).toEqual([500, 200]);
    expect(responses[1]!.body.toString()).toBe("fine");
    expect((await client.exchange([rawGet("/ok")]))[0]!.status).toBe(200);
    expect(muted.spy).toHaveBeenCalledTimes(1);
  });
});

describe("listen() refusing requests", () => {
  test("answers a malformed request line with 400 after the earlier responses, then closes without reading on", async () => {
    const started: string[] = [];
    const client = await start((req) => {
      started.push(new URL(req.url).pathname);
      return textResponse("ok");
    });
    client.send(rawGet("/before") + "GARBAGE\r\n\r\n" + rawGet("/after"));
    await client.closed();
    const { responses, rest } = await client.responses(["GET", "GET"]);
    expect(responses.map((r) => r.status)).toEqual([200, 400]);
    expect(responses[1]!.headers.get("connection")).toBe("close");
    expect(responses[1]!.body.toString()).toContain('malformed request line "GARBAGE"');
    expect(rest.length).toBe(0);
    expect(started).toEqual(["/before"]);
  });

  test("answers an oversized request head with 431 and closes", async () => {
    const client = await start(echoPath);
    client.send(rawGet("/", `X-Big: ${"a".repeat(70 * 1024)}`));
    await client.closed();
    const { responses } = await client.responses(["GET"]);
    expect(responses[0]!.status).toBe(431);
  });

  test("answers a request body over the limit with 413 and closes", async () => {
    const client = await start(echoPath);
    client.send(rawRequest("POST", "/api", `Content-Length: ${2 * 1024 * 1024}`));
    await client.closed();
    const { responses } = await client.responses(["POST"]);
    expect(responses[0]!.status).toBe(413);
  });

  test("answers a request with a Transfer-Encoding with 501 and does not call the handler", async () => {
    let called = false;
    const client = await start(() => {
      called = true;
      return textResponse("ok");
    });
    client.send(`${rawRequest("POST", "/api", "Transfer-Encoding: chunked")}5\r\nhello\r\n0\r\n\r\n`);
    await client.closed();
    const { responses } = await client.responses(["POST"]);
    expect(responses[0]!.status).toBe(501);
    expect(called).toBe(false);
  });

  test("answers CONNECT with 405 and a message pointing to the /https/ prefix, and keeps the connection", async () => {
    let called = false;
    const client = await start(() => {
      called = true;
      return textResponse("ok");
    });
    const [response] = await client.exchange(["CONNECT mirror.example.org:443 HTTP/1.1\r\nHost: mirror.example.org:443\r\n\r\n"], ["CONNECT"]);
    expect(response!.status).toBe(405);
    expect(response!.headers.get("allow")).toBe("GET, HEAD");
    expect(response!.body.toString()).toContain("/https/");
    expect(called).toBe(false);
    expect((await client.exchange([rawGet("/")]))[0]!.status).toBe(200);
  });

  // The fetch standard forbids TRACE and TRACK in a Request; Bun reads methods it does not know as GET.
  for (const method of ["TRACE", "TRACK", "FOO", "get"]) {
    test(`answers ${method} with 405 without calling the handler, never as another method`, async () => {
      const seen: string[] = [];
      const client = await start((req) => {
        seen.push(req.method);
        return textResponse("served");
      });
      const [response] = await client.exchange([rawRequest(method, "/")]);
      expect(response!.status).toBe(405);
      expect(response!.headers.get("allow")).toBe("GET, HEAD");
      expect(response!.body.toString()).toContain(`method ${method} is not supported`);
      expect(seen).toEqual([]);
    });
  }

  test("gives the handler an extension method it can carry, such as PURGE, as sent", async () => {
    const client = await start((req) => textResponse(req.method));
    const [response] = await client.exchange([rawRequest("PURGE", "/")]);
    expect(response!.body.toString()).toBe("PURGE");
  });
});

describe("listen() closing", () => {
  test("close() ends open connections and refuses new ones", async () => {
    const s = await serve(echoPath);
    const client = await clients.open(s.port);
    await client.exchange([rawGet("/a")]);
    await s.close();
    await client.closed();
    await expect(clients.open(s.port)).rejects.toThrow();
  });
});
