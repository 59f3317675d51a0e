/**
 * In-memory datagrams on simulated time: the DHT's DatagramSocket over a SimClock. Each link has a fixed
 * one-way latency (so datagrams on one link arrive in the order sent), a loss rate, and hosts can be
 * offline (they send and receive nothing) or behind a NAT (they receive only from endpoints they sent to,
 * as a NAT's mappings allow).
 */
import type { Endpoint } from "../../src/dht/id.ts";
import type { DatagramHandler, DatagramSocket } from "../../src/dht/socket.ts";
import type { SimClock } from "./clock.ts";

export interface DatagramOptions {
  /** One-way latency between two addresses, ms. */
  latencyMs: (from: string, to: string) => number;
  /** Share of datagrams lost, 0..1. */
  loss?: number;
  random?: () => number;
}

interface Bound {
  handler: DatagramHandler;
  /** Behind a NAT: endpoints it sent to, the only ones it hears from. */
  natMappings?: Set<string>;
}

export class SimDatagramNetwork {
  private readonly sockets = new Map<string, Bound>();
  private readonly offline = new Set<string>();
  readonly counters = { datagrams: 0, bytes: 0, lost: 0, dropped: 0 };

  constructor(
    private readonly clock: SimClock,
    private readonly options: DatagramOptions,
  ) {}

  bind(address: string, port: number, options: { nat?: boolean } = {}): DatagramSocket {
    const key = `${address}:${port}`;
    if (this.sockets.has(key)) throw new Error(`SimDatagramNetwork: ${key} is in use`);
    const bound: Bound = { handler: () => {}, natMappings: options.nat ? new Set() : undefined };
    this.sockets.set(key, bound);
    const local = { address, port };
    let closed = false;
    return {
      local,
      send: (data, to) => {
        if (closed) return false;
        bound.natMappings?.add(`${to.address}:${to.port}`);
        this.deliver(local, to, data.slice());
        return true;
      },
      onDatagram: (handler) => {
        bound.handler = handler;
      },
      close: () => {
        if (closed) return;
        closed = true;
        this.sockets.delete(key);
      },
    };
  }

  /** An offline host's datagrams are dropped both ways (a machine switched off or gone). */
  setOnline(address: string, online: boolean): void {
    if (online) this.offline.delete(address);
    else this.offline.add(address);
  }

  isOnline(address: string): boolean {
    return !this.offline.has(address);
  }

  private deliver(from: Endpoint, to: Endpoint, data: Uint8Array): void {
    this.counters.datagrams++;
    this.counters.bytes += data.length;
    if (this.offline.has(from.address)) {
      this.counters.dropped++;
      return;
    }
    // Without a random source nothing is lost (loss needs seeded randomness to stay repeatable).
    if ((this.options.random?.() ?? 1) < (this.options.loss ?? 0)) {
      this.counters.lost++;
      return;
    }
    const toKey = `${to.address}:${to.port}`;
    const fromKey = `${from.address}:${from.port}`;
    this.clock.after(this.options.latencyMs(from.address, to.address), () => {
      const target = this.sockets.get(toKey);
      if (target === undefined || this.offline.has(to.address) || (target.natMappings !== undefined && !target.natMappings.has(fromKey))) {
        this.counters.dropped++;
        return;
      }
      target.handler(data, { ...from });
    });
  }
}
