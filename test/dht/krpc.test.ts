import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import bencode from "bencode";
import type { Contact } from "../../src/dht/id.ts";
import {
  MAX_BENCODE_DEPTH,
  MAX_DATAGRAM_BYTES,
  KRPC_ERROR_VALUE_TOO_BIG,
  decodeCompactNodes,
  decodeCompactPeer,
  decodeMessage,
  encodeCompactNodes,
  encodeCompactPeer,
  encodeMessage,
} from "../../src/dht/krpc.ts";
import {
  BEP44_MAX_VALUE_BYTES,
  KRPC_ERROR_METHOD_UNKNOWN,
  KRPC_ERROR_PROTOCOL,
  MAX_PIECE_INFO_BYTES,
  type DecodeFailure,
  type Message,
} from "../../src/dht/messages.ts";
import { mulberry32 } from "../helpers/random.ts";

/** Bytes from a string of byte values (latin1), for hand-written bencode. */
const raw = (text: string): Uint8Array => Uint8Array.from(text, (ch) => ch.charCodeAt(0));
const latin1 = (bytes: Uint8Array): string => String.fromCharCode(...bytes);
const fill = (byte: number, length = 20): Uint8Array => new Uint8Array(length).fill(byte);
const sha1 = (bytes: Uint8Array): Uint8Array => new Uint8Array(createHash("sha1").update(bytes).digest());

const ID = fill(0x41); // "AAAA…", so that hand-written datagrams stay readable
const ID_TEXT = "A".repeat(20);
const OTHER = fill(0x42);
const T = raw("aa");
const token = raw("tok1");

function failure(result: Message | DecodeFailure): DecodeFailure {
  if (result.kind !== "invalid") throw new Error(`expected a DecodeFailure, got a ${result.kind}`);
  return result;
}

const contacts: Contact[] = [
  { id: fill(1), address: "127.0.0.1", port: 6881 },
  { id: fill(2), address: "10.0.0.2", port: 65535 },
  { id: fill(3), address: "0.0.0.0", port: 0 },
];

const roundTrips: [string, Message][] = [
  ["ping", { kind: "query", t: T, query: { method: "ping", id: ID } }],
  ["ping with a client version", { kind: "query", t: raw("\x00\xff"), version: raw("AP\x00\x01"), query: { method: "ping", id: ID } }],
  ["find_node", { kind: "query", t: T, query: { method: "find_node", id: ID, target: OTHER } }],
  ["get_peers", { kind: "query", t: raw("t"), query: { method: "get_peers", id: ID, infoHash: OTHER } }],
  [
    "announce_peer",
    {
      kind: "query",
      t: T,
      query: { method: "announce_peer", id: ID, infoHash: OTHER, port: 9977, token, impliedPort: false },
    },
  ],
  [
    "announce_peer with implied_port and pieces",
    {
      kind: "query",
      t: fill(7, 16),
      query: {
        method: "announce_peer",
        id: ID,
        infoHash: OTHER,
        port: 0,
        token,
        impliedPort: true,
        pieces: fill(9, MAX_PIECE_INFO_BYTES),
      },
    },
  ],
  ["get", { kind: "query", t: T, query: { method: "get", id: ID, target: OTHER } }],
  ["get with seq", { kind: "query", t: T, query: { method: "get", id: ID, target: OTHER, seq: 42 } }],
  [
    "put",
    { kind: "query", t: T, query: { method: "put", id: ID, token, value: raw("d1:ai1e1:bl1:xee"), mutable: false } },
  ],
  ["response with only an id", { kind: "response", t: T, body: { id: ID } }],
  [
    "find_node response with nodes, ip and version",
    {
      kind: "response",
      t: T,
      version: raw("LT\x01\x02"),
      yourAddress: { address: "192.168.1.20", port: 40000 },
      body: { id: ID, nodes: contacts },
    },
  ],
  ["response with empty nodes", { kind: "response", t: T, body: { id: ID, nodes: [] } }],
  [
    "get_peers response with values, some with pieces",
    {
      kind: "response",
      t: T,
      body: {
        id: ID,
        token,
        values: [
          { address: "127.0.0.1", port: 9977, pieces: fill(5, 64) },
          { address: "10.1.2.3", port: 1 },
        ],
        nodes: contacts.slice(0, 1),
      },
    },
  ],
  [
    "get_peers response with values without pieces",
    { kind: "response", t: T, body: { id: ID, token, values: [{ address: "127.0.0.1", port: 9977 }] } },
  ],
  ["get response with an item", { kind: "response", t: T, body: { id: ID, token, value: raw("5:hello") } }],
  ["error", { kind: "error", t: T, code: 201, message: "A Generic Error Ocurred" }],
  ["error with a UTF-8 message", { kind: "error", t: T, version: raw("UT"), code: 203, message: "mauvais jeton ✗" }],
];

