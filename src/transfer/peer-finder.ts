/**
 * Finding the peers of a file for a one-shot `get` without a daemon: a short-lived DHT node that joins
 * through the bootstrap nodes or the contacts a daemon saved, looks keys up, and announces nothing.
 */
import { idFromHex, type Contact, type Endpoint, type NodeId } from "../dht/id.ts";
import { DhtNode } from "../dht/node.ts";
import { bindUdp } from "../dht/socket.ts";
import type { AnnouncedPeer } from "./piece-lists.ts";
import { peersEnough } from "./pieces.ts";

export interface PeerFinder {
  /** The peers that announced the file with this SHA-256 (its first 20 bytes are the key), of `size` bytes. */
  peersFor(sha256: string, size: number): Promise<AnnouncedPeer[]>;
  getItem(key: NodeId): Promise<Uint8Array | undefined>;
  close(): void;
}

export interface FinderOptions {
  bind: string;
  bootstrap: Endpoint[];
  saved: Contact[];
}

/** A joined DHT node, or null when there is nobody to join through. */
export async function startPeerFinder(options: FinderOptions): Promise<PeerFinder | null> {
  if (options.bootstrap.length === 0 && options.saved.length === 0) return null;
  const socket = await bindUdp(options.bind, 0);
  const node = new DhtNode({
    socket,
    bootstrap: options.bootstrap,
    savedContacts: options.saved,
    maintenance: false,
    refreshOnJoin: false,
    readOnly: true,
  });
  await node.start();
  return {
    peersFor: async (sha256, size) => (await node.getPeers(idFromHex(sha256.slice(0, 40)), { enough: peersEnough(size) })).peers,
    getItem: (key) => node.getItem(key),
    close: () => node.close(),
  };
}
