/**
 * Streaming decompression of APT index files (Packages.xz, Packages.gz, plain Packages).
 *
 * Memory stays bounded: input is pulled only as fast as the consumer reads output. xz runs as an
 * `xz -dc` subprocess (xz-utils is part of every Debian system); gzip uses the built-in
 * DecompressionStream. If the consumer stops early the subprocess is killed and the input released.
 */

import { AptP2pError, ErrorCode } from "../errors.ts";

export type Compression = "xz" | "gz" | "none";

type ByteSource = AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>;

/** The compression of an index file, judged by its name (`Packages.xz`, `Packages.gz`, `Packages`). */
export function compressionOf(path: string): Compression {
  const lower = path.toLowerCase();
  if (lower.endsWith(".xz")) return "xz";
  if (lower.endsWith(".gz")) return "gz";
  return "none";
}

/** Decompress `input` as it arrives. Corrupt or truncated data throws AptP2pError(Internal). */
export function decompress(input: ByteSource, kind: Compression): AsyncIterable<Uint8Array> {
  switch (kind) {
    case "xz":
      return unxz(input);
    case "gz":
      return gunzip(input);
    case "none":
      return asAsyncIterable(input);
  }
}

function asAsyncIterable(input: ByteSource): AsyncIterable<Uint8Array> {
  return input as AsyncIterable<Uint8Array>; // Bun's ReadableStream is async-iterable
}

function decompressError(kind: string, why: string, cause?: unknown): AptP2pError {
  return new AptP2pError(ErrorCode.Internal, `Cannot decompress ${kind} data: ${why}`, { cause });
}

/**
 * Input bytes as a pull-based ReadableStream that remembers whether the *input* failed, so a failure
 * of the source is reported as itself and not as corrupt compressed data.
 */
function trackedStream(input: ByteSource): { stream: ReadableStream<Uint8Array>; inputError: () => unknown } {
  let failure: unknown;
  const iterator = asAsyncIterable(input)[Symbol.asyncIterator]();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let step: IteratorResult<Uint8Array>;
      try {
        step = await iterator.next();
      } catch (err) {
        failure = err ?? new Error("input failed");
        controller.error(failure);
        return;
      }
      if (step.done) controller.close();
      else controller.enqueue(step.value);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
  return { stream, inputError: () => failure };
}

async function* gunzip(input: ByteSource): AsyncGenerator<Uint8Array> {
  const { stream, inputError } = trackedStream(input);
  // The cast bridges a lib typing gap: DecompressionStream accepts any BufferSource chunk.
  const output = stream.pipeThrough(new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>);
  try {
    // Leaving this loop early cancels `output`, which cancels the input through the pipe.
    for await (const chunk of output) yield chunk;
  } catch (err) {
    const failure = inputError();
    if (failure !== undefined) throw failure;
    throw decompressError("gzip", err instanceof Error ? err.message : String(err), err);
  }
}

async function* unxz(input: ByteSource): AsyncGenerator<Uint8Array> {
  const proc = Bun.spawn(["xz", "-dc"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const stderrText = new Response(proc.stderr).text();
  let stopped = false;
  let inputFailure: unknown;
  let hadInputFailure = false;

  // Feed xz's stdin; `flush()` waits while the pipe is full, which bounds the bytes in flight.
  const iterator = asAsyncIterable(input)[Symbol.asyncIterator]();
  const pump = (async () => {
    try {
      while (!stopped) {
        let step: IteratorResult<Uint8Array>;
        try {
          step = await iterator.next();
        } catch (err) {
          hadInputFailure = true;
          inputFailure = err;
          proc.kill();
          return;
        }
        if (step.done) break;
        proc.stdin.write(step.value);
        await proc.stdin.flush();
      }
      if (!stopped) await proc.stdin.end();
    } catch (err) {
      // Writing fails with EPIPE when xz exits early (corrupt data); its exit status and stderr say why.
      return err;
    }
    return undefined;
  })();

  let finished = false;
  try {
    for await (const chunk of proc.stdout) yield chunk;
    const writeError = await pump;
    if (hadInputFailure) throw inputFailure;
    const status = await proc.exited;
    if (status !== 0) {
      const why = (await stderrText).trim().replace(/^xz: \(stdin\): /, "") || `xz exited with status ${status}`;
      throw decompressError("xz", why);
    }
    if (writeError !== undefined) throw decompressError("xz", "cannot write to xz", writeError);
    finished = true;
  } finally {
    if (!finished) {
      stopped = true;
      proc.kill();
      await proc.exited;
      // Release the input from here: the pump may be parked in a flush() that a killed xz never drains.
      await Promise.resolve(iterator.return?.()).catch(() => undefined);
    }
  }
}