describe("encodeMessage() / decodeMessage() round trips", () => {
  test.each(roundTrips)("%s", (_name, message) => {
    expect(decodeMessage(encodeMessage(message))).toStrictEqual(message);
  });

  test("decodeMessage() reads a Buffer into plain Uint8Arrays", () => {
    const decoded = decodeMessage(Buffer.from(encodeMessage(roundTrips[0]![1])));
    expect(decoded).toStrictEqual(roundTrips[0]![1]);
  });
});

describe("encodeMessage() writes what BEP 5 names", () => {
  test("a get_peers query as bencode.decode reads it", () => {
    const bytes = encodeMessage({ kind: "query", t: T, query: { method: "get_peers", id: ID, infoHash: OTHER } });
    expect(latin1(bytes)).toBe(`d1:ad2:id20:${ID_TEXT}9:info_hash20:${"B".repeat(20)}e1:q9:get_peers1:t2:aa1:y1:qe`);
    const plain = bencode.decode(bytes) as Record<string, unknown>;
    expect(Object.keys(plain).sort()).toEqual(["a", "q", "t", "y"]);
  });

  test("an announce_peer query: port always, implied_port only when set, pieces only when non-empty", () => {
    const query = { method: "announce_peer", id: ID, infoHash: OTHER, port: 0, token, impliedPort: true } as const;
    const a = (bencode.decode(encodeMessage({ kind: "query", t: T, query })) as { a: Record<string, unknown> }).a;
    expect(Object.keys(a).sort()).toEqual(["id", "implied_port", "info_hash", "port", "token"]);
    expect(a.implied_port).toBe(1);
    const plain = { ...query, port: 6881, impliedPort: false, pieces: new Uint8Array(0) };
    const b = (bencode.decode(encodeMessage({ kind: "query", t: T, query: plain })) as { a: Record<string, unknown> }).a;
    expect(Object.keys(b).sort()).toEqual(["id", "info_hash", "port", "token"]);
  });

  test("a get_peers response writes a parallel pieces list only when some value has pieces", () => {
    const values = [
      { address: "127.0.0.1", port: 1 },
      { address: "::1", port: 2 }, // not IPv4: left out, with its pieces
      { address: "127.0.0.3", port: 3, pieces: raw("ph") },
    ];
    const bytes = encodeMessage({ kind: "response", t: T, body: { id: ID, values } });
    const r = (bencode.decode(bytes) as { r: Record<string, Uint8Array[]> }).r;
    expect(r.values!.map((v) => [...v])).toEqual([
      [127, 0, 0, 1, 0, 1],
      [127, 0, 0, 3, 0, 3],
    ]);
    expect(r.pieces!.map(latin1)).toEqual(["", "ph"]);
    const none = encodeMessage({ kind: "response", t: T, body: { id: ID, values: values.slice(0, 1) } });
    expect(Object.keys((bencode.decode(none) as { r: object }).r).sort()).toEqual(["id", "values"]);
  });

  test("an error as [code, message]", () => {
    const plain = bencode.decode(encodeMessage({ kind: "error", t: T, code: 204, message: "Method Unknown" })) as {
      e: [number, Uint8Array];
    };
    expect(plain.e[0]).toBe(204);
    expect(latin1(plain.e[1])).toBe("Method Unknown");
  });

  test("a put splices the item itself into v, and its SHA-1 is the target", () => {
    const item = { seq: 1, hashes: fill(0xcc, 64) };
    const value = bencode.encode(item);
    const target = sha1(value);
    const bytes = encodeMessage({ kind: "query", t: T, query: { method: "put", id: ID, token, value, mutable: false } });
    expect(latin1(bytes)).toContain(`1:v${latin1(value)}e`);
    const a = (bencode.decode(bytes) as { a: { v: unknown } }).a;
    expect(sha1(bencode.encode(a.v))).toEqual(target);

    const response = encodeMessage({ kind: "response", t: T, body: { id: ID, value } });
    expect(latin1(response)).toContain(`1:v${latin1(value)}e`);
    const decoded = decodeMessage(response);
    if (decoded.kind !== "response") throw new Error("not a response");
    expect(decoded.body.value).toEqual(value);
    expect(sha1(decoded.body.value!)).toEqual(target);
  });

  test.each([
    ["an id of 19 bytes", { kind: "query", t: T, query: { method: "ping", id: fill(1, 19) } }],
    ["an empty transaction id", { kind: "query", t: new Uint8Array(0), query: { method: "ping", id: ID } }],
    ["a port of 65536", { kind: "query", t: T, query: { method: "announce_peer", id: ID, infoHash: ID, port: 65536, token, impliedPort: false } }],
    ["a value that is not bencode", { kind: "response", t: T, body: { id: ID, value: raw("5:abc") } }],
    ["a mutable put", { kind: "query", t: T, query: { method: "put", id: ID, token, value: raw("i1e"), mutable: true } }],
    ["a datagram over the limit", { kind: "query", t: T, version: fill(1, MAX_DATAGRAM_BYTES), query: { method: "ping", id: ID } }],
  ] as [string, Message][])("throws on %s", (_name, message) => {
    expect(() => encodeMessage(message)).toThrow(/Cannot encode KRPC message/);
  });
});

