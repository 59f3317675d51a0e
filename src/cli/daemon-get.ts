/**
 * `get` through a running daemon: the daemon downloads into its cache with its warm DHT table (and seeds
 * the file afterwards); the CLI then copies it from the daemon's peer server, verifying it again.
 */
import { basename, join } from "node:path";
import type { GetConfig } from "../config.ts";
import type { DownloadEvent } from "../daemon/downloads.ts";
import type { PackageRow } from "../debian/index-store.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import { deliverStream } from "../transfer/obtain.ts";
import { fileReport, type FileReport, type Reporter } from "./progress.ts";

/** How long a default daemon address gets to answer before `get` runs without it. */
const PROBE_TIMEOUT_MS = 500;

/** The daemon's URL when one answers; with an explicit --daemon, its absence is an error. */
export async function findDaemon(url: string, explicit: boolean): Promise<string | null> {
  try {
    const response = await fetch(new URL("/api/status", url), { signal: AbortSignal.timeout(explicit ? 5_000 : PROBE_TIMEOUT_MS) });
    await response.body?.cancel();
    if (response.ok) return url;
  } catch (err) {
    if (explicit) {
      throw new AptP2pError(ErrorCode.DaemonUnreachable, `Cannot reach the apt-p2p daemon at ${url}: ${err instanceof Error ? err.message : String(err)}`, {
        hints: ["Start it with `apt-p2p serve`, drop --daemon to download without it, or pass --no-dht for the mirror only."],
      });
    }
    return null;
  }
  if (explicit) throw new AptP2pError(ErrorCode.DaemonUnreachable, `The service at ${url} is not an apt-p2p daemon`);
  return null;
}

export async function viaDaemon(daemon: string, row: PackageRow, config: GetConfig, reporter: Reporter): Promise<FileReport> {
  const started = performance.now();
  const name = basename(row.filename);
  const target = { name, size: row.size, sha256: row.sha256 };
  const response = await fetch(new URL("/api/download", daemon), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...target, mirrors: [`${row.uri}/${row.filename}`] }),
  }).catch((err: unknown) => {
    throw new AptP2pError(ErrorCode.DaemonUnreachable, `The apt-p2p daemon at ${daemon} went away: ${err instanceof Error ? err.message : String(err)}`);
  });
  if (!response.ok || response.body === null) {
    throw new AptP2pError(ErrorCode.DaemonUnreachable, `The daemon at ${daemon} refused the download: HTTP ${response.status} ${await response.text()}`);
  }
  let sources: FileReport["sources"] | undefined;
  for await (const event of ndjson<DownloadEvent>(response.body)) {
    if (event.type === "progress") reporter.progress(row.sha256, event.bytes, event.kind);
    else if (event.type === "peers") reporter.peers(row.sha256, event.count);
    else if (event.type === "done") sources = event.sources;
    else throw new AptP2pError(toCode(event.code), event.message, { hints: event.hints });
  }
  if (sources === undefined) throw new AptP2pError(ErrorCode.DaemonUnreachable, `The daemon at ${daemon} stopped before ${name} was done`);
  const file = await fetch(new URL(`/~/${row.sha256}`, daemon));
  if (!file.ok || file.body === null) {
    throw new AptP2pError(ErrorCode.DaemonUnreachable, `The daemon at ${daemon} does not serve ${name} after downloading it: HTTP ${file.status}`);
  }
  const destPath = join(config.dest, name);
  await deliverStream(file.body, target, destPath, `${name} from the daemon`);
  return fileReport(row, destPath, sources, (performance.now() - started) / 1000);
}

function toCode(code: string): ErrorCode {
  return (Object.values(ErrorCode) as string[]).includes(code) ? (code as ErrorCode) : ErrorCode.Internal;
}

async function* ndjson<T>(body: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line !== "") yield JSON.parse(line) as T;
    }
  }
  if (buffered.trim() !== "") yield JSON.parse(buffered) as T;
}
