/** The sweep's outputs: a text table, an SVG of mirror load and peer share, and the markdown sections. */
import type { DhtOnlyResult } from "./dht-only.ts";
import type { LevelResult } from "./day.ts";
import type { Workload } from "./archive.ts";
import { K } from "../../src/dht/node.ts";

const MB = 1_000_000;

export function pct(x: number, digits = 1): string {
  return `${(100 * x).toFixed(digits)}%`;
}

function secs(ms: number): string {
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : "–";
}

function millis(ms: number): string {
  return Number.isFinite(ms) ? `${Math.round(ms)} ms` : "–";
}

export const TABLE_HEADER = [
  "adoption",
  "apt-p2p machines",
  "mirror MB / machine",
  "bytes sent by mirror",
  "by peers",
  "peer share of apt-p2p machines' bytes",
  "update p50 / p99 (apt-p2p)",
  "update p50 / p99 (mirror only)",
  "lookup p50 / p99",
  "upload / peer p50 / p99 / max",
  "peak upload ÷ limit",
];

export function tableRows(results: LevelResult[]): string[][] {
  return results.map((r) => [
    pct(r.adoption, 0),
    `${r.adopters}`,
    (r.mirrorBytesPerMachine / MB).toFixed(2),
    pct(r.bytes.mirrorSent / r.bytes.received),
    pct(r.bytes.peersSent / r.bytes.received),
    pct(r.peerShareAdopters),
    `${secs(r.finishMs.p2p.p50)} / ${secs(r.finishMs.p2p.p99)}`,
    `${secs(r.finishMs.direct.p50)} / ${secs(r.finishMs.direct.p99)}`,
    `${millis(r.lookupsMs.p50)} / ${millis(r.lookupsMs.p99)}`,
    `${(r.uploads.p50Bytes / MB).toFixed(1)} / ${(r.uploads.p99Bytes / MB).toFixed(1)} / ${(r.uploads.maxBytes / MB).toFixed(0)} MB`,
    r.uploads.servers === 0 ? "–" : r.uploads.maxPeakOverLimit.toFixed(3),
  ]);
}

export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}

