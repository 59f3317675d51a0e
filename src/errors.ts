/**
 * One error base class with stable codes. The CLI maps each code to its own exit code in one place
 * (src/cli/exit-codes.ts). Messages say what failed, then why after a colon.
 */

export const ErrorCode = {
  Internal: "INTERNAL",
  Usage: "USAGE",
  NoSources: "NO_SOURCES",
  BadSources: "BAD_SOURCES",
  UnknownPackage: "UNKNOWN_PACKAGE",
  UnknownVersion: "UNKNOWN_VERSION",
  BadSignature: "BAD_SIGNATURE",
  IndexHashMismatch: "INDEX_HASH_MISMATCH",
  FileHashMismatch: "FILE_HASH_MISMATCH",
  MirrorUnreachable: "MIRROR_UNREACHABLE",
  DestinationUnwritable: "DESTINATION_UNWRITABLE",
  DaemonUnreachable: "DAEMON_UNREACHABLE",
  AddressInUse: "ADDRESS_IN_USE",
  /** `apt-p2p cache verify` found (and removed) files whose content is not their hash. */
  CacheCorrupt: "CACHE_CORRUPT",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class AptP2pError extends Error {
  readonly code: ErrorCode;
  /** Lines of advice shown under the message ("what to do"). */
  readonly hints: string[];

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; hints?: string[] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AptP2pError";
    this.code = code;
    this.hints = options.hints ?? [];
  }

  static noSources(searched: string[]): AptP2pError {
    return new AptP2pError(
      ErrorCode.NoSources,
      `No APT sources found: no enabled 'deb' entry in ${searched.join(", ") || "the given files"}`,
      { hints: ["Pass a sources file with --sources FILE (one-line .list or deb822 .sources format)."] },
    );
  }

  static badSignature(what: string, why: string): AptP2pError {
    return new AptP2pError(ErrorCode.BadSignature, `Cannot verify ${what}: ${why}`, {
      hints: [
        "Check the source's Signed-By keyring (or /etc/apt/trusted.gpg.d), or mark a repository you trust " +
          "without a signature with [trusted=yes].",
      ],
    });
  }

  static mirror(url: string, why: string, cause?: unknown): AptP2pError {
    return new AptP2pError(ErrorCode.MirrorUnreachable, `Cannot fetch ${url}: ${why}`, {
      cause,
      hints: ["Check the network and the mirror named in your APT sources, then try again."],
    });
  }

  static destination(path: string, why: string, cause?: unknown): AptP2pError {
    return new AptP2pError(ErrorCode.DestinationUnwritable, `Cannot write ${path}: ${why}`, {
      cause,
      hints: ["Choose a writable directory with free space (--dest DIR, --cache-dir DIR)."],
    });
  }
}

/** A download or index whose bytes do not match the signed hash. Callers catch it to try another source. */
export class HashMismatchError extends AptP2pError {
  readonly expected: { size: number; sha256: string };
  readonly actual: { size: number; sha256: string };

  constructor(
    code: typeof ErrorCode.FileHashMismatch | typeof ErrorCode.IndexHashMismatch,
    what: string,
    expected: { size: number; sha256: string },
    actual: { size: number; sha256: string },
  ) {
    const why =
      expected.size !== actual.size
        ? `size ${actual.size} bytes, the signed index says ${expected.size}`
        : `SHA-256 ${actual.sha256}, the signed index says ${expected.sha256}`;
    super(code, `Rejected ${what}: ${why}`, {
      hints: ["The mirror or a proxy served corrupt or altered data; nothing was kept. Try again later or another mirror."],
    });
    this.name = "HashMismatchError";
    this.expected = expected;
    this.actual = actual;
  }
}

/** Turn errno-style failures of file writes into a destination error; pass everything else through. */
export function asDestinationError(path: string, err: unknown): unknown {
  if (err instanceof AptP2pError) return err;
  const code = (err as { code?: string } | null)?.code;
  switch (code) {
    case "ENOSPC":
      return AptP2pError.destination(path, "no space left on device", err);
    case "EDQUOT":
      return AptP2pError.destination(path, "disk quota exceeded", err);
    case "EACCES":
    case "EPERM":
      return AptP2pError.destination(path, "permission denied", err);
    case "EROFS":
      return AptP2pError.destination(path, "read-only file system", err);
    case "ENOENT":
    case "ENOTDIR":
      return AptP2pError.destination(path, "no such directory", err);
    default:
      return err;
  }
}
