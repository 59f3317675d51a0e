/**
 * Downloads one file from a set of byte sources into a temp file, verifying it as a whole.
 * Bytes arrive in file order: a source that fails mid-file is retried from the byte it reached, then the
 * next source takes over from there. Nothing is left on disk unless every byte verified.
 */
import { open, rm, type FileHandle } from "node:fs/promises";
import { AptP2pError, ErrorCode, HashMismatchError, asDestinationError } from "../errors.ts";
import type { ByteSource, SourceKind } from "./source.ts";
import { Sha256Verifier, type ExpectedFile } from "./verifier.ts";

/** Attempts per source before moving to the next: one retry for a dropped connection. */
export const ATTEMPTS_PER_SOURCE = 2;

export interface DownloadTarget extends ExpectedFile {
  /** For messages: the archive file name. */
  name: string;
}

export type BytesByKind = Record<SourceKind, number>;

export function emptyBytesByKind(): BytesByKind {
  return { mirror: 0, cache: 0, peer: 0 };
}

export interface DownloadOptions {
  signal?: AbortSignal;
  /** Called with the number of new bytes as they are written. */
  onProgress?: (bytes: number) => void;
  /**
   * Called with the length of the prefix of the file now written to `path`, in file order (for readers
   * that stream the file as it grows). These bytes are checked only when the whole file is.
   */
  onPrefix?: (bytes: number) => void;
}

export async function downloadToFile(
  target: DownloadTarget,
  sources: ByteSource[],
  path: string,
  options: DownloadOptions = {},
): Promise<BytesByKind> {
  if (sources.length === 0) throw new AptP2pError(ErrorCode.Internal, `No source for ${target.name}`);
  const verifier = new Sha256Verifier(target, target.name);
  const counts = emptyBytesByKind();
  const file = await openNew(path);
  let ok = false;
  try {
    let lastError: unknown;
    for (const source of sources) {
      for (let attempt = 0; attempt < ATTEMPTS_PER_SOURCE && verifier.bytes < target.size; attempt++) {
        const before = verifier.bytes;
        try {
          for await (const chunk of source.read({ start: verifier.bytes, end: target.size }, target.size, options.signal)) {
            verifier.update(chunk);
            try {
              await file.write(chunk);
            } catch (err) {
              throw asDestinationError(path, err);
            }
            counts[source.kind] += chunk.length;
            options.onProgress?.(chunk.length);
            options.onPrefix?.(verifier.bytes);
          }
          if (verifier.bytes < target.size) {
            lastError = AptP2pError.mirror(source.id, `connection closed after ${verifier.bytes} of ${target.size} bytes`);
          }
        } catch (err) {
          if (isFatal(err) || options.signal?.aborted) throw err;
          lastError = err;
        }
        // A retry only makes sense when the source gave something or failed transiently; a 404 won't heal.
        if (verifier.bytes === before && isPermanent(lastError)) break;
      }
      if (verifier.bytes >= target.size) break;
    }
    if (verifier.bytes < target.size) throw lastError ?? AptP2pError.mirror(target.name, "no source could provide it");
    verifier.finish();
    // No fsync, as in a swarm download (src/transfer/swarm.ts): the file is an index read at once and
    // deleted, or is adopted into a cache by rename, and every later use of a cached file checks it.
    ok = true;
    return counts;
  } finally {
    await file.close().catch(() => undefined);
    if (!ok) await rm(path, { force: true });
  }
}

/** Wrong bytes and a full or unwritable disk end the download; other sources cannot mend them. */
/** Creates `path` for writing, refusing to touch an existing file; failures become destination errors. */
export async function openNew(path: string): Promise<FileHandle> {
  try {
    return await open(path, "wx");
  } catch (err) {
    throw asDestinationError(path, err);
  }
}

function isFatal(err: unknown): boolean {
  return (
    err instanceof HashMismatchError ||
    (err instanceof AptP2pError && (err.code === ErrorCode.FileHashMismatch || err.code === ErrorCode.DestinationUnwritable))
  );
}

function isPermanent(err: unknown): boolean {
  return err instanceof AptP2pError && /HTTP 4\d\d/.test(err.message);
}
