/**
 * A byte source gives any range of one file. A download is a set of sources feeding one verifier:
 * today the mirror; peers join as more ByteSources without changing the downloader.
 */
import { AptP2pError, ErrorCode } from "../errors.ts";
import type { Fetcher } from "../http/fetch.ts";

export type SourceKind = "mirror" | "peer" | "cache";

/** Half-open byte range [start, end). */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ByteSource {
  /** A URL or peer address, for messages. */
  readonly id: string;
  readonly kind: SourceKind;
  /** Streams exactly the bytes [range.start, range.end) of the file, or throws. */
  read(range: ByteRange, fileSize: number, signal?: AbortSignal): AsyncIterable<Uint8Array>;
}

/** A file on an HTTP(S) or file: mirror, read whole or by Range. */
export class HttpSource implements ByteSource {
  readonly id: string;
  readonly kind: SourceKind;
  private readonly fetcher: Fetcher;

  constructor(url: string, fetcher: Fetcher, kind: SourceKind = "mirror") {
    this.id = url;
    this.kind = kind;
    this.fetcher = fetcher;
  }

  async *read(range: ByteRange, fileSize: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const whole = range.start === 0 && range.end === fileSize;
    const headers: Record<string, string> = whole ? {} : { Range: `bytes=${range.start}-${range.end - 1}` };
    const response = await this.fetcher(this.id, { headers, signal });
    if (response.status === 416) {
      // The file is shorter than the signed size: it is the wrong file, not a passing failure.
      const total = /^bytes \*\/(\d+)$/.exec(response.headers.get("content-range") ?? "")?.[1];
      if (total !== undefined && Number(total) !== fileSize) throw sizeMismatch(this.id, Number(total), fileSize);
    }
    if (response.status !== 200 && response.status !== 206) {
      await response.body?.cancel();
      throw AptP2pError.mirror(this.id, `HTTP ${response.status} ${response.statusText || ""}`.trim());
    }
    if (response.body === null) throw AptP2pError.mirror(this.id, "empty response");
    const length = response.headers.get("content-length");
    if (response.status === 200 && length !== null && Number(length) !== fileSize && response.headers.get("content-encoding") === null) {
      await response.body.cancel();
      throw sizeMismatch(this.id, Number(length), fileSize);
    }
    // A server that ignores Range answers 200 with the whole file: skip to the start.
    let skip = response.status === 200 ? range.start : 0;
    let remaining = range.end - range.start;
    if (response.status === 206) {
      const match = /^bytes (\d+)-(\d+)\//.exec(response.headers.get("content-range") ?? "");
      if (match === null || Number(match[1]) !== range.start) {
        await response.body.cancel();
        throw AptP2pError.mirror(this.id, `answered Range ${headers.Range} with Content-Range ${response.headers.get("content-range")}`);
      }
    }
    for await (const chunk of response.body) {
      let part: Uint8Array = chunk;
      if (skip > 0) {
        if (part.length <= skip) {
          skip -= part.length;
          continue;
        }
        part = part.subarray(skip);
        skip = 0;
      }
      if (part.length >= remaining) {
        yield part.subarray(0, remaining);
        remaining = 0;
        break;
      }
      remaining -= part.length;
      yield part;
    }
    // Fewer bytes than asked for is the downloader's to notice: it knows the offset reached.
  }
}

function sizeMismatch(url: string, actual: number, expected: number): AptP2pError {
  return new AptP2pError(ErrorCode.FileHashMismatch, `Rejected ${url}: size ${actual} bytes, the signed index says ${expected}`, {
    hints: ["The mirror serves a different file than its signed index lists; nothing was kept. Try again later or another mirror."],
  });
}
