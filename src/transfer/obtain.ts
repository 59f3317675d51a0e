/**
 * Getting a verified file: from the content-addressed cache when it holds it, else downloaded from the
 * sources and adopted into the cache. Delivering copies it to a destination atomically, re-checking the
 * hash on the way so that a file damaged on disk is never handed out.
 */
import { createReadStream } from "node:fs";
import { constants } from "node:fs";
import { copyFile, link, open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { asDestinationError } from "../errors.ts";
import type { CachedFile, ContentCache } from "../store/cache.ts";
import { downloadToFile, emptyBytesByKind, type BytesByKind, type DownloadOptions, type DownloadTarget } from "./download.ts";
import type { ByteSource } from "./source.ts";
import { Sha256Verifier } from "./verifier.ts";

export interface Obtained {
  file: CachedFile;
  bytes: BytesByKind;
  /** Verified bytes by peer ("address:port"). */
  perPeer: Record<string, number>;
}

export interface ObtainContext {
  cache: ContentCache;
  now: () => number;
}

/** What a download into a temp path gives back: bytes by kind of source, and by peer. */
export interface Fetched {
  bytes: BytesByKind;
  perPeer?: Record<string, number>;
}

/** Downloads the target into `path` (which must not exist), verified, or throws leaving nothing there. */
export type FetchInto = (path: string) => Promise<Fetched>;

/** The plain way: byte sources in order, resuming where one stopped (src/transfer/download.ts). */
export function fromSources(target: DownloadTarget, sources: ByteSource[], options: DownloadOptions = {}): FetchInto {
  return async (path) => ({ bytes: await downloadToFile(target, sources, path, options) });
}

/** Same-process requests for one hash share a single download. */
const inFlight = new Map<string, Promise<Obtained>>();

/** The verified file from the cache, or fetched with `fetchInto` and adopted into the cache. */
export function obtainFile(
  ctx: ObtainContext,
  target: DownloadTarget,
  fetchInto: FetchInto,
  onCacheHit?: (bytes: number) => void,
): Promise<Obtained> {
  const running = inFlight.get(target.sha256);
  if (running !== undefined) return running;
  const work = obtainUncoalesced(ctx, target, fetchInto, onCacheHit).finally(() => inFlight.delete(target.sha256));
  inFlight.set(target.sha256, work);
  return work;
}

async function obtainUncoalesced(
  ctx: ObtainContext,
  target: DownloadTarget,
  fetchInto: FetchInto,
  onCacheHit?: (bytes: number) => void,
): Promise<Obtained> {
  const hit = await ctx.cache.lookup(target.sha256);
  if (hit !== null && hit.size === target.size) {
    ctx.cache.touch(target.sha256, ctx.now());
    onCacheHit?.(hit.size);
    return { file: hit, bytes: { ...emptyBytesByKind(), cache: hit.size }, perPeer: {} };
  }
  const temp = ctx.cache.tempPath(target.name);
  const fetched = await fetchInto(temp);
  try {
    const file = await ctx.cache.adopt(temp, { sha256: target.sha256, size: target.size, name: target.name }, ctx.now());
    return { file, bytes: fetched.bytes, perPeer: fetched.perPeer ?? {} };
  } catch (err) {
    await rm(temp, { force: true });
    throw asDestinationError(ctx.cache.dir, err);
  }
}

/**
 * Copies a cached file to `destPath` through a hidden temp file in the same directory, verifying it,
 * then renames it into place. On any failure nothing is left at or beside `destPath`.
 */
export async function deliverFile(file: CachedFile, expected: DownloadTarget, destPath: string, options: { verified?: boolean } = {}): Promise<void> {
  if (options.verified) return placeVerified(file, destPath);
  const chunks = (async function* () {
    for await (const chunk of createReadStream(file.path, { highWaterMark: 1 << 20 })) yield chunk as Uint8Array;
  })();
  await deliverStream(chunks, expected, destPath, `${expected.name} in the cache (${file.path})`);
}

/**
 * A file verified moments ago by this process (a fresh download) is not hashed again. It is hard-linked
 * into place through the same hidden temp file and rename, so that the destination and the cache share
 * one copy of the bytes: no second write of the file (a 100 MB copy took 30–50 ms), no second share of
 * the disk. Where a link cannot be made (another file system, one without hard links) it is copied, by
 * reflink where the file system can. Nothing edits a .deb in place; were the shared copy changed, the
 * cache's next use would see it, as every use checks the file again.
 */
async function placeVerified(file: CachedFile, destPath: string): Promise<void> {
  const temp = join(dirname(destPath), `.${basename(destPath)}.apt-p2p-${process.pid}.partial`);
  try {
    const linked = await link(file.path, temp).then(
      () => true,
      () => false,
    );
    if (!linked) await copyFile(file.path, temp, constants.COPYFILE_FICLONE);
    const size = (await stat(temp)).size;
    if (size !== file.size) throw new Error(`copied ${size} bytes of ${file.size}`);
    await rename(temp, destPath);
    // rename() of a name onto another link of the same file does nothing and leaves the temp name.
    if (linked) await rm(temp, { force: true });
  } catch (err) {
    await rm(temp, { force: true });
    throw asDestinationError(destPath, err);
  }
}

/**
 * Writes a stream to `destPath` through a hidden temp file beside it, verifying size and SHA-256, and
 * renames it into place only when both match. On any failure nothing is left at or beside `destPath`.
 */
export async function deliverStream(chunks: AsyncIterable<Uint8Array>, expected: DownloadTarget, destPath: string, what = expected.name): Promise<void> {
  const temp = join(dirname(destPath), `.${basename(destPath)}.apt-p2p-${process.pid}.partial`);
  const verifier = new Sha256Verifier(expected, what);
  let out;
  try {
    out = await open(temp, "w");
  } catch (err) {
    throw asDestinationError(destPath, err);
  }
  let ok = false;
  try {
    for await (const bytes of chunks) {
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
