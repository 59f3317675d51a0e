/**
 * What the daemon has done, for people and for Prometheus: bytes by source (all downloads, the proxy's and
 * `get`'s), traffic totals per day that survive restarts, transfer rates over the last hour, the peers met,
 * the transfers running and just finished. The status page reads status(), /metrics reads metrics().
 *
 * The daemon wires the counters in (received(), the peer server's stats, the DHT node) and calls start();
 * sampling runs on a timer, everything else is read when asked.
 */
import type { DhtNode } from "../dht/node.ts";
import type { LiveDownload, LiveDownloads, TransferInfo } from "../proxy/live.ts";
import type { ProxyStats } from "../proxy/proxy.ts";
import type { ContentCache } from "../store/cache.ts";
import type { DownloadTarget } from "../transfer/download.ts";
import type { DownloadEvent } from "./downloads.ts";
import type { MetricsSnapshot } from "./metrics.ts";
import type { HotFiles } from "./hot-files.ts";
import type { PeerServerStats } from "./peer-server.ts";
import { PeersSeen, type PeersSummary } from "./peers-seen.ts";
import { RATE_SAMPLE_MS, RateHistory, type RateSample } from "./rates.ts";
import { TOTALS_SAVE_MS, type TrafficBytes, type TrafficTotals } from "./totals.ts";

/** Finished transfers listed on the status page, newest first. */
export const RECENT_TRANSFERS = 20;

export type SourceKind = "mirror" | "peer" | "cache";

export interface FinishedTransfer extends TransferInfo {
  /** ms since epoch. */
  finishedAt: number;
  ok: boolean;
}

export interface CacheStatus {
  bytes: number;
  files: number;
  /** null: no quota (unlimited). */
  limitBytes: number | null;
  /** Files evicted for the quota since start. */
  evictions: number;
}

export interface MonitorParts {
  node: DhtNode;
  proxy: ProxyStats;
  live: LiveDownloads;
  peerServer: PeerServerStats;
  /** Small files held in memory for peers, when the peer server keeps them. */
  hot?: HotFiles;
  cache: ContentCache;
  version: string;
  startedAt: number;
  log: (line: string) => void;
  now?: () => number;
}

export interface StatusReport {
  now: number;
  traffic: { today: TrafficBytes & { day: string }; allTime: TrafficBytes & { since: number } };
  rates: { intervalMs: number; windowMs: number; samples: RateSample[] };
  transfers: TransferInfo[];
  recentTransfers: FinishedTransfer[];
  peers: PeersSummary;
  dht: {
    tableSize: number;
    estimatedNetworkSize: number;
    lookups: number;
    medianLookupMs: number | null;
    p90LookupMs: number | null;
    medianRttMs: number | null;
  };
  cache: CacheStatus;
}

