import { describe, expect, test } from "bun:test";
import { METRICS_CONTENT_TYPE, renderMetrics, type MetricsSnapshot } from "../../src/daemon/metrics.ts";
import { metricValue, parsePrometheusText } from "./prometheus-text.ts";

function snapshot(overrides: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    version: "1.2.3",
    startedAt: 1_700_000_000_500,
    bytesFrom: { mirror: 1_000, peer: 30_000, cache: 500 },
    bytesSent: { peer: 4_096, apt: 31_500 },
    proxy: { requests: 12, refused: 1, verified: 6, passedThrough: 3, stale: 1, active: 2 },
    peerServer: { requests: 9, refused503: 2, notFound: 3 },
    peersSeen: 4,
    dht: {
      tableSize: 17,
      storedValues: 5,
      bytesIn: 9_000,
      bytesOut: 8_000,
      rateLimited: 3,
      outcomesOut: { get_peers: { response: 10, error: 1, timeout: 2 }, find_node: { response: 4, error: 0, timeout: 0 } },
      outcomesIn: { ping: { answered: 7, error: 0, dropped: 1 } },
      lookupDurations: { boundsMs: [10, 100, 1_000], counts: [1, 3, 0, 1], sumMs: 2_345, count: 5 },
    },
    ...overrides,
  };
}

