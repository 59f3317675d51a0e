/**
 * Downloading one file from peers and mirrors at once, in 512 KiB pieces: each source with a bounded
 * number of Range requests in flight, rarest pieces first, the endgame duplicating what is late. Every
 * piece is checked as it lands (against the piece list when there is one, against the file's SHA-256 when
 * it is the only piece); bad pieces are refetched elsewhere and their source penalised, then banned. The
 * whole file is checked against the SHA-256 from the signed index before it is kept.
 */
import { writeSync } from "node:fs";
import { rm, type FileHandle } from "node:fs/promises";
import { AptP2pError, ErrorCode, HashMismatchError, asDestinationError } from "../errors.ts";
import type { Fetcher } from "../http/fetch.ts";
import { emptyBytesByKind, openNew, type BytesByKind, type DownloadTarget } from "./download.ts";
import { findPieceLists, peerId, type AnnouncedPeer, type PieceList } from "./piece-lists.ts";
import { BufferPool } from "./buffer-pool.ts";
import { PIECE_HASH_BYTES, PIECE_SIZE_BYTES, pieceCount, pieceRange } from "./pieces.ts";
import { PeerBusyError, type RangeClient } from "./range-client.ts";
import { PieceScheduler, shuffle } from "./scheduler.ts";
import { HttpSource, type ByteSource } from "./source.ts";
import type { NodeId } from "../dht/id.ts";

/** A request that delivers no byte for this long is abandoned (the source stalls or is gone). */
export const STALL_MS = 8_000;
/** A piece in flight is duplicated on another source after this long (the endgame). */
export const ENDGAME_DELAY_MS = 1_000;
/** Failures (errors, stalls) in a row after which a source is dropped. */
export const MAX_SOURCE_ERRORS = 3;
/** Pieces that arrive ahead of the whole-file hash wait in memory up to this much (then are read back). */
export const HASH_BUFFER_BYTES = 64 * 1024 * 1024;
/**
 * Piece buffers kept for reuse: about as many as are in flight, being written and waiting for the hash
 * at once in a large download. They are shared by every download of the process, so that a run of small
 * files, each in a buffer of its own, reuses the same warm memory (fresh memory cost more than the rest).
 */
export const POOLED_PIECES = 48;
const piecePool = new BufferPool(PIECE_SIZE_BYTES, POOLED_PIECES);
/** Requests in flight to the mirror: it helps from the start but peers take most. */
export const MIRROR_IN_FLIGHT = 2;

export interface SwarmSources {
  mirrors: string[];
  peers: AnnouncedPeer[];
}

export interface SwarmDeps {
  fetcher: Fetcher;
  /** Reads peers' pieces with less CPU than the fetcher; without it, peers are read with the fetcher too. */
  rangeClient?: RangeClient;
  getItem?: (key: NodeId) => Promise<Uint8Array | undefined>;
  random?: () => number;
  now?: () => number;
}

export interface SwarmProgress {
  bytes: number;
  kind: "mirror" | "peer";
  source: string;
}

export interface SwarmOptions {
  signal?: AbortSignal;
  onProgress?: (event: SwarmProgress) => void;
  stallMs?: number;
  endgameDelayMs?: number;
  /**
   * Called with the length of the prefix of the file written to `path` whose pieces each matched the piece
   * list (so only when there is one), for readers that stream the file as it grows. It never reaches the
   * file's size: the end is known good only when the download resolves. When the list in use proves wrong
   * and the download starts over, it is called with 0: what was read before may be wrong.
   */
  onPrefix?: (bytes: number) => void;
  /** A piece from `source` did not match its hash (for metrics). */
  onBadPiece?: (source: string) => void;
  /** `source` was banned: for bad pieces, or as an announcer of a piece list that proved wrong. */
  onBanned?: (source: string) => void;
}

export interface SwarmResult {
  bytes: BytesByKind;
  /** Verified bytes by peer ("address:port"). */
  perPeer: Record<string, number>;
  /** Peers banned for bad pieces. */
  banned: string[];
}

