/**
 * The daemon's control API, answered only to loopback clients: what `apt-p2p dht stats` and
 * `apt-p2p dht lookup` ask. GET /api/status, which the status page polls, also answers the clients of
 * --status-allow. A plain Request → Response function.
 */
import { idFromHex, idToHex } from "../dht/id.ts";
import type { DhtNode } from "../dht/node.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import { isLoopback, type RequestInfo } from "../http/server.ts";
import { textResponse as text } from "../http/text-response.ts";
import { clientAllowed, type Cidr } from "../proxy/allow.ts";
import type { Obtained } from "../transfer/obtain.ts";
import { parseDownloadRequest, type DownloadEvent, type DownloadRequest } from "./downloads.ts";

export const CONTROL_PREFIX = "/api/";

export interface ControlDeps {
  node: DhtNode;
  /** Runs a download for a client (POST /api/download); absent, the endpoint answers 404. */
  download?: (request: DownloadRequest, emit: (event: DownloadEvent) => void) => Promise<Obtained>;
  /** The TCP port peers reach our files on (announced with keys). */
  peerPort: number;
  startedAt: number;
  version: string;
  /** More of the daemon's state for GET /api/status (proxy and peer-server counters, the status page's figures). */
  status?: () => Record<string, unknown>;
  /** Clients allowed GET /api/status besides loopback (--status-allow); every other endpoint is loopback-only. */
  statusClients?: Cidr[];
}

export async function handleControl(request: Request, info: RequestInfo, deps: ControlDeps): Promise<Response> {
  const url = new URL(request.url);
  const route = `${request.method} ${url.pathname}`;
  if (route === "GET /api/status" ? !clientAllowed(info.remoteAddress, deps.statusClients ?? []) : !isLoopback(info.remoteAddress)) {
    return text(403, `The control API answers only on loopback${route === "GET /api/status" ? " and the addresses of --status-allow" : ""}.\n`);
  }
  switch (route) {
    case "GET /api/status":
      return json({
        version: deps.version,
        uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
        peerPort: deps.peerPort,
        ...deps.status?.(),
      });
    case "GET /api/dht/stats":
      return json(deps.node.stats());
    case "GET /api/dht/lookup": {
      const key = parseKey(url.searchParams.get("key"));
      if (key === null) return text(400, "Give key=<40 hex digits>.\n");
      const found = await deps.node.getPeers(key);
      return json({
        key: idToHex(key),
        durationMs: Math.round(found.durationMs * 10) / 10,
        queried: found.queried,
        peers: found.peers.map((p) => ({
          address: p.address,
          port: p.port,
          pieces: p.pieces === undefined ? null : Buffer.from(p.pieces).toString("hex"),
        })),
      });
    }
    case "POST /api/dht/announce": {
      const key = parseKey(url.searchParams.get("key"));
      const port = Number(url.searchParams.get("port") ?? deps.peerPort);
      if (key === null || !Number.isInteger(port) || port < 1 || port > 65535) return text(400, "Give key=<40 hex digits> and optionally port=1..65535.\n");
      const result = await deps.node.announce(key, port);
      return json({ key: idToHex(key), port, storedAt: result.stored, durationMs: result.durationMs });
    }
    case "POST /api/download": {
      if (deps.download === undefined) break;
      let parsed: DownloadRequest;
      try {
        parsed = parseDownloadRequest(await request.json());
      } catch (err) {
        return text(400, `${err instanceof Error ? err.message : String(err)}\n`);
      }
      return streamDownload(parsed, deps.download);
    }
  }
  return text(404, `No control endpoint ${route}.\n`);
}

/** The download's events as NDJSON, ending with "done" or "error". */
function streamDownload(request: DownloadRequest, download: NonNullable<ControlDeps["download"]>): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let open = true;
      const emit = (event: DownloadEvent) => {
        if (open) controller.enqueue(encoder.encode(`${JSON.stringify(event)}\n`));
      };
      download(request, emit).then(
        (obtained) => {
          emit({ type: "done", sources: { mirror: obtained.bytes.mirror, cache: obtained.bytes.cache, peers: obtained.bytes.peer, perPeer: obtained.perPeer } });
        },
        (err: unknown) => {
          const known = err instanceof AptP2pError;
          emit({
            type: "error",
            code: known ? err.code : ErrorCode.Internal,
            message: err instanceof Error ? err.message : String(err),
            hints: known ? err.hints : undefined,
          });
        },
      ).finally(() => {
        open = false;
        controller.close();
      });
    },
  });
  return new Response(body, { headers: { "Content-Type": "application/x-ndjson" } });
}

function parseKey(value: string | null): Uint8Array | null {
  if (value === null) return null;
  try {
    return idFromHex(value);
  } catch {
    return null;
  }
}

function json(body: unknown): Response {
  return new Response(`${JSON.stringify(body)}\n`, { headers: { "Content-Type": "application/json" } });
}

