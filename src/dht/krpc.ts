/**
 * The KRPC codec: typed messages (messages.ts) ⇄ bencoded UDP datagrams, as BEP 5 frames them, with BEP 44
 * immutable items, BEP 42's `ip` and apt-p2p's `pieces`. Pure: no sockets, no clocks.
 *
 * Every datagram is hostile input, so decoding uses the strict bencode reader (bencode.ts) instead of the lenient
 * `bencode.decode` (which accepts trailing bytes, truncated strings and duplicate keys). Decoding never
 * throws; what it cannot read comes back as a DecodeFailure, with `t` and the KRPC error to answer when the
 * datagram was a query we can answer. Encoding throws (AptP2pError INTERNAL) only on a programming error,
 * such as an id that is not 20 bytes.
 *
 * Encoding uses the canonical encoder of bencode.ts, not `bencode.encode`: a BEP 44 item has to be spliced
 * into `v` as raw bencode, and its canonical form needs dictionary keys sorted as raw bytes (keys may be
 * binary) and integers beyond 2^53, neither of which `bencode.encode` handles.
 */
import { AptP2pError, ErrorCode } from "../errors.ts";
import { BencodeSyntaxError, encodeCanonical, latin1, RawBencode, readStrict, type BValue, type Encodable } from "./bencode.ts";
import { ID_BYTES, type Contact, type Endpoint } from "./id.ts";
import {
  BEP44_MAX_VALUE_BYTES,
  KRPC_ERROR_METHOD_UNKNOWN,
  KRPC_ERROR_PROTOCOL,
  MAX_PIECE_INFO_BYTES,
  type DecodeFailure,
  type Message,
  type PeerValue,
  type Query,
  type ResponseBody,
} from "./messages.ts";

/**
 * The largest datagram we read or write. BEP 5 packets are meant to fit one UDP datagram of a 1500-byte
 * MTU (see PREFERRED_DATAGRAM_BYTES), but some implementations send bigger answers (long `values` lists);
 * reading those costs little, so we accept up to 8 KiB and drop anything larger unread.
 */
export const MAX_DATAGRAM_BYTES = 8 * 1024;
/**
 * What a sender should stay under so that no path fragments the packet: a 1500-byte Ethernet MTU less
 * IPv4/IPv6 and UDP headers and some tunnel overhead. A responder should trim `values` to fit.
 */
export const PREFERRED_DATAGRAM_BYTES = 1400;
/** BEP 44: "message (v field) too big". */
export const KRPC_ERROR_VALUE_TOO_BIG = 205;
/** BEP 5 calls transaction ids short (typically 2 bytes); we accept up to this many and drop longer ones. */
export const MAX_TRANSACTION_ID_BYTES = 16;
/**
 * How many lists/dictionaries may nest. KRPC itself needs 3 (message, `r`, `values`); the rest is room
 * for a BEP 44 item, which at 1000 bytes has no reason to be deeper. Bounds the reader's recursion.
 */
export const MAX_BENCODE_DEPTH = 16;
/** An error message longer than this is cut before it is decoded as UTF-8 (it only ever reaches a log). */
export const MAX_ERROR_MESSAGE_BYTES = 512;

const utf8Decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

export const COMPACT_PEER_BYTES = 6;
export const COMPACT_NODE_BYTES = ID_BYTES + COMPACT_PEER_BYTES;

/** A dictionary from ASCII keys, leaving out the undefined fields. */
function dict(fields: Record<string, Encodable | undefined>): Map<string, Encodable> {
  const map = new Map<string, Encodable>();
  for (const [key, v] of Object.entries(fields)) if (v !== undefined) map.set(key, v);
  return map;
}

function encodingError(why: string): AptP2pError {
  return new AptP2pError(ErrorCode.Internal, `Cannot encode KRPC message: ${why}`);
}

// ---- compact addresses ------------------------------------------------------------------------------

