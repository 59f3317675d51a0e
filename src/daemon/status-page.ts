/**
 * GET /: the status page. One self-contained HTML document (inline CSS and script, no external asset:
 * its Content-Security-Policy forbids any) that polls GET /api/status and draws what the daemon is doing.
 * It reads on a phone: one column of cards below about 40em.
 *
 * Every figure the page shows from the status JSON is written with textContent (file and peer names come
 * from the network), and exact byte counts sit in data-bytes attributes next to the rounded text. Script
 * errors are listed in #errors, so that a headless browser's DOM dump shows them.
 */

import type { RequestInfo } from "../http/server.ts";
import { textResponse as text } from "../http/text-response.ts";
import { clientAllowed, type Cidr } from "../proxy/allow.ts";
import { METRICS_CONTENT_TYPE, renderMetrics, type MetricsSnapshot } from "./metrics.ts";

/** How often the page asks for /api/status: the daemon samples rates every 5 s (src/daemon/rates.ts). */
export const STATUS_POLL_MS = 5_000;
/** Exact paths, routed by the daemon before the APT proxy. */
export const STATUS_PAGE_PATH = "/";
export const METRICS_PATH = "/metrics";

export interface StatusDeps {
  /** Clients allowed besides loopback (--status-allow). */
  clients: Cidr[];
  metrics: () => MetricsSnapshot;
}

/** GET / (the page) and GET /metrics, for loopback and the clients of --status-allow. */
export function handleStatus(request: Request, info: RequestInfo, deps: StatusDeps): Response {
  if (!clientAllowed(info.remoteAddress, deps.clients)) {
    return text(403, `The status page and metrics answer only loopback and the addresses of --status-allow, not ${info.remoteAddress}.\n`);
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return text(405, "The status page and metrics answer GET and HEAD only.\n", { Allow: "GET, HEAD" });
  }
  const head = request.method === "HEAD";
  if (new URL(request.url).pathname === METRICS_PATH) {
    return new Response(head ? null : renderMetrics(deps.metrics()), { headers: { "Content-Type": METRICS_CONTENT_TYPE, "Cache-Control": "no-store" } });
  }
  return new Response(head ? null : STATUS_PAGE_HTML, {
    headers: {
      "Content-Type": "text/html; charset=utf-8",
      "Cache-Control": "no-store",
      "X-Content-Type-Options": "nosniff",
      "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
    },
  });
}

const STYLE = `
:root { --mirror: #d9822b; --peer: #2b8a3e; --cache: #1c7ed6; --upload: #ae3ec9; --fg: #212529; --muted: #6c757d; --line: #dee2e6; --bg: #f8f9fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 12px 16px; background: #fff; border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header .meta { color: var(--muted); font-size: 13px; }
#conn.down { color: #c92a2a; font-weight: 600; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 22em), 1fr)); gap: 12px; padding: 12px; max-width: 80em; margin: 0 auto; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.spared { font-size: 17px; margin: 0 0 6px; }
.spared strong { color: var(--peer); }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 3px 4px; text-align: right; border-bottom: 1px solid var(--line); white-space: nowrap; }
td:first-child, th:first-child { text-align: left; white-space: normal; overflow-wrap: anywhere; }
th { font-weight: 600; color: var(--muted); font-size: 13px; }
.bar { display: flex; height: 10px; border-radius: 5px; overflow: hidden; background: var(--line); margin: 6px 0 10px; }
.bar span { display: block; height: 100%; }
.mirror { background: var(--mirror); } .peer { background: var(--peer); } .cache { background: var(--cache); }
.key { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.muted { color: var(--muted); }
.legend { font-size: 13px; color: var(--muted); display: flex; flex-wrap: wrap; gap: 4px 14px; }
svg { width: 100%; height: 180px; display: block; }
svg text { font-size: 11px; fill: var(--muted); }
.transfer { margin-bottom: 10px; }
.transfer .name { overflow-wrap: anywhere; }
.transfer .bar { margin: 3px 0 0; }
#errors { margin: 12px; padding: 8px 12px 8px 28px; background: #fff5f5; border: 1px solid #ffa8a8; color: #c92a2a; border-radius: 8px; }
#errors[hidden] { display: none; }
`;

