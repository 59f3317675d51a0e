/**
 * How a `get` shows its work: bars on a terminal (cli-progress, which prints nothing elsewhere), one plain
 * line per finished file otherwise, one JSON object per file with --json, nothing but errors with --quiet.
 */
import type cliProgress from "cli-progress";
import type { PackageRow } from "../debian/index-store.ts";
import type { BytesByKind } from "../transfer/download.ts";
import type { CliIO } from "./io.ts";

export interface FileReport {
  package: string;
  version: string;
  filename: string;
  path: string;
  size: number;
  sha256: string;
  /** Bytes by where they came from; `perPeer` by peer address ("address:port"). */
  sources: { mirror: number; cache: number; peers: number; perPeer: Record<string, number> };
  seconds: number;
}

export type ByteKind = "mirror" | "peer" | "cache";

export interface Reporter {
  begin(files: { key: string; label: string; size: number }[]): void;
  progress(key: string, bytes: number, kind: ByteKind): void;
  /** How many peers a file is being fetched from. */
  peers(key: string, count: number): void;
  done(report: FileReport): void;
  failed(key: string, message: string): void;
  end(): void;
}

export function fileReport(row: PackageRow, path: string, sources: FileReport["sources"], seconds: number): FileReport {
  return { package: row.package, version: row.version, filename: row.filename, path, size: row.size, sha256: row.sha256, sources, seconds };
}

export function sourcesOf(bytes: BytesByKind, perPeer: Record<string, number> = {}): FileReport["sources"] {
  return { mirror: bytes.mirror, cache: bytes.cache, peers: bytes.peer, perPeer };
}

export function makeReporter(io: CliIO, mode: "auto" | "json" | "quiet"): Reporter {
  if (mode === "json") return new JsonReporter(io);
  if (mode === "quiet") return new QuietReporter();
  if (io.isTTY && io.ttyStream !== undefined) return new BarReporter(io.ttyStream);
  return new PlainReporter(io);
}

export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function describeSources(s: FileReport["sources"]): string {
  const peerCount = Object.keys(s.perPeer).length;
  const parts = Object.entries({ [`${peerCount} peer${peerCount === 1 ? "" : "s"}`]: s.peers, mirror: s.mirror, cache: s.cache })
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${kind} ${formatBytes(n)}`);
  return parts.length > 0 ? parts.join(", ") : "empty file";
}

class QuietReporter implements Reporter {
  begin(_files: { key: string; label: string; size: number }[]): void {}
  progress(_key: string, _bytes: number, _kind: ByteKind): void {}
  peers(_key: string, _count: number): void {}
  done(_report: FileReport): void {}
  failed(_key: string, _message: string): void {}
  end(): void {}
}

class JsonReporter extends QuietReporter {
  constructor(private readonly io: CliIO) {
    super();
  }
  override done(report: FileReport): void {
    this.io.stdout(`${JSON.stringify(report)}\n`);
  }
}

class PlainReporter extends QuietReporter {
  constructor(private readonly io: CliIO) {
    super();
  }
  override done(r: FileReport): void {
    this.io.stdout(`${r.path}  ${r.package} ${r.version}  ${formatBytes(r.size)}  from ${describeSources(r.sources)}  in ${r.seconds.toFixed(2)} s\n`);
  }
}

class BarReporter implements Reporter {
  private readonly multi: cliProgress.MultiBar;
  private readonly bars = new Map<string, cliProgress.SingleBar>();
  private total: cliProgress.SingleBar | null = null;
  private readonly state = new Map<cliProgress.SingleBar, { value: number; startedAt: number }>();
  private readonly peerCounts = new Map<string, number>();
  private readonly split: Record<ByteKind, number> = { peer: 0, mirror: 0, cache: 0 };
  private labelWidth = 5;

  /** "total: 3 peers, 62% from peers": who the bytes come from. */
  private totalLabel(): string {
    const peers = [...this.peerCounts.values()].reduce((a, b) => Math.max(a, b), 0);
    const fetched = this.split.peer + this.split.mirror;
    const share = fetched === 0 ? 0 : Math.round((100 * this.split.peer) / fetched);
    return `total, ${peers} peer${peers === 1 ? "" : "s"}, ${share}% from peers`;
  }

  constructor(stream: NodeJS.WriteStream) {
    // Loaded only for a terminal: with node:readline and the stream machinery it pulls in, it cost every
    // start of the compiled binary several milliseconds.
    const bars = require("cli-progress") as typeof cliProgress;
    this.multi = new bars.MultiBar(
      {
        stream,
        format: " {bar} {percentage}% {label} {done}/{size} {rate}/s ETA {eta_formatted}",
        barsize: 20,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        formatValue: (value, _options, type) => (type === "value" || type === "total" ? formatBytes(value) : String(value)),
      },
      bars.Presets.shades_classic,
    );
  }

  begin(files: { key: string; label: string; size: number }[]): void {
    const sum = files.reduce((n, f) => n + f.size, 0);
    this.labelWidth = Math.min(36, Math.max(...files.map((f) => f.label.length), 5));
    this.total = this.multi.create(sum, 0, this.payload(this.totalLabel(), 0, sum, 0));
    const width = this.labelWidth;
    for (const f of files) {
      const label = f.label.length > width ? `${f.label.slice(0, width - 1)}…` : f.label.padEnd(width);
      this.bars.set(f.key, this.multi.create(f.size, 0, this.payload(label, 0, f.size, 0)));
    }
  }

  peers(key: string, count: number): void {
    this.peerCounts.set(key, count);
    this.total?.update({ label: this.totalLabel() });
  }

  progress(key: string, bytes: number, kind: ByteKind): void {
    this.split[kind] += bytes;
    if (this.total !== null) this.total.update({ label: this.totalLabel() });
    for (const bar of [this.bars.get(key), this.total]) {
      if (bar === undefined || bar === null) continue;
      const state = this.state.get(bar) ?? { value: 0, startedAt: Date.now() };
      state.value += bytes;
      this.state.set(bar, state);
      const elapsed = Math.max(0.001, (Date.now() - state.startedAt) / 1000);
      bar.update(state.value, { done: formatBytes(state.value), rate: formatBytes(state.value / elapsed) });
    }
  }

  done(report: FileReport): void {
    const bar = this.bars.get(report.sha256);
    bar?.update(report.size, { done: formatBytes(report.size) });
  }

  failed(key: string, message: string): void {
    this.bars.get(key)?.update({ label: `FAILED: ${message.slice(0, 40)}` });
  }

  end(): void {
    this.multi.stop();
  }

  private payload(label: string, done: number, size: number, rate: number) {
    return { label, done: formatBytes(done), size: formatBytes(size), rate: formatBytes(rate) };
  }
}
