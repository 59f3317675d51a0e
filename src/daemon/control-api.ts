/**
 * The daemon's control API, answered only to loopback clients: what `apt-p2p dht stats` and
 * `apt-p2p dht lookup` ask. A plain Request → Response function.
 */
import { idFromHex, idToHex } from "../dht/id.ts";
import type { DhtNode } from "../dht/node.ts";
import { isLoopback, type RequestInfo } from "../http/server.ts";

export const CONTROL_PREFIX = "/api/";

export interface ControlDeps {
  node: DhtNode;
  /** The TCP port peers reach our files on (announced with keys). */
  peerPort: number;
  startedAt: number;
  version: string;
}

export async function handleControl(request: Request, info: RequestInfo, deps: ControlDeps): Promise<Response> {
  if (!isLoopback(info.remoteAddress)) {
    return text(403, "The control API answers only on loopback.\n");
  }
  const url = new URL(request.url);
  const route = `${request.method} ${url.pathname}`;
  switch (route) {
    case "GET /api/status":
      return json({ version: deps.version, uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000), peerPort: deps.peerPort });
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
    default:
      return text(404, `No control endpoint ${route}.\n`);
  }
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

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "Content-Type": "text/plain; charset=utf-8" } });
}
