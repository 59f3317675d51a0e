/**
 * Which piece to ask which source for next. Pure: randomness and the clock are injected, no I/O; the
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
 *   (at most MAX_COPIES at once); the first copy to land wins and the others are cancelled. A peer does
 *   so at once where, by the rates both sources have shown, it would land the piece ENDGAME_MARGIN times
 *   sooner than the source that has it; otherwise, and the mirror always, only once the piece has been
 *   in flight for the endgame delay (a stall, or sources that have not delivered anything yet). The
 *   mirror is spared copies that peers can make.
 * - A source that delivers bad pieces is banned after BAN_AFTER_FAULTS; its pieces go back to the pool.
 */

/**
 * Requests in flight per source: enough to keep a kept-alive connection busy across one round trip.
 * Two would do on a LAN: eight local peers at 10 MB/s gave a 100 MB file 20 ms sooner with two
 * (scripts/bench/swarm.ts, 20 runs each way). But in the simulated day (scripts/sim), with two the
 * slowest updates took longer (p99 at 25% adoption 20.4 s against 17.8) and the mirror's share at full
 * adoption rose from 4.1% to 4.4%; so four.
 */
export const DEFAULT_MAX_IN_FLIGHT = 4;
/** Bad pieces tolerated from one source before it is banned. */
export const BAN_AFTER_FAULTS = 2;
/** Copies of one piece in flight at once during the endgame. */
export const MAX_COPIES = 2;
/**
 * A peer copies a piece before the endgame delay only when, by the rates seen, it would land the piece
 * this many times sooner than the source fetching it: rates wander, and a copy costs bytes.
 */
export const ENDGAME_MARGIN = 1.25;

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
  /** Piece → when this source was asked for it (ms). */
  inFlight: Map<number, number>;
  faults: number;
  delivered: number;
  /** Time (ms) it had requests in flight, over its busy periods that ended… */
  busyMs: number;
  /** …and when the current one began, while it has requests in flight. */
  busySince: number | undefined;
  /** Its busy time when it last delivered a piece: its pace is `delivered` pieces in that time. */
  busyAtDelivery: number;
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
  private readonly now: () => number;

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
      /** The clock (ms); the rates behind an early endgame copy are measured with it. */
      now?: () => number;
    },
  ) {
    this.endgameDelayMs = options.endgameDelayMs ?? 0;
    this.now = options.now ?? (() => 0);
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
    this.sources.set(source.id, { ...source, inFlight: new Map(), faults: 0, delivered: 0, busyMs: 0, busySince: undefined, busyAtDelivery: 0 });
    this.count(source, +1);
  }

  /** A source went away: its requests in flight go back to the pool. Returns those pieces. */
  removeSource(id: string): number[] {
    const source = this.sources.get(id);
    if (source === undefined) return [];
    this.sources.delete(id);
    this.count(source, -1);
    const dropped = [...source.inFlight.keys()];
    for (const piece of dropped) this.holders.get(piece)?.delete(id);
    return dropped;
  }

  /** Requests to send now, filling every source's free slots. */
  next(): PieceRequest[] {
    const now = this.now();
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
      source.busyAtDelivery = this.busyMs(source);
      source.delivered++;
      this.untrack(source, piece);
    }
    const others = [...(this.holders.get(piece) ?? [])].filter((id) => id !== sourceId);
    for (const id of others) this.untrack(this.sources.get(id), piece);
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
    this.untrack(source, piece);
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
    this.untrack(this.sources.get(sourceId), piece);
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
    // Endgame: help with a piece in flight elsewhere that this source has not got in flight itself: the
    // one with the fewest copies, then the one expected to land last. A peer takes a piece before the
    // delay if it would land it ENDGAME_MARGIN times sooner; the mirror only after the delay.
    const ownMs = this.pieceMs(source, 1);
    let endgame: number | undefined;
    let fewest = MAX_COPIES;
    let latest = Number.NEGATIVE_INFINITY;
    for (const [piece, holders] of this.holders) {
      if (this.done[piece] || holders.has(source.id) || !has(source, piece) || holders.size >= MAX_COPIES || holders.size > fewest) continue;
      const leftMs = this.landsInMs(piece, holders, now);
      const late = now - (this.assignedAt.get(piece) ?? now) >= this.endgameDelayMs;
      const sooner = source.kind === "peer" && ownMs !== undefined && leftMs !== undefined && leftMs > ownMs * ENDGAME_MARGIN;
      if (holders.size > 0 && !late && !sooner) continue;
      const rank = leftMs ?? Number.POSITIVE_INFINITY;
      if (holders.size < fewest || rank > latest) {
        endgame = piece;
        fewest = holders.size;
        latest = rank;
      }
    }
    return endgame;
  }

  /**
   * How long (ms) a piece takes the source while its pace is shared by the requests in flight and `extra`
   * more, at the pace it has shown: busy milliseconds per piece delivered. Undefined until it delivered one.
   * (A source that stalls keeps its pace on paper; the endgame delay is what helps with a stall.)
   */
  private pieceMs(source: SourceState, extra: number): number | undefined {
    if (source.delivered === 0) return undefined;
    return ((source.inFlight.size + extra) * source.busyAtDelivery) / source.delivered;
  }

  private busyMs(source: SourceState): number {
    return source.busyMs + (source.busySince === undefined ? 0 : this.now() - source.busySince);
  }

  /** When (ms from now) the first of a piece's holders is expected to land it; undefined if unknown. */
  private landsInMs(piece: number, holders: Set<string>, now: number): number | undefined {
    let soonest: number | undefined;
    for (const id of holders) {
      const holder = this.sources.get(id);
      if (holder === undefined) continue;
      const perPiece = this.pieceMs(holder, 0);
      if (perPiece === undefined) return undefined;
      // Its requests share its pace: a piece asked `age` ago has about perPiece - age to go.
      const left = perPiece - (now - (holder.inFlight.get(piece) ?? now));
      soonest = soonest === undefined ? left : Math.min(soonest, left);
    }
    return soonest;
  }

  private hasPeers(): boolean {
    for (const source of this.sources.values()) if (source.kind === "peer") return true;
    return false;
  }

  private assign(source: SourceState, piece: number, now: number): void {
    if (source.inFlight.size === 0) source.busySince = now;
    source.inFlight.set(piece, now);
    let holders = this.holders.get(piece);
    if (holders === undefined) {
      holders = new Set();
      this.holders.set(piece, holders);
    }
    if (holders.size === 0) this.assignedAt.set(piece, now);
    holders.add(source.id);
  }

  /** A request of the source's ended; its busy time stops when its last one does. */
  private untrack(source: SourceState | undefined, piece: number): void {
    if (source === undefined || !source.inFlight.delete(piece) || source.inFlight.size > 0) return;
    source.busyMs = this.busyMs(source);
    source.busySince = undefined;
  }

  /** When the scheduler next wants to be asked (an endgame delay running out), or undefined. */
  nextWake(): number | undefined {
    const now = this.now();
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