describe("decodeMessage() of datagrams as other implementations write them", () => {
  const cases: [string, string, Message][] = [
    [
      "ping with extra top-level and argument keys (ro: BEP 43 read-only)",
      `d1:ad2:id20:${ID_TEXT}4:wantl2:n4ee1:q4:ping2:roi1e1:t2:aa1:v4:UT\xab\xcd1:y1:qe`,
      { kind: "query", t: T, version: raw("UT\xab\xcd"), readOnly: true, query: { method: "ping", id: ID } },
    ],
    [
      "announce_peer with implied_port and no port",
      `d1:ad2:id20:${ID_TEXT}12:implied_porti1e9:info_hash20:${ID_TEXT}5:token4:tok1e1:q13:announce_peer1:t2:aa1:y1:qe`,
      { kind: "query", t: T, query: { method: "announce_peer", id: ID, infoHash: ID, port: 0, token, impliedPort: true } },
    ],
    [
      "announce_peer with implied_port and a port that is not a number: port ignored",
      `d1:ad2:id20:${ID_TEXT}12:implied_porti1e9:info_hash20:${ID_TEXT}4:port4:99775:token4:tok1e1:q13:announce_peer1:t2:aa1:y1:qe`,
      { kind: "query", t: T, query: { method: "announce_peer", id: ID, infoHash: ID, port: 0, token, impliedPort: true } },
    ],
    [
      "announce_peer with implied_port 0 and an empty pieces string",
      `d1:ad2:id20:${ID_TEXT}12:implied_porti0e9:info_hash20:${ID_TEXT}6:pieces0:4:porti80e5:token4:tok1e1:q13:announce_peer1:t2:aa1:y1:qe`,
      { kind: "query", t: T, query: { method: "announce_peer", id: ID, infoHash: ID, port: 80, token, impliedPort: false } },
    ],
    [
      "put with an unsorted item: value is its canonical encoding",
      `d1:ad2:id20:${ID_TEXT}5:token4:tok11:vd1:bi-7e1:a0:ee1:q3:put1:t2:aa1:y1:qe`,
      { kind: "query", t: T, query: { method: "put", id: ID, token, value: raw("d1:a0:1:bi-7ee"), mutable: false } },
    ],
    [
      "mutable put",
      `d1:ad2:id20:${ID_TEXT}1:k32:${"k".repeat(32)}3:seqi1e3:sig64:${"s".repeat(64)}5:token4:tok11:v1:xe1:q3:put1:t2:aa1:y1:qe`,
      { kind: "query", t: T, query: { method: "put", id: ID, token, value: raw("1:x"), mutable: true } },
    ],
    [
      "get_peers response skipping odd values, with nodes6 and IPv6 ip ignored",
      `d2:ip18:${"\x00".repeat(18)}1:rd2:id20:${ID_TEXT}6:nodes60:5:token4:tok16:valuesl3:abc6:\x7f\x00\x00\x01\x1a\xe1i5e6:\x0a\x00\x00\x01\x00\x50ee1:t2:aa1:y1:re`,
      {
        kind: "response",
        t: T,
        body: { id: ID, token, values: [{ address: "127.0.0.1", port: 6881 }, { address: "10.0.0.1", port: 80 }] },
      },
    ],
    [
      "get_peers response with pieces parallel to values (by original index)",
      `d1:rd2:id20:${ID_TEXT}6:piecesl1:x0:2:p2e6:valuesl3:bad6:\x7f\x00\x00\x01\x00\x016:\x7f\x00\x00\x02\x00\x02ee1:t2:aa1:y1:re`,
      {
        kind: "response",
        t: T,
        body: { id: ID, values: [{ address: "127.0.0.1", port: 1 }, { address: "127.0.0.2", port: 2, pieces: raw("p2") }] },
      },
    ],
    [
      "get_peers response whose pieces is not a list of strings",
      `d1:rd2:id20:${ID_TEXT}6:piecesli1ee6:valuesl6:\x7f\x00\x00\x01\x00\x01ee1:t2:aa1:y1:re`,
      { kind: "response", t: T, body: { id: ID, values: [{ address: "127.0.0.1", port: 1 }] } },
    ],
    [
      "response with a BEP 42 ip",
      `d2:ip6:\x7f\x00\x00\x01\xff\xff1:rd2:id20:${ID_TEXT}e1:t2:aa1:y1:re`,
      { kind: "response", t: T, yourAddress: { address: "127.0.0.1", port: 65535 }, body: { id: ID } },
    ],
    [
      "error with invalid UTF-8, decoded leniently",
      "d1:eli202e3:ok\xffe1:t2:aa1:y1:ee",
      { kind: "error", t: T, code: 202, message: "ok\ufffd" },
    ],
    [
      "error without a message",
      "d1:eli201ee1:t2:aa1:v0:1:y1:ee",
      { kind: "error", t: T, version: new Uint8Array(0), code: 201, message: "" },
    ],
    [
      "version of the wrong type, ignored",
      `d1:rd2:id20:${ID_TEXT}e1:t2:aa1:vi1e1:y1:re`,
      { kind: "response", t: T, body: { id: ID } },
    ],
  ];
  test.each(cases)("%s", (_name, datagram, expected) => {
    expect(decodeMessage(raw(datagram))).toStrictEqual(expected);
  });
});

