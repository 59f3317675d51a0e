/**
 * IP address literals, parsed strictly. Here rather than node:net's isIPv4/isIPv6 because loading
 * node:net (with the stream machinery it pulls in) cost every start of the compiled binary about 13 ms.
 */

const IPV6_GROUPS = 8;

/** Dotted-quad IPv4, as 4 bytes. */
export function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (const [index, part] of parts.entries()) {
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return undefined;
    bytes[index] = Number(part);
  }
  return bytes;
}

/** Hex groups with at most one "::", optionally ending in a dotted IPv4 address (RFC 4291 §2.2). */
export function parseIpv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  /** `last`: this half ends the address, so it may end in a dotted IPv4 address. */
  const groupsOf = (half: string, last: boolean): number[] | undefined => {
    if (half === "") return [];
    const groups: number[] = [];
    const parts = half.split(":");
    for (const [index, part] of parts.entries()) {
      if (last && index === parts.length - 1 && part.includes(".")) {
        const v4 = parseIpv4(part);
        if (v4 === undefined) return undefined;
        groups.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(part)) {
        groups.push(parseInt(part, 16));
      } else {
        return undefined;
      }
    }
    return groups;
  };
  const head = groupsOf(halves[0] ?? "", halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? "", true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = IPV6_GROUPS - head.length - tail.length;
  // "::" stands for at least one zero group; without it the address must have all eight.
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((group, index) => {
    bytes[index * 2] = group >> 8;
    bytes[index * 2 + 1] = group & 0xff;
  });
  return bytes;
}

export function isIPv4(text: string): boolean {
  return parseIpv4(text) !== undefined;
}

export function isIPv6(text: string): boolean {
  return text.includes(":") && parseIpv6(text) !== undefined;
}
