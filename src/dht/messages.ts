/**
 * The KRPC messages apt-p2p's DHT speaks, as typed values. BEP 5 (ping, find_node, get_peers,
 * announce_peer), BEP 44 immutable items (get, put), and apt-p2p's optional per-peer piece information
 * (`pieces`) on announce_peer and in get_peers answers, which other implementations ignore.
 * The codec (krpc.ts) turns these into bencoded bytes and back.
 */
import type { Contact, Endpoint, NodeId } from "./id.ts";

/** KRPC error codes (BEP 5). */
export const KRPC_ERROR_GENERIC = 201;
export const KRPC_ERROR_SERVER = 202;
export const KRPC_ERROR_PROTOCOL = 203;
export const KRPC_ERROR_METHOD_UNKNOWN = 204;

/** BEP 44: an item's bencoded value may be at most this long. */
export const BEP44_MAX_VALUE_BYTES = 1000;
/**
 * The largest piece information a peer may attach to an announce. Four piece hashes of 32 bytes plus a
 * small header fit; longer lists go to a BEP 44 item or over HTTP (DESIGN.md, "Pieces").
 */
export const MAX_PIECE_INFO_BYTES = 160;

export type Method = "ping" | "find_node" | "get_peers" | "announce_peer" | "get" | "put";

export type Query =
  | { method: "ping"; id: NodeId }
  | { method: "find_node"; id: NodeId; target: NodeId }
  | { method: "get_peers"; id: NodeId; infoHash: NodeId }
  | {
      method: "announce_peer";
      id: NodeId;
      infoHash: NodeId;
      /** The port argument (0 when absent and impliedPort is set). */
      port: number;
      token: Uint8Array;
      impliedPort: boolean;
      /** apt-p2p's optional piece information, opaque to the DHT, at most MAX_PIECE_INFO_BYTES. */
      pieces?: Uint8Array;
    }
  /** BEP 44 get; `seq` is only meaningful for mutable items, which apt-p2p does not store. */
  | { method: "get"; id: NodeId; target: NodeId; seq?: number }
  /**
   * BEP 44 put of an immutable item: `value` is the bencoded `v` exactly as it is to be hashed
   * (target = SHA-1(value)). `mutable` is true when the query carried `k`/`sig` (refused by us).
   */
  | { method: "put"; id: NodeId; token: Uint8Array; value: Uint8Array; mutable: boolean };

/** A peer stored under a key, with its optional piece information. */
export interface PeerValue extends Endpoint {
  pieces?: Uint8Array;
}

/** The `r` dictionary of a response. Which fields are present depends on the query answered. */
export interface ResponseBody {
  id: NodeId;
  /** Compact IPv4 node info (26 bytes each). */
  nodes?: Contact[];
  /** get_peers: compact peers (6 bytes each), with per-peer `pieces` (empty string when none). */
  values?: PeerValue[];
  token?: Uint8Array;
  /** BEP 44 get: the item's bencoded value, exactly as stored. */
  value?: Uint8Array;
}

export interface QueryMessage {
  kind: "query";
  t: Uint8Array;
  /** Client version (`v`), when the sender gave one. */
  version?: Uint8Array;
  /**
   * BEP 43 `ro`: the sender is a read-only node (a short-lived `get`, say) that answers no queries, so
   * receivers must not put it in their routing tables.
   */
  readOnly?: boolean;
  query: Query;
}

export interface ResponseMessage {
  kind: "response";
  t: Uint8Array;
  version?: Uint8Array;
  /** BEP 42 `ip`: the requester's address as the responder saw it, when given. */
  yourAddress?: Endpoint;
  body: ResponseBody;
}

export interface ErrorMessage {
  kind: "error";
  t: Uint8Array;
  version?: Uint8Array;
  code: number;
  message: string;
}

export type Message = QueryMessage | ResponseMessage | ErrorMessage;

/**
 * Why a datagram could not be read. `t` is set when the transaction id could be read, so that a query
 * can be answered with a KRPC error; `reply` says which error code BEP 5 calls for (none: drop).
 */
export interface DecodeFailure {
  kind: "invalid";
  reason: string;
  t?: Uint8Array;
  /** For queries: the error to send back (203 protocol, 204 unknown method). */
  reply?: { code: number; message: string };
}