describe("decodeMessage() rejects a query with the KRPC error to answer", () => {
  const query = (q: string, args: string): string => `d1:ad${args}e1:q${q.length}:${q}1:t2:aa1:y1:qe`;
  const id = `2:id20:${ID_TEXT}`;
  const ih = `9:info_hash20:${ID_TEXT}`;
  const v = (length: number): string => `1:v${length}:${"x".repeat(length)}`;
  const cases: [string, string, number][] = [
    ["an unknown method", query("vote", id), KRPC_ERROR_METHOD_UNKNOWN],
    ["a method named like an Object property", query("constructor", id), KRPC_ERROR_METHOD_UNKNOWN],
    ["a missing id", query("ping", ""), KRPC_ERROR_PROTOCOL],
    ["an id of 19 bytes", query("ping", `2:id19:${"A".repeat(19)}`), KRPC_ERROR_PROTOCOL],
    ["an id that is an integer", query("ping", "2:idi1e"), KRPC_ERROR_PROTOCOL],
    ["a missing a", "d1:q4:ping1:t2:aa1:y1:qe", KRPC_ERROR_PROTOCOL],
    ["a that is a list", "d1:ale1:q4:ping1:t2:aa1:y1:qe", KRPC_ERROR_PROTOCOL],
    ["a missing q", `d1:ad${id}e1:t2:aa1:y1:qe`, KRPC_ERROR_PROTOCOL],
    ["find_node without target", query("find_node", id), KRPC_ERROR_PROTOCOL],
    ["get_peers without info_hash", query("get_peers", id), KRPC_ERROR_PROTOCOL],
    ["announce_peer with a string port", query("announce_peer", `${id}${ih}4:port4:99775:token1:x`), KRPC_ERROR_PROTOCOL],
    ["announce_peer without port", query("announce_peer", `${id}${ih}5:token1:x`), KRPC_ERROR_PROTOCOL],
    ["announce_peer with port 0", query("announce_peer", `${id}${ih}4:porti0e5:token1:x`), KRPC_ERROR_PROTOCOL],
    ["announce_peer with port 65536", query("announce_peer", `${id}${ih}4:porti65536e5:token1:x`), KRPC_ERROR_PROTOCOL],
    ["announce_peer without token", query("announce_peer", `${id}${ih}4:porti1e`), KRPC_ERROR_PROTOCOL],
    [
      "announce_peer with pieces over the limit",
      query("announce_peer", `${id}${ih}6:pieces${MAX_PIECE_INFO_BYTES + 1}:${"p".repeat(MAX_PIECE_INFO_BYTES + 1)}4:porti1e5:token1:x`),
      KRPC_ERROR_PROTOCOL,
    ],
    ["get with a negative seq", query("get", `${id}3:seqi-1e6:target20:${ID_TEXT}`), KRPC_ERROR_PROTOCOL],
    ["put without v", query("put", `${id}5:token1:x`), KRPC_ERROR_PROTOCOL],
    ["put with v over 1000 bytes", query("put", `${id}5:token1:x${v(BEP44_MAX_VALUE_BYTES - 3)}`), KRPC_ERROR_VALUE_TOO_BIG],
  ];
  test.each(cases)("%s", (_name, datagram, code) => {
    const result = failure(decodeMessage(raw(datagram)));
    expect(result.t).toEqual(T);
    expect(result.reply?.code).toBe(code);
    expect(result.reply?.message.length).toBeGreaterThan(0);
  });

  test("unknown method answers 204 Method Unknown; v of exactly 1000 bytes is accepted", () => {
    expect(failure(decodeMessage(raw(query("vote", id)))).reply).toEqual({ code: 204, message: "Method Unknown" });
    const put = decodeMessage(raw(query("put", `${id}5:token1:x${v(BEP44_MAX_VALUE_BYTES - 4)}`)));
    expect(put.kind === "query" && put.query.method === "put" && put.query.value.length).toBe(BEP44_MAX_VALUE_BYTES);
  });
});

