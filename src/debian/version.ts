/**
 * Debian version ordering, as dpkg implements it (Debian Policy 5.6.12):
 *
 *   [epoch:]upstream_version[-debian_revision]
 *
 * The epoch is the digits before the first colon (0 when absent); the revision is everything after the
 * last hyphen ("" when absent, which compares equal to "0"). Upstream and revision compare with dpkg's
 * `verrevcmp`: alternating non-digit and digit runs; in non-digit runs letters sort before other
 * characters and `~` sorts before everything, even the end of the string; digit runs compare as numbers.
 *
 * compareVersions() is called for every candidate when choosing among package versions, so it works on
 * string indices and allocates nothing.
 */

export interface ParsedVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** dpkg rejects epochs above INT_MAX ("epoch in version is too big"). */
const MAX_EPOCH = 2147483647;

const CHAR_0 = 48;
const CHAR_9 = 57;
const CHAR_UPPER_A = 65;
const CHAR_UPPER_Z = 90;
const CHAR_LOWER_A = 97;
const CHAR_LOWER_Z = 122;
const CHAR_TILDE = 126;
const CHAR_COLON = 58;
const CHAR_HYPHEN = 45;

function isDigit(c: number): boolean {
  return c >= CHAR_0 && c <= CHAR_9;
}

function isLetter(c: number): boolean {
  return (c >= CHAR_UPPER_A && c <= CHAR_UPPER_Z) || (c >= CHAR_LOWER_A && c <= CHAR_LOWER_Z);
}

function isSpace(c: number): boolean {
  // The characters C's isspace() accepts: space, \t, \n, \v, \f, \r.
  return c === 32 || (c >= 9 && c <= 13);
}

/** Sort weight of one character of a non-digit run; `end` stands for "past the end of the string". */
function order(c: number, end: boolean): number {
  if (end || isDigit(c)) return 0;
  if (isLetter(c)) return c;
  if (c === CHAR_TILDE) return -1;
  // Everything else sorts after all letters. Non-ASCII (invalid in Debian versions anyway) compares by
  // UTF-16 code unit, where dpkg compares UTF-8 bytes.
  return c + 256;
}

