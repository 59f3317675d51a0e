/**
 * Getting a verified file: from the content-addressed cache when it holds it, else downloaded from the
 * sources and adopted into the cache. Delivering copies it to a destination atomically, re-checking the
 * hash on the way so that a file damaged on disk is never handed out.
 */
import { createReadStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { asDestinationError } from "../errors.ts";
import type { CachedFile, ContentCache } from "../store/cache.ts";
import { downloadToFile, emptyBytesByKind, type BytesByKind, type DownloadOptions, type DownloadTarget } from "./download.ts";
import type { ByteSource } from "./source.ts";
import { Sha256Verifier } from "./verifier.ts";

export interface Obtained {
  file: CachedFile;
  bytes: BytesByKind;
}

export interface ObtainContext {
  cache: ContentCache;
  now: () => number;
}

/** Same-process requests for one hash share a single download. */
const inFlight = new Map<string, Promise<Obtained>>();

export function obtainFile(
  ctx: ObtainContext,
  target: DownloadTarget,
  sources: ByteSource[],
  options: DownloadOptions = {},
): Promise<Obtained> {
  const running = inFlight.get(target.sha256);
  if (running !== undefined) return running;
  const work = obtainUncoalesced(ctx, target, sources, options).finally(() => inFlight.delete(target.sha256));
  inFlight.set(target.sha256, work);
  return work;
}

async function obtainUncoalesced(
  ctx: ObtainContext,
  target: DownloadTarget,
  sources: ByteSource[],
  options: DownloadOptions,
): Promise<Obtained> {
  const hit = await ctx.cache.lookup(target.sha256);
  if (hit !== null && hit.size === target.size) {
    ctx.cache.touch(target.sha256, ctx.now());
    options.onProgress?.(hit.size);
    return { file: hit, bytes: { ...emptyBytesByKind(), cache: hit.size } };
  }
  const temp = ctx.cache.tempPath(target.name);
  const bytes = await downloadToFile(target, sources, temp, options);
  try {
    const file = await ctx.cache.adopt(temp, { sha256: target.sha256, size: target.size, name: target.name }, ctx.now());
    return { file, bytes };
  } catch (err) {
    await rm(temp, { force: true });
    throw asDestinationError(ctx.cache.dir, err);
  }
}

/**
 * Copies a cached file to `destPath` through a hidden temp file in the same directory, verifying it,
 * then renames it into place. On any failure nothing is left at or beside `destPath`.
 */
export async function deliverFile(file: CachedFile, expected: DownloadTarget, destPath: string): Promise<void> {
  const temp = join(dirname(destPath), `.${basename(destPath)}.apt-p2p-${process.pid}.partial`);
  const verifier = new Sha256Verifier(expected, `${expected.name} in the cache (${file.path})`);
  let out;
  try {
    out = await open(temp, "w");
  } catch (err) {
    throw asDestinationError(destPath, err);
  }
  let ok = false;
  try {
    for await (const chunk of createReadStream(file.path, { highWaterMark: 1 << 20 })) {
      const bytes = chunk as Buffer;
      verifier.update(bytes);
      await out.write(bytes).catch((err: unknown) => {
        throw asDestinationError(destPath, err);
      });
    }
    verifier.finish();
    await out.sync().catch((err: unknown) => {
      throw asDestinationError(destPath, err);
    });
    await out.close();
    await rename(temp, destPath).catch((err: unknown) => {
      throw asDestinationError(destPath, err);
    });
    ok = true;
  } finally {
    if (!ok) {
      await out.close().catch(() => undefined);
      await rm(temp, { force: true });
    }
  }
}

