/**
 * Bencode for hostile input: a strict reader (one value spanning the whole buffer; no trailing bytes,
 * truncation, leading zeros, "-0", non-string or duplicate keys; bounded nesting) and a canonical writer
 * (dictionary keys sorted as raw bytes, integers of any size, raw values spliced in). The `bencode`
 * package's decoder is lenient on all of these, and its encoder cannot sort binary keys, which BEP 44
 * items need for their hash. Pure.
 */

/** A bencoded value as read: integers as bigint, dictionaries keyed by their raw key bytes as latin1. */
export type BValue = bigint | Uint8Array | BValue[] | Map<string, BValue>;

export class BencodeSyntaxError extends Error {}

const CH_I = 0x69;
const CH_L = 0x6c;
const CH_D = 0x64;
const CH_E = 0x65;
const CH_COLON = 0x3a;
const CH_MINUS = 0x2d;
const CH_0 = 0x30;
const CH_9 = 0x39;

/**
 * Reads exactly one bencoded value spanning all of `bytes`. Rejects trailing bytes, truncation, leading
 * zeros, "-0", non-string keys, duplicate keys and nesting beyond maxDepth. Keys out of sort order
 * are accepted: some implementations write them so, and nothing here depends on the order.
 */
export function readStrict(bytes: Uint8Array, maxDepth: number): BValue {
  let pos = 0;
  const fail = (why: string): never => {
    throw new BencodeSyntaxError(`${why} at byte ${pos}`);
  };
  const isDigit = (c: number | undefined): boolean => c !== undefined && c >= CH_0 && c <= CH_9;

  function integer(): bigint {
    pos++; // 'i'
    const start = pos;
    if (bytes[pos] === CH_MINUS) pos++;
    const digitsStart = pos;
    while (isDigit(bytes[pos])) pos++;
    if (pos === digitsStart) fail("integer without digits");
    if (bytes[pos] !== CH_E) fail(bytes[pos] === undefined ? "truncated integer" : "bad byte in integer");
    if (bytes[digitsStart] === CH_0 && pos - digitsStart > 1) fail("integer with a leading zero");
    if (bytes[digitsStart] === CH_0 && digitsStart > start) fail("negative zero");
    const value = BigInt(String.fromCharCode(...bytes.subarray(start, pos)));
    pos++; // 'e'
    return value;
  }

  function string(): Uint8Array {
    const digitsStart = pos;
    let length = 0;
    while (isDigit(bytes[pos])) {
      length = length * 10 + (bytes[pos]! - CH_0);
      if (length > bytes.length) fail("string longer than the datagram");
      pos++;
    }
    if (bytes[digitsStart] === CH_0 && pos - digitsStart > 1) fail("string length with a leading zero");
    if (bytes[pos] !== CH_COLON) fail("string length without ':'");
    pos++;
    if (pos + length > bytes.length) fail("truncated string");
    const value = bytes.slice(pos, pos + length);
    pos += length;
    return value;
  }

  function value(depth: number): BValue {
    const c = bytes[pos];
    if (c === undefined) return fail("truncated value");
    if (c === CH_I) return integer();
    if (isDigit(c)) return string();
    if (c !== CH_L && c !== CH_D) return fail(`unexpected byte 0x${c.toString(16)}`);
    if (depth >= maxDepth) fail(`nested deeper than ${maxDepth}`);
    pos++;
    if (c === CH_L) {
      const list: BValue[] = [];
      while (bytes[pos] !== CH_E) list.push(value(depth + 1));
      pos++;
      return list;
    }
    const dict = new Map<string, BValue>();
    while (bytes[pos] !== CH_E) {
      if (bytes[pos] === undefined) fail("truncated dictionary");
      if (!isDigit(bytes[pos])) fail("dictionary key is not a string");
      const key = latin1(string());
      if (dict.has(key)) fail(`duplicate dictionary key ${JSON.stringify(key)}`);
      dict.set(key, value(depth + 1));
    }
    pos++;
    return dict;
  }

  const result = value(0);
  if (pos !== bytes.length) fail("trailing bytes after the value");
  return result;
}

/** Writes a raw, already bencoded value in place (a BEP 44 item). */
export class RawBencode {
  constructor(readonly bytes: Uint8Array) {}
}
export type Encodable = bigint | number | string | Uint8Array | RawBencode | Encodable[] | Map<string, Encodable>;

const utf8Encoder = new TextEncoder();

/** Canonical bencode: dictionary keys (latin1 strings of raw bytes) sorted bytewise. */
export function encodeCanonical(value: Encodable): Uint8Array {
  const chunks: Uint8Array[] = [];
  const ascii = (text: string): void => void chunks.push(utf8Encoder.encode(text));
  const write = (v: Encodable): void => {
    if (v instanceof Uint8Array) {
      ascii(`${v.length}:`);
      chunks.push(v);
    } else if (v instanceof RawBencode) {
      chunks.push(v.bytes);
    } else if (typeof v === "string") {
      write(utf8Encoder.encode(v));
    } else if (typeof v === "number" || typeof v === "bigint") {
      if (typeof v === "number" && !Number.isSafeInteger(v)) throw new RangeError(`bencode: ${v} is not an integer`);
      ascii(`i${v}e`);
    } else if (Array.isArray(v)) {
      ascii("l");
      v.forEach(write);
      ascii("e");
    } else {
      ascii("d");
      for (const key of [...v.keys()].sort()) {
        write(latin1Bytes(key));
        write(v.get(key)!);
      }
      ascii("e");
    }
  };
  write(value);
  return new Uint8Array(Bun.concatArrayBuffers(chunks));
}

export function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return text;
}

export function latin1Bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (ch) => ch.charCodeAt(0));
}