/** Compares the digit runs a[aStart, aEnd) and b[bStart, bEnd) as numbers, of any length. */
function compareDigitRuns(a: string, aStart: number, aEnd: number, b: string, bStart: number, bEnd: number): number {
  while (aStart < aEnd && a.charCodeAt(aStart) === CHAR_0) aStart++;
  while (bStart < bEnd && b.charCodeAt(bStart) === CHAR_0) bStart++;
  const lengthDiff = aEnd - aStart - (bEnd - bStart);
  if (lengthDiff !== 0) return lengthDiff;
  for (; aStart < aEnd; aStart++, bStart++) {
    const diff = a.charCodeAt(aStart) - b.charCodeAt(bStart);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** dpkg's verrevcmp() over the ranges a[ai, aEnd) and b[bi, bEnd). */
function compareParts(a: string, ai: number, aEnd: number, b: string, bi: number, bEnd: number): number {
  while (ai < aEnd || bi < bEnd) {
    // Non-digit run: character by character.
    while ((ai < aEnd && !isDigit(a.charCodeAt(ai))) || (bi < bEnd && !isDigit(b.charCodeAt(bi)))) {
      const ac = order(a.charCodeAt(ai), ai >= aEnd);
      const bc = order(b.charCodeAt(bi), bi >= bEnd);
      if (ac !== bc) return ac - bc;
      ai++;
      bi++;
    }
    // Digit run: numerically.
    const aDigits = ai;
    while (ai < aEnd && isDigit(a.charCodeAt(ai))) ai++;
    const bDigits = bi;
    while (bi < bEnd && isDigit(b.charCodeAt(bi))) bi++;
    const diff = compareDigitRuns(a, aDigits, ai, b, bDigits, bi);
    if (diff !== 0) return diff;
  }
  return 0;
}

/**
 * Where the parts of a version lie in its string, found without allocating. Reused by every call,
 * which is safe because nothing here is re-entrant.
 */
interface Layout {
  start: number; // first non-blank character
  end: number; // one past the last non-blank character
  epochEnd: number; // index of the epoch colon, or -1 when there is no epoch
  upstreamEnd: number; // index of the revision hyphen, or `end` when there is no revision
}

const layoutA: Layout = { start: 0, end: 0, epochEnd: -1, upstreamEnd: 0 };
const layoutB: Layout = { start: 0, end: 0, epochEnd: -1, upstreamEnd: 0 };

/**
 * Splits like dpkg's parseversion(), but never fails: a prefix before the first colon counts as an epoch
 * only when it is all digits; otherwise the colon is part of the upstream version.
 */
function locate(v: string, out: Layout): Layout {
  let start = 0;
  let end = v.length;
  while (start < end && isSpace(v.charCodeAt(start))) start++;
  while (end > start && isSpace(v.charCodeAt(end - 1))) end--;
  out.start = start;
  out.end = end;
  out.epochEnd = -1;
  for (let i = start; i < end; i++) {
    const c = v.charCodeAt(i);
    if (c === CHAR_COLON) {
      if (i > start) out.epochEnd = i;
      break;
    }
    if (!isDigit(c)) break;
  }
  out.upstreamEnd = end;
  const firstUpstream = upstreamStart(out);
  for (let i = end - 1; i >= firstUpstream; i--) {
    if (v.charCodeAt(i) === CHAR_HYPHEN) {
      out.upstreamEnd = i;
      break;
    }
  }
  return out;
}

function upstreamStart(layout: Layout): number {
  return layout.epochEnd < 0 ? layout.start : layout.epochEnd + 1;
}

/** Where the revision starts; equal to `end` (an empty range) when there is none. */
function revisionStart(layout: Layout): number {
  return layout.upstreamEnd < layout.end ? layout.upstreamEnd + 1 : layout.end;
}

/**
 * Orders two Debian versions as `dpkg --compare-versions` does: negative when a < b, 0 when equal,
 * positive when a > b. Leading and trailing blanks are ignored. Malformed versions (see isValidVersion)
 * still get a consistent order rather than an exception.
 */
export function compareVersions(a: string, b: string): number {
  const la = locate(a, layoutA);
  const lb = locate(b, layoutB);

  // An absent epoch is the empty digit run, which compares equal to 0.
  const aEpochEnd = la.epochEnd < 0 ? la.start : la.epochEnd;
  const bEpochEnd = lb.epochEnd < 0 ? lb.start : lb.epochEnd;
  const epochDiff = compareDigitRuns(a, la.start, aEpochEnd, b, lb.start, bEpochEnd);
  if (epochDiff !== 0) return epochDiff;

  const upstreamDiff = compareParts(a, upstreamStart(la), la.upstreamEnd, b, upstreamStart(lb), lb.upstreamEnd);
  if (upstreamDiff !== 0) return upstreamDiff;

  return compareParts(a, revisionStart(la), la.end, b, revisionStart(lb), lb.end);
}

/**
 * Splits a version into epoch, upstream version and revision. Never throws: check isValidVersion()
 * first where malformed input must be refused.
 */
export function parseVersion(v: string): ParsedVersion {
  const layout = locate(v, { start: 0, end: 0, epochEnd: -1, upstreamEnd: 0 });
  return {
    epoch: layout.epochEnd < 0 ? 0 : Number(v.slice(layout.start, layout.epochEnd)),
    upstream: v.slice(upstreamStart(layout), layout.upstreamEnd),
    revision: v.slice(revisionStart(layout), layout.end),
  };
}

/**
 * Whether dpkg would accept `v` as a version: not empty, no blanks inside, a numeric epoch no larger than
 * dpkg allows, a non-empty upstream version starting with a digit, and no empty revision after a hyphen.
 * Like dpkg, unusual characters elsewhere (which it only warns about) are accepted.
 */
export function isValidVersion(v: string): boolean {
  const layout = locate(v, { start: 0, end: 0, epochEnd: -1, upstreamEnd: 0 });
  const { start, end, epochEnd, upstreamEnd } = layout;
  if (start === end) return false;
  for (let i = start; i < end; i++) {
    if (isSpace(v.charCodeAt(i))) return false;
  }
  const colon = v.indexOf(":", start);
  if (colon >= 0 && colon !== epochEnd) return false; // empty or non-numeric epoch
  if (epochEnd >= 0 && Number(v.slice(start, epochEnd)) > MAX_EPOCH) return false;
  if (upstreamEnd === end - 1) return false; // a hyphen with nothing after it
  const first = upstreamStart(layout);
  return first < upstreamEnd && isDigit(v.charCodeAt(first));
}
