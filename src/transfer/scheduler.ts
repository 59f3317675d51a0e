/**
 * Which piece to ask which source for next. Pure: randomness is injected, no clock, no I/O; the
 * downloader reports what happened and asks again.
 *
 * - Every source (peer or mirror) keeps a bounded number of requests in flight, so faster sources,
 *   finishing sooner, are given more pieces.
 * - Among the pieces a source has, the rarest (held by the fewest usable peers) go first; ties go in file
 *   order from a random starting point, so that downloaders do not all start with the same piece.
 * - In sequential mode (a file read as it grows) a mirror, while peers take part, works from the end of
 *   the file backwards: the in-order prefix that readers and the whole-file hash wait on then grows at
 *   the peers' pace, not held up by the piece a slower mirror is still sending, and the two meet at the
 *   end. Without peers the mirror goes in order.
 * - Endgame: when a source has nothing new to fetch, it duplicates a piece still in flight elsewhere
 *   (at most MAX_COPIES at once); the first copy to land wins and the others are cancelled.
 * - A source that delivers bad pieces is banned after BAN_AFTER_FAULTS; its pieces go back to the pool.
 */

/** Requests in flight per source: enough to keep a kept-alive connection busy across one round trip. */
export const DEFAULT_MAX_IN_FLIGHT = 4;
/** Bad pieces tolerated from one source before it is banned. */
export const BAN_AFTER_FAULTS = 2;
/** Copies of one piece in flight at once during the endgame. */
export const MAX_COPIES = 2;

export interface SchedulerSource {
  id: string;
  kind: "mirror" | "peer";
  /** The pieces this source can give. */
  pieces: "all" | ReadonlySet<number>;
  /** Requests it may have in flight (default DEFAULT_MAX_IN_FLIGHT). */
  maxInFlight?: number;
}

export interface PieceRequest {
  piece: number;
  source: string;
}

interface SourceState extends SchedulerSource {
  inFlight: Set<number>;
  faults: number;
  delivered: number;
}

export class PieceScheduler {
  private readonly sources = new Map<string, SourceState>();
  private readonly done: boolean[];
  private readonly holders = new Map<number, Set<string>>(); // piece → sources with it in flight
  private readonly assignedAt = new Map<number, number>(); // piece → when its first copy was asked for
  private readonly endgameDelayMs: number;
  private readonly availability: number[];
  private readonly start: number;
  private readonly sequential: boolean;
  private remainingCount: number;
  private readonly bannedIds = new Set<string>();

  constructor(
    readonly pieceCount: number,
    options: {
      random: () => number;
      sequential?: boolean;
      /**
       * A piece in flight is duplicated only after this long (ms): a small file from a quick peer then
       * costs the mirror nothing, while a stalled request is helped within a second.
       */
      endgameDelayMs?: number;
    },
  ) {
    this.endgameDelayMs = options.endgameDelayMs ?? 0;
    this.done = new Array<boolean>(pieceCount).fill(false);
    this.availability = new Array<number>(pieceCount).fill(0);
    this.remainingCount = pieceCount;
    this.sequential = options.sequential === true;
    this.start = this.sequential ? 0 : Math.floor(options.random() * pieceCount);
  }

  get complete(): boolean {
    return this.remainingCount === 0;
  }

  get remaining(): number {
    return this.remainingCount;
  }

  isDone(piece: number): boolean {
    return this.done[piece] === true;
  }

  isBanned(id: string): boolean {
    return this.bannedIds.has(id);
  }

  /** Sources that can still be asked (not banned, not removed). */
  activeSources(): string[] {
    return [...this.sources.keys()];
  }

  addSource(source: SchedulerSource): void {
    if (this.sources.has(source.id) || this.bannedIds.has(source.id)) return;
    this.sources.set(source.id, { ...source, inFlight: new Set(), faults: 0, delivered: 0 });
    this.count(source, +1);
  }

  /** A source went away: its requests in flight go back to the pool. Returns those pieces. */
  removeSource(id: string): number[] {
    const source = this.sources.get(id);
    if (source === undefined) return [];
    this.sources.delete(id);
    this.count(source, -1);
    const dropped = [...source.inFlight];
    for (const piece of dropped) this.holders.get(piece)?.delete(id);
    return dropped;
  }