/** The four bytes of a dotted-quad IPv4 address (also as IPv4-mapped IPv6, "::ffff:a.b.c.d"), else null. */
function ipv4Bytes(address: string): number[] | null {
  const match = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/i.exec(address);
  if (!match) return null;
  const parts = match.slice(1).map(Number);
  const canonical = match.slice(1).every((part) => String(Number(part)) === part);
  return canonical && parts.every((n) => n <= 255) ? parts : null;
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw encodingError(`${what} port ${port} is not 0-65535`);
}

function compactAddress(bytes: Uint8Array, offset: number): Endpoint {
  const b = bytes.subarray(offset, offset + COMPACT_PEER_BYTES);
  return { address: `${b[0]}.${b[1]}.${b[2]}.${b[3]}`, port: (b[4]! << 8) | b[5]! };
}

/** 6 bytes: IPv4 address and port, big-endian. Throws for a non-IPv4 address. */
export function encodeCompactPeer(peer: Endpoint): Uint8Array {
  const ip = ipv4Bytes(peer.address);
  if (!ip) throw encodingError(`${peer.address} is not an IPv4 address`);
  checkPort(peer.port, peer.address);
  return Uint8Array.of(...ip, peer.port >> 8, peer.port & 0xff);
}

export function decodeCompactPeer(bytes: Uint8Array): Endpoint | null {
  return bytes.length === COMPACT_PEER_BYTES ? compactAddress(bytes, 0) : null;
}

/** 26 bytes per contact (id, IPv4, port). Contacts without an IPv4 address are left out. */
export function encodeCompactNodes(contacts: Contact[]): Uint8Array {
  const ipv4 = contacts.filter((c) => ipv4Bytes(c.address) !== null);
  const out = new Uint8Array(ipv4.length * COMPACT_NODE_BYTES);
  ipv4.forEach((contact, i) => {
    if (contact.id.length !== ID_BYTES) throw encodingError(`node id of ${contact.id.length} bytes`);
    out.set(contact.id, i * COMPACT_NODE_BYTES);
    out.set(encodeCompactPeer(contact), i * COMPACT_NODE_BYTES + ID_BYTES);
  });
  return out;
}

/** null when the length is not a multiple of 26. */
export function decodeCompactNodes(bytes: Uint8Array): Contact[] | null {
  if (bytes.length % COMPACT_NODE_BYTES !== 0) return null;
  const contacts: Contact[] = [];
  for (let offset = 0; offset < bytes.length; offset += COMPACT_NODE_BYTES) {
    const id = new Uint8Array(bytes.subarray(offset, offset + ID_BYTES));
    contacts.push({ id, ...compactAddress(bytes, offset + ID_BYTES) });
  }
  return contacts;
}

// ---- encoding -----------------------------------------------------------------------------------------

/** Throws AptP2pError INTERNAL when the message cannot be sent as it is (a programming error). */
export function encodeMessage(message: Message): Uint8Array {
  if (message.t.length === 0 || message.t.length > MAX_TRANSACTION_ID_BYTES) {
    throw encodingError(`transaction id of ${message.t.length} bytes`);
  }
  const common = { t: message.t, v: message.version };
  let top: Map<string, Encodable>;
  switch (message.kind) {
    case "query":
      top = dict({ ...common, y: "q", q: message.query.method, a: queryArguments(message.query), ro: message.readOnly ? 1 : undefined });
      break;
    case "response": {
      const you = message.yourAddress;
      // BEP 42 `ip` is compact IPv4 here; a requester seen over IPv6 gets none.
      const ip = you && ipv4Bytes(you.address) ? encodeCompactPeer(you) : undefined;
      top = dict({ ...common, y: "r", r: responseBody(message.body), ip });
      break;
    }
    case "error":
      if (!Number.isSafeInteger(message.code)) throw encodingError(`error code ${message.code}`);
      top = dict({ ...common, y: "e", e: [message.code, message.message] });
      break;
  }
  const out = encodeCanonical(top);
  if (out.length > MAX_DATAGRAM_BYTES) throw encodingError(`${out.length} bytes is over ${MAX_DATAGRAM_BYTES}`);
  return out;
}

