/**
 * Writes to a Bun TCP socket with backpressure. A Bun socket's `write` takes what the kernel accepts now
 * and returns that count; the rest is ours to keep until the socket's `drain` event, which is what this
 * class does, in order, releasing each buffer once it is written whole.
 */

/** The part of a Bun socket the writer needs (a test may pass its own). */
export interface WritableSocket {
  write(data: Uint8Array): number;
}

interface Pending {
  bytes: Uint8Array;
  release?: () => void;
}

export class SocketWriter {
  private readonly pending: Pending[] = [];
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(private readonly socket: WritableSocket) {}

  /** Bytes waiting for the socket to take them. */
  get backlog(): number {
    let bytes = 0;
    for (const p of this.pending) bytes += p.bytes.length;
    return bytes;
  }

  /**
   * Writes `bytes`, or keeps what the socket did not take. `release` is called once the socket took all
   * of them (or the socket closed): until then the caller must not reuse the buffer. Returns whether
   * everything went at once; when not, wait for `flushed()` before writing much more.
   */
  write(bytes: Uint8Array, release?: () => void): boolean {
    if (this.closed) {
      release?.();
      return false;
    }
    if (this.pending.length === 0) {
      const n = Math.max(0, this.socket.write(bytes));
      if (n >= bytes.length) {
        release?.();
        return true;
      }
      bytes = bytes.subarray(n);
    }
    this.pending.push({ bytes, release });
    return false;
  }

  /** Resolves when everything written so far went to the socket, or the socket closed. */
  flushed(): Promise<void> {
    if (this.pending.length === 0 || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** The socket's `drain` event: it may take more now. */
  drain(): void {
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const n = Math.max(0, this.socket.write(head.bytes));
      if (n < head.bytes.length) {
        head.bytes = head.bytes.subarray(n);
        return;
      }
      this.pending.shift();
      head.release?.();
    }
    this.wake();
  }

  /** The socket closed: drop what was not written (releasing its buffers) and wake every waiter. */
  close(): void {
    this.closed = true;
    for (const p of this.pending.splice(0)) p.release?.();
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
