/**
 * Keeps the seed index in step with the disk and the DHT in step with the index: scans the cache and the
 * seed directories (hashing only new or changed files), announces each content under the first 20 bytes
 * of its SHA-256 with its piece information (DESIGN.md, "Pieces"), and refreshes the announces before
 * storing nodes forget them (values live 30 minutes there, src/dht/storage.ts).
 *
 * Timers: start() runs a scan, then rescans every `rescanMs` and calls announceDue() every `tickMs`
 * through the injected `timers` (real, unref'd intervals by default). A caller that drives the work
 * itself (tests) calls scan() and announceDue() directly and never start().
 */
import type { Dirent } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ID_BYTES } from "../dht/id.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import type { SeedEntry, SeedIndex, SeedOrigin } from "../store/seed-index.ts";
import { announceInfo, hashFilePieces, pieceListItem, tierOf } from "../transfer/pieces.ts";

const MINUTE_MS = 60_000;
/** Refresh well before the 30-minute value lifetime at storing nodes, so one lost refresh is survivable. */
export const DEFAULT_REFRESH_MS = 20 * MINUTE_MS;
/** A failed announce (no node stored it, or the lookup threw) is tried again this soon. */
export const DEFAULT_RETRY_MS = MINUTE_MS;
/** Files dropped into a seed directory (or removed) are noticed within this long. */
export const DEFAULT_RESCAN_MS = 5 * MINUTE_MS;
/** How often due announces are looked for. */
export const DEFAULT_TICK_MS = 30_000;
/** Announces in flight at once: each is a DHT lookup of ~ALPHA parallel queries. */
export const DEFAULT_CONCURRENCY = 4;
/**
 * Announces started per announceDue() call, so that a first scan of a full cache is announced over a
 * few minutes rather than all at once: 64 per 30-second tick is ~2500 files per 20-minute refresh round.
 */
export const DEFAULT_ANNOUNCES_PER_TICK = 64;

const SHA256_HEX = /^[0-9a-f]{64}$/;
const CACHE_SUBDIR = /^[0-9a-f]{2}$/;

export interface Announcer {
  announce(key: Uint8Array, port: number, pieces?: Uint8Array): Promise<{ stored: number }>;
  putItem(value: Uint8Array): Promise<{ target: Uint8Array; stored: number }>;
}

export interface IntervalTimers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realIntervals: IntervalTimers = {
  setInterval: (fn, ms) => {
    const handle = setInterval(fn, ms);
    handle.unref?.();
    return handle;
  },
  clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
};

export interface SeederOptions {
  cacheDir: string;
  /** Directories of .deb files to serve too (read non-recursively), such as /var/cache/apt/archives. */
  seedDirs: string[];
  peerPort: number;
  refreshMs?: number;
  retryMs?: number;
  /** Announces in flight at once, over announceDue() and addCachedFile() together. */
  concurrency?: number;
  announcesPerTick?: number;
  rescanMs?: number;
  tickMs?: number;
  timers?: IntervalTimers;
  clock?: () => number;
  /** Uniform in [0, 1): spreads refresh times. */
  random?: () => number;
  log?: (line: string) => void;
  /** Hashes a file (src/transfer/pieces.ts hashFilePieces by default). */
  hashFile?: typeof hashFilePieces;
}

export interface ScanResult {
  added: number;
  changed: number;
  removed: number;
  unchanged: number;
}

export interface SeederStats {
  /** Distinct contents served and their bytes. */
  files: number;
  bytes: number;
  /** Files hashed since start (a restart over unchanged files hashes none). */
  hashed: number;
  announced: number;
  announceFailures: number;
  /** Cache files dropped through removeCachedFile() (evicted). */
  removedFromCache: number;
  inFlight: number;
  lastScan: ScanResult | null;
}

interface Candidate {
  path: string;
  origin: SeedOrigin;
  /** For cache files: the name, which the content must hash to. */
  expectedSha256?: string;
}

type IndexOutcome = "added" | "changed" | "unchanged" | "skipped";

