/** Responses and bodies that handlers in the HTTP server tests answer with. */
import type { Handler } from "../../src/http/server.ts";

/** A text response with its Content-Length (a string body alone would be sent chunked). */
export function textResponse(body: string, init: { headers?: Record<string, string> } = {}): Response {
  return new Response(body, { headers: { "Content-Length": String(Buffer.byteLength(body)), ...init.headers } });
}

/** Answers with the request's path, for tests where only the order or the count matters. */
export const echoPath: Handler = (req) => textResponse(new URL(req.url).pathname);

/** A stream that gives `chunks` one per read, then ends (or fails with `error`). */
export function streamOf(chunks: (string | Uint8Array)[], error?: Error): ReadableStream<Uint8Array> {
  const queue = chunks.map((c) => (typeof c === "string" ? new TextEncoder().encode(c) : c));
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const next = queue.shift();
        if (next !== undefined) controller.enqueue(next);
        else if (error !== undefined) controller.error(error);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
}

/** `size` bytes of a pattern that differs with `seed` and does not repeat every power of two. */
export function patterned(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) % 251;
  return bytes;
}
