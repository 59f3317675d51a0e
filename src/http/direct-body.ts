/**
 * Response bodies the HTTP server reads itself, into buffers it reuses, instead of pulling a stream:
 * a stream hands on a fresh buffer per chunk, and on a virtual machine the page faults of that fresh
 * memory cost more CPU than the bytes' own copying and hashing (a 512 KiB piece through Bun's file
 * stream and two stream wrappers cost the peer server four times the CPU of a pread into a reused
 * buffer). A Response made by `directResponse` still has an ordinary stream body, made on first read,
 * for any other reader (tests, a caller in the same process); whichever reads it, the body is read
 * once and settled once.
 */
import { close, closeSync, open, openSync, read, readSync } from "node:fs";
import { promisify } from "node:util";

// Plain descriptors, not FileHandles: Bun raises an uncaught error when a FileHandle is collected
// unclosed, and a body dropped unread by some in-process reader must not take the daemon down.
const openFd = promisify(open);
const readFd = promisify(read);

/** How a body ended: sent whole, failed (a file shorter than promised: "short"), or the client went away. */
export type BodyOutcome = "complete" | "short" | "error" | "cancelled";

export interface DirectBody {
  /** Its length in bytes (the Content-Length). */
  readonly length: number;
  /** Bytes read at once at most (a paced body uses small chunks). */
  readonly chunkBytes: number;
  /** Fills the start of `into` with the next bytes; resolves with how many (at least one), or rejects. */
  read(into: Uint8Array): Promise<number>;
  /** Resolves when `bytes` more may be sent (an upload rate); undefined when they may go now. */
  pace?(bytes: number): Promise<void> | undefined;
  /** Called exactly once, when the body ended. */
  settle(outcome: BodyOutcome): void;
}

/**
 * Ranges up to this size are read synchronously. A read from the page cache takes microseconds, while
 * each of the open, read and close through the thread pool costs a round trip that, for a 60 kB file,
 * costs more than the read (reading synchronously took the peer server from 5.0k to 9.3k small-file
 * requests a second). Larger ranges (512 KiB pieces) are read asynchronously, so that a cold disk does not stall the
 * event loop for long.
 */
const SYNC_READ_MAX_BYTES = 128 * 1024;

/** Chunks of the stream a direct body is read through when something other than the server reads it. */
const STREAM_CHUNK_BYTES = 256 * 1024;

const directBodies = new WeakMap<Response, DirectBody>();

/** A Response whose body the server may read directly (see `directBodyOf`). */
export function directResponse(body: DirectBody, init: ResponseInit): Response {
  const response = new Response(lazyStream(() => bodyStream(body)), init);
  directBodies.set(response, body);
  return response;
}

/** The direct body of a Response made by `directResponse`. */
export function directBodyOf(response: Response): DirectBody | undefined {
  return directBodies.get(response);
}

/** Bytes start.. (length of them) of a file, opened on the first read and closed when settled. */
export function fileRangeBody(options: {
  path: string;
  start: number;
  length: number;
  chunkBytes: number;
  pace?: (bytes: number) => Promise<void> | undefined;
  /** Bytes read out of the file, as they go. */
  onRead?: (bytes: number) => void;
  settle: (outcome: BodyOutcome) => void;
}): DirectBody {
  let fd: Promise<number> | undefined;
  let syncFd: number | undefined;
  let at = options.start;
  let short = false;
  const small = options.length <= SYNC_READ_MAX_BYTES;
  return {
    length: options.length,
    chunkBytes: options.chunkBytes,
    pace: options.pace,
    async read(into) {
      const want = Math.min(into.length, options.start + options.length - at);
      let bytesRead: number;
      if (small) {
        syncFd ??= openSync(options.path, "r");
        bytesRead = readSync(syncFd, into, 0, want, at);
      } else {
        fd ??= openFd(options.path, "r");
        bytesRead = (await readFd(await fd, into, 0, want, at)).bytesRead;
      }
      if (bytesRead < want) {
        short = true;
        throw new Error(`${options.path} ended after ${at - options.start + bytesRead} of ${options.length} bytes: it changed on disk`);
      }
      at += bytesRead;
      options.onRead?.(bytesRead);
      return bytesRead;
    },
    settle: once((outcome) => {
      options.settle(short ? "short" : outcome);
      if (syncFd !== undefined) closeSync(syncFd);
      fd?.then((n) => close(n, () => {})).catch(() => undefined);
    }),
  };
}

/** Bytes held in memory (a piece list), paced like a file. */
export function memoryBody(
  bytes: Uint8Array,
  options: { chunkBytes: number; pace?: (bytes: number) => Promise<void> | undefined; onRead?: (bytes: number) => void; settle: (outcome: BodyOutcome) => void },
): DirectBody {
  let at = 0;
  return {
    length: bytes.length,
    chunkBytes: options.chunkBytes,
    pace: options.pace,
    async read(into) {
      const n = Math.min(into.length, bytes.length - at);
      into.set(bytes.subarray(at, at + n));
      at += n;
      options.onRead?.(n);
      return n;
    },
    settle: once(options.settle),
  };
}

/** A direct body as a stream: fresh buffers, paced and settled like the server does it. */
export function bodyStream(body: DirectBody): ReadableStream<Uint8Array> {
  let sent = 0;
  const settle = once((outcome: BodyOutcome) => body.settle(outcome));
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          if (sent >= body.length) {
            settle("complete");
            controller.close();
            return;
          }
          const want = Math.min(body.chunkBytes, STREAM_CHUNK_BYTES, body.length - sent);
          await body.pace?.(want);
          const buffer = new Uint8Array(want);
          const n = await body.read(buffer);
          if (!(n > 0 && n <= want)) throw new Error(`a body read gave ${n} bytes of ${want}`);
          sent += n;
          controller.enqueue(n === want ? buffer : buffer.subarray(0, n));
          if (sent >= body.length) {
            settle("complete");
            controller.close();
          }
        } catch (err) {
          settle("error");
          throw err;
        }
      },
      cancel() {
        settle("cancelled");
      },
    },
    { highWaterMark: 0 },
  );
}

/** `settle` called at most once, whoever calls the result. */
function once(settle: (outcome: BodyOutcome) => void): (outcome: BodyOutcome) => void {
  let settled = false;
  return (outcome) => {
    if (settled) return;
    settled = true;
    settle(outcome);
  };
}

/** A stream that makes its source on the first read (and never, when nobody reads it). */
function lazyStream(make: () => ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  let reader: { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(reason?: unknown): Promise<void> } | undefined;
  const source = () => (reader ??= make().getReader());
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await source().read();
        if (next.done || next.value === undefined) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel(reason) {
        await source().cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
