/** The one place where error codes become process exit codes. Documented in `apt-p2p --help` and the README. */
import { ErrorCode } from "../errors.ts";

export const EXIT_OK = 0;

export const EXIT_CODES: Record<ErrorCode, number> = {
  [ErrorCode.Internal]: 1,
  [ErrorCode.Usage]: 2,
  [ErrorCode.NoSources]: 3,
  [ErrorCode.BadSources]: 3,
  [ErrorCode.UnknownPackage]: 4,
  [ErrorCode.UnknownVersion]: 5,
  [ErrorCode.BadSignature]: 6,
  [ErrorCode.IndexHashMismatch]: 7,
  [ErrorCode.FileHashMismatch]: 8,
  [ErrorCode.MirrorUnreachable]: 9,
  [ErrorCode.DestinationUnwritable]: 10,
  [ErrorCode.DaemonUnreachable]: 11,
  [ErrorCode.AddressInUse]: 12,
  [ErrorCode.CacheCorrupt]: 13,
};

export const EXIT_CODE_HELP = `Exit codes:
  0   success
  1   internal error
  2   bad command line, environment variable or configuration file
  3   no usable APT sources, or a sources file that cannot be read or parsed
  4   unknown package or file name
  5   unknown version of a known package
  6   bad, missing or expired signature on a Release file
  7   an index (Packages) does not match the signed Release
  8   a downloaded file does not match the signed index
  9   mirror unreachable or answered with an HTTP error
  10  destination or cache not writable, or disk full
  11  no apt-p2p daemon answers at the --daemon URL
  12  cannot listen on the requested address or port
  13  cache verify found corrupt files (it removed them)`;