export class Monitor {
  /** Verified bytes of every download (proxy and `get`), by source. */
  readonly bytesFrom = { mirror: 0, peer: 0, cache: 0 };
  /** Pieces that failed their hash, and peers banned, over every swarm download. */
  pieceFailures = 0;
  bannedPeers = 0;
  readonly peers = new PeersSeen();
  readonly rates = new RateHistory(RATE_SAMPLE_MS);
  private readonly recent: FinishedTransfer[] = [];
  private readonly watched = new WeakSet<LiveDownload>();
  private readonly now: () => number;
  private timers: ReturnType<typeof setInterval>[] = [];
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly totals: TrafficTotals,
    private readonly parts: MonitorParts,
  ) {
    this.now = parts.now ?? Date.now;
  }

  /** Samples rates and totals every RATE_SAMPLE_MS and writes the totals every TOTALS_SAVE_MS. */
  start(): void {
    this.sample();
    const sampler = setInterval(() => this.sample(), RATE_SAMPLE_MS);
    const saver = setInterval(() => void this.save(), TOTALS_SAVE_MS);
    for (const timer of [sampler, saver]) timer.unref?.();
    this.timers = [sampler, saver];
  }

  /** Stops the timers and writes the totals one last time. */
  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.sample();
    await this.save();
  }

  /** Verified bytes of a download landed. */
  received(kind: SourceKind, bytes: number): void {
    this.bytesFrom[kind] += bytes;
  }

  /** A proxy download was started or joined: list it among the recent transfers when it ends. */
  watch(download: LiveDownload): void {
    if (this.watched.has(download)) return;
    this.watched.add(download);
    const finish = (ok: boolean) => {
      const t = download.target;
      this.finished({ name: t.name, sha256: t.sha256, size: t.size, startedAt: download.startedAt, bytes: { ...download.bytes }, finishedAt: this.now(), ok });
    };
    download.done.then(
      () => finish(true),
      () => finish(false),
    );
  }

  /**
   * A `get` through the daemon (POST /api/download) starts and will end as `outcome` does: its progress
   * events (pass them to the returned function) count its bytes; at the end, the peers it downloaded from
   * are noted and it is listed among the finished transfers.
   */
  watchDownload(target: DownloadTarget, outcome: Promise<{ perPeer: Record<string, number> }>): (event: DownloadEvent) => void {
    const startedAt = this.now();
    const bytes = { mirror: 0, peer: 0, cache: 0 };
    const finish = (perPeer: Record<string, number> | null) => {
      const now = this.now();
      for (const [peer, got] of Object.entries(perPeer ?? {})) this.peers.receivedFrom(peer, got, now);
      this.finished({ name: target.name, sha256: target.sha256, size: target.size, startedAt, bytes, finishedAt: now, ok: perPeer !== null });
    };
    outcome.then(
      (obtained) => finish(obtained.perPeer),
      () => finish(null),
    );
    return (event) => {
      if (event.type !== "progress") return;
      bytes[event.kind] += event.bytes;
      this.received(event.kind, event.bytes);
    };
  }

  /** A transfer ended (a proxy download, or a `get` through the daemon). */
  finished(transfer: FinishedTransfer): void {
    this.recent.unshift(transfer);
    this.recent.length = Math.min(this.recent.length, RECENT_TRANSFERS);
  }

  /** One point of the rate chart (on the timer only: polling must not crowd the hour's ring) and the totals. */
  sample(): void {
    const now = this.now();
    this.rates.sample(now, { mirror: this.bytesFrom.mirror, peer: this.bytesFrom.peer, upload: this.parts.peerServer.bytesSent });
    this.recordTotals(now);
  }

  private recordTotals(now: number): void {
    this.totals.record(now, { ...this.bytesFrom, upload: this.parts.peerServer.bytesSent });
  }

  status(): StatusReport {
    const now = this.now();
    this.recordTotals(now);
    const dht = this.parts.node.stats();
    return {
      now,
      traffic: { today: this.totals.today(now), allTime: this.totals.allTime() },
      rates: { intervalMs: this.rates.intervalMs, windowMs: this.rates.windowMs, samples: this.rates.samples(now).map(roundSample) },
      transfers: this.parts.live.list(),
      recentTransfers: this.recent.map((t) => ({ ...t, bytes: { ...t.bytes } })),
      peers: this.peers.summary(now),
      dht: {
        tableSize: dht.tableSize,
        estimatedNetworkSize: dht.estimatedNetworkSize,
        lookups: dht.lookups,
        medianLookupMs: dht.medianLookupMs,
        p90LookupMs: dht.p90LookupMs,
        medianRttMs: dht.medianRttMs,
      },
      cache: this.cacheStatus(),
    };
  }

  metrics(): MetricsSnapshot {
    const { proxy, peerServer, live } = this.parts;
    const dht = this.parts.node.stats();
    const cache = this.cacheStatus();
    return {
      version: this.parts.version,
      startedAt: this.parts.startedAt,
      bytesFrom: { ...this.bytesFrom },
      bytesSent: { peer: peerServer.bytesSent, apt: proxy.bytesSent },
      proxy: { requests: proxy.requests, refused: proxy.refused, verified: proxy.verified, passedThrough: proxy.passedThrough, stale: proxy.stale, active: live.active },
      peerServer: { requests: peerServer.requests, refused503: peerServer.refused503, notFound: peerServer.notFound },
      pieceFailures: this.pieceFailures,
      bannedPeers: this.bannedPeers,
      held: this.parts.hot?.stats(),
      peersSeen: this.peers.summary(this.now(), 0).total,
      dht: {
        tableSize: dht.tableSize,
        storedValues: dht.storedValues,
        bytesIn: dht.bytesIn,
        bytesOut: dht.bytesOut,
        rateLimited: dht.rateLimited,
        outcomesOut: dht.outcomesOut,
        outcomesIn: dht.outcomesIn,
        lookupDurations: dht.lookupDurations,
      },
      cache,
    };
  }

  private cacheStatus(): CacheStatus {
    const { cache } = this.parts;
    return { ...cache.usage(), limitBytes: cache.limitBytes, evictions: cache.evictionStats().files };
  }

  /** Writes the totals; a failure is logged (the counts stay in memory and the next save tries again). */
  private save(): Promise<void> {
    this.saving = this.saving.then(() =>
      this.totals.save().catch((err: unknown) => this.parts.log(`cannot save traffic totals: ${err instanceof Error ? err.message : String(err)}`)),
    );
    return this.saving;
  }
}

function roundSample(s: RateSample): RateSample {
  return { at: s.at, mirror: Math.round(s.mirror), peer: Math.round(s.peer), upload: Math.round(s.upload) };
}