/** Downloads `target` into `path` (which must not exist); nothing is left at `path` unless it verified. */
export async function swarmDownload(
  target: DownloadTarget,
  sources: SwarmSources,
  path: string,
  deps: SwarmDeps,
  options: SwarmOptions = {},
): Promise<SwarmResult> {
  const lists = await findPieceLists(target.size, sources.peers, {
    getItem: deps.getItem,
    fetchFromPeer: (peer, keyHex) => fetchPieceList(deps.fetcher, peer, keyHex),
  });
  const excluded = new Set<string>();
  const banned: string[] = [];
  let lastError: unknown;
  // Plans, in order: each piece list (best first), then no list (whole-file check only), then the
  // mirrors alone. A plan whose file fails its SHA-256, or whose list proves wrong, drops that list and
  // its announcers (or, without a list, every peer) and the next plan goes.
  const plans: { list?: PieceList; mirrorsOnly?: boolean }[] = [...lists.map((list) => ({ list })), {}, { mirrorsOnly: true }];
  for (const plan of plans) {
    if (plan.list !== undefined && plan.list.announcers.some((a) => excluded.has(a))) continue;
    const peers = plan.mirrorsOnly ? [] : sources.peers.filter((p) => !excluded.has(peerId(p)));
    if (peers.length === 0 && sources.mirrors.length === 0) continue;
    if (plan.mirrorsOnly && (sources.mirrors.length === 0 || lastError === undefined)) continue;
    try {
      const result = await attemptOnce(target, { mirrors: sources.mirrors, peers }, plan.list, path, deps, options);
      result.banned.push(...banned);
      return result;
    } catch (err) {
      await rm(path, { force: true });
      if (plan.list !== undefined) options.onPrefix?.(0);
      lastError = err;
      if (!(err instanceof HashMismatchError || err instanceof PieceListRejected)) throw err;
      const blamed = plan.list !== undefined ? plan.list.announcers : peers.map(peerId);
      for (const id of blamed) excluded.add(id);
      banned.push(...blamed);
      for (const id of blamed) options.onBanned?.(id);
    }
  }
  throw lastError ?? AptP2pError.mirror(target.name, "no peer and no mirror to download it from");
}

async function attemptOnce(
  target: DownloadTarget,
  sources: SwarmSources,
  list: PieceList | undefined,
  path: string,
  deps: SwarmDeps,
  options: SwarmOptions,
): Promise<SwarmResult> {
  const file = await openNew(path);
  let ok = false;
  try {
    const run = new SwarmRun(target, sources, list, file, deps, options);
    const result = await run.run();
    const sha256 = await run.digest();
    if (sha256 !== target.sha256) throw new HashMismatchError(ErrorCode.FileHashMismatch, target.name, target, { size: target.size, sha256 });
    // No fsync: the file is adopted into a cache by rename, and a cache may lose a file in a crash (every
    // later use checks it again); an fsync of 100 MB cost 60–80 ms here, a twentieth of the download.
    await file.close();
    ok = true;
    return result;
  } finally {
    if (!ok) {
      await file.close().catch(() => undefined);
      await rm(path, { force: true });
    }
  }
}

/** The piece list in use is wrong: the mirror's bytes, or two sources' bytes, for one piece do not match it. */
export class PieceListRejected extends Error {
  constructor(piece: number) {
    super(`the announced piece list is wrong about piece ${piece}`);
    this.name = "PieceListRejected";
  }
}

interface SourceInfo {
  source: ByteSource;
  kind: "mirror" | "peer";
  errors: number;
}

class SwarmRun {
  private readonly scheduler: PieceScheduler;
  private readonly sources = new Map<string, SourceInfo>();
  private readonly inFlight = new Map<string, AbortController>(); // "piece@source"
  private readonly result: SwarmResult = { bytes: emptyBytesByKind(), perPeer: {}, banned: [] };
  private readonly now: () => number;
  private finish!: () => void;
  private fail!: (err: unknown) => void;
  private settled = false;
  private lastError: unknown;
  private wakeTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly hasher = new Bun.CryptoHasher("sha256");
  private hashedUpTo = 0;
  private readonly buffered = new Map<number, { bytes: Uint8Array; release: () => void }>();
  private readonly pool = piecePool;
  private bufferedBytes = 0;
  private readonly listFailures = new Map<number, Set<string>>();
  private readonly written = new Set<number>();
  private writtenPrefix = 0;
  /** A file of one piece, checked whole against its SHA-256 as it landed: no second hash at the end. */
  private wholeVerified = false;