export class Seeder {
  private readonly refreshMs: number;
  private readonly retryMs: number;
  private readonly concurrency: number;
  private readonly perTick: number;
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly log: (line: string) => void;
  private readonly hashFile: typeof hashFilePieces;
  private readonly timers: IntervalTimers;
  private handles: unknown[] = [];
  private scanning: Promise<ScanResult> | null = null;
  private dueRun: Promise<number> | null = null;
  private readonly pending = new Set<Promise<unknown>>();
  /** Contents being announced now (by SHA-256): never announced twice at once. */
  private readonly announcing = new Set<string>();
  /** Waiters for an announce slot. */
  private readonly queue: (() => void)[] = [];
  /** Announce slots taken. */
  private inFlight = 0;
  /** Cache files whose content is not their name, by path → "size:mtime", so they are not rehashed every scan. */
  private readonly rejected = new Map<string, string>();
  private hashed = 0;
  private announced = 0;
  private announceFailures = 0;
  private removedFromCache = 0;
  private lastScan: ScanResult | null = null;
  private closed = false;

  constructor(
    private readonly index: SeedIndex,
    private readonly announcer: Announcer,
    private readonly options: SeederOptions,
  ) {
    this.refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
    this.retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
    this.perTick = Math.max(1, options.announcesPerTick ?? DEFAULT_ANNOUNCES_PER_TICK);
    this.clock = options.clock ?? (() => Date.now());
    this.random = options.random ?? Math.random;
    this.log = options.log ?? (() => undefined);
    this.hashFile = options.hashFile ?? hashFilePieces;
    this.timers = options.timers ?? realIntervals;
  }

  /** Scans now, then keeps rescanning and announcing on the timers. */
  start(): void {
    if (this.closed || this.handles.length > 0) return;
    const scan = () => this.track(this.scan().catch((err: unknown) => this.log(`seed scan failed: ${message(err)}`)));
    const tick = () => this.track(this.announceDue().catch((err: unknown) => this.log(`announcing failed: ${message(err)}`)));
    this.handles = [
      this.timers.setInterval(scan, this.options.rescanMs ?? DEFAULT_RESCAN_MS),
      this.timers.setInterval(tick, this.options.tickMs ?? DEFAULT_TICK_MS),
    ];
    this.track(this.scan().then(() => this.announceDue()).catch((err: unknown) => this.log(`seeding failed: ${message(err)}`)));
  }

