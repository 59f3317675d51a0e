/**
 * GET /metrics: the daemon's counters in the Prometheus text exposition format (version 0.0.4). Pure: a
 * snapshot of the counters in, the text out; the daemon gathers the snapshot.
 *
 * Names carry the `apt_p2p_` prefix and their unit; counters end in `_total`. A figure the daemon cannot
 * know yet (an optional field left undefined) is left out rather than shown as a false 0.
 */
import type { IncomingOutcomes } from "../dht/node.ts";
import type { HistogramSnapshot } from "../dht/histogram.ts";
import type { QueryOutcomes } from "../dht/rpc.ts";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface MetricsSnapshot {
  version: string;
  /** ms since epoch. */
  startedAt: number;
  /** Verified bytes of files with a known hash, by where they came from. */
  bytesFrom: { mirror: number; peer: number; cache: number };
  /** Body bytes sent to peers (peer server) and to APT clients (proxy). */
  bytesSent: { peer: number; apt: number };
  proxy: { requests: number; refused: number; verified: number; passedThrough: number; stale: number; active: number };
  peerServer: { requests: number; refused503: number; notFound: number };
  /** Pieces that failed their hash; undefined until the downloads report them. */
  pieceFailures?: number;
  /** Peers banned for bad pieces; undefined until the downloads report them. */
  bannedPeers?: number;
  peersSeen: number;
  dht: {
    tableSize: number;
    storedValues: number;
    bytesIn: number;
    bytesOut: number;
    rateLimited: number;
    outcomesOut: Record<string, QueryOutcomes>;
    outcomesIn: Record<string, IncomingOutcomes>;
    lookupDurations: HistogramSnapshot;
  };
  /** Small files held in memory for peers (src/daemon/hot-files.ts); undefined without that memory. */
  held?: { files: number; bytes: number; hits: number };
  /** Undefined until the cache reports its use. */
  cache?: { bytes: number; files: number; limitBytes: number | null; evictions?: number };
}

type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples: { suffix?: string; labels?: Labels; value: number }[];
}

