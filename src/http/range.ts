/** Parsing of HTTP Range headers (RFC 9110 §14), for one range; pure. */

export type RangeResult =
  /** Serve the whole file (no header, or a header we do not honour, such as several ranges). */
  | { kind: "full" }
  /** Serve bytes start..end inclusive with 206. */
  | { kind: "range"; start: number; end: number }
  /** Answer 416 with Content-Range: bytes *\/size. */
  | { kind: "unsatisfiable" };

export function parseRange(header: string | null | undefined, size: number): RangeResult {
  if (header === null || header === undefined) return { kind: "full" };
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (match === null) return { kind: "full" }; // Malformed or multi-range: ignoring Range is allowed.
  const [, first = "", last = ""] = match;
  if (first === "" && last === "") return { kind: "full" };
  if (first === "") {
    // Suffix range: the last N bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "range", start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(first);
  if (start >= size) return { kind: "unsatisfiable" };
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (end < start) return { kind: "full" }; // An invalid range-spec is ignored, per RFC 9110.
  return { kind: "range", start, end };
}

/** The Content-Range value answering `result`: "bytes START-END/SIZE" for a 206, "bytes *\/SIZE" for a 416. */
export function contentRange(result: Exclude<RangeResult, { kind: "full" }>, size: number): string {
  return result.kind === "range" ? `bytes ${result.start}-${result.end}/${size}` : `bytes */${size}`;
}
