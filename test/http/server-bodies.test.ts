/**
 * Request and response bodies of the HTTP/1.1 server over real sockets: request bodies and 100 Continue,
 * direct bodies, stream bodies that fail, clients that go away midway, and large bodies sent with
 * backpressure. Framing, pipelining and refusals are in server.test.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { directResponse, fileRangeBody, memoryBody, type BodyOutcome, type DirectBody } from "../../src/http/direct-body.ts";
import type { Handler } from "../../src/http/server.ts";
import { RAW_WAIT_MS, rawGet, rawRequest, serverCaughtUp, ServerRig } from "../helpers/raw-http.ts";
import { echoPath, mutedErrors, patterned, streamOf, textResponse } from "../helpers/responses.ts";

const rig = new ServerRig();
const clients = rig.clients;
const serve = (handler: Handler) => rig.serve(handler);
const start = (handler: Handler) => rig.start(handler);
afterEach(() => rig.close());

describe("listen() request bodies", () => {
  const jsonEcho: Handler = async (req) => {
    const got = (await req.json()) as unknown;
    const body = JSON.stringify({ method: req.method, got });
    return textResponse(body, { headers: { "Content-Type": "application/json" } });
  };

  test("gives the handler a POST body framed by Content-Length, sent in parts, and reads the next request after it", async () => {
    const client = await start(async (req, info) => (req.method === "POST" ? jsonEcho(req, info) : echoPath(req, info)));
    const body = JSON.stringify({ peers: ["10.0.0.1:6881"], note: "é" });
    const length = Buffer.byteLength(body);
    client.send(rawRequest("POST", "/api", "Content-Type: application/json", `Content-Length: ${length}`) + body.slice(0, 10));
    client.send(Buffer.concat([Buffer.from(body).subarray(Buffer.byteLength(body.slice(0, 10))), Buffer.from(rawGet("/after"))]));
    const { responses } = await client.responses(["POST", "GET"]);
    expect(JSON.parse(responses[0]!.body.toString())).toEqual({ method: "POST", got: { peers: ["10.0.0.1:6881"], note: "é" } });
    expect(responses[1]!.body.toString()).toBe("/after");
  });

  test("sends 100 Continue to a client that waits for it before sending the body", async () => {
    let called = false;
    const client = await start(async (req, info) => {
      called = true;
      return jsonEcho(req, info);
    });
    const body = JSON.stringify({ ok: true });
    client.send(rawRequest("POST", "/api", "Expect: 100-continue", `Content-Length: ${body.length}`));
    await client.until("100 Continue", () => (client.received.includes("\r\n\r\n") ? true : undefined));
    expect(client.received.toString()).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    expect(called).toBe(false);
    client.send(body);
    const { responses, rest } = await client.responses(["POST", "POST"]);
    expect(responses.map((r) => r.status)).toEqual([100, 200]);
    expect(JSON.parse(responses[1]!.body.toString())).toEqual({ method: "POST", got: { ok: true } });
    expect(rest.length).toBe(0);
  });

  test("sends no 100 Continue when the body came with the head", async () => {
    const client = await start(jsonEcho);
    const body = JSON.stringify({ ok: 1 });
    const [response] = await client.exchange([rawRequest("POST", "/api", "Expect: 100-continue", `Content-Length: ${body.length}`) + body]);
    expect(response!.status).toBe(200);
    expect(client.received.toString("latin1", 0, 12)).toBe("HTTP/1.1 200");
  });

  test("sends no 100 Continue among the bytes of an earlier response; the body is read when it comes", async () => {
    const first = Promise.withResolvers<Response>();
    const s = await serve(async (req, info) => {
      const path = new URL(req.url).pathname;
      if (path === "/barrier") return textResponse("ok");
      return path === "/first" ? first.promise : jsonEcho(req, info);
    });
    const client = await clients.open(s.port);
    const body = JSON.stringify({ late: true });
    client.send(rawGet("/first") + rawRequest("POST", "/api", "Expect: 100-continue", `Content-Length: ${body.length}`));
    await serverCaughtUp(clients, s.port);
    first.resolve(textResponse("first"));
    const { responses } = await client.responses(["GET"]);
    expect(responses[0]!.body.toString()).toBe("first");
    // A client sends the body anyway once it tires of waiting for the 100.
    client.send(body);
    const all = await client.responses(["GET", "POST"]);
    expect(all.responses.map((r) => r.status)).toEqual([200, 200]);
    expect(JSON.parse(all.responses[1]!.body.toString())).toEqual({ method: "POST", got: { late: true } });
    expect(all.rest.length).toBe(0);
  });
});

describe("listen() direct bodies", () => {
  const bytes = patterned(20_000, 9);

  test("sends a memory body with its length, and the next pipelined response after it", async () => {
    const outcomes: BodyOutcome[] = [];
    const client = await start((req) => {
      if (new URL(req.url).pathname === "/text") return textResponse("after");
      return directResponse(memoryBody(bytes, { chunkBytes: 3000, settle: (o) => outcomes.push(o) }), { headers: { "Content-Type": "application/octet-stream" } });
    });
    const responses = await client.exchange([rawGet("/direct"), rawGet("/text")]);
    expect(responses[0]!.headers.get("content-length")).toBe(String(bytes.length));
    expect(responses[0]!.headers.get("content-type")).toBe("application/octet-stream");
    expect(responses[0]!.body.equals(Buffer.from(bytes))).toBe(true);
    expect(responses[1]!.body.toString()).toBe("after");
    expect(outcomes).toEqual(["complete"]);
  });

  test("sends an empty direct body as Content-Length 0 and settles it complete", async () => {
    const outcomes: BodyOutcome[] = [];
    const client = await start(() => directResponse(memoryBody(new Uint8Array(0), { chunkBytes: 1000, settle: (o) => outcomes.push(o) }), {}));
    const responses = await client.exchange([rawGet("/empty"), rawGet("/empty")]);
    expect(responses.map((r) => r.headers.get("content-length"))).toEqual(["0", "0"]);
    expect(outcomes).toEqual(["complete", "complete"]);
  });

  test("sends a direct body whose head is larger than the room kept for it in the first write", async () => {
    const big = "x".repeat(12 * 1024);
    const client = await start(() => directResponse(memoryBody(bytes, { chunkBytes: 8000, settle: () => undefined }), { headers: { "X-Big": big } }));
    const [response] = await client.exchange([rawGet("/direct")]);
    expect(response!.headers.get("x-big")).toBe(big);
    expect(response!.body.equals(Buffer.from(bytes))).toBe(true);
  });

  test("answers HEAD with a direct body's length without reading it, and settles it once", async () => {
    const outcomes: BodyOutcome[] = [];
    let read = 0;
    const client = await start(() =>
      directResponse(memoryBody(bytes, { chunkBytes: 1000, onRead: (n) => (read += n), settle: (o) => outcomes.push(o) }), {}),
    );
    const responses = await client.exchange([rawRequest("HEAD", "/direct"), rawRequest("HEAD", "/direct")]);
    expect(responses.map((r) => r.headers.get("content-length"))).toEqual([String(bytes.length), String(bytes.length)]);
    expect(read).toBe(0);
    expect(outcomes).toEqual(["cancelled", "cancelled"]);
  });

  test("cuts the connection when a read fails, settling that body as an error and the next pipelined one as cancelled", async () => {
    const logged = spyOn(console, "error").mockImplementation(() => undefined);
    try {
      const outcomes: string[] = [];
      /** 10 000 bytes whose second read fails. */
      const failing = (name: string): DirectBody => {
        let reads = 0;
        return {
          length: 10_000,
          chunkBytes: 4000,
          read: async (into) => {
            reads += 1;
            if (reads === 2) throw new Error("disk read failed");
            into.fill(7, 0, 4000);
            return 4000;
          },
          settle: (o) => outcomes.push(`${name} ${o}`),
        };
      };
      const client = await start((req) => directResponse(failing(new URL(req.url).pathname), {}));
      client.send(rawGet("/first") + rawGet("/next"));
      await client.closed();
      const head = client.received.indexOf("\r\n\r\n");
      expect(client.received.toString("latin1", 0, head)).toContain("Content-Length: 10000");
      expect(client.received.length - head - 4).toBe(4000);
      expect(outcomes).toEqual(["/first error", "/next cancelled"]);
    } finally {
      logged.mockRestore();
    }
  });
});

