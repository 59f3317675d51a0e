/**
 * Copies of what the mirror sent, by URL: the Release files (so that APT still gets the last one when the
 * mirror is down, marked as such) and files whose hash no signed index gives. These are never announced to
 * peers and never served as verified content: they are only what this mirror said, as APT would see it.
 *
 * Layout: <cache>/by-url/<sha256 of the URL>{,.json}; a body is written to a temp file and renamed with
 * its metadata, so a reader sees a whole copy or none.
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface UrlCopyMeta {
  url: string;
  size: number;
  /** When the mirror sent it (ms since epoch). */
  fetchedAt: number;
  lastModified?: string;
  etag?: string;
  contentType?: string;
}

export interface UrlCopy extends UrlCopyMeta {
  path: string;
}

export class UrlCache {
  private counter = 0;

  private constructor(readonly dir: string) {}

  static async open(cacheDir: string): Promise<UrlCache> {
    const dir = join(cacheDir, "by-url");
    await mkdir(dir, { recursive: true });
    return new UrlCache(dir);
  }

  private base(url: string): string {
    return join(this.dir, new Bun.CryptoHasher("sha256").update(url).digest("hex"));
  }

  /** The copy of `url`, or null (also when its body does not match its metadata any more). */
  async get(url: string): Promise<UrlCopy | null> {
    const base = this.base(url);
    const meta = await readFile(`${base}.json`, "utf8").then(
      (text) => JSON.parse(text) as UrlCopyMeta,
      () => null,
    );
    if (meta === null || meta.url !== url) return null;
    const info = await stat(base).catch(() => null);
    if (info === null || info.size !== meta.size) return null;
    return { ...meta, path: base };
  }

  /** A temp path in the cache's directory, for put(). */
  tempPath(): string {
    return join(this.dir, `.tmp-${process.pid}-${Date.now()}-${this.counter++}`);
  }

  /** Stores the body at `tempPath` (moved, not copied) as the copy of meta.url. */
  async put(tempPath: string, meta: UrlCopyMeta): Promise<void> {
    const base = this.base(meta.url);
    try {
      await writeFile(`${tempPath}.json`, JSON.stringify(meta));
      await rename(tempPath, base);
      await rename(`${tempPath}.json`, `${base}.json`);
    } catch (err) {
      await rm(tempPath, { force: true });
      await rm(`${tempPath}.json`, { force: true });
      throw err;
    }
  }

  async putBytes(bytes: Uint8Array, meta: Omit<UrlCopyMeta, "size">): Promise<void> {
    const temp = this.tempPath();
    await writeFile(temp, bytes);
    await this.put(temp, { ...meta, size: bytes.length });
  }
}
