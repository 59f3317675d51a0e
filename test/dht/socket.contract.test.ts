/**
 * One contract for every DatagramSocket: the in-memory network used by simulations and the Bun UDP socket
 * used in production must behave alike (as every router of hono passes one shared case file), or what the
 * simulations show says nothing about the real node.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Endpoint } from "../../src/dht/id.ts";
import { bindUdp, MemoryNetwork, type DatagramSocket } from "../../src/dht/socket.ts";

interface Implementation {
  name: string;
  /** A fresh world (network) per test, whose bind() makes sockets that can reach each other. */
  world(): { bind(): Promise<DatagramSocket> };
}

const IMPLEMENTATIONS: Implementation[] = [
  {
    name: "MemoryNetwork",
    world: () => {
      const net = new MemoryNetwork();
      return { bind: async () => net.bind() };
    },
  },
  {
    name: "bindUdp on 127.0.0.1",
    world: () => ({ bind: () => bindUdp("127.0.0.1", 0) }),
  },
];

/** How long to wait for a datagram that should arrive (loopback takes well under a millisecond). */
const ARRIVAL_WAIT_MS = 2_000;
/** How long to keep listening for a datagram that must not arrive. */
const SILENCE_WAIT_MS = 100;

interface Received {
  data: Uint8Array;
  from: Endpoint;
}

/** Collects what a socket receives; `next()` waits for the next datagram (bounded). */
function inbox(socket: DatagramSocket) {
  const queue: Received[] = [];
  const waiters: ((r: Received) => void)[] = [];
  socket.onDatagram((data, from) => {
    const item = { data: new Uint8Array(data), from: { address: from.address, port: from.port } };
    const waiter = waiters.shift();
    if (waiter) waiter(item);
    else queue.push(item);
  });
  return {
    received: queue,
    next(): Promise<Received> {
      const ready = queue.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise<Received>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no datagram arrived")), ARRIVAL_WAIT_MS);
        waiters.push((r) => {
          clearTimeout(timer);
          resolve(r);
        });
      });
    },
  };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const bytes = (text: string) => new TextEncoder().encode(text);