describe("listen() bodies that fail", () => {
  // The server logs each failure; kept off the test output, and counted where a test cares.
  const muted = mutedErrors();

  test("cuts the connection when a stream body fails midway: the client sees fewer bytes than the Content-Length", async () => {
    const client = await start(() => new Response(streamOf(["a".repeat(40)], new Error("piece 3 did not verify")), { headers: { "Content-Length": "100" } }));
    client.send(rawGet("/file"));
    await client.closed();
    const head = client.received.indexOf("\r\n\r\n");
    expect(client.received.toString("latin1", 0, head)).toContain("Content-Length: 100");
    expect(client.received.length - head - 4).toBe(40);
  });

  test("cuts the connection when a stream body is longer than its Content-Length, sending none of the excess", async () => {
    const client = await start(() => new Response(streamOf(["12345", "6789012345"]), { headers: { "Content-Length": "10" } }));
    client.send(rawGet("/file") + rawGet("/next"));
    await client.closed();
    const head = client.received.indexOf("\r\n\r\n");
    expect(client.received.subarray(head + 4).toString()).toBe("12345");
  });

  test("cuts the connection when a stream body ends short of its Content-Length", async () => {
    const client = await start(() => new Response(streamOf(["12345"]), { headers: { "Content-Length": "10" } }));
    client.send(rawGet("/file") + rawGet("/next"));
    await client.closed();
    const head = client.received.indexOf("\r\n\r\n");
    expect(client.received.subarray(head + 4).toString()).toBe("12345");
  });

  test("resets the connection of an HTTP/1.0 client when a stream body delimited by the close fails midway, so that it cannot pass for a whole body", async () => {
    // No Content-Length and no chunking for HTTP/1.0: an orderly close would be the body's proper end.
    const client = await start(() => new Response(streamOf(["hello "], new Error("piece 3 did not verify"))));
    client.send("GET /stream HTTP/1.0\r\n\r\n");
    await client.closed();
    expect(client.error?.code).toBe("ECONNRESET");
    expect(muted.spy).toHaveBeenCalledTimes(1);
  });
});