describe("decodeMessage() fails a response or error without a reply", () => {
  test.each([
    ["response without r", "d1:t2:aa1:y1:re"],
    ["response without id", "d1:rd5:token1:xe1:t2:aa1:y1:re"],
    ["nodes not a multiple of 26", `d1:rd2:id20:${ID_TEXT}5:nodes27:${"n".repeat(27)}e1:t2:aa1:y1:re`],
    ["values not a list", `d1:rd2:id20:${ID_TEXT}6:values6:\x7f\x00\x00\x01\x00\x01e1:t2:aa1:y1:re`],
    ["token an integer", `d1:rd2:id20:${ID_TEXT}5:tokeni1ee1:t2:aa1:y1:re`],
    ["error not a list", "d1:e3:bad1:t2:aa1:y1:ee"],
    ["error code a string", "d1:el3:2013:bade1:t2:aa1:y1:ee"],
  ])("%s", (_name, datagram) => {
    const result = failure(decodeMessage(raw(datagram)));
    expect(result.t).toEqual(T);
    expect(result.reply).toBeUndefined();
  });
});

describe("decodeMessage() drops what has no readable t or y", () => {
  const ping = `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:t2:aa1:y1:qe`;
  test.each([
    ["empty input", ""],
    ["random bytes", "\x8f\x00\x13garbage\xff"],
    ["an integer", "i1e"],
    ["a list", "l1:t2:aae"],
    ["a missing t", `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:y1:qe`],
    ["an empty t", `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:t0:1:y1:qe`],
    ["a t of 17 bytes", `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:t17:${"t".repeat(17)}1:y1:qe`],
    ["a t that is an integer", `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:ti1e1:y1:qe`],
    ["a missing y", `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:t2:aae`],
    ["y not q, r or e", `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:t2:aa1:y1:xe`],
    ["y a list", `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:t2:aa1:yl1:qee`],
    ["a datagram over MAX_DATAGRAM_BYTES", ping.replace("1:q4:", `1:v${MAX_DATAGRAM_BYTES}:${"v".repeat(MAX_DATAGRAM_BYTES)}1:q4:`)],
  ])("%s", (_name, datagram) => {
    const result = failure(decodeMessage(raw(datagram)));
    expect(result.t).toBeUndefined();
    expect(result.reply).toBeUndefined();
  });
});

