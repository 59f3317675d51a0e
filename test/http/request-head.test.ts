import { describe, expect, test } from "bun:test";
import { MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADER_FIELDS, parseRequestHead, type HeadResult } from "../../src/http/request-head.ts";

/** Parses `text` (latin1) from its start, as a connection that received exactly these bytes would. */
function parse(text: string): HeadResult {
  const buffer = Buffer.from(text, "latin1");
  return parseRequestHead(buffer, 0, buffer.length);
}

/** A request head of `lines` (request line first), ended by its blank line. */
const head = (...lines: string[]) => `${lines.join("\r\n")}\r\n\r\n`;

/** The parsed head, or a failed expectation naming what came back instead. */
function parsed(text: string) {
  const result = parse(text);
  if (result.kind !== "head") throw new Error(`expected a head, got ${JSON.stringify(result)}`);
  return result;
}

describe("parseRequestHead()", () => {
  test("parses a simple GET: method, target, version, fields and where the head ends", () => {
    const text = head("GET /debian/dists/bookworm/InRelease HTTP/1.1", "Host: mirror.example.org", "User-Agent: Debian APT-HTTP/1.3");
    expect(parse(text)).toEqual({
      kind: "head",
      method: "GET",
      target: "/debian/dists/bookworm/InRelease",
      version: "1.1",
      fields: [
        ["host", "mirror.example.org"],
        ["user-agent", "Debian APT-HTTP/1.3"],
      ],
      bodyBytes: 0,
      keepAlive: true,
      expectContinue: false,
      end: text.length,
    });
  });

  test("keeps an absolute-form target exactly as sent", () => {
    expect(parsed(head("GET http://mirror.example.org/debian/%2e%2e/x HTTP/1.1")).target).toBe("http://mirror.example.org/debian/%2e%2e/x");
  });

  test("splits pipelined requests: each head's end is where the next request starts", () => {
    const first = head("GET /a HTTP/1.1", "Host: x");
    const second = head("HEAD /b HTTP/1.1", "Host: x");
    const buffer = Buffer.from(first + second, "latin1");
    const a = parseRequestHead(buffer, 0, buffer.length);
    expect(a).toMatchObject({ kind: "head", method: "GET", target: "/a", end: first.length });
    const b = parseRequestHead(buffer, first.length, buffer.length);
    expect(b).toMatchObject({ kind: "head", method: "HEAD", target: "/b", end: buffer.length });
    expect(parseRequestHead(buffer, buffer.length, buffer.length)).toEqual({ kind: "incomplete" });
  });

  test("skips a body before the next pipelined request when the caller starts past it", () => {
    const first = head("POST /a HTTP/1.1", "Content-Length: 5");
    const buffer = Buffer.from(`${first}hello${head("GET /b HTTP/1.1")}`, "latin1");
    const a = parseRequestHead(buffer, 0, buffer.length);
    expect(a).toMatchObject({ kind: "head", bodyBytes: 5, end: first.length });
    expect(buffer.toString("latin1", first.length, first.length + 5)).toBe("hello");
    expect(parseRequestHead(buffer, first.length + 5, buffer.length)).toMatchObject({ kind: "head", target: "/b" });
  });

  test("reads only up to `length`, not the whole buffer", () => {
    const text = head("GET /a HTTP/1.1");
    const buffer = Buffer.from(text + "more bytes that are not there yet", "latin1");
    expect(parseRequestHead(buffer, 0, text.length - 1)).toEqual({ kind: "incomplete" });
    expect(parseRequestHead(buffer, 0, text.length)).toMatchObject({ kind: "head", end: text.length });
  });

  const incomplete: [string, string][] = [
    ["nothing yet", ""],
    ["half a request line", "GET /a HT"],
    ["a request line without its end", "GET /a HTTP/1.1\r\n"],
    ["fields without the blank line", "GET /a HTTP/1.1\r\nHost: x\r\n"],
    ["the blank line's first half", "GET /a HTTP/1.1\r\nHost: x\r\n\r"],
    ["only empty lines", "\r\n\r\n\r\n"],
    ["an empty line and a lone CR", "\r\n\r"],
  ];
  for (const [what, text] of incomplete) {
    test(`is incomplete with ${what}`, () => {
      expect(parse(text)).toEqual({ kind: "incomplete" });
    });
  }

  test("skips empty lines before the request line, and its end counts them", () => {
    const text = `\r\n\r\n${head("GET /a HTTP/1.1")}`;
    expect(parse(text)).toMatchObject({ kind: "head", method: "GET", target: "/a", end: text.length });
  });

  const keepAlive: [string, string[], boolean][] = [
    ["HTTP/1.1", [], true],
    ["HTTP/1.1", ["Connection: close"], false],
    ["HTTP/1.1", ["Connection: Close"], false],
    ["HTTP/1.1", ["Connection: foo, close"], false],
    ["HTTP/1.1", ["Connection: foo", "Connection: close"], false],
    ["HTTP/1.1", ["Connection: keep-alive"], true],
    ["HTTP/1.1", ["Connection: closed"], true],
    ["HTTP/1.0", [], false],
    ["HTTP/1.0", ["Connection: keep-alive"], true],
    ["HTTP/1.0", ["Connection: Keep-Alive"], true],
    ["HTTP/1.0", ["Connection: te,  keep-alive "], true],
    ["HTTP/1.0", ["Connection: close"], false],
    ["HTTP/1.0", ["Connection: keep-alive-ish"], false],
  ];
  for (const [version, fields, expected] of keepAlive) {
    test(`${version} with ${JSON.stringify(fields)} → keepAlive ${expected}`, () => {
      const result = parsed(head(`GET / ${version}`, ...fields));
      expect(result.version).toBe(version === "HTTP/1.1" ? "1.1" : "1.0");
      expect(result.keepAlive).toBe(expected);
    });
  }

  const bodies: [string[], number][] = [
    [[], 0],
    [["Content-Length: 0"], 0],
    [["Content-Length: 42"], 42],
    [["Content-Length:  7 "], 7],
    [["Content-Length: 12", "content-length: 12"], 12],
    [[`Content-Length: ${MAX_BODY_BYTES}`], MAX_BODY_BYTES],
  ];
  for (const [fields, bytes] of bodies) {
    test(`${JSON.stringify(fields)} → ${bytes} body bytes`, () => {
      expect(parsed(head("POST /api HTTP/1.1", ...fields)).bodyBytes).toBe(bytes);
    });
  }

  const expectContinue: [string[], boolean][] = [
    [["Expect: 100-continue", "Content-Length: 10"], true],
    [["Expect: 100-Continue", "Content-Length: 10"], true],
    [["Expect: 100-continue"], false],
    [["Expect: 100-continue", "Content-Length: 0"], false],
    [["Content-Length: 10"], false],
    [["Expect: something-else", "Content-Length: 10"], false],
  ];
  for (const [fields, expected] of expectContinue) {
    test(`${JSON.stringify(fields)} → expectContinue ${expected}`, () => {
      expect(parsed(head("POST /api HTTP/1.1", ...fields)).expectContinue).toBe(expected);
    });
  }

  test("lowercases field names, trims values, and keeps repeated fields in order", () => {
    const result = parsed(head("GET / HTTP/1.1", "X-Thing:   one  ", "ACCEPT:text/plain", "x-thing: two", "Empty:", "X-Thing:\tthree\t"));
    expect(result.fields).toEqual([
      ["x-thing", "one"],
      ["accept", "text/plain"],
      ["x-thing", "two"],
      ["empty", ""],
      ["x-thing", "three"],
    ]);
  });

  test("keeps a colon inside a field value", () => {
    expect(parsed(head("GET / HTTP/1.1", "Host: 127.0.0.1:9977")).fields).toEqual([["host", "127.0.0.1:9977"]]);
  });

  const errors: [string, string, number, string][] = [
    ["differing duplicate Content-Length", head("POST / HTTP/1.1", "Content-Length: 5", "Content-Length: 6"), 400, 'bad Content-Length "6"'],
    ["a non-digit Content-Length", head("POST / HTTP/1.1", "Content-Length: 5a"), 400, 'bad Content-Length "5a"'],
    ["a signed Content-Length", head("POST / HTTP/1.1", "Content-Length: +5"), 400, "bad Content-Length"],
    ["a list Content-Length", head("POST / HTTP/1.1", "Content-Length: 5, 5"), 400, "bad Content-Length"],
    ["an empty Content-Length", head("POST / HTTP/1.1", "Content-Length:"), 400, "bad Content-Length"],
    ["a 16-digit Content-Length", head("POST / HTTP/1.1", "Content-Length: 1234567890123456"), 400, "bad Content-Length"],
    ["Transfer-Encoding: chunked", head("POST / HTTP/1.1", "Transfer-Encoding: chunked"), 501, "Content-Length, not a Transfer-Encoding"],
    ["Transfer-Encoding beside a Content-Length", head("POST / HTTP/1.1", "Content-Length: 3", "Transfer-Encoding: chunked"), 501, "Transfer-Encoding"],
    ["any Transfer-Encoding", head("GET / HTTP/1.1", "transfer-encoding: identity"), 501, "Transfer-Encoding"],
    ["HTTP/2.0", head("GET / HTTP/2.0"), 505, "HTTP/2.0 is not supported"],
    ["HTTP/0.9's version", head("GET / HTTP/0.9"), 505, "HTTP/0.9 is not supported"],
    ["a request line of one word", head("GARBAGE"), 400, 'malformed request line "GARBAGE"'],
    ["a request line without a version", head("GET /"), 400, "malformed request line"],
    ["two spaces in the request line", head("GET  / HTTP/1.1"), 400, "malformed request line"],
    ["a lowercase protocol name", head("GET / http/1.1"), 400, "malformed request line"],
    ["a method that is not a token", head("G(E)T / HTTP/1.1"), 400, "malformed request line"],
    ["a header line without a colon", head("GET / HTTP/1.1", "Host x"), 400, 'malformed header line "Host x"'],
    ["a header line starting with a colon", head("GET / HTTP/1.1", ": x"), 400, "malformed header line"],
    ["white space before a colon", head("GET / HTTP/1.1", "Host : x"), 400, "malformed header line"],
    ["a folded continuation line (obs-fold)", head("GET / HTTP/1.1", "X-Long: a", " b"), 400, 'malformed header line " b"'],
    ["a folded line with a colon", head("GET / HTTP/1.1", "X-Long: a", "\tb: c"), 400, "malformed header line"],
  ];
  for (const [what, text, status, message] of errors) {
    test(`${what} → ${status}`, () => {
      const result = parse(text);
      expect(result).toMatchObject({ kind: "error", status });
      expect(result.kind === "error" && result.message).toContain(message);
    });
  }

  test("quotes a bad request line with its control bytes escaped", () => {
    const result = parse(head("GET /\x00\x1b[2J\x7f HTTP/1.1 x"));
    expect(result).toEqual({ kind: "error", status: 400, message: 'malformed request line "GET /\\x00\\x1b[2J\\x7f HTTP/1.1 x"' });
  });

  test("quotes at most 200 characters of a bad line", () => {
    const result = parse(head(`GET /${"a".repeat(300)}`));
    expect(result.kind === "error" && result.message).toBe(`malformed request line "GET /${"a".repeat(195)}..."`);
  });

  test(`accepts ${MAX_HEADER_FIELDS} fields and refuses one more with 431`, () => {
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-Field-${i}: ${i}`);
    expect(parsed(head("GET / HTTP/1.1", ...fields(MAX_HEADER_FIELDS))).fields.length).toBe(MAX_HEADER_FIELDS);
    expect(parse(head("GET / HTTP/1.1", ...fields(MAX_HEADER_FIELDS + 1)))).toMatchObject({ kind: "error", status: 431 });
  });

  test(`refuses a complete head over ${MAX_HEAD_BYTES} bytes with 431`, () => {
    const result = parse(head("GET / HTTP/1.1", `X-Big: ${"a".repeat(MAX_HEAD_BYTES)}`));
    expect(result).toMatchObject({ kind: "error", status: 431 });
    expect(result.kind === "error" && result.message).toContain(`over ${MAX_HEAD_BYTES} bytes`);
  });

  test(`refuses with 431 as soon as more than ${MAX_HEAD_BYTES} bytes came without a blank line`, () => {
    const start = `GET / HTTP/1.1\r\nX-Big: `;
    const atLimit = start + "a".repeat(MAX_HEAD_BYTES - start.length);
    expect(parse(atLimit)).toEqual({ kind: "incomplete" });
    expect(parse(`${atLimit}a`)).toMatchObject({ kind: "error", status: 431 });
  });

  test("counts the head limit from `start`, not from the buffer's beginning", () => {
    const before = head("GET / HTTP/1.1", `X-Big: ${"a".repeat(MAX_HEAD_BYTES - 100)}`);
    const buffer = Buffer.from(before + head("GET /next HTTP/1.1"), "latin1");
    expect(parseRequestHead(buffer, 0, buffer.length)).toMatchObject({ kind: "head", end: before.length });
    expect(parseRequestHead(buffer, before.length, buffer.length)).toMatchObject({ kind: "head", target: "/next" });
  });

  test(`refuses a body over ${MAX_BODY_BYTES} bytes with 413`, () => {
    const result = parse(head("POST / HTTP/1.1", `Content-Length: ${MAX_BODY_BYTES + 1}`));
    expect(result).toMatchObject({ kind: "error", status: 413 });
  });
});
