/**
 * The range client against small servers on 127.0.0.1 written in the test: a well-behaved peer (Range,
 * keep-alive), and raw TCP servers that answer wrongly in one way each.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { AptP2pError, ErrorCode } from "../../src/errors.ts";
import { RangeClient } from "../../src/transfer/range-client.ts";
import { listenRaw, rangeReply } from "../helpers/raw-http.ts";
import { noise } from "../helpers/repo.ts";

const FILE = noise(300_000, 5);
const stops: (() => void)[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
});

/** A keep-alive peer serving FILE at /f by Range over raw TCP; counts the connections it accepted. */
function goodPeer(): { url: string; connections: () => number } {
  let connections = 0;
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open() {
        connections++;
      },
      data(socket, request) {
        socket.write(rangeReply(request, FILE));
      },
    },
  });
  stops.push(() => listener.stop(true));
  return { url: `http://127.0.0.1:${listener.port}/f`, connections: () => connections };
}

/** Like goodPeer, but each answer waits `delayMs`; reports the most requests it held unanswered at once. */
function slowPeer(delayMs: number): { url: string; mostOutstanding: () => number } {
  let outstanding = 0;
  let most = 0;
  const server = listenRaw((socket, request) => {
    most = Math.max(most, ++outstanding);
    const reply = rangeReply(request, FILE);
    setTimeout(() => {
      outstanding--;
      socket.write(reply);
    }, delayMs);
  });
  stops.push(server.stop);
  return { url: `http://127.0.0.1:${server.port}/f`, mostOutstanding: () => most };
}

/** A TCP server that answers every request with `reply` (then closes if asked). */
function rawPeer(reply: Uint8Array | string, closeAfter = true): string {
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        socket.write(reply);
        if (closeAfter) socket.end();
      },
    },
  });
  stops.push(() => listener.stop(true));
  return `http://127.0.0.1:${listener.port}/f`;
}

function request(url: string, start: number, end: number, extra: { signal?: AbortSignal; fileSize?: number } = {}) {
  const into = new Uint8Array(end - start);
  return { url, start, end, fileSize: extra.fileSize ?? FILE.length, into, signal: extra.signal };
}

async function failure(promise: Promise<unknown>): Promise<AptP2pError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AptP2pError);
  return err as AptP2pError;
}

describe("RangeClient", () => {
  test("reads ranges into the caller's buffer, reusing one kept-alive connection for requests in turn", async () => {
    const peer = goodPeer();
    const client = new RangeClient();
    for (const [start, end] of [[0, 1000], [1000, 150_000], [299_000, 300_000]] as const) {
      const r = request(peer.url, start, end);
      await client.get(r);
      expect(Buffer.from(r.into).equals(Buffer.from(FILE.subarray(start, end)))).toBe(true);
    }
    expect(peer.connections()).toBe(1);
    client.close();
  });

  test("takes its range out of a 200 answer with the whole file", async () => {
    const head = `HTTP/1.1 200 OK\r\nContent-Length: ${FILE.length}\r\n\r\n`;
    const url = rawPeer(Buffer.concat([Buffer.from(head), FILE]));
    const r = request(url, 70_000, 80_000);
    await new RangeClient().get(r);
    expect(Buffer.from(r.into).equals(Buffer.from(FILE.subarray(70_000, 80_000)))).toBe(true);
  });

  test("rejects a short body, a wrong Content-Range, an error status, a missing length and a wrong file size", async () => {
    const client = new RangeClient();
    const short = rawPeer(`HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-99/${FILE.length}\r\nContent-Length: 100\r\n\r\nonly this`);
    expect((await failure(client.get(request(short, 0, 100)))).message).toContain("closed after 9 of 100");
    const shifted = rawPeer(`HTTP/1.1 206 Partial\r\nContent-Range: bytes 5-104/${FILE.length}\r\nContent-Length: 100\r\n\r\n${"x".repeat(100)}`);
    expect((await failure(client.get(request(shifted, 0, 100)))).message).toContain("Content-Range bytes 5-104");
    const busy = rawPeer("HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n");
    expect((await failure(client.get(request(busy, 0, 100)))).message).toContain("HTTP 503");
    const chunked = rawPeer("HTTP/1.1 206 Partial\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n");
    expect((await failure(client.get(request(chunked, 0, 100)))).message).toContain("Content-Length");
    const other = rawPeer(`HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-99/999\r\nContent-Length: 100\r\n\r\n${"x".repeat(100)}`);
    expect((await failure(client.get(request(other, 0, 100)))).code).toBe(ErrorCode.FileHashMismatch);
  });

  test("rejects a body longer than its Content-Length", async () => {
    const url = rawPeer(`HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-9/${FILE.length}\r\nContent-Length: 10\r\n\r\n${"y".repeat(50)}`, false);
    expect((await failure(new RangeClient().get(request(url, 0, 10)))).message).toContain("more than its Content-Length");
  });

  test("an abort ends the request at once with the signal's reason", async () => {
    const url = rawPeer(`HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-99/${FILE.length}\r\nContent-Length: 100\r\n\r\nsome`, false);
    const controller = new AbortController();
    const pending = new RangeClient().get(request(url, 0, 100, { signal: controller.signal }));
    setTimeout(() => controller.abort(new Error("stalled")), 50);
    expect(pending).rejects.toThrow("stalled");
  });

  test("keeps at most its limit of requests in flight to one origin; the rest wait their turn, and a waiting one can be aborted", async () => {
    const peer = slowPeer(30);
    const client = new RangeClient(2);
    const origin = new URL(peer.url).host;
    const requests = Array.from({ length: 6 }, (_, i) => request(peer.url, i * 1000, i * 1000 + 1000));
    const controller = new AbortController();
    const waiting = request(peer.url, 0, 10, { signal: controller.signal });
    const all = requests.map((r) => client.get(r));
    const aborted = client.get(waiting);
    expect(client.inFlight(origin)).toBe(2);
    controller.abort(new Error("given up while waiting"));
    expect(aborted).rejects.toThrow("given up while waiting");
    await Promise.all(all);
    for (const r of requests) expect(Buffer.from(r.into).equals(Buffer.from(FILE.subarray(r.start, r.end)))).toBe(true);
    expect(peer.mostOutstanding()).toBe(2);
    expect(client.inFlight(origin)).toBe(0);
    client.close();
  });

  test("a port where nothing listens is refused cleanly", async () => {
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    const err = await failure(new RangeClient().get(request(`http://127.0.0.1:${port}/f`, 0, 10)));
    expect(err.code).toBe(ErrorCode.MirrorUnreachable);
  });
});
