/**
 * Downloads of files whose signed hash is known, shared by every client asking for them and read while
 * they run: APT gets bytes as pieces land (in order), not after the whole file.
 *
 * What a reader may send: the written prefix the download reports — pieces each checked against the piece
 * list, or the mirror's bytes in order — but never the last byte before the whole file matched its
 * SHA-256. A client therefore cannot end up with a complete wrong file: if the final check fails, its
 * connection is cut short of the end. When a swarm download starts over (its piece list proved wrong),
 * clients that were sent bytes of the failed attempt are cut too; the others read the new attempt.
 */
import { closeSync, openSync, readSync } from "node:fs";
import type { NodeId } from "../dht/id.ts";
import type { DirectBody } from "../http/direct-body.ts";
import type { Fetcher } from "../http/fetch.ts";
import type { CachedFile, ContentCache } from "../store/cache.ts";
import type { DownloadTarget } from "../transfer/download.ts";
import { fromSources, obtainFile } from "../transfer/obtain.ts";
import type { AnnouncedPeer } from "../transfer/piece-lists.ts";
import { HttpSource } from "../transfer/source.ts";
import { swarmDownload } from "../transfer/swarm.ts";
import type { RangeClient } from "../transfer/range-client.ts";

/** A DHT lookup slower than this is not waited for: the mirror starts alone (APT is waiting). */
export const PEER_LOOKUP_TIMEOUT_MS = 3_000;

export interface LiveDeps {
  cache: ContentCache;
  fetcher: Fetcher;
  /** Peers announcing the file (our own address left out); [] when none or no DHT. */
  findPeers: (sha256: string, size: number) => Promise<AnnouncedPeer[]>;
  getItem?: (key: NodeId) => Promise<Uint8Array | undefined>;
  /** A file just entered the cache: seed it. */
  seed: (sha256: string) => Promise<void>;
  /** Verified bytes by kind of source, as they land. */
  onBytes?: (kind: "mirror" | "peer" | "cache", bytes: number) => void;
  log: (line: string) => void;
  now?: () => number;
  /** Default PEER_LOOKUP_TIMEOUT_MS. */
  lookupTimeoutMs?: number;
  /** Reads peers' pieces into reused buffers on kept-alive connections (else through `fetcher`). */
  rangeClient?: RangeClient;
  /** A peer sent a piece that did not match its hash; a peer was banned (for metrics). */
  onBadPiece?: (source: string) => void;
  onBanned?: (source: string) => void;
}

export class LiveDownloads {
  private readonly running = new Map<string, LiveDownload>();

  constructor(private readonly deps: LiveDeps) {}

  /** The download of `target` from `mirrors` (and peers), started now or joined if running. */
  get(target: DownloadTarget, mirrors: string[]): LiveDownload {
    const running = this.running.get(target.sha256);
    if (running !== undefined) return running;
    // Pinned while it downloads, so that the quota never evicts it between adopt() and the readers.
    const unpin = this.deps.cache.pin(target.sha256);
    const live = new LiveDownload(target, mirrors, this.deps);
    this.running.set(target.sha256, live);
    const settle = () => {
      this.running.delete(target.sha256);
      unpin();
    };
    void live.done.then(settle, settle);
    return live;
  }

  get active(): number {
    return this.running.size;
  }

  /** The downloads running now, for the status page. */
  list(): TransferInfo[] {
    return [...this.running.values()].map((live) => ({
      name: live.target.name,
      sha256: live.target.sha256,
      size: live.target.size,
      startedAt: live.startedAt,
      bytes: { ...live.bytes },
    }));
  }
}

export interface TransferInfo {
  name: string;
  sha256: string;
  size: number;
  /** ms since epoch. */
  startedAt: number;
  /** Verified bytes so far by kind of source. */
  bytes: { mirror: number; peer: number; cache: number };
}

export class LiveDownload {
  /** The written prefix readers may take (before the file is done). */
  private prefix = 0;
  /** Bumped when the download starts over: bytes read before are suspect. */
  generation = 0;
  private path: string | undefined;
  file: CachedFile | undefined;
  error: unknown;
  private waiters: (() => void)[] = [];
  readonly done: Promise<CachedFile>;
  readonly startedAt = Date.now();
  /** Verified bytes so far by kind of source. */
  readonly bytes = { mirror: 0, peer: 0, cache: 0 };

  constructor(
    readonly target: DownloadTarget,
    private readonly mirrors: string[],
    private readonly deps: LiveDeps,
  ) {
    let fresh = false;
    this.done = obtainFile(
      { cache: deps.cache, now: deps.now ?? Date.now },
      target,
      (path) => {
        fresh = true;
        return this.fetchInto(path);
      },
      (bytes) => this.count("cache", bytes),
    ).then(
      (obtained) => {
        this.file = obtained.file;
        this.wake();
        if (fresh) void deps.seed(target.sha256).catch((err: unknown) => deps.log(`seeding ${target.name} failed: ${message(err)}`));
        return obtained.file;
      },
      (err: unknown) => {
        this.error = err;
        this.wake();
        throw err;
      },
    );
    this.done.catch(() => undefined); // readers and callers see the error; this copy must not be "unhandled"
  }