export function renderMetrics(s: MetricsSnapshot): string {
  const families: Family[] = [
    gauge("apt_p2p_build_info", "The running apt-p2p version (always 1).", [{ labels: { version: s.version }, value: 1 }]),
    gauge("apt_p2p_start_time_seconds", "When the daemon started, in seconds since the Unix epoch.", [{ value: s.startedAt / 1000 }]),
    counter(
      "apt_p2p_download_bytes_total",
      "Verified bytes of files with a signed hash obtained for clients, by source (cache: already held here).",
      (["mirror", "peer", "cache"] as const).map((source) => ({ labels: { source }, value: s.bytesFrom[source] })),
    ),
    counter("apt_p2p_upload_bytes_total", "Body bytes sent, to peers (peer server) and to APT clients (proxy).", [
      { labels: { to: "peer" }, value: s.bytesSent.peer },
      { labels: { to: "apt" }, value: s.bytesSent.apt },
    ]),
    counter("apt_p2p_proxy_requests_total", "APT proxy requests by outcome.", [
      { labels: { outcome: "verified" }, value: s.proxy.verified },
      { labels: { outcome: "passed_through" }, value: s.proxy.passedThrough },
      { labels: { outcome: "stale" }, value: s.proxy.stale },
      { labels: { outcome: "refused" }, value: s.proxy.refused },
      { labels: { outcome: "other" }, value: Math.max(0, s.proxy.requests - s.proxy.verified - s.proxy.passedThrough - s.proxy.stale - s.proxy.refused) },
    ]),
    gauge("apt_p2p_proxy_active_downloads", "Files the proxy is downloading now.", [{ value: s.proxy.active }]),
    counter("apt_p2p_peer_requests_total", "Peer server requests by outcome (busy: refused 503, upload slots full).", [
      { labels: { outcome: "served" }, value: Math.max(0, s.peerServer.requests - s.peerServer.refused503 - s.peerServer.notFound) },
      { labels: { outcome: "busy" }, value: s.peerServer.refused503 },
      { labels: { outcome: "not_found" }, value: s.peerServer.notFound },
    ]),
    gauge("apt_p2p_peers_seen", "Distinct peers met since start: holders the DHT named and addresses that fetched from us.", [{ value: s.peersSeen }]),
  ];
  if (s.pieceFailures !== undefined) {
    families.push(counter("apt_p2p_piece_verification_failures_total", "Pieces that did not match their hash.", [{ value: s.pieceFailures }]));
  }
  if (s.held !== undefined) {
    families.push(
      gauge("apt_p2p_peer_memory_bytes", "Bytes of small files held in memory for peers, after their hash was checked again.", [{ value: s.held.bytes }]),
      gauge("apt_p2p_peer_memory_files", "Small files held in memory for peers.", [{ value: s.held.files }]),
      counter("apt_p2p_peer_memory_hits_total", "Peer requests answered from the files held in memory.", [{ value: s.held.hits }]),
    );
  }
  if (s.bannedPeers !== undefined) {
    families.push(counter("apt_p2p_banned_peers_total", "Peers banned for sending bad pieces.", [{ value: s.bannedPeers }]));
  }
  families.push(
    counter("apt_p2p_dht_queries_total", "DHT queries by direction (out: ours, in: others'), method and outcome.", [
      ...sortedEntries(s.dht.outcomesOut).flatMap(([method, o]) =>
        (["response", "error", "timeout"] as const).map((outcome) => ({ labels: { direction: "out", method, outcome }, value: o[outcome] })),
      ),
      ...sortedEntries(s.dht.outcomesIn).flatMap(([method, o]) =>
        (["answered", "error", "dropped"] as const).map((outcome) => ({ labels: { direction: "in", method, outcome }, value: o[outcome] })),
      ),
    ]),
    counter("apt_p2p_dht_bytes_total", "DHT datagram bytes by direction.", [
      { labels: { direction: "in" }, value: s.dht.bytesIn },
      { labels: { direction: "out" }, value: s.dht.bytesOut },
    ]),
    counter("apt_p2p_dht_rate_limited_total", "DHT queries dropped by the per-node or per-host rate limit.", [{ value: s.dht.rateLimited }]),
    histogram("apt_p2p_dht_lookup_duration_seconds", "Duration of iterative DHT lookups.", s.dht.lookupDurations),
    gauge("apt_p2p_dht_routing_table_contacts", "Contacts in the DHT routing table.", [{ value: s.dht.tableSize }]),
    gauge("apt_p2p_dht_stored_values", "Peer values this node stores for others.", [{ value: s.dht.storedValues }]),
  );
  if (s.cache !== undefined) {
    families.push(
      gauge("apt_p2p_cache_bytes", "Bytes of the files in the cache.", [{ value: s.cache.bytes }]),
      gauge("apt_p2p_cache_files", "Files in the cache.", [{ value: s.cache.files }]),
    );
    if (s.cache.limitBytes !== null) families.push(gauge("apt_p2p_cache_limit_bytes", "The cache quota.", [{ value: s.cache.limitBytes }]));
    if (s.cache.evictions !== undefined) {
      families.push(counter("apt_p2p_cache_evictions_total", "Files evicted from the cache to keep it within its quota.", [{ value: s.cache.evictions }]));
    }
  }
  return families.map(renderFamily).join("");
}

function counter(name: string, help: string, samples: Family["samples"]): Family {
  return { name, help, type: "counter", samples };
}

function gauge(name: string, help: string, samples: Family["samples"]): Family {
  return { name, help, type: "gauge", samples };
}

/** Prometheus buckets are cumulative and end with le="+Inf" (= the count); durations in seconds. */
function histogram(name: string, help: string, h: HistogramSnapshot): Family {
  let cumulative = 0;
  const samples: Family["samples"] = h.boundsMs.map((boundMs, i) => {
    cumulative += h.counts[i]!;
    return { suffix: "_bucket", labels: { le: formatNumber(boundMs / 1000) }, value: cumulative };
  });
  samples.push({ suffix: "_bucket", labels: { le: "+Inf" }, value: h.count });
  samples.push({ suffix: "_sum", value: h.sumMs / 1000 });
  samples.push({ suffix: "_count", value: h.count });
  return { name, help, type: "histogram", samples };
}

function renderFamily(f: Family): string {
  let out = `# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}\n# TYPE ${f.name} ${f.type}\n`;
  for (const sample of f.samples) {
    const labels = Object.entries(sample.labels ?? {});
    const rendered = labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
    out += `${f.name}${sample.suffix ?? ""}${rendered} ${formatNumber(sample.value)}\n`;
  }
  return out;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function sortedEntries<T>(record: Record<string, T>): [string, T][] {
  return Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
}
