/** Node ids and keys: 20 bytes, compared by XOR distance (Kademlia). Pure. */

export const ID_BYTES = 20;
export const ID_BITS = ID_BYTES * 8;

export type NodeId = Uint8Array;

/**
 * n random bytes from the system's CSPRNG (n up to 65536). Web Crypto rather than node:crypto, whose
 * loading cost every start of the compiled binary about 13 ms.
 */
export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** A node we can send to: its id when known, and its UDP address. */
export interface Contact {
  id: NodeId;
  address: string;
  port: number;
}

/** An address without a known id, such as a bootstrap node. */
export interface Endpoint {
  address: string;
  port: number;
}

export function isId(value: unknown): value is NodeId {
  return value instanceof Uint8Array && value.length === ID_BYTES;
}

export function idToHex(id: NodeId): string {
  return Buffer.from(id).toString("hex");
}

export function idFromHex(hex: string): NodeId {
  if (!/^[0-9a-fA-F]{40}$/.test(hex)) throw new Error(`Not a 40-digit hex id: ${hex}`);
  return new Uint8Array(Buffer.from(hex, "hex"));
}

export function idsEqual(a: NodeId, b: NodeId): boolean {
  for (let i = 0; i < ID_BYTES; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function xorDistance(a: NodeId, b: NodeId): Uint8Array {
  const out = new Uint8Array(ID_BYTES);
  for (let i = 0; i < ID_BYTES; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Negative when `a` is closer to `target` than `b`, positive when farther, 0 when equal. */
export function compareDistance(target: NodeId, a: NodeId, b: NodeId): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const da = a[i]! ^ target[i]!;
    const db = b[i]! ^ target[i]!;
    if (da !== db) return da - db;
  }
  return 0;
}

/** How many leading bits two ids share (160 when equal). */
export function commonPrefixBits(a: NodeId, b: NodeId): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const x = a[i]! ^ b[i]!;
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return ID_BITS;
}

/** The distance as a fraction of the whole id space, in [0, 1): for network-size estimates. */
export function distanceFraction(a: NodeId, b: NodeId): number {
  let value = 0;
  let scale = 1 / 256;
  for (let i = 0; i < 8; i++) {
    value += (a[i]! ^ b[i]!) * scale;
    scale /= 256;
  }
  return value;
}

/** A random id sharing exactly `prefixBits` leading bits with `own` (for refreshing that bucket). */
export function randomIdWithPrefix(own: NodeId, prefixBits: number, randomBytes: (n: number) => Uint8Array): NodeId {
  const id = randomBytes(ID_BYTES).slice();
  for (let bit = 0; bit < Math.min(prefixBits, ID_BITS); bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    id[byte] = (id[byte]! & ~mask) | (own[byte]! & mask);
  }
  if (prefixBits < ID_BITS) {
    const byte = prefixBits >> 3;
    const mask = 0x80 >> (prefixBits & 7);
    id[byte] = (id[byte]! & ~mask) | (~own[byte]! & mask);
  }
  return id;
}

export function sortByDistance<T extends { id: NodeId }>(target: NodeId, items: T[]): T[] {
  return items.sort((a, b) => compareDistance(target, a.id, b.id));
}