function checkId(id: Uint8Array, what: string): Uint8Array {
  if (id.length !== ID_BYTES) throw encodingError(`${what} of ${id.length} bytes, not ${ID_BYTES}`);
  return id;
}

function checkPieces(pieces: Uint8Array | undefined): Uint8Array | undefined {
  if (pieces && pieces.length > MAX_PIECE_INFO_BYTES) throw encodingError(`pieces of ${pieces.length} bytes`);
  return pieces && pieces.length > 0 ? pieces : undefined;
}

/** A BEP 44 item to splice in as `v`: it must be one bencoded value of at most 1000 bytes. */
function item(value: Uint8Array): RawBencode {
  if (value.length > BEP44_MAX_VALUE_BYTES) throw encodingError(`item of ${value.length} bytes`);
  try {
    readStrict(value, MAX_BENCODE_DEPTH);
  } catch (err) {
    if (err instanceof BencodeSyntaxError) throw encodingError(`item is not bencoded: ${err.message}`);
    throw err;
  }
  return new RawBencode(value);
}

function queryArguments(query: Query): Map<string, Encodable> {
  const id = checkId(query.id, "id");
  switch (query.method) {
    case "ping":
      return dict({ id });
    case "find_node":
      return dict({ id, target: checkId(query.target, "target") });
    case "get_peers":
      return dict({ id, info_hash: checkId(query.infoHash, "info_hash") });
    case "announce_peer":
      checkPort(query.port, "announced");
      return dict({
        id,
        info_hash: checkId(query.infoHash, "info_hash"),
        port: query.port,
        token: query.token,
        implied_port: query.impliedPort ? 1 : undefined,
        pieces: checkPieces(query.pieces),
      });
    case "get":
      return dict({ id, target: checkId(query.target, "target"), seq: query.seq });
    case "put":
      // A mutable put needs k, sig and seq, which Query does not carry: apt-p2p only stores immutable items.
      if (query.mutable) throw encodingError("mutable BEP 44 items are not supported");
      return dict({ id, token: query.token, v: item(query.value) });
  }
}

function responseBody(body: ResponseBody): Map<string, Encodable> {
  let values: Uint8Array[] | undefined;
  let pieces: Uint8Array[] | undefined;
  if (body.values) {
    const sendable = body.values.filter((peer) => ipv4Bytes(peer.address) !== null);
    values = sendable.map(encodeCompactPeer);
    const perPeer = sendable.map((peer) => checkPieces(peer.pieces) ?? new Uint8Array(0));
    // Only apt-p2p reads `pieces`; leave it out when no peer has any.
    if (perPeer.some((p) => p.length > 0)) pieces = perPeer;
  }
  return dict({
    id: checkId(body.id, "id"),
    nodes: body.nodes && encodeCompactNodes(body.nodes),
    values,
    pieces,
    token: body.token,
    v: body.value && item(body.value),
  });
}

// ---- decoding -----------------------------------------------------------------------------------------

/** A query or response field that is missing or wrong; `code` is the KRPC error to answer a query with. */
class InvalidField extends Error {
  constructor(
    message: string,
    readonly code: number = KRPC_ERROR_PROTOCOL,
  ) {
    super(message);
  }
}

