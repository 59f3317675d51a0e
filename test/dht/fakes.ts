/** Test doubles for the DHT transport: a scripted datagram socket and manual timers. */
import type { Endpoint } from "../../src/dht/id.ts";
import { decodeMessage } from "../../src/dht/krpc.ts";
import type { Message } from "../../src/dht/messages.ts";
import type { Timers } from "../../src/dht/rpc.ts";
import type { DatagramHandler, DatagramSocket } from "../../src/dht/socket.ts";

/** Timers that only fire when the test advances time. */
export class ManualTimers implements Timers {
  private time = 0;
  private nextHandle = 1;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const handle = this.nextHandle++;
    this.timers.set(handle, { at: this.time + ms, fn });
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  now(): number {
    return this.time;
  }

  /** Timers not yet fired nor cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
    }
    this.time = end;
  }
}

/** A socket whose sends are recorded and whose arrivals the test delivers synchronously. */
export class ScriptedSocket implements DatagramSocket {
  readonly sent: { data: Uint8Array; to: Endpoint }[] = [];
  closeCalls = 0;
  /** What send() returns. */
  accept = true;
  private handler: DatagramHandler = () => {};

  constructor(readonly local: Endpoint = { address: "10.0.0.1", port: 6881 }) {}

  send(data: Uint8Array, to: Endpoint): boolean {
    if (!this.accept) return false;
    this.sent.push({ data: data.slice(), to: { ...to } });
    return true;
  }

  onDatagram(handler: DatagramHandler): void {
    this.handler = handler;
  }

  close(): void {
    this.closeCalls++;
  }

  deliver(data: Uint8Array, from: Endpoint): void {
    this.handler(data, from);
  }

  /** The last datagram sent, decoded. */
  lastSent(): { message: Message; to: Endpoint } {
    const last = this.sent.at(-1);
    if (last === undefined) throw new Error("nothing was sent");
    const message = decodeMessage(last.data);
    if (message.kind === "invalid") throw new Error(`sent an undecodable datagram: ${message.reason}`);
    return { message, to: last.to };
  }
}

/** Deterministic pseudo-random bytes (xorshift32): tests never use Math.random. */
export function seededRandom(seed: number) {
  // Distinct seeds give distinct streams (seed | 1 would merge 2n and 2n + 1); never zero.
  let x = Math.imul(seed + 1, 0x9e3779b1) ^ 0x5bd1e995 || 1;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  return {
    /** An integer in [0, n). */
    int: (n: number): number => next() % n,
    bytes: (n: number): Uint8Array => Uint8Array.from({ length: n }, () => next() & 0xff),
  };
}

export function id(fill: number): Uint8Array {
  return new Uint8Array(20).fill(fill);
}
