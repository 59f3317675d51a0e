/**
 * Reusable piece buffers. Every byte a download receives is copied into a piece buffer; a fresh 512 KiB
 * allocation per piece means the kernel maps and zeroes 128 new pages each time (page faults were the
 * largest CPU cost of a 100 MB swarm download on a virtual machine), while a buffer used again costs
 * nothing. Buffers are handed out whole; callers take a subarray for a short last piece.
 */
export class BufferPool {
  private readonly free: Uint8Array[] = [];

  constructor(
    readonly bufferBytes: number,
    /** Buffers kept for reuse at most; more are left to the garbage collector. */
    private readonly keep: number,
  ) {}

  take(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.bufferBytes);
  }

  /** Gives a buffer (or any view starting at its beginning) back; its contents may be overwritten at once. */
  give(view: Uint8Array): void {
    if (view.byteOffset !== 0 || view.buffer.byteLength !== this.bufferBytes || this.free.length >= this.keep) return;
    this.free.push(new Uint8Array(view.buffer, 0, this.bufferBytes));
  }
}
