/**
 * The datagram socket the DHT runs over: a UDP socket in production, an in-memory network in tests
 * and simulations. Both pass the same contract test (test/dht/socket.contract.test.ts).
 */
import type { Endpoint } from "./id.ts";

export type DatagramHandler = (data: Uint8Array, from: Endpoint) => void;

export interface DatagramSocket {
  /** The address and port the socket is bound to. */
  readonly local: Endpoint;
  /** Sends one datagram; returns false when it could not be queued (counted as a send failure). */
  send(data: Uint8Array, to: Endpoint): boolean;
  /** Sets the handler for arriving datagrams (one handler; a later call replaces it). */
  onDatagram(handler: DatagramHandler): void;
  /** Idempotent. */
  close(): void;
}

/** A UDP socket; `asyncErrors` counts errors the kernel reported after a send (see bindUdp). */
export interface UdpSocket extends DatagramSocket {
  readonly asyncErrors: number;
}

/** Binds a UDP socket with Bun's API. `port` 0 picks a free port. */
export async function bindUdp(address: string, port: number): Promise<UdpSocket> {
  let handler: DatagramHandler = () => {};
  let closed = false;
  let asyncErrors = 0;
  const socket = await Bun.udpSocket({
    hostname: address,
    port,
    binaryType: "uint8array",
    socket: {
      data(_socket, data, remotePort, remoteAddress) {
        if (closed) return;
        handler(data, { address: remoteAddress, port: remotePort });
      },
      // An ICMP "port unreachable" for an earlier send to a peer that went away comes back as an
      // ECONNREFUSED error on this socket. Without a handler Bun raises it as an uncaught exception,
      // which ends the daemon; the query itself simply times out in the transport, so count and go on.
      error() {
        asyncErrors++;
      },
    },
  });
  return {
    local: { address: socket.address.address, port: socket.port },
    get asyncErrors() {
      return asyncErrors;
    },
    send(data, to) {
      if (closed) return false;
      // An ICMP "port unreachable" for an earlier datagram is also reported by failing the next send,
      // whatever its destination; the failure consumes that error, so this datagram is tried once more.
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          return socket.send(data, to.port, to.address);
        } catch (err) {
          if ((err as { code?: unknown }).code !== "ECONNREFUSED") return false; // Invalid address: the caller counts it.
          asyncErrors++;
        }
      }
      return false;
    },
    onDatagram(h) {
      handler = h;
    },
    close() {
      if (closed) return;
      closed = true;
      socket.close();
    },
  };
}

/**
 * An in-memory datagram network on fake addresses (10.x.y.z stand-ins that never touch a real network).
 * Delivery is asynchronous (a macrotask later, plus an optional latency), so that code behaves as it
 * would over UDP. Nodes can be made silent (`setDead`) to model vanished peers.
 */
export class MemoryNetwork {
  private readonly sockets = new Map<string, { handler: DatagramHandler; local: Endpoint }>();
  private readonly dead = new Set<string>();
  private nextHost = 1;
  /** Datagrams and bytes carried, for traffic measurements. */
  readonly counters = { datagrams: 0, bytes: 0, dropped: 0 };

  constructor(private readonly options: { latencyMs?: (from: Endpoint, to: Endpoint) => number } = {}) {}

  /** A socket on a fresh address (or the given one). */
  bind(address?: string, port = 6881): DatagramSocket {
    const host = address ?? this.allocateAddress();
    const local = { address: host, port };
    const key = `${host}:${port}`;
    if (this.sockets.has(key)) throw new Error(`MemoryNetwork: ${key} is in use`);
    const entry = { handler: (() => {}) as DatagramHandler, local };
    this.sockets.set(key, entry);
    let closed = false;
    return {
      local,
      send: (data, to) => {
        if (closed) return false;
        this.deliver(local, to, data.slice());
        return true;
      },
      onDatagram: (handler) => {
        entry.handler = handler;
      },
      close: () => {
        if (closed) return;
        closed = true;
        this.sockets.delete(key);
      },
    };
  }

  /** A dead endpoint receives nothing and sends nothing (a machine that vanished). */
  setDead(endpoint: Endpoint, dead = true): void {
    const key = `${endpoint.address}:${endpoint.port}`;
    if (dead) this.dead.add(key);
    else this.dead.delete(key);
  }

  private allocateAddress(): string {
    const n = this.nextHost++;
    // Only ever used as map keys inside this process; no packet leaves it.
    return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
  }

  private deliver(from: Endpoint, to: Endpoint, data: Uint8Array): void {
    const fromKey = `${from.address}:${from.port}`;
    const toKey = `${to.address}:${to.port}`;
    this.counters.datagrams++;
    this.counters.bytes += data.length;
    if (this.dead.has(fromKey) || this.dead.has(toKey)) {
      this.counters.dropped++;
      return;
    }
    const latency = this.options.latencyMs?.(from, to) ?? 0;
    setTimeout(() => {
      const target = this.sockets.get(toKey);
      if (target === undefined || this.dead.has(toKey)) {
        this.counters.dropped++;
        return;
      }
      target.handler(data, { ...from });
    }, latency);
  }
}
