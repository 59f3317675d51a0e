/** Responses and bodies that handlers in the HTTP server tests answer with. */
import { afterEach, beforeEach, spyOn } from "bun:test";
import type { Handler } from "../../src/http/server.ts";
import { textResponse as plainText } from "../../src/http/text-response.ts";

/** A 200 text response with its Content-Length (a string body alone would be sent chunked). */
export function textResponse(body: string, init: { headers?: Record<string, string> } = {}): Response {
  return plainText(200, body, init.headers);
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

/**
 * Silences console.error for every test of the enclosing describe (the server logs each failure) and
 * gives the spy, to count what was logged.
 */
export function mutedErrors(): { readonly spy: ReturnType<typeof spyOn<Console, "error">> } {
  let spy: ReturnType<typeof spyOn<Console, "error">> | undefined;
  beforeEach(() => {
    spy = spyOn(console, "error").mockImplementation(() => undefined);
  });
  afterEach(() => spy?.mockRestore());
  return {
    get spy() {
      return spy!;
    },
  };
}
