/**
 * `apt-p2p serve`: the DHT node on UDP and the HTTP side (control API now; peer server and APT proxy in
 * later work) on TCP, both on the same port number. The routing table is saved in the state dir so a
 * restart rejoins through old contacts.
 */
import { randomBytes } from "node:crypto";
import { ID_BYTES, type Endpoint } from "../dht/id.ts";
import { DhtNode } from "../dht/node.ts";
import { DhtState } from "../dht/persist.ts";
import { bindUdp, type DatagramSocket } from "../dht/socket.ts";
import { AptP2pError, ErrorCode } from "../errors.ts";
import { listen, type HttpServer } from "../http/server.ts";
import { CONTROL_PREFIX, handleControl } from "./control-api.ts";

/** How often the routing table is saved while running (and always at shutdown). */
export const SAVE_CONTACTS_MS = 5 * 60_000;
/** Attempts to find a port free for both TCP and UDP when asked for port 0. */
const PORT_ATTEMPTS = 10;

export interface ServeConfig {
  port: number;
  bind: string;
  bootstrap: Endpoint[];
  stateDir: string;
  cacheDir: string;
  version: string;
}

export class Daemon {
  private saveTimer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  readonly joined: Promise<void>;

  private constructor(
    readonly node: DhtNode,
    readonly http: HttpServer,
    private readonly state: DhtState,
    private readonly log: (line: string) => void,
  ) {
    this.joined = node.start().then(
      () => log(`joined the DHT: ${node.stats().tableSize} contacts`),
      (err: unknown) => log(`joining the DHT failed: ${err instanceof Error ? err.message : String(err)}`),
    );
    this.saveTimer = setInterval(() => this.saveContacts(), SAVE_CONTACTS_MS);
    this.saveTimer.unref?.();
  }

  get port(): number {
    return this.http.port;
  }

  static async start(config: ServeConfig, log: (line: string) => void): Promise<Daemon> {
    const state = DhtState.open(config.stateDir);
    try {
      const id = state.nodeId(() => new Uint8Array(randomBytes(ID_BYTES)));
      const startedAt = Date.now();
      let node: DhtNode | undefined;
      const handler = async (request: Request, info: { remoteAddress: string; remotePort: number }) => {
        const path = new URL(request.url).pathname;
        if (path.startsWith(CONTROL_PREFIX) && node !== undefined) {
          return handleControl(request, info, { node, peerPort: http.port, startedAt, version: config.version });
        }
        return new Response("Not found\n", { status: 404 });
      };
      const { http, socket } = await bindBoth(handler, config);
      node = new DhtNode({ socket, id, bootstrap: config.bootstrap, savedContacts: state.contacts() });
      log(`listening on ${config.bind}:${http.port} (HTTP and DHT UDP), node id ${Buffer.from(id).toString("hex")}`);
      return new Daemon(node, http, state, log);
    } catch (err) {
      state.close();
      throw err;
    }
  }

  saveContacts(): void {
    if (this.closed) return;
    this.state.saveContacts(this.node.contacts(), Date.now());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.saveContacts();
    this.closed = true;
    if (this.saveTimer !== undefined) clearInterval(this.saveTimer);
    this.node.close();
    await this.http.close();
    this.state.close();
  }
}

/** TCP and UDP on the same port number; with port 0, a port free for both. */
async function bindBoth(
  handler: Parameters<typeof listen>[0],
  config: ServeConfig,
): Promise<{ http: HttpServer; socket: DatagramSocket }> {
  for (let attempt = 0; ; attempt++) {
    let http: HttpServer;
    try {
      http = await listen(handler, { hostname: config.bind, port: config.port });
    } catch (err) {
      throw portError(config, "TCP", err);
    }
    try {
      return { http, socket: await bindUdp(config.bind, http.port) };
    } catch (err) {
      await http.close();
      if (config.port !== 0 || attempt + 1 >= PORT_ATTEMPTS) throw portError({ ...config, port: http.port }, "UDP", err);
    }
  }
}

function portError(config: ServeConfig, proto: string, err: unknown): AptP2pError {
  const why = (err as { code?: string } | null)?.code === "EADDRINUSE" ? "the port is in use" : err instanceof Error ? err.message : String(err);
  return new AptP2pError(ErrorCode.AddressInUse, `Cannot listen on ${config.bind}:${config.port} (${proto}): ${why}`, {
    cause: err,
    hints: ["Stop the other program on that port, or choose another with --port."],
  });
}