describe("renderMetrics()", () => {
  test("the output is valid Prometheus text, every family with HELP and TYPE, names prefixed and with units", () => {
    const families = parsePrometheusText(renderMetrics(snapshot({ pieceFailures: 2, bannedPeers: 1, held: { files: 2, bytes: 9, hits: 4 }, cache: { bytes: 10, files: 1, limitBytes: 100, evictions: 3 } })));
    expect(families.size).toBeGreaterThan(15);
    for (const family of families.values()) {
      expect(family.name).toStartWith("apt_p2p_");
      expect(family.help).toBeTruthy();
      expect(family.type).not.toBe("untyped");
      if (family.type === "counter") expect(family.name).toEndWith("_total");
      if (family.name.includes("bytes")) expect(family.name).toMatch(/_bytes(_total)?$/);
      if (family.name.includes("duration")) expect(family.name).toMatch(/_seconds$/);
    }
  });

  test("bytes by source and direction", () => {
    const f = parsePrometheusText(renderMetrics(snapshot()));
    expect(metricValue(f, "apt_p2p_download_bytes_total", { source: "mirror" })).toBe(1_000);
    expect(metricValue(f, "apt_p2p_download_bytes_total", { source: "peer" })).toBe(30_000);
    expect(metricValue(f, "apt_p2p_download_bytes_total", { source: "cache" })).toBe(500);
    expect(metricValue(f, "apt_p2p_upload_bytes_total", { to: "peer" })).toBe(4_096);
    expect(metricValue(f, "apt_p2p_upload_bytes_total", { to: "apt" })).toBe(31_500);
    expect(metricValue(f, "apt_p2p_dht_bytes_total", { direction: "in" })).toBe(9_000);
  });

  test("requests by outcome add up to the requests counted", () => {
    const f = parsePrometheusText(renderMetrics(snapshot()));
    const proxy = f.get("apt_p2p_proxy_requests_total")!.samples;
    expect(proxy.reduce((sum, s) => sum + s.value, 0)).toBe(12);
    expect(metricValue(f, "apt_p2p_proxy_requests_total", { outcome: "other" })).toBe(1);
    expect(metricValue(f, "apt_p2p_peer_requests_total", { outcome: "served" })).toBe(4);
    expect(metricValue(f, "apt_p2p_peer_requests_total", { outcome: "busy" })).toBe(2);
    expect(metricValue(f, "apt_p2p_peer_requests_total", { outcome: "not_found" })).toBe(3);
  });

  test("DHT queries by direction, method and outcome", () => {
    const f = parsePrometheusText(renderMetrics(snapshot()));
    expect(metricValue(f, "apt_p2p_dht_queries_total", { direction: "out", method: "get_peers", outcome: "timeout" })).toBe(2);
    expect(metricValue(f, "apt_p2p_dht_queries_total", { direction: "in", method: "ping", outcome: "dropped" })).toBe(1);
    expect(metricValue(f, "apt_p2p_dht_routing_table_contacts")).toBe(17);
  });

  test("the lookup histogram is in seconds, cumulative, and ends at +Inf with the count", () => {
    const f = parsePrometheusText(renderMetrics(snapshot()));
    const name = "apt_p2p_dht_lookup_duration_seconds";
    expect(f.get(name)!.type).toBe("histogram");
    expect(metricValue(f, name, { le: "0.01" }, `${name}_bucket`)).toBe(1);
    expect(metricValue(f, name, { le: "0.1" }, `${name}_bucket`)).toBe(4);
    expect(metricValue(f, name, { le: "1" }, `${name}_bucket`)).toBe(4);
    expect(metricValue(f, name, { le: "+Inf" }, `${name}_bucket`)).toBe(5);
    expect(metricValue(f, name, {}, `${name}_sum`)).toBe(2.345);
    expect(metricValue(f, name, {}, `${name}_count`)).toBe(5);
  });

  test("figures not known yet are left out, not shown as 0", () => {
    const f = parsePrometheusText(renderMetrics(snapshot()));
    for (const name of ["apt_p2p_piece_verification_failures_total", "apt_p2p_banned_peers_total", "apt_p2p_cache_bytes", "apt_p2p_cache_evictions_total"]) {
      expect(f.has(name)).toBe(false);
    }
  });

  test("cache use, quota and evictions when the cache reports them; no limit line without a quota", () => {
    const withQuota = parsePrometheusText(renderMetrics(snapshot({ cache: { bytes: 700, files: 3, limitBytes: 1_000, evictions: 2 } })));
    expect(metricValue(withQuota, "apt_p2p_cache_bytes")).toBe(700);
    expect(metricValue(withQuota, "apt_p2p_cache_files")).toBe(3);
    expect(metricValue(withQuota, "apt_p2p_cache_limit_bytes")).toBe(1_000);
    expect(metricValue(withQuota, "apt_p2p_cache_evictions_total")).toBe(2);
    const unlimited = parsePrometheusText(renderMetrics(snapshot({ cache: { bytes: 700, files: 3, limitBytes: null } })));
    expect(unlimited.has("apt_p2p_cache_limit_bytes")).toBe(false);
  });

  test("small files held in memory for peers: bytes, files and hits, when the peer server holds any", () => {
    const f = parsePrometheusText(renderMetrics(snapshot({ held: { files: 3, bytes: 180_000, hits: 41 } })));
    expect(metricValue(f, "apt_p2p_peer_memory_bytes")).toBe(180_000);
    expect(metricValue(f, "apt_p2p_peer_memory_files")).toBe(3);
    expect(metricValue(f, "apt_p2p_peer_memory_hits_total")).toBe(41);
    expect(parsePrometheusText(renderMetrics(snapshot())).has("apt_p2p_peer_memory_bytes")).toBe(false);
  });

  test("label values are escaped", () => {
    const f = parsePrometheusText(renderMetrics(snapshot({ version: 'a"b\\c\nd' })));
    expect(metricValue(f, "apt_p2p_build_info", { version: 'a"b\\c\nd' })).toBe(1);
  });

  test("the content type is the text format's", () => {
    expect(METRICS_CONTENT_TYPE).toBe("text/plain; version=0.0.4; charset=utf-8");
  });
});

describe("parsePrometheusText() is strict", () => {
  const valid = "# HELP x_total A.\n# TYPE x_total counter\nx_total 1\n";
  test.each([
    ["a sample without TYPE", "x_total 1\n"],
    ["no final line feed", valid.slice(0, -1)],
    ["a negative counter", valid.replace("x_total 1", "x_total -1")],
    ["a duplicate series", `${valid}x_total 2\n`],
    ["a split family", `${valid}# TYPE y gauge\ny 1\nx_total 3\n`],
    ["a bad escape", '# TYPE g gauge\ng{a="\\t"} 1\n'],
    ["an unquoted label", "# TYPE g gauge\ng{a=1} 1\n"],
    ["a bad value", "# TYPE g gauge\ng one\n"],
    ["buckets not cumulative", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ["a histogram without +Inf", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
  ])("rejects %s", (_, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });

  test("accepts a valid exposition", () => {
    expect(parsePrometheusText(valid).get("x_total")!.samples).toEqual([{ name: "x_total", labels: {}, value: 1 }]);
  });
});