describe("listen() when the client goes away", () => {
  test("settles a direct body as cancelled when its client disconnects while it waits for its pace", async () => {
    const bytes = patterned(64_000, 1);
    const outcomes: BodyOutcome[] = [];
    const settled = Promise.withResolvers<void>();
    const holding = Promise.withResolvers<void>();
    const gate = Promise.withResolvers<void>();
    let paces = 0;
    const pace = (): Promise<void> | undefined => {
      paces += 1;
      if (paces === 1) return undefined;
      if (paces === 2) {
        holding.resolve();
        return gate.promise;
      }
      return undefined;
    };
    const s = await serve((req) => {
      if (new URL(req.url).pathname === "/barrier") return textResponse("ok");
      const body = memoryBody(bytes, {
        chunkBytes: 1000,
        pace,
        settle: (outcome) => {
          outcomes.push(outcome);
          settled.resolve();
        },
      });
      return directResponse(body, { headers: { "Content-Length": String(bytes.length) } });
    });
    const client = await clients.open(s.port);
    client.send(rawGet("/file"));
    await client.until("the first 1000 body bytes", () => {
      const head = client.received.indexOf("\r\n\r\n");
      return head >= 0 && client.received.length - head - 4 >= 1000 ? true : undefined;
    });
    await holding.promise;
    await client.destroy();
    await serverCaughtUp(clients, s.port);
    gate.resolve();
    await settled.promise;
    expect(outcomes).toEqual(["cancelled"]);
  });

  test("cancels a stream body when its client disconnects", async () => {
    const cancelled = Promise.withResolvers<unknown>();
    const client = await start(
      () =>
        new Response(
          new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(new TextEncoder().encode("first chunk"));
            },
            pull: () => new Promise<void>(() => undefined),
            cancel: (reason) => cancelled.resolve(reason),
          }),
        ),
    );
    client.send(rawGet("/stream"));
    await client.until("the first chunk", () => (client.received.includes("first chunk") ? true : undefined));
    await client.destroy();
    const guard = setTimeout(() => cancelled.reject(new Error(`the stream was not cancelled within ${RAW_WAIT_MS} ms`)), RAW_WAIT_MS);
    await cancelled.promise.finally(() => clearTimeout(guard));
  });
});

describe("listen() large direct bodies", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "apt-p2p-server-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // The kernel takes a few MB while the client reads nothing; the rest of a 16 MB body waits in the
  // server's writer, in pooled buffers that must not be reused before the socket took them.
  test("sends 16 MB of file ranges byte-identical, in order, to a client that stops reading and then reads in fits", async () => {
    const bytes = patterned(16 * 1024 * 1024 + 333, 5);
    const path = join(dir, "big.deb");
    await writeFile(path, bytes);
    const outcomes: BodyOutcome[] = [];
    let read = 0;
    const readOneMB = Promise.withResolvers<void>();
    const ranges: [path: string, start: number, length: number][] = [
      ["/whole", 0, bytes.length],
      ["/part", 1024 * 1024 + 7, 3 * 1024 * 1024],
      ["/small", 100, 5000],
    ];
    const client = await start((req) => {
      const [, start, length] = ranges.find(([p]) => p === new URL(req.url).pathname)!;
      const onRead = (n: number) => {
        read += n;
        if (read >= 1024 * 1024) readOneMB.resolve();
      };
      const body = fileRangeBody({ path, start, length, chunkBytes: 512 * 1024, onRead, settle: (outcome) => outcomes.push(outcome) });
      return directResponse(body, { headers: { "Content-Length": String(length) } });
    });
    client.socket.pause();
    const responses = client.exchange(ranges.map(([p]) => rawGet(p)));
    await readOneMB.promise;
    // Time for the server to fill the socket's buffers and wait for a drain. Only how much of the slow
    // path runs depends on it: the bytes must arrive right however long it is.
    await Bun.sleep(50);
    let arrivals = 0;
    client.socket.on("data", () => {
      if (arrivals++ % 8 !== 0) return;
      client.socket.pause();
      setTimeout(() => client.socket.resume(), 2);
    });
    client.socket.resume();
    (await responses).forEach((response, i) => {
      const [, start, length] = ranges[i]!;
      expect(response.body.length).toBe(length);
      expect(response.body.equals(Buffer.from(bytes.subarray(start, start + length)))).toBe(true);
    });
    expect(outcomes).toEqual(["complete", "complete", "complete"]);
  });
});
