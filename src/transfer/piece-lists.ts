/**
 * Finding the piece hashes of a file from what its peers announced: inline hashes, or a key to a list
 * kept as a BEP 44 item in the DHT or served by the peers over HTTP. Lists are untrusted; when peers
 * disagree, the list announced by the most distinct addresses is preferred (and dropped if the file
 * then fails its SHA-256).
 */
import { idToHex, type NodeId } from "../dht/id.ts";
import { parseAnnounceInfo, parsePieceListItem, pieceCount, pieceListKey } from "./pieces.ts";

export interface AnnouncedPeer {
  address: string;
  port: number;
  /** The piece information it announced, if any. */
  pieces?: Uint8Array;
}

export interface PieceList {
  hashes: Uint8Array[];
  /** "address:port" of each peer that announced this list. */
  announcers: string[];
  /** Distinct IP addresses among them: the weight of the list. */
  addresses: number;
}

export interface PieceListDeps {
  /** A BEP 44 item from the DHT (tier "item"). */
  getItem?: (key: NodeId) => Promise<Uint8Array | undefined>;
  /** GET /~/pieces/<hex key> from a peer (tier "http"). */
  fetchFromPeer: (peer: AnnouncedPeer, keyHex: string) => Promise<Uint8Array | undefined>;
}

export function peerId(peer: { address: string; port: number }): string {
  return `${peer.address}:${peer.port}`;
}

/**
 * The candidate lists for a file of `size` bytes, best first. Peers whose announce does not fit the file
 * are left out of every list (they may still serve bytes, checked like anyone's). Empty for a file of one
 * piece (its SHA-256 is its piece hash) or when no list could be had.
 */
export async function findPieceLists(size: number, peers: AnnouncedPeer[], deps: PieceListDeps): Promise<PieceList[]> {
  const pieces = pieceCount(size);
  if (pieces <= 1) return [];
  const groups = new Map<string, { info: ReturnType<typeof parseAnnounceInfo>; peers: AnnouncedPeer[] }>();
  for (const peer of peers) {
    const info = parseAnnounceInfo(peer.pieces, size);
    if (info === null || info.kind === "none") continue;
    const id = info.kind === "hashes" ? `h:${Buffer.concat(info.hashes).toString("hex")}` : `k:${idToHex(info.key)}`;
    const group = groups.get(id) ?? { info, peers: [] };
    group.peers.push(peer);
    groups.set(id, group);
  }
  const lists: PieceList[] = [];
  for (const { info, peers: announcers } of groups.values()) {
    const hashes = info === null || info.kind === "none" ? null : info.kind === "hashes" ? info.hashes : await fetchList(info, announcers, pieces, deps);
    if (hashes === null) continue;
    lists.push({
      hashes,
      announcers: announcers.map(peerId),
      addresses: new Set(announcers.map((p) => p.address)).size,
    });
  }
  return lists.sort((a, b) => b.addresses - a.addresses || b.announcers.length - a.announcers.length);
}

/** Fetches a keyed list and accepts it only if it hashes to its key and fits the file. */
async function fetchList(
  info: { kind: "key"; key: NodeId; tier: "item" | "http" },
  announcers: AnnouncedPeer[],
  pieces: number,
  deps: PieceListDeps,
): Promise<Uint8Array[] | null> {
  const accept = (item: Uint8Array | undefined): Uint8Array[] | null => {
    if (item === undefined) return null;
    const hashes = parsePieceListItem(item, pieces);
    if (hashes === null) return null;
    return idToHex(pieceListKey(hashes)) === idToHex(info.key) ? hashes : null;
  };
  if (info.tier === "item" && deps.getItem !== undefined) {
    const found = accept(await deps.getItem(info.key).catch(() => undefined));
    if (found !== null) return found;
  }
  // Any announcer serves the list over HTTP too; a few tries, as some may be gone.
  for (const peer of announcers.slice(0, 3)) {
    const found = accept(await deps.fetchFromPeer(peer, idToHex(info.key)).catch(() => undefined));
    if (found !== null) return found;
  }
  return null;
}
