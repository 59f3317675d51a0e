/** `apt-p2p dht stats` and `apt-p2p dht lookup`: ask the running daemon's control API. */
import type { DhtStats } from "../dht/node.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import type { CliIO } from "./io.ts";

export interface LookupAnswer {
  key: string;
  durationMs: number;
  queried: number;
  peers: { address: string; port: number; pieces: string | null }[];
}

export async function askDaemon<T>(daemon: string, path: string, init: RequestInit = {}): Promise<T> {
  const url = new URL(path, daemon).toString();
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    throw new AptP2pError(ErrorCode.DaemonUnreachable, `Cannot reach the apt-p2p daemon at ${daemon}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      hints: ["Start it with `apt-p2p serve`, or give its address with --daemon http://127.0.0.1:PORT."],
    });
  }
  if (!response.ok) {
    throw new AptP2pError(ErrorCode.DaemonUnreachable, `The daemon at ${daemon} refused ${path}: HTTP ${response.status} ${(await response.text()).trim()}`);
  }
  return (await response.json()) as T;
}

export function printStats(stats: DhtStats, io: CliIO, json: boolean): void {
  if (json) {
    io.stdout(`${JSON.stringify(stats)}\n`);
    return;
  }
  const ms = (v: number | null) => (v === null ? "-" : `${v.toFixed(1)} ms`);
  const methods = (counts: Record<string, number>) =>
    Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([m, n]) => `${m} ${n}`)
      .join(", ") || "none";
  const lines = [
    `node id            ${stats.id}`,
    `listening on       ${stats.address}:${stats.port} (UDP)`,
    `routing table      ${stats.tableSize} contacts in ${stats.buckets.length} buckets`,
    `contacts/bucket    ${stats.buckets.map((b) => `${b.depth}:${b.contacts}`).join(" ")}`,
    `network size       about ${stats.estimatedNetworkSize} nodes`,
    `stored             ${stats.storedKeys} keys, ${stats.storedValues} values, ${stats.storedItems} items`,
    `queries in         ${methods(stats.queriesIn)}`,
    `queries out        ${methods(stats.queriesOut)}`,
    `answers in         ${stats.responsesIn} (errors ${stats.errorsIn}), timeouts ${stats.timeouts}, resends ${stats.resends}`,
    `dropped            ${stats.invalidIn} malformed, ${stats.unknownTransactions} unexpected answers, ${stats.rateLimited} rate-limited`,
    `refused announces  ${stats.refusedAnnounces}`,
    `traffic            ${stats.bytesIn} B in, ${stats.bytesOut} B out`,
    `median RTT         ${ms(stats.medianRttMs)}`,
    `lookups            ${stats.lookups}, median ${ms(stats.medianLookupMs)}, p90 ${ms(stats.p90LookupMs)}`,
  ];
  io.stdout(`${lines.join("\n")}\n`);
}

export function printLookup(answer: LookupAnswer & { package?: string }, io: CliIO, json: boolean): void {
  if (json) {
    io.stdout(`${JSON.stringify(answer)}\n`);
    return;
  }
  const what = answer.package !== undefined ? `${answer.package} (key ${answer.key})` : `key ${answer.key}`;
  io.stdout(`${what}: ${answer.peers.length} peer(s) in ${answer.durationMs.toFixed(1)} ms, ${answer.queried} nodes queried\n`);
  for (const peer of answer.peers) {
    io.stdout(`  ${peer.address}:${peer.port}${peer.pieces === null ? "" : `  pieces ${peer.pieces}`}\n`);
  }
}