  /** Requests to send now, filling every source's free slots; `now` (ms) matters only for the endgame delay. */
  next(now = 0): PieceRequest[] {
    const out: PieceRequest[] = [];
    // Peers first, so that the mirror takes what peers cannot, and is spared when they can.
    const ordered = [...this.sources.values()].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "peer" ? -1 : 1));
    let progress = true;
    while (progress) {
      progress = false;
      for (const source of ordered) {
        if (source.inFlight.size >= (source.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT)) continue;
        const piece = this.pick(source, now);
        if (piece === undefined) continue;
        this.assign(source, piece, now);
        out.push({ piece, source: source.id });
        progress = true;
      }
    }
    return out;
  }

  /** A piece arrived and verified. Returns the other sources fetching it, whose requests should be cancelled. */
  completed(piece: number, sourceId: string): string[] {
    const source = this.sources.get(sourceId);
    if (source !== undefined) {
      source.inFlight.delete(piece);
      source.delivered++;
    }
    const others = [...(this.holders.get(piece) ?? [])].filter((id) => id !== sourceId);
    for (const id of others) this.sources.get(id)?.inFlight.delete(piece);
    this.holders.delete(piece);
    if (!this.done[piece]) {
      this.done[piece] = true;
      this.remainingCount--;
    }
    return others;
  }

  /**
   * A request failed. `fault` marks bad data (hash mismatch, wrong length): the source is penalised and
   * banned after BAN_AFTER_FAULTS. Returns true when the source is now banned.
   */
  failed(piece: number, sourceId: string, fault: boolean): boolean {
    const source = this.sources.get(sourceId);
    this.holders.get(piece)?.delete(sourceId);
    if (source === undefined) return this.bannedIds.has(sourceId);
    source.inFlight.delete(piece);
    if (!fault) return false;
    source.faults++;
    if (source.faults < BAN_AFTER_FAULTS) return false;
    this.ban(sourceId);
    return true;
  }

  /**
   * The source refused a request as busy: from now on it gets one request fewer in flight, never fewer
   * than one. Returns false when it had one only already (the refusal is then an ordinary failure).
   */
  busy(sourceId: string): boolean {
    const source = this.sources.get(sourceId);
    const limit = source?.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (source === undefined || limit <= 1) return false;
    source.maxInFlight = limit - 1;
    return true;
  }

  /** Bans a source outright (for example after the file failed its SHA-256 with its piece list). */
  ban(sourceId: string): void {
    this.removeSource(sourceId);
    this.bannedIds.add(sourceId);
  }

  /** A cancelled duplicate or a request given up without blame. */
  released(piece: number, sourceId: string): void {
    this.sources.get(sourceId)?.inFlight.delete(piece);
    this.holders.get(piece)?.delete(sourceId);
  }

  /** Pieces no remaining source can give (the download cannot finish without a new source). */
  unobtainable(): number[] {
    const out: number[] = [];
    for (let piece = 0; piece < this.pieceCount; piece++) {
      if (this.done[piece]) continue;
      let any = false;
      for (const source of this.sources.values()) if (has(source, piece)) any = true;
      if (!any) out.push(piece);
    }
    return out;
  }

  private pick(source: SourceState, now: number): number | undefined {
    let best: number | undefined;
    let bestRarity = Number.POSITIVE_INFINITY;
    const backwards = this.sequential && source.kind === "mirror" && this.hasPeers();
    for (let k = 0; k < this.pieceCount; k++) {
      const piece = backwards ? this.pieceCount - 1 - k : (this.start + k) % this.pieceCount;
      if (this.done[piece] || !has(source, piece) || (this.holders.get(piece)?.size ?? 0) > 0) continue;
      const rarity = this.availability[piece]!;
      if (rarity < bestRarity) {
        best = piece;
        bestRarity = rarity;
        if (rarity === 0) break;
      }
    }
    if (best !== undefined) return best;
    // Endgame: help with a piece in flight elsewhere that this source has not got in flight itself.
    let endgame: number | undefined;
    let fewest = MAX_COPIES;
    for (const [piece, holders] of this.holders) {
      if (this.done[piece] || holders.has(source.id) || !has(source, piece)) continue;
      if (holders.size > 0 && now - (this.assignedAt.get(piece) ?? now) < this.endgameDelayMs) continue;
      if (holders.size < fewest) {
        endgame = piece;
        fewest = holders.size;
      }
    }
    return endgame;
  }

  private hasPeers(): boolean {
    for (const source of this.sources.values()) if (source.kind === "peer") return true;
    return false;
  }

  private assign(source: SourceState, piece: number, now: number): void {
    source.inFlight.add(piece);
    let holders = this.holders.get(piece);
    if (holders === undefined) {
      holders = new Set();
      this.holders.set(piece, holders);
    }
    if (holders.size === 0) this.assignedAt.set(piece, now);
    holders.add(source.id);
  }

  /** When the scheduler next wants to be asked (an endgame delay running out), or undefined. */
  nextWake(now: number): number | undefined {
    let wake: number | undefined;
    for (const [piece, holders] of this.holders) {
      if (this.done[piece] || holders.size === 0 || holders.size >= MAX_COPIES) continue;
      const at = (this.assignedAt.get(piece) ?? now) + this.endgameDelayMs;
      if (at > now && (wake === undefined || at < wake)) wake = at;
    }
    return wake;
  }

  /** Rarity counts peers only: the mirror has everything and should not make a piece look common. */
  private count(source: SchedulerSource, delta: number): void {
    if (source.kind !== "peer") return;
    if (source.pieces === "all") for (let i = 0; i < this.pieceCount; i++) this.availability[i]! += delta;
    else for (const i of source.pieces) if (i >= 0 && i < this.pieceCount) this.availability[i]! += delta;
  }
}

function has(source: SchedulerSource, piece: number): boolean {
  return source.pieces === "all" || source.pieces.has(piece);
}

/** Fisher–Yates shuffle of `items` in place, with injected randomness; returns `items`. */
export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