describe("decodeMessage() reads bencode strictly", () => {
  const ping = (extra: string): string => `d1:ad2:id20:${ID_TEXT}e1:q4:ping1:t2:aa${extra}1:y1:qe`;
  const nested = (depth: number): string => "l".repeat(depth) + "e".repeat(depth);

  test("the well-formed control case decodes", () => {
    expect(decodeMessage(raw(ping("1:xi-12e"))).kind).toBe("query");
  });

  test.each([
    ["trailing garbage", ping("") + "x"],
    ["a second value after the dictionary", ping("") + "i1e"],
    ["a truncated string", ping("").slice(0, -1) + "1:z5:abc"],
    ["a truncated dictionary", ping("").slice(0, -1)],
    ["a string length beyond the datagram", ping("1:x99999999999999999999:")],
    ["a leading zero in a string length", ping("").replace("1:t2:aa", "1:t02:aa")],
    ["a leading zero in an integer", ping("1:xi01e")],
    ["negative zero", ping("1:xi-0e")],
    ["an integer without digits", ping("1:xie")],
    ["a minus without digits", ping("1:xi-e")],
    ["a plus sign", ping("1:xi+1e")],
    ["a non-string dictionary key", ping("i1e1:x")],
    ["a duplicate key (rejected, not last-wins)", ping("1:t2:bb")],
    ["a string length without a colon", ping("1:x3")],
    ["an unknown type byte", ping("1:xz")],
    [`nesting deeper than ${MAX_BENCODE_DEPTH}`, ping(`1:x${nested(MAX_BENCODE_DEPTH)}`)],
  ])("rejects %s", (_name, datagram) => {
    expect(decodeMessage(raw(datagram)).kind).toBe("invalid");
  });

  test("accepts nesting up to the limit, dictionary keys out of order, and zero", () => {
    expect(decodeMessage(raw(ping(`1:x${nested(MAX_BENCODE_DEPTH - 1)}`))).kind).toBe("query");
    expect(decodeMessage(raw(`d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:${ID_TEXT}e1:xi0ee`))).toStrictEqual({
      kind: "query",
      t: T,
      query: { method: "ping", id: ID },
    });
  });

  test("reads integers beyond 2^53 in ignored fields, and refuses them where a number is needed", () => {
    expect(decodeMessage(raw(ping("1:xi123456789012345678901234567890e"))).kind).toBe("query");
    const get = `d1:ad2:id20:${ID_TEXT}3:seqi9007199254740992e6:target20:${ID_TEXT}e1:q3:get1:t2:aa1:y1:qe`;
    expect(failure(decodeMessage(raw(get))).reply?.code).toBe(KRPC_ERROR_PROTOCOL);
  });
});

describe("compact encodings", () => {
  test.each([
    ["127.0.0.1", 0, [127, 0, 0, 1, 0, 0]],
    ["255.255.255.255", 65535, [255, 255, 255, 255, 255, 255]],
    ["0.0.0.0", 6881, [0, 0, 0, 0, 0x1a, 0xe1]],
    ["::ffff:10.0.0.1", 256, [10, 0, 0, 1, 1, 0]],
  ] as [string, number, number[]][])("encodeCompactPeer(%s:%d)", (address, port, expected) => {
    const bytes = encodeCompactPeer({ address, port });
    expect([...bytes]).toEqual(expected);
    expect(decodeCompactPeer(bytes)).toEqual({ address: address.replace("::ffff:", ""), port });
  });

  test.each([
    ["::1", 1],
    ["256.0.0.1", 1],
    ["01.2.3.4", 1],
    ["1.2.3", 1],
    ["127.0.0.1", 65536],
    ["127.0.0.1", -1],
    ["127.0.0.1", 1.5],
  ] as [string, number][])("encodeCompactPeer(%s:%d) throws", (address, port) => {
    expect(() => encodeCompactPeer({ address, port })).toThrow(/Cannot encode/);
  });

  test("decodeCompactPeer() wants exactly 6 bytes", () => {
    expect(decodeCompactPeer(new Uint8Array(5))).toBeNull();
    expect(decodeCompactPeer(new Uint8Array(7))).toBeNull();
  });

  test("encodeCompactNodes() writes 26 bytes per IPv4 contact and leaves out the others", () => {
    const bytes = encodeCompactNodes([...contacts, { id: fill(4), address: "::1", port: 1 }]);
    expect(bytes.length).toBe(26 * contacts.length);
    expect([...bytes.subarray(26, 52)]).toEqual([...fill(2), 10, 0, 0, 2, 255, 255]);
    expect(decodeCompactNodes(bytes)).toEqual(contacts);
  });

  test("decodeCompactNodes() refuses a length that is not a multiple of 26, and reads none from nothing", () => {
    expect(decodeCompactNodes(new Uint8Array(25))).toBeNull();
    expect(decodeCompactNodes(new Uint8Array(53))).toBeNull();
    expect(decodeCompactNodes(new Uint8Array(0))).toEqual([]);
  });

  test("encodeCompactNodes() throws on an id that is not 20 bytes", () => {
    expect(() => encodeCompactNodes([{ id: fill(1, 19), address: "127.0.0.1", port: 1 }])).toThrow(/Cannot encode/);
  });
});