/** A Map, not an object: a hostile method name such as "constructor" must not find anything. */
const QUERY_DECODERS = new Map<string, (a: Map<string, BValue>) => Query>(
  Object.entries({
    ping: (a) => ({ method: "ping", id: id(a, "id") }),
    find_node: (a) => ({ method: "find_node", id: id(a, "id"), target: id(a, "target") }),
    get_peers: (a) => ({ method: "get_peers", id: id(a, "id"), infoHash: id(a, "info_hash") }),
    announce_peer: (a) => {
      const impliedPort = (optionalInteger(a, "implied_port") ?? 0) !== 0;
      // BEP 5: with a non-zero implied_port "the port argument should be ignored", so a bad one is not fatal.
      const given = a.get("port");
      const usable = typeof given === "bigint" && given >= 0n && given <= 65535n;
      const port = impliedPort ? (usable ? Number(given) : 0) : integer(a, "port", 1, 65535);
      const pieces = optionalBytes(a, "pieces");
      if (pieces && pieces.length > MAX_PIECE_INFO_BYTES) {
        throw new InvalidField(`pieces of ${pieces.length} bytes is over ${MAX_PIECE_INFO_BYTES}`);
      }
      return {
        method: "announce_peer",
        id: id(a, "id"),
        infoHash: id(a, "info_hash"),
        port,
        token: bytes(a, "token"),
        impliedPort,
        ...(pieces && pieces.length > 0 ? { pieces } : {}),
      };
    },
    get: (a) => {
      const seq = optionalInteger(a, "seq", 0);
      return { method: "get", id: id(a, "id"), target: id(a, "target"), ...(seq === undefined ? {} : { seq }) };
    },
    put: (a) => {
      const v = a.get("v");
      if (v === undefined) throw new InvalidField("missing v");
      return {
        method: "put",
        id: id(a, "id"),
        token: bytes(a, "token"),
        value: itemValue(v),
        mutable: a.has("k") || a.has("sig"),
      };
    },
  } satisfies Record<Query["method"], (a: Map<string, BValue>) => Query>),
);