const SCRIPT = `
"use strict";
var POLL_MS = ${STATUS_POLL_MS};
function reportError(text) {
  var box = document.getElementById("errors");
  var item = document.createElement("li");
  item.textContent = text;
  box.appendChild(item);
  box.hidden = false;
}
window.onerror = function (message, source, line, column) {
  reportError(String(message) + " (" + (source || "page") + ":" + line + ":" + column + ")");
};
window.addEventListener("unhandledrejection", function (event) {
  var reason = event.reason;
  reportError("unhandled rejection: " + (reason && reason.stack ? reason.stack : String(reason)));
});
/* A blocked resource is a console error too, but not a script error: report it the same way. */
document.addEventListener("securitypolicyviolation", function (event) {
  reportError("blocked by the page's policy: " + event.blockedURI + " (" + event.violatedDirective + ")");
});
var consoleError = console.error;
console.error = function () {
  reportError("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
  consoleError.apply(console, arguments);
};

function $(id) { return document.getElementById(id); }
function el(tag, className, text) {
  var node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
/* SI units, as apt-get prints sizes ("Need to get 12.3 MB"). */
function formatBytes(n) {
  if (n < 1000) return n + " B";
  var units = ["kB", "MB", "GB", "TB", "PB"];
  var value = n, i = -1;
  do { value /= 1000; i++; } while (value >= 1000 && i < units.length - 1);
  return (value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)) + " " + units[i];
}
function formatRate(bytesPerSecond) { return formatBytes(Math.round(bytesPerSecond)) + "/s"; }
function formatMs(ms) { return ms === null ? "–" : ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s"; }
function formatDuration(seconds) {
  var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
  return d > 0 ? d + " d " + h + " h" : h > 0 ? h + " h " + m + " min" : m > 0 ? m + " min" : Math.floor(seconds) + " s";
}
function percent(part, whole) { return whole === 0 ? "–" : (100 * part / whole).toFixed(part === whole || part === 0 ? 0 : 1) + "%"; }
function setBytes(id, bytes) { var node = $(id); node.textContent = formatBytes(bytes); node.dataset.bytes = String(bytes); }
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function timeOf(ms) { return new Date(ms).toLocaleTimeString(); }

function fillBar(bar, bytes, whole) {
  clear(bar);
  ["peer", "cache", "mirror"].forEach(function (kind) {
    if (!bytes[kind] || whole === 0) return;
    var part = el("span", kind);
    part.style.width = (100 * bytes[kind] / whole) + "%";
    part.title = kind + ": " + formatBytes(bytes[kind]);
    bar.appendChild(part);
  });
  return bar;
}
function sourceBar(bytes, whole) { return fillBar(el("div", "bar"), bytes, whole); }

function renderTraffic(prefix, t) {
  var total = t.mirror + t.peer + t.cache;
  var spared = t.peer + t.cache;
  setBytes(prefix + "-peer", t.peer);
  setBytes(prefix + "-cache", t.cache);
  setBytes(prefix + "-mirror", t.mirror);
  setBytes(prefix + "-upload", t.upload);
  $(prefix + "-share").textContent = percent(spared, total);
  var line = clear($(prefix + "-spared"));
  line.dataset.bytes = String(spared);
  if (total === 0) {
    line.appendChild(document.createTextNode("Nothing downloaded yet."));
  } else {
    line.appendChild(document.createTextNode("The mirror was spared "));
    line.appendChild(el("strong", "", formatBytes(spared)));
    line.appendChild(document.createTextNode(" (" + percent(spared, total) + " of " + formatBytes(total) + ")."));
  }
  fillBar($(prefix + "-bar"), t, total);
}

function renderChart(rates, now) {
  var svg = $("chart");
  /* Drawn at the size it is shown, so that its labels keep their size on a phone. */
  var W = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 600), H = 180, left = 64, right = 8, top = 8, bottom = 20;
  var samples = rates.samples;
  var max = 0;
  samples.forEach(function (s) { max = Math.max(max, s.mirror + s.peer, s.upload); });
  /* A round top: 1, 2 or 5 times a power of ten, at least 1 kB/s so that an idle chart is flat, not noise. */
  var top10 = Math.pow(10, Math.floor(Math.log10(Math.max(max, 1000))));
  var scale = [1, 2, 5, 10].map(function (f) { return f * top10; }).filter(function (v) { return v >= Math.max(max, 1000); })[0];
  var x = function (at) { return left + (W - left - right) * (1 - (now - at) / rates.windowMs); };
  var y = function (v) { return top + (H - top - bottom) * (1 - v / scale); };
  var ns = "http://www.w3.org/2000/svg";
  function add(tag, attrs, text) {
    var node = document.createElementNS(ns, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    svg.appendChild(node);
    return node;
  }
  clear(svg);
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  [0, 0.5, 1].forEach(function (f) {
    add("line", { x1: left, x2: W - right, y1: y(f * scale), y2: y(f * scale), stroke: "#dee2e6" });
    add("text", { x: left - 4, y: y(f * scale) + 4, "text-anchor": "end" }, formatRate(f * scale));
  });
  [[rates.windowMs, "-60 min"], [rates.windowMs / 2, "-30 min"], [0, "now"]].forEach(function (tick) {
    add("text", { x: x(now - tick[0]), y: H - 4, "text-anchor": tick[0] === 0 ? "end" : tick[0] === rates.windowMs ? "start" : "middle" }, tick[1]);
  });
  function points(value) { return samples.map(function (s) { return x(s.at).toFixed(1) + "," + y(value(s)).toFixed(1); }).join(" "); }
  function area(value) {
    if (samples.length === 0) return "";
    var base = y(0).toFixed(1);
    return x(samples[0].at).toFixed(1) + "," + base + " " + points(value) + " " + x(samples[samples.length - 1].at).toFixed(1) + "," + base;
  }
  add("polygon", { "class": "series-download", points: area(function (s) { return s.mirror + s.peer; }), fill: "#d9822b", "fill-opacity": "0.35", stroke: "#d9822b" });
  add("polygon", { "class": "series-peer", points: area(function (s) { return s.peer; }), fill: "#2b8a3e", "fill-opacity": "0.5", stroke: "none" });
  add("polyline", { "class": "series-upload", points: points(function (s) { return s.upload; }), fill: "none", stroke: "#ae3ec9", "stroke-width": "1.5" });
  svg.dataset.points = String(samples.length);
  var last = samples[samples.length - 1];
  $("rate-now").textContent = last === undefined ? "no samples yet"
    : "now: down " + formatRate(last.mirror + last.peer) + " (peers " + formatRate(last.peer) + "), up " + formatRate(last.upload);
}

function transferRow(t, finished) {
  var row = el("div", "transfer");
  var done = t.bytes.mirror + t.bytes.peer + t.bytes.cache;
  var name = el("div", "name");
  name.appendChild(el("strong", "", t.name));
  name.appendChild(el("span", "muted", " " + formatBytes(t.size) + (finished ? (t.ok ? ", done " + timeOf(t.finishedAt) : ", failed " + timeOf(t.finishedAt)) : ", " + percent(done, t.size))));
  row.appendChild(name);
  row.appendChild(sourceBar(t.bytes, t.size));
  var parts = ["peer", "cache", "mirror"].filter(function (k) { return t.bytes[k] > 0; }).map(function (k) { return (k === "peer" ? "peers" : k) + " " + formatBytes(t.bytes[k]); });
  var detail = el("div", "muted", parts.length ? parts.join(" · ") : "waiting for the first bytes");
  row.appendChild(detail);
  row.dataset.sha256 = t.sha256;
  ["mirror", "peer", "cache"].forEach(function (k) { row.dataset[k] = String(t.bytes[k]); });
  return row;
}

function renderTransfers(current, recent) {
  var box = clear($("transfers"));
  if (current.length === 0) box.appendChild(el("p", "muted", "No download running."));
  current.forEach(function (t) { box.appendChild(transferRow(t, false)); });
  var list = clear($("recent"));
  if (recent.length === 0) list.appendChild(el("p", "muted", "None since the daemon started."));
  recent.forEach(function (t) { list.appendChild(transferRow(t, true)); });
}

function renderPeers(peers, now) {
  $("peers-total").textContent = String(peers.total);
  $("peers-hour").textContent = String(peers.lastHour);
  var body = clear($("peers-list"));
  peers.recent.forEach(function (p) {
    var row = el("tr");
    row.appendChild(el("td", "", p.peer));
    row.appendChild(el("td", "", p.found > 0 ? p.found + "×" : "–"));
    row.appendChild(el("td", "", p.received > 0 ? formatBytes(p.received) : "–"));
    row.appendChild(el("td", "", p.requests > 0 ? String(p.requests) : "–"));
    row.appendChild(el("td", "", formatDuration((now - p.lastSeen) / 1000) + " ago"));
    body.appendChild(row);
  });
  if (peers.recent.length === 0) {
    var empty = el("tr");
    var cell = el("td", "muted", "No peer met yet.");
    cell.colSpan = 5;
    empty.appendChild(cell);
    body.appendChild(empty);
  }
}

function renderDht(dht) {
  $("dht-table").textContent = String(dht.tableSize);
  $("dht-network").textContent = dht.estimatedNetworkSize > 0 ? "about " + dht.estimatedNetworkSize : "–";
  $("dht-lookups").textContent = String(dht.lookups);
  $("dht-median").textContent = formatMs(dht.medianLookupMs);
  $("dht-p90").textContent = formatMs(dht.p90LookupMs);
  $("dht-rtt").textContent = formatMs(dht.medianRttMs);
}

function renderCache(cache) {
  var box = clear($("cache"));
  if (cache === null || cache === undefined) {
    box.appendChild(el("p", "muted", "This daemon does not report its cache use."));
    return;
  }
  var line = el("p", "", formatBytes(cache.bytes) + " in " + cache.files + " files");
  line.id = "cache-use";
  line.dataset.bytes = String(cache.bytes);
  box.appendChild(line);
  if (cache.limitBytes === null) {
    box.appendChild(el("p", "muted", "No quota: the cache may grow without limit."));
  } else {
    var bar = el("div", "bar");
    var used = el("span", "cache");
    used.style.width = Math.min(100, 100 * cache.bytes / cache.limitBytes) + "%";
    bar.appendChild(used);
    box.appendChild(bar);
    box.appendChild(el("p", "muted", percent(cache.bytes, cache.limitBytes) + " of the " + formatBytes(cache.limitBytes) + " quota" +
      (cache.evictions !== undefined ? "; " + cache.evictions + " files evicted since start" : "")));
  }
}

function render(s) {
  $("version").textContent = "version " + s.version;
  $("uptime").textContent = "up " + formatDuration(s.uptimeSeconds);
  $("today-day").textContent = s.traffic.today.day;
  $("all-since").textContent = "since " + new Date(s.traffic.allTime.since).toISOString().slice(0, 10);
  renderTraffic("today", s.traffic.today);
  renderTraffic("all", s.traffic.allTime);
  renderChart(s.rates, s.now);
  renderTransfers(s.transfers, s.recentTransfers);
  renderPeers(s.peers, s.now);
  renderDht(s.dht);
  renderCache(s.cache);
  document.body.dataset.updated = String(s.now);
}

function poll() {
  fetch("/api/status", { cache: "no-store" }).then(function (response) {
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }).then(function (status) {
    $("conn").textContent = "updated " + timeOf(status.now);
    $("conn").className = "meta";
    setTimeout(poll, POLL_MS);
    render(status);
  }, function (err) {
    /* The daemon being away is a state to show, not a script error. */
    $("conn").textContent = "daemon unreachable (" + err.message + "), retrying";
    $("conn").className = "meta down";
    setTimeout(poll, POLL_MS);
  });
}
poll();
`;