describe("interoperability with bittorrent-dht / k-rpc", () => {
  // k-rpc-socket sends bencode.encode of plain objects with a 2-byte Buffer t (k-rpc-socket/index.js).
  const t = Buffer.from([0x01, 0x02]);
  const id = Buffer.from(ID);
  const hash = Buffer.from(OTHER);

  test.each([
    ["ping", { t, y: "q", q: "ping", a: { id } }, { method: "ping", id: ID }],
    ["find_node", { t, y: "q", q: "find_node", a: { id, target: hash } }, { method: "find_node", id: ID, target: OTHER }],
    ["get_peers", { t, y: "q", q: "get_peers", a: { id, info_hash: hash } }, { method: "get_peers", id: ID, infoHash: OTHER }],
    [
      "announce_peer",
      { t, y: "q", q: "announce_peer", a: { id, info_hash: hash, port: 6881, token: Buffer.from("tok1"), implied_port: 0 } },
      { method: "announce_peer", id: ID, infoHash: OTHER, port: 6881, token, impliedPort: false },
    ],
    [
      "immutable put",
      { t, y: "q", q: "put", a: { id, token: Buffer.from("tok1"), v: Buffer.from("hello") } },
      { method: "put", id: ID, token, value: raw("5:hello"), mutable: false },
    ],
  ])("reads a k-rpc %s query", (_name, plain, query) => {
    expect(decodeMessage(bencode.encode(plain))).toStrictEqual({ kind: "query", t: new Uint8Array(t), query } as Message);
  });

  test("reads a bittorrent-dht get_peers response and error", () => {
    const values = [Buffer.from([127, 0, 0, 1, 0x1a, 0xe1])];
    const nodes = Buffer.from(encodeCompactNodes(contacts));
    const response = decodeMessage(bencode.encode({ t, y: "r", r: { id, token: Buffer.from("tok1"), values, nodes } }));
    expect(response).toStrictEqual({
      kind: "response",
      t: new Uint8Array(t),
      body: { id: ID, token, values: [{ address: "127.0.0.1", port: 6881 }], nodes: contacts },
    });
    const error = decodeMessage(bencode.encode({ t, y: "e", e: [203, "cannot `announce_peer` with bad token"] }));
    expect(error).toStrictEqual({
      kind: "error",
      t: new Uint8Array(t),
      code: 203,
      message: "cannot `announce_peer` with bad token",
    });
  });

  test("bencode.decode reads our get_peers response with BEP 5 keys", () => {
    const bytes = encodeMessage({
      kind: "response",
      t: T,
      body: { id: ID, token, values: [{ address: "127.0.0.1", port: 6881 }], nodes: contacts },
    });
    const plain = bencode.decode(bytes) as { t: Uint8Array; y: Uint8Array; r: Record<string, unknown> };
    expect(latin1(plain.y)).toBe("r");
    expect(Object.keys(plain.r).sort()).toEqual(["id", "nodes", "token", "values"]);
    expect(bencode.decode.bytes).toBe(bytes.length);
  });
});

const prng = mulberry32;

