/**
 * The head of an HTTP/1.1 request (RFC 9112), parsed from the bytes a connection has received so far.
 * A pure function of a buffer: the server (src/http/server.ts) calls it again as bytes arrive, and each
 * complete head it returns says where the next request starts, which is how pipelined requests are split.
 */

/** Request heads larger than this are refused (431): no client of ours sends more than a few hundred bytes. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Header fields per request at most (431 past it). */
export const MAX_HEADER_FIELDS = 100;
/** Request bodies larger than this are refused (413): only the control API takes a body, a small JSON one. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface RequestHead {
  method: string;
  /** The request-target exactly as sent. */
  target: string;
  /** "1.0" or "1.1". */
  version: "1.0" | "1.1";
  /** Field names lowercased, in the order received (a repeated field appears more than once). */
  fields: Array<[name: string, value: string]>;
  /** Bytes of body that follow the head (Content-Length; 0 without one). */
  bodyBytes: number;
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean;
  /** The client sent `Expect: 100-continue` with a body. */
  expectContinue: boolean;
  /** Offset just past the head's blank line: where the body, then the next request, starts. */
  end: number;
}

export type HeadResult =
  | { kind: "incomplete" }
  /** A request that cannot be answered in kind; the connection is closed after the error response. */
  | { kind: "error"; status: number; message: string }
  | ({ kind: "head" } & RequestHead);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/;
const CRLF_CRLF = Buffer.from("\r\n\r\n");

/**
 * Parses the request head starting at `start` in `buffer` (bytes `start..length`). Empty lines before a
 * request line are skipped, as RFC 9112 section 2.2 asks of a server.
 */
export function parseRequestHead(buffer: Buffer, start: number, length: number): HeadResult {
  while (start + 1 < length && buffer[start] === 0x0d && buffer[start + 1] === 0x0a) start += 2;
  const blank = buffer.subarray(0, length).indexOf(CRLF_CRLF, start);
  if (blank < 0) {
    if (length - start > MAX_HEAD_BYTES) return error(431, `the request head is over ${MAX_HEAD_BYTES} bytes`);
    return { kind: "incomplete" };
  }
  if (blank - start > MAX_HEAD_BYTES) return error(431, `the request head is over ${MAX_HEAD_BYTES} bytes`);
  const lines = buffer.toString("latin1", start, blank).split("\r\n");
  const requestLine = REQUEST_LINE.exec(lines[0]!);
  if (requestLine === null || !TOKEN.test(requestLine[1]!)) return error(400, `malformed request line "${printable(lines[0]!)}"`);
  const [, method, target, major, minor] = requestLine as unknown as [string, string, string, string, string];
  if (major !== "1" || (minor !== "0" && minor !== "1")) return error(505, `HTTP/${major}.${minor} is not supported; use HTTP/1.1`);
  if (lines.length - 1 > MAX_HEADER_FIELDS) return error(431, `more than ${MAX_HEADER_FIELDS} header fields`);

  const fields: Array<[string, string]> = [];
  let contentLength: string | undefined;
  let connection = "";
  let expect = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    // A line starting with white space is an obsolete folded continuation, refused by RFC 9112 section 5.2.
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) return error(400, `malformed header line "${printable(line)}"`);
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    fields.push([name, value]);
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== value)) {
        return error(400, `bad Content-Length "${printable(value)}"`);
      }
      contentLength = value;
    } else if (name === "transfer-encoding") {
      // Chunked request bodies are never needed here, and a request with both framings is how requests
      // are smuggled: refuse rather than guess where this one ends.
      return error(501, "request bodies must be sent with a Content-Length, not a Transfer-Encoding");
    } else if (name === "connection") {
      connection += `,${value.toLowerCase()}`;
    } else if (name === "expect") {
      expect = value.toLowerCase();
    }
  }
  const bodyBytes = contentLength === undefined ? 0 : Number(contentLength);
  if (bodyBytes > MAX_BODY_BYTES) return error(413, `the request body is over ${MAX_BODY_BYTES} bytes`);
  const tokens = connection.split(",").map((t) => t.trim());
  const version = minor === "1" ? "1.1" : "1.0";
  return {
    kind: "head",
    method,
    target,
    version,
    fields,
    bodyBytes,
    keepAlive: version === "1.1" ? !tokens.includes("close") : tokens.includes("keep-alive"),
    expectContinue: expect === "100-continue" && bodyBytes > 0,
    end: blank + 4,
  };
}

function error(status: number, message: string): HeadResult {
  return { kind: "error", status, message };
}

/** A line of a request as it may be quoted in an error message: control bytes escaped, at most 200 characters. */
function printable(text: string): string {
  const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  return shown.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