  /** Stops the timers and waits for the work under way; idempotent. The index stays open (its owner closes it). */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.handles.forEach((h) => this.timers.clearInterval(h));
      this.handles = [];
      // Waiters wake to find the seeder closed and give their slot straight back.
      this.queue.splice(0).forEach((wake) => {
        this.inFlight++;
        wake();
      });
    }
    await Promise.allSettled([...this.pending]);
  }

  /** Brings the index in step with the disk. Concurrent calls share one scan. */
  scan(): Promise<ScanResult> {
    this.scanning ??= this.track(this.runScan()).finally(() => {
      this.scanning = null;
    });
    return this.scanning;
  }

  /** A verified download just entered the cache: index it and announce it now (unless another copy already is). */
  async addCachedFile(sha256: string): Promise<void> {
    if (!SHA256_HEX.test(sha256)) throw new AptP2pError(ErrorCode.Internal, `Cannot seed '${sha256}': not a lower-case hex SHA-256`);
    const path = join(this.options.cacheDir, "files", sha256.slice(0, 2), sha256);
    const outcome = await this.track(this.indexFile({ path, origin: "cache", expectedSha256: sha256 }));
    if (outcome === "skipped" || this.closed) return;
    const entry = this.index.bySha256(sha256);
    if (entry === null || entry.lastAnnouncedAt !== null) return;
    await this.track(this.announceOne(entry));
  }

  /**
   * A file left the cache (evicted for the quota): stop serving it and stop announcing it. Only the
   * cache's row goes: a copy of the same content in a seed directory is still served and announced.
   * Nothing is sent to the DHT: BEP 5 has no withdrawal, and the values we stored expire at the
   * storing nodes (30 minutes, src/dht/storage.ts) once we stop refreshing them, which is enough —
   * a peer that still finds us meanwhile gets a 404 and tries another source.
   */
  async removeCachedFile(sha256: string): Promise<void> {
    if (!SHA256_HEX.test(sha256)) throw new AptP2pError(ErrorCode.Internal, `Cannot unseed '${sha256}': not a lower-case hex SHA-256`);
    const path = join(this.options.cacheDir, "files", sha256.slice(0, 2), sha256);
    this.index.remove(path);
    this.rejected.delete(path);
    this.removedFromCache++;
  }

  /**
   * Announces up to `announcesPerTick` due contents, `concurrency` at a time, and resolves with how many
   * were stored. A call while another runs shares it.
   */
  announceDue(): Promise<number> {
    this.dueRun ??= this.track(this.runDue()).finally(() => {
      this.dueRun = null;
    });
    return this.dueRun;
  }

  stats(): SeederStats {
    return {
      ...this.index.stats(),
      hashed: this.hashed,
      announced: this.announced,
      announceFailures: this.announceFailures,
      removedFromCache: this.removedFromCache,
      inFlight: this.inFlight,
      lastScan: this.lastScan,
    };
  }

  private async runScan(): Promise<ScanResult> {
    const result: ScanResult = { added: 0, changed: 0, removed: 0, unchanged: 0 };
    // Only rows present before the listing may be removed: addCachedFile() may index a file meanwhile.
    const before = new Set(this.index.paths());
    const found = new Set<string>();
    const candidates = await this.candidates();
    const listed = new Set(candidates.map((c) => c.path));
    for (const path of this.rejected.keys()) if (!listed.has(path)) this.rejected.delete(path);
    for (const candidate of candidates) {
      if (this.closed) return result;
      const outcome = await this.indexFile(candidate);
      if (outcome === "skipped") continue;
      found.add(candidate.path);
      result[outcome]++;
    }
    if (this.closed) return result;
    for (const path of before) {
      if (found.has(path)) continue;
      this.index.remove(path);
      result.removed++;
    }
    this.lastScan = result;
    if (result.added + result.changed + result.removed > 0) {
      this.log(`seed scan: ${result.added} added, ${result.changed} changed, ${result.removed} removed, ${result.unchanged} unchanged`);
    }
    return result;
  }

  /** Regular files of the cache (named by their SHA-256) and the .deb files of the seed directories. */
  private async candidates(): Promise<Candidate[]> {
    const out: Candidate[] = [];
    const filesDir = join(this.options.cacheDir, "files");
    for (const sub of await this.list(filesDir)) {
      if (!sub.isDirectory() || !CACHE_SUBDIR.test(sub.name)) continue;
      for (const file of await this.list(join(filesDir, sub.name))) {
        if (file.isFile() && SHA256_HEX.test(file.name) && file.name.startsWith(sub.name)) {
          out.push({ path: join(filesDir, sub.name, file.name), origin: "cache", expectedSha256: file.name });
        }
      }
    }
    const seen = new Set<string>();
    for (const dir of this.options.seedDirs) {
      for (const file of await this.list(dir)) {
        const path = join(dir, file.name);
        // Not following symbolic links: a link could point anywhere on the machine.
        if (!file.isFile() || !file.name.endsWith(".deb") || seen.has(path)) continue;
        seen.add(path);
        out.push({ path, origin: "seed-dir" });
      }
    }
    return out;
  }

  private async list(dir: string): Promise<Dirent[]> {
    try {
      return (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.log(`Cannot list ${dir}: ${message(err)}`);
      return [];
    }
  }

  /** Indexes one file, hashing it only when it is new or its size or mtime changed. */
  private async indexFile(candidate: Candidate): Promise<IndexOutcome> {
    const { path, origin } = candidate;
    const info = await lstat(path).catch(() => null);
    if (info === null || !info.isFile()) return "skipped";
    const existing = this.index.get(path);
    if (existing !== null && existing.size === info.size && existing.mtimeMs === info.mtimeMs && existing.origin === origin) {
      return "unchanged";
    }
    const signature = `${info.size}:${info.mtimeMs}`;
    if (this.rejected.get(path) === signature) return "skipped";
    let hashed: Awaited<ReturnType<typeof hashFilePieces>>;
    try {
      hashed = await this.hashFile(path);
      this.hashed++;
    } catch (err) {
      this.log(`Cannot hash ${path}: ${message(err)}`);
      return "skipped";
    }
    const after = await lstat(path).catch(() => null);
    if (after === null || after.size !== info.size || after.mtimeMs !== info.mtimeMs || hashed.size !== info.size) {
      this.log(`Not serving ${path} yet: it changed while being hashed`);
      return "skipped";
    }
    if (candidate.expectedSha256 !== undefined && hashed.sha256 !== candidate.expectedSha256) {
      this.rejected.set(path, signature);
      this.log(`Not serving ${path}: its content hashes to ${hashed.sha256}, not to its name`);
      return "skipped";
    }
    this.rejected.delete(path);
    if (this.closed) return "skipped";
    // Another copy of the same content (or this path before a touch) keeps its announce schedule.
    const sibling = this.index.bySha256(hashed.sha256);
    this.index.upsert({
      path,
      sha256: hashed.sha256,
      size: hashed.size,
      mtimeMs: info.mtimeMs,
      pieces: hashed.pieces,
      origin,
      lastAnnouncedAt: sibling?.lastAnnouncedAt ?? null,
      nextAnnounceAt: sibling?.nextAnnounceAt ?? this.clock(),
    });
    return existing === null ? "added" : "changed";
  }

  private async runDue(): Promise<number> {
    if (this.closed) return 0;
    const entries = this.index.due(this.clock(), this.perTick).filter((e) => !this.announcing.has(e.sha256));
    const outcomes = await Promise.all(entries.map((e) => this.announceOne(e)));
    const failures = outcomes.filter((o): o is string => o !== null);
    if (failures.length > 0) {
      this.log(`announced ${entries.length - failures.length} of ${entries.length} due files; failed: ${failures.slice(0, 3).join("; ")}${failures.length > 3 ? "; …" : ""}`);
    }
    return entries.length - failures.length;
  }

  /** Announces one content and reschedules it; resolves with why it failed, or null. */
  private async announceOne(entry: SeedEntry): Promise<string | null> {
    if (this.announcing.has(entry.sha256)) return null;
    this.announcing.add(entry.sha256);
    try {
      await this.acquire();
      let failure: string | null;
      try {
        if (this.closed) return null;
        failure = await this.publish(entry);
      } finally {
        this.release();
      }
      if (this.closed) return failure;
      const current = this.index.get(entry.path);
      if (current === null || current.sha256 !== entry.sha256) return failure; // changed or gone meanwhile
      const now = this.clock();
      if (failure === null) {
        this.announced++;
        this.index.markAnnounced(entry.path, now, now + this.spread(this.refreshMs));
      } else {
        this.announceFailures++;
        this.index.reschedule(entry.path, now + this.spread(this.retryMs));
      }
      return failure;
    } finally {
      this.announcing.delete(entry.sha256);
    }
  }

  /** The DHT work for one content: its announce, and for tier "item" its piece list as a BEP 44 item. */
  private async publish(entry: SeedEntry): Promise<string | null> {
    const name = entry.path.slice(entry.path.lastIndexOf("/") + 1);
    try {
      const key = new Uint8Array(Buffer.from(entry.sha256, "hex").subarray(0, ID_BYTES));
      const withItem = tierOf(entry.pieces.length) === "item";
      const [announced, item] = await Promise.all([
        this.announcer.announce(key, this.options.peerPort, announceInfo(entry.pieces)),
        withItem ? this.announcer.putItem(pieceListItem(entry.pieces)) : Promise.resolve(null),
      ]);
      if (announced.stored === 0) return `${name}: no node stored the announce`;
      if (item !== null && item.stored === 0) return `${name}: no node stored the piece list`;
      return null;
    } catch (err) {
      return `${name}: ${message(err)}`;
    }
  }

  /** Takes an announce slot, waiting for one when `concurrency` are taken. */
  private acquire(): Promise<void> {
    if (this.inFlight < this.concurrency) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push(resolve));
  }

  /** Hands the slot to the next waiter, or frees it. */
  private release(): void {
    const next = this.queue.shift();
    if (next !== undefined) next();
    else this.inFlight--;
  }

  /** `ms` × [0.8, 1.0): refreshes of files announced together drift apart instead of bunching up. */
  private spread(ms: number): number {
    return Math.round(ms * (0.8 + 0.2 * this.random()));
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.pending.add(promise);
    void promise.then(
      () => this.pending.delete(promise),
      () => this.pending.delete(promise),
    );
    return promise;
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