  constructor(
    private readonly target: DownloadTarget,
    sources: SwarmSources,
    private readonly list: PieceList | undefined,
    private readonly file: FileHandle,
    private readonly deps: SwarmDeps,
    private readonly options: SwarmOptions,
  ) {
    this.now = deps.now ?? (() => performance.now());
    this.scheduler = new PieceScheduler(pieceCount(target.size), {
      random: deps.random ?? Math.random,
      sequential: true,
      endgameDelayMs: options.endgameDelayMs ?? ENDGAME_DELAY_MS,
      now: this.now,
    });
    // In random order: the scheduler asks sources in the order they were added, and many downloaders
    // of small files (one piece each) would otherwise all start with the same peer of the same list.
    for (const peer of shuffle([...sources.peers], deps.random ?? Math.random)) {
      const id = peerId(peer);
      if (this.sources.has(id)) continue;
      const url = `http://${peer.address.includes(":") ? `[${peer.address}]` : peer.address}:${peer.port}/~/${target.sha256}`;
      this.sources.set(id, { source: new HttpSource(url, deps.fetcher, "peer"), kind: "peer", errors: 0 });
      this.scheduler.addSource({ id, kind: "peer", pieces: "all" });
    }
    for (const mirror of sources.mirrors) {
      this.sources.set(mirror, { source: new HttpSource(mirror, deps.fetcher, "mirror"), kind: "mirror", errors: 0 });
      this.scheduler.addSource({ id: mirror, kind: "mirror", pieces: "all", maxInFlight: MIRROR_IN_FLIGHT });
    }
  }

  run(): Promise<SwarmResult> {
    return new Promise<SwarmResult>((resolve, reject) => {
      this.finish = () => resolve(this.result);
      this.fail = reject;
      this.options.signal?.addEventListener("abort", () => this.abort(this.options.signal!.reason), { once: true });
      this.pump();
    });
  }

  private pump(): void {
    if (this.settled) return;
    if (this.scheduler.complete) {
      this.settle();
      return;
    }
    for (const request of this.scheduler.next()) this.fetchPiece(request.piece, request.source);
    if (this.inFlight.size === 0) {
      const wake = this.scheduler.nextWake();
      if (wake === undefined) {
        const why = this.lastError ?? AptP2pError.mirror(this.target.name, "no source could provide it");
        return this.abort(why);
      }
    }
    this.scheduleWake();
  }

  private scheduleWake(): void {
    const wake = this.scheduler.nextWake();
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.wakeTimer = wake === undefined ? undefined : setTimeout(() => this.pump(), Math.max(1, wake - this.now()));
  }