  private async fetchInto(path: string) {
    this.path = path;
    const onPrefix = (bytes: number) => {
      if (bytes < this.prefix) this.generation += 1;
      this.prefix = bytes;
      this.wake();
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const peers = await Promise.race([
      this.deps.findPeers(this.target.sha256, this.target.size).catch(() => [] as AnnouncedPeer[]),
      new Promise<AnnouncedPeer[]>((resolve) => (timer = setTimeout(() => resolve([]), this.deps.lookupTimeoutMs ?? PEER_LOOKUP_TIMEOUT_MS))),
    ]).finally(() => clearTimeout(timer));
    if (peers.length === 0) {
      const sources = this.mirrors.map((m) => new HttpSource(m, this.deps.fetcher));
      return fromSources(this.target, sources, { onPrefix, onProgress: (bytes) => this.count("mirror", bytes) })(path);
    }
    return swarmDownload(
      this.target,
      { mirrors: this.mirrors, peers },
      path,
      { fetcher: this.deps.fetcher, rangeClient: this.deps.rangeClient, getItem: this.deps.getItem },
      { onPrefix, onProgress: (event) => this.count(event.kind, event.bytes), onBadPiece: this.deps.onBadPiece, onBanned: this.deps.onBanned },
    );
  }

  private count(kind: "mirror" | "peer" | "cache", bytes: number): void {
    this.bytes[kind] += bytes;
    this.deps.onBytes?.(kind, bytes);
  }

  /** How far a reader may read now: the whole file when done, else the prefix short of the last byte. */
  private limit(): number {
    if (this.file !== undefined) return this.target.size;
    return Math.min(this.prefix, this.target.size - 1);
  }

  /** Resolves when the byte at `pos` may be read (or the file is done); rejects when the download failed. */
  async ready(pos: number): Promise<void> {
    while (this.file === undefined && this.error === undefined && this.limit() <= pos) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.file === undefined && this.error !== undefined) throw this.error;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * The body for bytes start..end (inclusive), read from the download as it grows, for the HTTP server
   * to read into its own buffers (src/http/direct-body.ts; `bodyStream` makes a stream of it). It fails
   * — cutting the client's connection — if the download fails or starts over after bytes were sent.
   */
  direct(start: number, end: number, onSent?: (bytes: number) => void): DirectBody {
    let pos = start;
    // Pinned while this client reads, also after the download is done: eviction never pulls a file
    // out from under a transfer.
    let unpin: (() => void) | undefined = this.deps.cache.pin(this.target.sha256);
    // A plain descriptor read synchronously: the bytes were written moments ago and sit in the page
    // cache, where a read takes microseconds and a thread-pool round trip costs more than the read.
    let fd: number | undefined;
    let fdIsFinal = false;
    let fdGeneration = -1;
    let sentGeneration: number | undefined;
    const closeFd = () => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    };
    const release = () => {
      closeFd();
      unpin?.();
      unpin = undefined;
    };
    return {
      length: end - start + 1,
      chunkBytes: Number.POSITIVE_INFINITY,
      read: async (into) => {
        try {
          // Until a descriptor is open on the bytes readable now (the file may be renamed into the
          // cache between the wait and the open: then the next round opens it there).
          for (;;) {
            await this.ready(pos);
            if (sentGeneration !== undefined && sentGeneration !== this.generation) {
              throw new Error(`${this.target.name}: the download started over after bytes were sent; cutting the transfer`);
            }
            if (this.file !== undefined) {
              if (!fdIsFinal) {
                closeFd();
                fd = openSync(this.file.path, "r");
                fdIsFinal = true;
              }
              break;
            }
            if (fd !== undefined && fdGeneration === this.generation) break;
            closeFd();
            fd = this.openPartial();
            fdGeneration = this.generation;
            if (fd !== undefined) break;
            // The partial file was just renamed into the cache, and `file` is set once that is done.
            await this.done.catch(() => undefined);
          }
          const upTo = Math.min(end + 1, this.limit());
          const bytesRead = readSync(fd!, into, 0, Math.min(into.length, upTo - pos), pos);
          if (bytesRead === 0) throw new Error(`${this.target.name}: no bytes at ${pos} of the download`);
          sentGeneration ??= this.generation;
          pos += bytesRead;
          onSent?.(bytesRead);
          return bytesRead;
        } catch (err) {
          release();
          throw err;
        }
      },
      settle: release,
    };
  }

  /**
   * A descriptor on the partial file, or undefined when it is gone because it was renamed into the cache
   * (the download may still be between that rename and setting `file`).
   */
  private openPartial(): number | undefined {
    try {
      return openSync(this.path!, "r");
    } catch (err) {
      if ((err as { code?: string } | null)?.code === "ENOENT") return undefined;
      throw err;
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
