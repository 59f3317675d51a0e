/** Checks a stream of bytes against the size and SHA-256 from the signed index. */
import { ErrorCode, HashMismatchError } from "../errors.ts";

export interface ExpectedFile {
  size: number;
  sha256: string;
}

export class Sha256Verifier {
  private readonly hasher = new Bun.CryptoHasher("sha256");
  private received = 0;

  constructor(
    private readonly expected: ExpectedFile,
    private readonly what: string,
    private readonly code: typeof ErrorCode.FileHashMismatch | typeof ErrorCode.IndexHashMismatch = ErrorCode.FileHashMismatch,
  ) {}

  get bytes(): number {
    return this.received;
  }

  /** Feeds bytes in file order; throws as soon as the file grows past its signed size. */
  update(chunk: Uint8Array): void {
    this.received += chunk.length;
    if (this.received > this.expected.size) {
      throw new HashMismatchError(this.code, this.what, this.expected, { size: this.received, sha256: "(not computed)" });
    }
    this.hasher.update(chunk);
  }

  /** Throws HashMismatchError unless every byte arrived and the hash matches. */
  finish(): void {
    const sha256 = this.hasher.digest("hex");
    if (this.received !== this.expected.size || sha256 !== this.expected.sha256) {
      throw new HashMismatchError(this.code, this.what, this.expected, { size: this.received, sha256 });
    }
  }
}
