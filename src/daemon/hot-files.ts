/**
 * Small files the peer server sends again and again, held in memory. nginx answers a small file with
 * sendfile(2), page cache to socket; Bun's sockets have no sendfile, and a stat, an open, a read and a
 * close per request cost a small-file answer about a fifth of its CPU. A held file costs none of them.
 *
 * Bytes enter only after their SHA-256 matched the content's: what is held is the content, whatever
 * happens to the file on disk later, so a held file needs no stat either. The caller still asks the
 * served-file index first, so a file no longer served (evicted, unseeded) is not answered from here.
 * Bounded in bytes, least recently used out first, and emptied when nobody asked for a while, so that an
 * idle daemon gives the memory back.
 */
import { readFileSync } from "node:fs";

/** Files up to this size are held (most .debs are under it; larger files are read by piece anyway). */
export const HOT_FILE_MAX_BYTES = 128 * 1024;
/** Bytes held at most. */
export const HOT_BYTES_MAX = 16 * 1024 * 1024;
/** Everything is dropped after this long without a request. */
export const HOT_IDLE_MS = 60_000;

export interface HotFilesOptions {
  maxBytes?: number;
  maxFileBytes?: number;
  idleMs?: number;
  now?: () => number;
}

export interface HotFileStats {
  files: number;
  bytes: number;
  hits: number;
  loads: number;
}

export class HotFiles {
  /** Content SHA-256 → bytes; Map order is use order, least recent first. */
  private readonly files = new Map<string, Uint8Array>();
  private heldBytes = 0;
  private lastUse = 0;
  private hits = 0;
  private loads = 0;
  private readonly maxBytes: number;
  private readonly maxFileBytes: number;
  private readonly idleMs: number;
  private readonly now: () => number;

  constructor(options: HotFilesOptions = {}) {
    this.maxBytes = options.maxBytes ?? HOT_BYTES_MAX;
    this.maxFileBytes = options.maxFileBytes ?? HOT_FILE_MAX_BYTES;
    this.idleMs = options.idleMs ?? HOT_IDLE_MS;
    this.now = options.now ?? Date.now;
  }

  /** Whether a file of this size would be held. */
  admits(size: number): boolean {
    return size > 0 && size <= this.maxFileBytes && size <= this.maxBytes;
  }

  /** The held bytes of a content, or undefined. */
  get(sha256: string): Uint8Array | undefined {
    const bytes = this.files.get(sha256);
    if (bytes === undefined) return undefined;
    this.files.delete(sha256);
    this.files.set(sha256, bytes);
    this.hits += 1;
    this.lastUse = this.now();
    return bytes;
  }

  /**
   * Reads the file at `path` (of a size `admits()` took) and holds it if its bytes hash to `sha256`.
   * Returns the bytes, or undefined when the file no longer is that content (changed, shortened, gone):
   * the caller stops serving it.
   */
  load(file: { path: string; sha256: string }): Uint8Array | undefined {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(file.path);
    } catch {
      return undefined;
    }
    if (new Bun.CryptoHasher("sha256").update(bytes).digest("hex") !== file.sha256) return undefined;
    this.loads += 1;
    this.lastUse = this.now();
    this.drop(file.sha256);
    this.files.set(file.sha256, bytes);
    this.heldBytes += bytes.length;
    for (const [sha256] of this.files) {
      if (this.heldBytes <= this.maxBytes) break;
      this.drop(sha256);
    }
    return bytes;
  }

  drop(sha256: string): void {
    const bytes = this.files.get(sha256);
    if (bytes === undefined) return;
    this.files.delete(sha256);
    this.heldBytes -= bytes.length;
  }

  /** Empties the memory when nothing was asked for in the idle time; call it now and then. */
  sweep(): void {
    if (this.files.size > 0 && this.now() - this.lastUse >= this.idleMs) {
      this.files.clear();
      this.heldBytes = 0;
    }
  }

  stats(): HotFileStats {
    return { files: this.files.size, bytes: this.heldBytes, hits: this.hits, loads: this.loads };
  }
}