describe("decodeMessage() under fuzzing", () => {
  test("never throws, and every Message it returns re-encodes to an equal Message", () => {
    const random = prng(0x5eed);
    const int = (n: number): number => Math.floor(random() * n);
    const seeds = roundTrips.map(([, m]) => encodeMessage(m));
    const words = ["t", "y", "q", "r", "e", "a", "v", "id", "ip", "nodes", "values", "pieces", "token", "target"];
    const pieces = ["i0e", "i1e", "i-1e", "0:", "1:q", "1:r", "1:e", "2:aa", "le", "de", "l", "d", "e", `20:${ID_TEXT}`];

    const mutate = (input: Uint8Array): Uint8Array => {
      let bytes = [...input];
      for (let n = 1 + int(2); n > 0; n--) {
        const at = int(bytes.length + 1);
        switch (int(6)) {
          case 0: // flip a byte
            if (bytes.length) bytes[at % bytes.length] = int(256);
            break;
          case 1: // insert bencode-ish text
            bytes.splice(at, 0, ...raw(random() < 0.5 ? `1:${words[int(words.length)]}` : pieces[int(pieces.length)]!));
            break;
          case 2: // delete a run
            bytes.splice(at, 1 + int(8));
            break;
          case 3: // truncate
            bytes = bytes.slice(0, at);
            break;
          case 4: // splice in part of another seed
            bytes.splice(at, int(10), ...seeds[int(seeds.length)]!.subarray(int(40), int(80)));
            break;
          default: // change a digit (lengths, integers)
            bytes[at % Math.max(bytes.length, 1)] = 0x30 + int(10);
        }
      }
      return Uint8Array.from(bytes);
    };

    const pick = <T,>(items: readonly T[]): T => items[int(items.length)]!;
    const bytesOf = (length: number): Uint8Array => Uint8Array.from({ length }, () => int(256));
    /** Any field value, mostly of the shapes KRPC uses. */
    const anything = (): unknown =>
      pick([
        () => bytesOf(20),
        () => bytesOf(int(30)),
        () => int(70_000) - 100,
        () => bytesOf(26 * int(4)),
        () => Array.from({ length: int(4) }, () => bytesOf(pick([6, 6, 5, 0]))),
        () => ({ x: bytesOf(3), a: [int(9), bytesOf(2)] }),
      ])();
    /** A key with its usual value most of the time, another shape sometimes, absent sometimes. */
    const fields = (good: Record<string, () => unknown>): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      for (const [key, make] of Object.entries(good)) {
        if (random() < 0.8) out[key] = random() < 0.9 ? make() : anything();
      }
      return out;
    };
    const generated = (): Uint8Array => {
      const y = pick(["q", "r", "e", "q", "r", "x"]);
      const message: Record<string, unknown> = fields({
        t: () => bytesOf(pick([1, 2, 4, 16, 17])),
        v: () => bytesOf(4),
        q: () => pick(["ping", "find_node", "get_peers", "announce_peer", "get", "put", "vote"]),
        ip: () => bytesOf(pick([6, 18])),
      });
      message.y = y;
      message.a = fields({
        id: () => bytesOf(20),
        target: () => bytesOf(20),
        info_hash: () => bytesOf(20),
        port: () => int(65536),
        implied_port: () => int(2),
        token: () => bytesOf(4),
        pieces: () => bytesOf(pick([0, 32, 160, 161])),
        seq: () => int(10),
        v: anything,
        k: () => bytesOf(32),
      });
      message.r = fields({
        id: () => bytesOf(20),
        nodes: () => bytesOf(26 * int(4)),
        values: () => Array.from({ length: int(4) }, () => bytesOf(pick([6, 6, 6, 18]))),
        pieces: () => Array.from({ length: int(5) }, () => bytesOf(pick([0, 0, 32]))),
        token: () => bytesOf(4),
        v: anything,
      });
      message.e = pick([[201, "A Generic Error Ocurred"], [int(1000)], "bad", [bytesOf(1)]]);
      return bencode.encode(message);
    };

    let messages = 0;
    let failures = 0;
    for (let i = 0; i < 20_000; i++) {
      const input =
        i % 10 === 0 ? bytesOf(int(64)) : i % 10 < 5 ? generated() : mutate(seeds[int(seeds.length)]!);
      let result: Message | DecodeFailure;
      try {
        result = decodeMessage(input);
      } catch (err) {
        throw new Error(`decodeMessage threw on case ${i} (${JSON.stringify(latin1(input))}): ${err}`);
      }
      if (result.kind === "invalid") {
        failures++;
        expect(typeof result.reason).toBe("string");
        if (result.reply) expect(result.t).toBeInstanceOf(Uint8Array);
        continue;
      }
      expect(["query", "response", "error"]).toContain(result.kind);
      messages++;
      if (result.kind === "query" && result.query.method === "put" && result.query.mutable) continue; // not encodable
      expect(decodeMessage(encodeMessage(result))).toStrictEqual(result);
    }
    // The loop must exercise both paths, or it proves nothing.
    expect(messages).toBeGreaterThan(2000);
    expect(failures).toBeGreaterThan(1000);
  });
});

describe("BEP 43 read-only queries", () => {
  const t = new Uint8Array([1, 2]);
  const id = new Uint8Array(20).fill(3);
  test("a read-only query carries ro=1 and decodes as read-only", () => {
    const datagram = encodeMessage({ kind: "query", t, readOnly: true, query: { method: "ping", id } });
    expect((bencode.decode(datagram) as Record<string, unknown>).ro).toBe(1);
    expect(decodeMessage(datagram)).toMatchObject({ kind: "query", readOnly: true });
  });
  test("an ordinary query has no ro, and ro=0 reads as not read-only", () => {
    const datagram = encodeMessage({ kind: "query", t, query: { method: "ping", id } });
    expect((bencode.decode(datagram) as Record<string, unknown>).ro).toBeUndefined();
    const zero = bencode.encode({ t, y: "q", q: "ping", a: { id }, ro: 0 });
    const decoded = decodeMessage(zero);
    expect(decoded.kind).toBe("query");
    expect("readOnly" in decoded && decoded.readOnly).toBeFalsy();
  });
});