  private fetchPiece(piece: number, sourceId: string): void {
    const info = this.sources.get(sourceId)!;
    const controller = new AbortController();
    const key = `${piece}@${sourceId}`;
    this.inFlight.set(key, controller);
    const range = pieceRange(piece, this.target.size);
    void this.readPiece(info, range, controller)
      .then(
        async (bytes) => {
          if (this.settled) return this.pool.give(bytes); // it landed after the run ended; the file may be closed
          if (!this.pieceIsGood(piece, bytes)) {
            this.lastError = new AptP2pError(ErrorCode.FileHashMismatch, `${sourceId} sent a bad piece ${piece} of ${this.target.name}`);
            this.options.onBadPiece?.(sourceId);
            if (this.list !== undefined && this.blameList(piece, sourceId, info.kind)) return this.abort(new PieceListRejected(piece));
            this.pool.give(bytes);
            if (this.scheduler.failed(piece, sourceId, true)) this.dropBanned(sourceId);
            return;
          }
          if (this.scheduler.isDone(piece)) return this.pool.give(bytes); // a duplicate that lost the race
          info.errors = 0;
          const cancel = this.scheduler.completed(piece, sourceId);
          for (const other of cancel) this.inFlight.get(`${piece}@${other}`)?.abort();
          // Written at once, on this thread: a piece goes into the page cache in about 0.1 ms, and a write
          // through the thread pool cost more than that in CPU (a 71 MB download from three local peers,
          // median of 11 runs: 3.2 ms of CPU per MB with pooled writes, 2.3 with these). The buffer goes
          // back to the pool once the whole-file hash is done with it.
          try {
            writeAllSync(this.file.fd, bytes, range.start);
          } catch (err) {
            this.pool.give(bytes);
            throw err;
          }
          this.markWritten(piece);
          const release = () => this.pool.give(bytes);
          if (this.wholeVerified) release();
          else this.feedHash(piece, bytes, release);
          this.count(info.kind, sourceId, range.end - range.start);
        },
        (err: unknown) => {
          if (controller.signal.aborted && this.scheduler.isDone(piece)) {
            this.scheduler.released(piece, sourceId);
            return;
          }
          if (err instanceof AptP2pError && err.code === ErrorCode.DestinationUnwritable) return this.abort(err);
          this.lastError = err;
          // A peer out of upload slots is asked less at once, not dropped: it is well, only busy.
          if (err instanceof PeerBusyError && this.scheduler.busy(sourceId)) {
            this.scheduler.failed(piece, sourceId, false);
            return;
          }
          const fault = err instanceof AptP2pError && err.code === ErrorCode.FileHashMismatch;
          // Wrong bytes caught before the piece's hash (more than asked, another file's size) count as bad too.
          if (fault) this.options.onBadPiece?.(sourceId);
          if (this.scheduler.failed(piece, sourceId, fault)) return this.dropBanned(sourceId);
          if (++info.errors >= MAX_SOURCE_ERRORS) this.scheduler.removeSource(sourceId);
        },
      )
      .catch((err: unknown) => this.abort(asDestinationError(this.target.name, err)))
      .finally(() => {
        this.inFlight.delete(key);
        this.pump();
      });
  }