for (const impl of IMPLEMENTATIONS) {
  describe(`DatagramSocket contract: ${impl.name}`, () => {
    let open: DatagramSocket[] = [];
    let world: ReturnType<Implementation["world"]>;
    const bind = async () => {
      world ??= impl.world();
      const socket = await world.bind();
      open.push(socket);
      return socket;
    };

    afterEach(() => {
      for (const socket of open) socket.close();
      open = [];
      world = undefined!;
    });

    test("local is the bound endpoint: an address and a port in 1-65535", async () => {
      const socket = await bind();
      expect(socket.local.address.length).toBeGreaterThan(0);
      expect(Number.isInteger(socket.local.port)).toBe(true);
      expect(socket.local.port).toBeGreaterThanOrEqual(1);
      expect(socket.local.port).toBeLessThanOrEqual(65535);
    });

    test("two sockets bound in one world have distinct endpoints", async () => {
      const a = await bind();
      const b = await bind();
      expect(`${a.local.address}:${a.local.port}`).not.toBe(`${b.local.address}:${b.local.port}`);
    });

    test("a datagram arrives with the sender's local endpoint as its source", async () => {
      const a = await bind();
      const b = await bind();
      const box = inbox(b);
      expect(a.send(bytes("hello"), b.local)).toBe(true);
      const got = await box.next();
      expect(new TextDecoder().decode(got.data)).toBe("hello");
      expect(got.from).toEqual({ address: a.local.address, port: a.local.port });
    });

    test("the receiver can answer to the source endpoint it was given", async () => {
      const a = await bind();
      const b = await bind();
      const boxA = inbox(a);
      b.onDatagram((data, from) => b.send(Uint8Array.from(data).reverse(), from));
      a.send(Uint8Array.of(1, 2, 3), b.local);
      const got = await boxA.next();
      expect([...got.data]).toEqual([3, 2, 1]);
      expect(got.from).toEqual({ address: b.local.address, port: b.local.port });
    });

    test("datagram bytes arrive unchanged: every byte value, and a full-MTU datagram", async () => {
      const a = await bind();
      const b = await bind();
      const box = inbox(b);
      const everyByte = Uint8Array.from({ length: 256 }, (_, i) => i);
      const large = Uint8Array.from({ length: 1400 }, (_, i) => (i * 131 + 7) & 0xff);
      a.send(everyByte, b.local);
      a.send(large, b.local);
      const got = [await box.next(), await box.next()].map((r) => r.data).sort((x, y) => x.length - y.length);
      expect(got[0]).toEqual(everyByte);
      expect(got[1]).toEqual(large);
    });

    test("changing the buffer after send() does not change what arrives", async () => {
      const a = await bind();
      const b = await bind();
      const box = inbox(b);
      const buffer = Uint8Array.of(10, 20, 30, 40);
      a.send(buffer, b.local);
      buffer.fill(0);
      expect([...(await box.next()).data]).toEqual([10, 20, 30, 40]);
    });

    test("several sockets each receive exactly what was sent to them, from the right sender", async () => {
      const sockets = [await bind(), await bind(), await bind(), await bind()];
      const boxes = sockets.map(inbox);
      for (const [i, from] of sockets.entries()) {
        for (const [j, to] of sockets.entries()) if (i !== j) from.send(bytes(`${i}->${j}`), to.local);
      }
      for (const [j, box] of boxes.entries()) {
        const got: string[] = [];
        for (let n = 0; n < sockets.length - 1; n++) {
          const r = await box.next();
          const text = new TextDecoder().decode(r.data);
          const sender = Number(text.split("->")[0]);
          expect(r.from).toEqual(sockets[sender]!.local);
          got.push(text);
        }
        expect(got.sort()).toEqual(sockets.map((_, i) => `${i}->${j}`).filter((t) => !t.startsWith(`${j}->`)).sort());
      }
      await pause(SILENCE_WAIT_MS);
      for (const box of boxes) expect(box.received).toHaveLength(0);
    });

    test("a later onDatagram() replaces the handler", async () => {
      const a = await bind();
      const b = await bind();
      let first = 0;
      b.onDatagram(() => first++);
      const box = inbox(b);
      a.send(bytes("x"), b.local);
      await box.next();
      expect(first).toBe(0);
    });

    test("close() stops delivery to the socket, makes send() return false, and is idempotent", async () => {
      const a = await bind();
      const b = await bind();
      const c = await bind();
      const boxB = inbox(b);
      const boxC = inbox(c);
      a.send(bytes("before"), b.local);
      expect(new TextDecoder().decode((await boxB.next()).data)).toBe("before");

      b.close();
      b.close();
      expect(b.send(bytes("from a closed socket"), c.local)).toBe(false);
      a.send(bytes("after"), b.local);
      // A marker sent afterwards to another socket: once it arrived, "after" had every chance to.
      a.send(bytes("marker"), c.local);
      expect(new TextDecoder().decode((await boxC.next()).data)).toBe("marker");
      await pause(SILENCE_WAIT_MS);
      expect(boxB.received).toHaveLength(0);
      expect(boxC.received).toHaveLength(0);
    });

    test("datagrams to an endpoint that went away neither throw nor cost the next datagrams", async () => {
      const a = await bind();
      const gone = await bind();
      const c = await bind();
      const box = inbox(c);
      const vanished = { ...gone.local };
      gone.close();
      // Over UDP each of these draws an ICMP port-unreachable that the kernel reports on a's next send.
      for (let i = 0; i < 5; i++) {
        a.send(bytes(`lost ${i}`), vanished);
        await pause(5);
        expect(a.send(bytes(`kept ${i}`), c.local)).toBe(true);
      }
      const got: string[] = [];
      for (let i = 0; i < 5; i++) got.push(new TextDecoder().decode((await box.next()).data));
      expect(got.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `kept ${i}`));
    });

    test("a closed sender's peers keep working", async () => {
      const a = await bind();
      const b = await bind();
      const c = await bind();
      const box = inbox(c);
      a.close();
      b.send(bytes("still here"), c.local);
      expect(new TextDecoder().decode((await box.next()).data)).toBe("still here");
    });
  });
}
