import { describe, expect, test } from "bun:test";
import { SocketWriter, type WritableSocket } from "../../src/http/socket-writer.ts";

/**
 * A socket with room for `room` more bytes, like a kernel send buffer: each write takes what fits and
 * uses up that room (0: it takes nothing); the test makes room again before calling drain().
 */
class FakeSocket implements WritableSocket {
  readonly taken: number[] = [];
  readonly calls: number[] = [];

  constructor(public room: number) {}

  write(data: Uint8Array): number {
    const n = Math.min(this.room, data.length);
    this.room -= n;
    this.calls.push(data.length);
    for (const byte of data.subarray(0, n)) this.taken.push(byte);
    return n;
  }
}

const bytes = (from: number, count: number) => Uint8Array.from({ length: count }, (_, i) => (from + i) % 256);
const range = (from: number, count: number) => Array.from(bytes(from, count));

/** Whether `promise` has settled once everything already queued has run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise<void>((resolve) => setImmediate(resolve));
  return done;
}

describe("SocketWriter", () => {
  test("write() returns true and releases at once when the socket takes everything", () => {
    const socket = new FakeSocket(1000);
    const writer = new SocketWriter(socket);
    const released: string[] = [];
    expect(writer.write(bytes(0, 10), () => released.push("a"))).toBe(true);
    expect(released).toEqual(["a"]);
    expect(socket.taken).toEqual(range(0, 10));
    expect(writer.backlog).toBe(0);
  });

  test("write() returns false when the socket takes only part, and keeps the rest as backlog", () => {
    const socket = new FakeSocket(4);
    const writer = new SocketWriter(socket);
    expect(writer.write(bytes(0, 10))).toBe(false);
    expect(socket.taken).toEqual(range(0, 4));
    expect(writer.backlog).toBe(6);
  });

  test("keeps the bytes in order across partial writes and drains", () => {
    const socket = new FakeSocket(3);
    const writer = new SocketWriter(socket);
    writer.write(bytes(0, 10));
    writer.write(bytes(10, 5));
    writer.write(bytes(15, 7));
    writer.drain(); // no room yet
    expect(socket.taken).toEqual(range(0, 3));
    for (let i = 0; i < 10 && writer.backlog > 0; i++) {
      socket.room = 4;
      writer.drain();
      // A write while there is a backlog goes behind it, never straight to the socket.
      if (i === 1) writer.write(bytes(22, 3));
    }
    expect(writer.backlog).toBe(0);
    expect(socket.taken).toEqual(range(0, 25));
  });

  test("a write behind a backlog does not reach the socket until the backlog has gone", () => {
    const socket = new FakeSocket(2);
    const writer = new SocketWriter(socket);
    writer.write(bytes(0, 5));
    const callsBefore = socket.calls.length;
    expect(writer.write(bytes(5, 1))).toBe(false);
    expect(socket.calls.length).toBe(callsBefore);
    expect(writer.backlog).toBe(4);
  });

  test("a socket that takes nothing keeps the whole buffer, and a negative count is taken as nothing", () => {
    const writer = new SocketWriter({ write: () => -1 });
    expect(writer.write(bytes(0, 8))).toBe(false);
    expect(writer.backlog).toBe(8);
    writer.drain();
    expect(writer.backlog).toBe(8);
  });

  test("releases each buffer exactly once, only after the socket took its last byte", () => {
    const socket = new FakeSocket(4);
    const writer = new SocketWriter(socket);
    const released: string[] = [];
    /** How many bytes the socket had taken when each buffer was released. */
    const takenAtRelease: number[] = [];
    const release = (name: string) => () => {
      released.push(name);
      takenAtRelease.push(socket.taken.length);
    };
    writer.write(bytes(0, 6), release("a"));
    writer.write(bytes(6, 3), release("b"));
    writer.write(bytes(9, 2), release("c"));
    expect(released).toEqual([]);
    socket.room = 4;
    writer.drain(); // the last 2 of "a", then 2 of the 3 of "b"
    expect(released).toEqual(["a"]);
    socket.room = 3;
    writer.drain(); // the last of "b", then all of "c"
    expect(released).toEqual(["a", "b", "c"]);
    expect(takenAtRelease).toEqual([6, 9, 11]);
    writer.drain();
    writer.close();
    expect(released).toEqual(["a", "b", "c"]);
  });

  test("flushed() resolves at once when nothing is waiting", async () => {
    const writer = new SocketWriter(new FakeSocket(10));
    writer.write(bytes(0, 10));
    expect(await settled(writer.flushed())).toBe(true);
  });

  test("flushed() resolves after the drain that empties the backlog, not before", async () => {
    const socket = new FakeSocket(4);
    const writer = new SocketWriter(socket);
    writer.write(bytes(0, 10));
    const flushed = writer.flushed();
    expect(await settled(flushed)).toBe(false);
    socket.room = 4;
    writer.drain(); // 8 of 10 taken
    expect(await settled(flushed)).toBe(false);
    socket.room = 4;
    writer.drain();
    expect(writer.backlog).toBe(0);
    expect(await settled(flushed)).toBe(true);
  });

  test("flushed() waits for writes made after it was asked, and wakes every waiter", async () => {
    const socket = new FakeSocket(0);
    const writer = new SocketWriter(socket);
    writer.write(bytes(0, 3));
    const first = writer.flushed();
    writer.write(bytes(3, 3));
    const second = writer.flushed();
    socket.room = 3;
    writer.drain(); // the first buffer whole, none of the second
    expect(await settled(first)).toBe(false);
    expect(await settled(second)).toBe(false);
    socket.room = 3;
    writer.drain();
    expect(await settled(first)).toBe(true);
    expect(await settled(second)).toBe(true);
  });

  test("close() releases the pending buffers once and resolves waiters", async () => {
    const socket = new FakeSocket(2);
    const writer = new SocketWriter(socket);
    const released: string[] = [];
    writer.write(bytes(0, 5), () => released.push("a"));
    writer.write(bytes(5, 5), () => released.push("b"));
    const flushed = writer.flushed();
    writer.close();
    expect(released).toEqual(["a", "b"]);
    expect(await settled(flushed)).toBe(true);
    expect(await settled(writer.flushed())).toBe(true);
    writer.drain();
    writer.close();
    expect(released).toEqual(["a", "b"]);
    expect(socket.taken).toEqual(range(0, 2));
  });

  test("a write after close() never reaches the socket, is released at once and returns false", () => {
    const socket = new FakeSocket(100);
    const writer = new SocketWriter(socket);
    writer.close();
    const released: string[] = [];
    expect(writer.write(bytes(0, 5), () => released.push("late"))).toBe(false);
    expect(released).toEqual(["late"]);
    expect(socket.calls).toEqual([]);
    expect(writer.backlog).toBe(0);
  });
});
