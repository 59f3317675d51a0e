/**
 * Write tokens for announce_peer and BEP 44 put (BEP 5): a node hands a token to whoever asks get_peers
 * (or get) and accepts an announce only with a token it issued to the same IP address recently. This
 * stops a node from announcing a third party's address, since it cannot read the replies sent there.
 *
 * token = first TOKEN_BYTES of SHA-1(secret || address). The secret rotates every `rotateMs`, and the
 * current and the previous secret are accepted, so a token stays valid between one and two rotation
 * periods (5–10 minutes by default, as BEP 5 describes). Pure: time is passed in, randomness injected,
 * and rotation happens lazily when a call sees that the rotation time has passed.
 */

/** BEP 5: "change the secret every five minutes and accept tokens up to ten minutes old". */
export const TOKEN_ROTATE_MS = 5 * 60 * 1000;
/** Token length on the wire. 8 bytes (64 bits) cannot be guessed within a token's 10-minute life. */
export const TOKEN_BYTES = 8;
/** Secret length: 128 bits, far beyond what can be searched from observed tokens. */
export const TOKEN_SECRET_BYTES = 16;

export interface TokenManagerOptions {
  randomBytes: (n: number) => Uint8Array;
  /** How long a secret is the current one (ms). Default TOKEN_ROTATE_MS. */
  rotateMs?: number;
}

export class TokenManager {
  readonly #randomBytes: (n: number) => Uint8Array;
  readonly #rotateMs: number;
  #current: Uint8Array;
  #previous: Uint8Array | undefined;
  /** When the current secret is retired; set by the first call, which starts the schedule. */
  #rotateAt: number | undefined;

  constructor(options: TokenManagerOptions) {
    const rotateMs = options.rotateMs ?? TOKEN_ROTATE_MS;
    if (!Number.isFinite(rotateMs) || rotateMs <= 0) throw new RangeError(`rotateMs must be positive: ${rotateMs}`);
    this.#randomBytes = options.randomBytes;
    this.#rotateMs = rotateMs;
    this.#current = this.#newSecret();
  }

  /** The token to give `address` (the requester's IP; the port plays no part, as in BEP 5). */
  issue(address: string, now: number): Uint8Array {
    this.#rotate(now);
    return tokenFor(this.#current, address);
  }

  /** Whether `token` was issued to `address` under the current or the previous secret. */
  check(token: Uint8Array, address: string, now: number): boolean {
    this.#rotate(now);
    if (token.length !== TOKEN_BYTES) return false;
    if (sameBytes(token, tokenFor(this.#current, address))) return true;
    return this.#previous !== undefined && sameBytes(token, tokenFor(this.#previous, address));
  }

  #rotate(now: number): void {
    if (this.#rotateAt === undefined) {
      this.#rotateAt = now + this.#rotateMs;
      return;
    }
    if (now < this.#rotateAt) return;
    const periods = Math.floor((now - this.#rotateAt) / this.#rotateMs) + 1;
    // After one period the current secret becomes the previous; after two or more, both are stale.
    this.#previous = periods === 1 ? this.#current : undefined;
    this.#current = this.#newSecret();
    this.#rotateAt += periods * this.#rotateMs;
  }

  #newSecret(): Uint8Array {
    const secret = this.#randomBytes(TOKEN_SECRET_BYTES);
    if (secret.length !== TOKEN_SECRET_BYTES) {
      throw new RangeError(`randomBytes(${TOKEN_SECRET_BYTES}) returned ${secret.length} bytes`);
    }
    return secret.slice(); // our own copy: the source may reuse its buffer
  }
}

/**
 * The form of an address that a token is bound to: lower case, and an IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`, as dual-stack sockets report IPv4 senders) written as plain IPv4, so that the
 * same host gets the same token whichever way the socket spelled it.
 */
export function tokenAddress(address: string): string {
  const lower = address.toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(lower);
  return mapped?.[1] ?? lower;
}

function tokenFor(secret: Uint8Array, address: string): Uint8Array {
  const digest = new Bun.CryptoHasher("sha1").update(secret).update(tokenAddress(address)).digest();
  return new Uint8Array(digest.subarray(0, TOKEN_BYTES));
}

/** Compares without an early exit, so the time taken does not reveal how many leading bytes matched. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
