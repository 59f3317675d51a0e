/**
 * The peers the daemon has met, for the status page: peers the DHT named as holders of a file we were
 * fetching ("address:port", the port they serve on), and addresses that fetched files from us (their
 * own serving port is not known from a request). Bounded: the least recently seen go first. Pure: the
 * caller passes the time.
 */

/** Peers remembered at most (about 100 bytes each). */
export const PEERS_REMEMBERED = 10_000;
/** Peers listed on the status page, most recently seen first. */
export const PEERS_LISTED = 30;

export interface PeerSeen {
  /** "address:port" of a holder, or the address of a downloader. */
  peer: string;
  /** ms since epoch. */
  firstSeen: number;
  lastSeen: number;
  /** Times the DHT named it as holding a file we were fetching. */
  found: number;
  /** Verified bytes we downloaded from it (when the download reports them by peer). */
  received: number;
  /** Requests it sent to our peer server. */
  requests: number;
}

export interface PeersSummary {
  /** Distinct peers met since the daemon started (up to PEERS_REMEMBERED). */
  total: number;
  /** Of those, seen within the last hour. */
  lastHour: number;
  recent: PeerSeen[];
}

export class PeersSeen {
  /** In order of last sighting, oldest first (an entry is moved to the end when seen again). */
  private readonly peers = new Map<string, PeerSeen>();

  constructor(private readonly remembered = PEERS_REMEMBERED) {}

  /** The DHT named `address:port` as holding a file we fetch. */
  found(address: string, port: number, now: number): void {
    this.see(`${address}:${port}`, now).found += 1;
  }

  /** We downloaded `bytes` verified bytes from `peer` ("address:port"). */
  receivedFrom(peer: string, bytes: number, now: number): void {
    this.see(peer, now).received += bytes;
  }

  /** `address` sent a request to our peer server. */
  servedTo(address: string, now: number): void {
    this.see(address, now).requests += 1;
  }

  summary(now: number, listed = PEERS_LISTED): PeersSummary {
    const all = [...this.peers.values()];
    return {
      total: all.length,
      lastHour: all.filter((p) => p.lastSeen > now - 60 * 60_000).length,
      recent: all.slice(-listed).reverse().map((p) => ({ ...p })),
    };
  }

  private see(peer: string, now: number): PeerSeen {
    const known = this.peers.get(peer);
    const entry = known ?? { peer, firstSeen: now, lastSeen: now, found: 0, received: 0, requests: 0 };
    entry.lastSeen = now;
    this.peers.delete(peer);
    this.peers.set(peer, entry);
    if (known === undefined && this.peers.size > this.remembered) this.peers.delete(this.peers.keys().next().value!);
    return entry;
  }
}