export function markdownTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(" | ")} |`, `| ${header.map(() => "---:").join(" | ")} |`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

/**
 * Mirror MB per machine (left axis) and peer share (right axis) against adoption on a log scale.
 * Plain SVG written by hand: no plotting dependency.
 */
export function adoptionSvg(results: LevelResult[], title: string): string {
  const W = 720;
  const H = 400;
  const left = 70;
  const right = 70;
  const top = 50;
  const bottom = 60;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const xs = results.map((r) => r.adoption);
  const xMin = Math.log10(Math.min(...xs));
  const xMax = Math.log10(Math.max(...xs));
  const x = (a: number) => left + (xMax === xMin ? pw / 2 : ((Math.log10(a) - xMin) / (xMax - xMin)) * pw);
  const mirrorMax = niceCeil(Math.max(...results.map((r) => r.mirrorBytesPerMachine / MB)));
  const step = mirrorMax / 5;
  const decimals = step >= 1 && Number.isInteger(step) ? 0 : step >= 0.1 ? 1 : 2;
  const yMirror = (mb: number) => top + ph - (mb / mirrorMax) * ph;
  const yShare = (share: number) => top + ph - share * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const y = top + (ph * i) / 5;
    out.push(`<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 8}" y="${y + 4}" text-anchor="end" fill="#c0392b">${(mirrorMax * (1 - i / 5)).toFixed(decimals)}</text>`);
    out.push(`<text x="${left + pw + 8}" y="${y + 4}" fill="#2471a3">${Math.round(100 * (1 - i / 5))}%</text>`);
  }
  for (const r of results) {
    const px = x(r.adoption);
    out.push(`<line x1="${px}" y1="${top}" x2="${px}" y2="${top + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${px}" y="${top + ph + 18}" text-anchor="middle">${pct(r.adoption, 0)}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${left + pw / 2}" y="${H - 18}" text-anchor="middle">machines running apt-p2p (log scale)</text>`);
  out.push(`<text transform="translate(18 ${top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#c0392b">mirror MB served per machine</text>`);
  out.push(`<text transform="translate(${W - 16} ${top + ph / 2}) rotate(90)" text-anchor="middle" fill="#2471a3">share of bytes from peers</text>`);
  const path = (pts: [number, number][], color: string, dash = "") =>
    `<polyline fill="none" stroke="${color}" stroke-width="2.5"${dash ? ` stroke-dasharray="${dash}"` : ""} points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ")}"/>`;
  const mirrorPts = results.map((r) => [x(r.adoption), yMirror(r.mirrorBytesPerMachine / MB)] as [number, number]);
  const sharePts = results.map((r) => [x(r.adoption), yShare(r.bytes.peersSent / r.bytes.received)] as [number, number]);
  out.push(path(mirrorPts, "#c0392b"));
  out.push(path(sharePts, "#2471a3", "6 4"));
  for (const [a, b] of mirrorPts) out.push(`<circle cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="3.5" fill="#c0392b"/>`);
  for (const [a, b] of sharePts) out.push(`<circle cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="3.5" fill="#2471a3"/>`);
  out.push(`<g transform="translate(${left + 12} ${top + 14})">`);
  out.push(`<line x1="0" y1="0" x2="24" y2="0" stroke="#c0392b" stroke-width="2.5"/><text x="30" y="4">mirror MB per machine</text>`);
  out.push(`<line x1="0" y1="18" x2="24" y2="18" stroke="#2471a3" stroke-width="2.5" stroke-dasharray="6 4"/><text x="30" y="22">share of bytes from peers</text>`);
  out.push(`</g>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function dhtOnlyLines(r: DhtOnlyResult): string[] {
  return [
    `${r.nodes.toLocaleString("en")} nodes, ${r.dead.toLocaleString("en")} of them (${pct(r.dead / r.nodes, 0)}) gone without a word, ${r.lookups} lookups of each kind, 1% datagram loss:`,
    "",
    `- get_peers for a key announced by one live node: p50 ${millis(r.getPeers.p50Ms)}, p99 ${millis(r.getPeers.p99Ms)}, found the announcer in ${pct(r.getPeers.success)}`,
    `- find_node: p50 ${millis(r.findNode.p50Ms)}, p99 ${millis(r.findNode.p99Ms)}, exactly the ${K} closest live nodes in ${pct(r.findNode.exact)}`,
    `- cost: ${r.datagrams.toLocaleString("en")} datagrams; wall-clock ${r.buildSeconds.toFixed(0)} s to build the network and ${r.runSeconds.toFixed(0)} s for the lookups`,
  ];
}

/** Replaces (or appends) the part of `doc` between `<!-- sim:name -->` and `<!-- /sim:name -->`. */
export function replaceSection(doc: string, name: string, body: string): string {
  const open = `<!-- sim:${name} -->`;
  const close = `<!-- /sim:${name} -->`;
  const block = `${open}\n${body.trim()}\n${close}`;
  const a = doc.indexOf(open);
  const b = doc.indexOf(close);
  if (a >= 0 && b > a) return doc.slice(0, a) + block + doc.slice(b + close.length);
  return `${doc.trimEnd()}\n\n${block}\n`;
}

export function workloadLines(w: Workload, machines: number): string[] {
  const perMachine = w.perMachine.map((l) => l.length);
  const total = perMachine.reduce((a, b) => a + b, 0);
  const bytes = w.perMachine.reduce((sum, l) => sum + l.reduce((s, f) => s + w.files[f]!.size, 0), 0);
  return [
    `- archive: ${w.archive.packages.toLocaleString("en")} bookworm amd64 packages (${(w.archive.bytes / 1e9).toFixed(0)} GB); popularity p(rank) = min(1, (r0 / (rank + 1))^${w.archive.exponent.toFixed(2)}) with a core of ${w.archive.core} packages on every machine, 80% of packages on fewer than 1% of machines, ${w.archive.installedMean} packages installed on average`,
    `- the day's update: ${w.day.sources} source packages, ${w.day.files} binary packages (${(w.day.bytes / 1e9).toFixed(2)} GB); simulated: ${pct(w.day.simulatedShare, 0)} of those sources, ${w.files.length} files`,
    `- ${machines} machines download ${total.toLocaleString("en")} files, ${(bytes / 1e9).toFixed(2)} GB (${(bytes / machines / MB).toFixed(1)} MB and ${(total / machines).toFixed(1)} files per machine)`,
  ];
}