function trafficCard(prefix: string, title: string, when: string): string {
  return `<section>
  <h2>${title} <span class="muted" id="${when}"></span></h2>
  <p class="spared" id="${prefix}-spared">…</p>
  <div class="bar" id="${prefix}-bar"></div>
  <table>
    <tr><td><span class="key peer"></span>From peers</td><td id="${prefix}-peer">–</td></tr>
    <tr><td><span class="key cache"></span>From this cache</td><td id="${prefix}-cache">–</td></tr>
    <tr><td><span class="key mirror"></span>From the mirror</td><td id="${prefix}-mirror">–</td></tr>
    <tr><td>Not from the mirror</td><td id="${prefix}-share">–</td></tr>
    <tr><td>Uploaded to peers</td><td id="${prefix}-upload">–</td></tr>
  </table>
</section>`;
}

export const STATUS_PAGE_HTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>apt-p2p status</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>apt-p2p</h1>
  <span class="meta" id="version"></span>
  <span class="meta" id="uptime"></span>
  <span class="meta" id="conn">loading…</span>
</header>
<ul id="errors" hidden></ul>
<main>
${trafficCard("today", "Today", "today-day")}
${trafficCard("all", "All time", "all-since")}
<section class="wide">
  <h2>Rates, last hour</h2>
  <svg id="chart" viewBox="0 0 600 180" role="img" aria-label="Download and upload rates over the last hour" data-points="0"></svg>
  <div class="legend">
    <span><span class="key mirror"></span>download (all)</span>
    <span><span class="key peer"></span>of which from peers</span>
    <span><span class="key" style="background: var(--upload)"></span>upload</span>
    <span id="rate-now"></span>
  </div>
</section>
<section>
  <h2>Downloading now</h2>
  <div id="transfers"></div>
  <h2>Finished</h2>
  <div id="recent"></div>
</section>
<section>
  <h2>Peers</h2>
  <p><span id="peers-total">–</span> met since start, <span id="peers-hour">–</span> in the last hour.</p>
  <table>
    <thead><tr><th>Peer</th><th title="Named by the DHT as holding a file we fetched">found</th><th>from it</th><th title="Requests it sent us">asked us</th><th>seen</th></tr></thead>
    <tbody id="peers-list"></tbody>
  </table>
</section>
<section>
  <h2>DHT</h2>
  <table>
    <tr><td>Routing table</td><td><span id="dht-table">–</span> contacts</td></tr>
    <tr><td>Network size</td><td id="dht-network">–</td></tr>
    <tr><td>Lookups</td><td id="dht-lookups">–</td></tr>
    <tr><td>Lookup time, median</td><td id="dht-median">–</td></tr>
    <tr><td>Lookup time, 90th percentile</td><td id="dht-p90">–</td></tr>
    <tr><td>Round trip, median</td><td id="dht-rtt">–</td></tr>
  </table>
</section>
<section>
  <h2>Cache</h2>
  <div id="cache"></div>
</section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