/** Reads one datagram. Never throws. */
export function decodeMessage(datagram: Uint8Array): Message | DecodeFailure {
  if (datagram.length > MAX_DATAGRAM_BYTES) {
    return invalid(`datagram of ${datagram.length} bytes is over ${MAX_DATAGRAM_BYTES}`);
  }
  // A plain Uint8Array, so that every byte string read from it is an independent plain copy (not a Buffer).
  const plain = new Uint8Array(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  let root: BValue;
  try {
    root = readStrict(plain, MAX_BENCODE_DEPTH);
  } catch (err) {
    if (err instanceof BencodeSyntaxError) return invalid(`not bencode: ${err.message}`);
    throw err;
  }
  if (!(root instanceof Map)) return invalid("not a dictionary");
  const t = root.get("t");
  if (!(t instanceof Uint8Array) || t.length === 0 || t.length > MAX_TRANSACTION_ID_BYTES) {
    return invalid("no transaction id t of 1-16 bytes");
  }
  const y = root.get("y");
  const kind = y instanceof Uint8Array ? utf8Decoder.decode(y) : undefined;
  if (kind !== "q" && kind !== "r" && kind !== "e") return invalid("y is not q, r or e");
  // `v` (client version) is informational: a value of the wrong type is ignored, not fatal.
  const v = root.get("v");
  const common = { t, ...(v instanceof Uint8Array ? { version: v } : {}) };
  try {
    if (kind === "q") {
      const method = root.get("q");
      if (!(method instanceof Uint8Array)) throw new InvalidField("missing q");
      const decode = QUERY_DECODERS.get(utf8Decoder.decode(method));
      if (!decode) throw new InvalidField("Method Unknown", KRPC_ERROR_METHOD_UNKNOWN);
      const args = root.get("a");
      if (!(args instanceof Map)) throw new InvalidField("missing a");
      const ro = root.get("ro");
      return { kind: "query", ...common, ...(typeof ro === "bigint" && ro !== 0n ? { readOnly: true } : {}), query: decode(args) };
    }
    if (kind === "r") {
      const r = root.get("r");
      if (!(r instanceof Map)) throw new InvalidField("missing r");
      const ip = root.get("ip");
      const yourAddress = ip instanceof Uint8Array ? decodeCompactPeer(ip) : null; // IPv6 `ip`: ignored
      return { kind: "response", ...common, ...(yourAddress ? { yourAddress } : {}), body: decodeBody(r) };
    }
    return { kind: "error", ...common, ...decodeError(root.get("e")) };
  } catch (err) {
    if (!(err instanceof InvalidField)) throw err;
    // Only queries are answered; for a response or error, `t` lets the transport fail the transaction.
    return { ...invalid(err.message), t, ...(kind === "q" ? { reply: { code: err.code, message: err.message } } : {}) };
  }
}

function invalid(reason: string): DecodeFailure {
  return { kind: "invalid", reason };
}

function decodeBody(r: Map<string, BValue>): ResponseBody {
  const body: ResponseBody = { id: id(r, "id") };
  const nodes = optionalBytes(r, "nodes");
  if (nodes) {
    body.nodes = decodeCompactNodes(nodes) ?? fieldError(`nodes of ${nodes.length} bytes is not a multiple of 26`);
  }
  const values = r.get("values");
  if (values !== undefined) {
    if (!Array.isArray(values)) throw new InvalidField("values is not a list");
    // `pieces` is apt-p2p's own list, parallel to `values`; anything else under that name is ignored.
    const piecesField = r.get("pieces");
    const pieces =
      Array.isArray(piecesField) && piecesField.every((p) => p instanceof Uint8Array) ? piecesField : [];
    const peers: PeerValue[] = [];
    values.forEach((value, i) => {
      // Odd entries (some implementations send them) are skipped, not fatal.
      const peer = value instanceof Uint8Array ? decodeCompactPeer(value) : null;
      if (!peer) return;
      const info = pieces[i];
      const ok = info instanceof Uint8Array && info.length > 0 && info.length <= MAX_PIECE_INFO_BYTES;
      peers.push(ok ? { ...peer, pieces: info } : peer);
    });
    body.values = peers;
  }
  const token = optionalBytes(r, "token");
  if (token) body.token = token;
  const v = r.get("v");
  if (v !== undefined) body.value = itemValue(v);
  return body;
}

function decodeError(e: BValue | undefined): { code: number; message: string } {
  if (!Array.isArray(e)) throw new InvalidField("e is not a list");
  const [code, message] = e;
  if (typeof code !== "bigint" || code < Number.MIN_SAFE_INTEGER || code > Number.MAX_SAFE_INTEGER) {
    throw new InvalidField("e has no integer error code");
  }
  const text = message instanceof Uint8Array ? message.subarray(0, MAX_ERROR_MESSAGE_BYTES) : new Uint8Array(0);
  return { code: Number(code), message: utf8Decoder.decode(text) };
}

/** A BEP 44 `v`, as the canonical encoding that its SHA-1 is taken of. */
function itemValue(v: BValue): Uint8Array {
  const value = encodeCanonical(v);
  if (value.length > BEP44_MAX_VALUE_BYTES) {
    throw new InvalidField("message (v field) too big.", KRPC_ERROR_VALUE_TOO_BIG);
  }
  return value;
}

function fieldError(message: string): never {
  throw new InvalidField(message);
}

function optionalBytes(dict: Map<string, BValue>, key: string): Uint8Array | undefined {
  const v = dict.get(key);
  if (v === undefined || v instanceof Uint8Array) return v;
  return fieldError(`${key} is not a byte string`);
}

function bytes(dict: Map<string, BValue>, key: string): Uint8Array {
  return optionalBytes(dict, key) ?? fieldError(`missing ${key}`);
}

function id(dict: Map<string, BValue>, key: string): Uint8Array {
  const v = bytes(dict, key);
  if (v.length !== ID_BYTES) fieldError(`${key} of ${v.length} bytes, not ${ID_BYTES}`);
  return v;
}

function optionalInteger(
  dict: Map<string, BValue>,
  key: string,
  min = Number.MIN_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const v = dict.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "bigint") return fieldError(`${key} is not an integer`);
  if (v < min || v > max) return fieldError(`${key} ${v} is not ${min}-${max}`);
  return Number(v);
}

function integer(dict: Map<string, BValue>, key: string, min?: number, max?: number): number {
  return optionalInteger(dict, key, min, max) ?? fieldError(`missing ${key}`);
}
