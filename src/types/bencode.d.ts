/** Types for the `bencode` package (4.x), which ships none. */
declare module "bencode" {
  export type BencodeValue = number | Uint8Array | BencodeValue[] | { [key: string]: BencodeValue };
  export function encode(data: unknown): Uint8Array;
  export function decode(data: Uint8Array, start?: number, end?: number, encoding?: string): BencodeValue;
  export namespace decode {
    /** Bytes consumed by the last decode(). */
    let bytes: number;
  }
  export namespace encode {
    let bytes: number;
  }
  const bencode: { encode: typeof encode; decode: typeof decode; byteLength(value: unknown): number };
  export default bencode;
}