  /**
   * Reads exactly the range into a pooled buffer, or throws; a stall of stallMs without a byte aborts it.
   * Peers are read with the lean range client when there is one; other sources through their ByteSource.
   */
  private async readPiece(info: SourceInfo, range: { start: number; end: number }, controller: AbortController): Promise<Uint8Array> {
    const piece = this.pool.take().subarray(0, range.end - range.start);
    const stallMs = this.options.stallMs ?? STALL_MS;
    let timer = setTimeout(() => controller.abort(new Error("stalled")), stallMs);
    const stillAlive = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new Error("stalled")), stallMs);
    };
    try {
      const client = this.deps.rangeClient;
      if (info.kind === "peer" && client !== undefined) {
        await client.get({ url: info.source.id, ...range, fileSize: this.target.size, into: piece, signal: controller.signal, onBytes: stillAlive });
      } else {
        await this.readFromSource(info.source, range, piece, controller.signal, stillAlive);
      }
      return piece;
    } catch (err) {
      this.pool.give(piece);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async readFromSource(source: ByteSource, range: { start: number; end: number }, into: Uint8Array, signal: AbortSignal, onBytes: () => void): Promise<void> {
    let at = 0;
    for await (const chunk of source.read(range, this.target.size, signal)) {
      if (at + chunk.length > into.length) throw new AptP2pError(ErrorCode.FileHashMismatch, `${source.id} sent more than the piece`);
      into.set(chunk, at);
      at += chunk.length;
      onBytes();
    }
    if (at !== into.length) throw AptP2pError.mirror(source.id, `connection closed after ${at} of ${into.length} bytes of a piece`);
  }

  private pieceIsGood(piece: number, bytes: Uint8Array): boolean {
    if (this.list === undefined && this.scheduler.pieceCount > 1) return true; // No piece list: the whole file is checked at the end.
    const digest = Bun.SHA256.hash(bytes) as Uint8Array;
    if (this.list === undefined) {
      const whole = Buffer.from(digest).toString("hex") === this.target.sha256;
      // Never reset: a bad duplicate after the good copy must not undo what the good one proved.
      if (whole) this.wholeVerified = true;
      return whole;
    }
    return Buffer.from(digest.subarray(0, PIECE_HASH_BYTES)).equals(Buffer.from(this.list.hashes[piece]!));
  }

  /**
   * True when the list, not the source, is to blame: the mirror's bytes disagree with it, or two sources'
   * bytes for the same piece do (a single liar cannot frame a list alone; its own bad pieces get it banned).
   */
  private blameList(piece: number, sourceId: string, kind: "mirror" | "peer"): boolean {
    if (kind === "mirror") return true;
    const blamers = this.listFailures.get(piece) ?? new Set<string>();
    blamers.add(sourceId);
    this.listFailures.set(piece, blamers);
    return blamers.size >= 2;
  }

  private dropBanned(sourceId: string): void {
    // Pieces in flight when the ban came may fail after it: one ban per source.
    if (this.result.banned.includes(sourceId)) return;
    this.result.banned.push(sourceId);
    this.options.onBanned?.(sourceId);
    for (const [key, controller] of this.inFlight) if (key.endsWith(`@${sourceId}`)) controller.abort();
  }

  private count(kind: "mirror" | "peer", sourceId: string, bytes: number): void {
    this.result.bytes[kind] += bytes;
    if (kind === "peer") this.result.perPeer[sourceId] = (this.result.perPeer[sourceId] ?? 0) + bytes;
    this.options.onProgress?.({ bytes, kind, source: sourceId });
  }

  /** Pieces matched the list as they landed: report the written prefix they make (never the whole file). */
  private markWritten(piece: number): void {
    if (this.list === undefined || this.options.onPrefix === undefined) return;
    this.written.add(piece);
    const before = this.writtenPrefix;
    while (this.written.has(this.writtenPrefix)) this.written.delete(this.writtenPrefix++);
    const last = this.scheduler.pieceCount - 1;
    if (this.writtenPrefix === before || before >= last) return;
    this.options.onPrefix(pieceRange(Math.min(this.writtenPrefix, last), this.target.size).start);
  }

  /**
   * The whole file's SHA-256 is computed as pieces land in order (pieces are asked for in file order, so
   * they mostly do); a piece that arrives early waits in memory, up to HASH_BUFFER_BYTES, else it is read
   * back from the file at the end.
   */
  private feedHash(piece: number, bytes: Uint8Array, release: () => void): void {
    if (piece !== this.hashedUpTo) {
      if (piece > this.hashedUpTo && this.bufferedBytes + bytes.length <= HASH_BUFFER_BYTES) {
        this.buffered.set(piece, { bytes, release });
        this.bufferedBytes += bytes.length;
      } else {
        release();
      }
      return;
    }
    this.hasher.update(bytes);
    release();
    this.hashedUpTo++;
    for (let next = this.buffered.get(this.hashedUpTo); next !== undefined; next = this.buffered.get(this.hashedUpTo)) {
      this.buffered.delete(this.hashedUpTo);
      this.bufferedBytes -= next.bytes.length;
      this.hasher.update(next.bytes);
      next.release();
      this.hashedUpTo++;
    }
  }

  /** The SHA-256 of what was written, once run() has resolved. */
  async digest(): Promise<string> {
    if (this.wholeVerified) return this.target.sha256;
    for (; this.hashedUpTo < this.scheduler.pieceCount; this.hashedUpTo++) {
      const held = this.buffered.get(this.hashedUpTo);
      if (held !== undefined) {
        this.hasher.update(held.bytes);
        held.release();
        continue;
      }
      const range = pieceRange(this.hashedUpTo, this.target.size);
      const bytes = this.pool.take().subarray(0, range.end - range.start);
      await this.file.read(bytes, 0, bytes.length, range.start);
      this.hasher.update(bytes);
      this.pool.give(bytes);
    }
    return this.hasher.digest("hex");
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.finish();
  }

  private abort(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    for (const controller of this.inFlight.values()) controller.abort();
    this.fail(err);
  }
}

/** Writes all of `bytes` at `position` (a write may take less than it was given). */
function writeAllSync(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

async function fetchPieceList(fetcher: Fetcher, peer: AnnouncedPeer, keyHex: string): Promise<Uint8Array | undefined> {
  const response = await fetcher(`http://${peer.address}:${peer.port}/~/pieces/${keyHex}`);
  if (response.status !== 200) {
    await response.body?.cancel();
    return undefined;
  }
  return new Uint8Array(await response.arrayBuffer());
}
