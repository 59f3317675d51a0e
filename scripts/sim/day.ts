/**
 * The update day at one adoption level: the mirror publishes the day's new versions at time 0, every
 * machine downloads those of its installed packages when its update runs; apt-p2p machines find peers
 * in the DHT, download with the piece scheduler and announce what they got, the others use the mirror.
 */
import { idFromHex } from "../../src/dht/id.ts";
import type { DhtNode } from "../../src/dht/node.ts";
import { DEFAULT_GET_CONCURRENCY } from "../../src/config.ts";
import { announceInfo, pieceCount, PIECE_HASH_BYTES } from "../../src/transfer/pieces.ts";
import { SimClock } from "./clock.ts";
import { SimDatagramNetwork } from "./datagrams.ts";
import { buildDht, DHT_PORT } from "./dht.ts";
import { FlowNetwork, type Flow } from "./flows.ts";
import { quantile, seeded } from "./random.ts";
import { PROJECT_POLICY, simulateSwarm, type SwarmEnv, type SwarmPolicy } from "./swarm.ts";
import { MIRROR_UP_BPS, type SimMachine, type World } from "./world.ts";

/** Datagrams lost on the way (assumed 1%, a typical residential figure). */
export const DATAGRAM_LOSS = 0.01;
/**
 * A holder's announce outlives its departure by up to this long: the 30-minute value lifetime of
 * storage.ts, which the daemon's 20-minute refreshes keep alive while it runs (see dayStorage).
 */
export const VALUE_TTL_MS = 30 * 60_000;
/**
 * Refreshing announces every 20 minutes all day costs more lookups than the simulation can afford, so
 * storing nodes keep values for the day, and a downloader ignores values whose holder left more than
 * VALUE_TTL_MS ago, as expiry would have removed them.
 */
const DAY_STORAGE = { valueTtlMs: 48 * 3_600_000 };

export interface LevelResult {
  adoption: number;
  machines: number;
  adopters: number;
  /** Machines with something to update today. */
  updating: number;
  files: number;
  /**
   * received = useful + wasted = mirrorSent + peersSent. mirror and peers: verified bytes by source;
   * mirrorNoPeers: the part of `mirror` apt-p2p machines took for files whose lookup found no peer;
   * directMirror: the part mirror-only machines took.
   */
  bytes: { received: number; useful: number; mirror: number; mirrorNoPeers: number; directMirror: number; peers: number; wasted: number; mirrorSent: number; peersSent: number };
  mirrorBytesPerMachine: number;
  /** Shares of the bytes received by all machines. */
  peerShare: number;
  mirrorShare: number;
  /** Peer share among apt-p2p machines' bytes. */
  peerShareAdopters: number;
  finishMs: { p2p: { p50: number; p99: number; count: number }; direct: { p50: number; p99: number; count: number } };
  lookupsMs: { p50: number; p99: number; count: number };
  /** Lookups that found no peer although a reachable holder of the file was online (the DHT's misses), and their bytes. */
  missed: { lookups: number; bytes: number };
  announces: { count: number; stored: number };
  uploads: { servers: number; p50Bytes: number; p99Bytes: number; maxBytes: number; maxPeakOverLimit: number; atLimit: number };
  unfinished: number;
  cost: { events: number; datagrams: number; seconds: number };
}

interface MachineState {
  m: SimMachine;
  host: number;
  node?: DhtNode;
  online: boolean;
  leftAt?: number;
  uploads: Set<Flow>;
  joining?: Promise<void>;
  updateStart?: number;
  finishedAt?: number;
}

export async function simulateLevel(world: World, adoption: number, seed: number, policy: SwarmPolicy = PROJECT_POLICY): Promise<LevelResult> {
  const wall = performance.now();
  const random = seeded((seed * 7919 + Math.round(adoption * 10_000)) >>> 0);
  const clock = new SimClock();
  const net = new SimDatagramNetwork(clock, { latencyMs: world.latencyMs, loss: DATAGRAM_LOSS, random });
  const flows = new FlowNetwork(clock);
  const mirrorHost = flows.addHost({ upBps: MIRROR_UP_BPS, downBps: Number.POSITIVE_INFINITY });
  const count = world.machines.length;
  const adopting = Math.max(1, Math.round(adoption * count));
  const states: MachineState[] = world.machines.map((m) => ({
    m,
    host: flows.addHost({ upBps: m.uploadLimitBps, downBps: m.downBps }),
    online: false,
    uploads: new Set(),
  }));
  const byAddress = new Map(states.map((s) => [s.m.address, s]));
  const hostAddress = [world.mirror.address, ...world.machines.map((m) => m.address)];
  const adopters = states.filter((s) => s.m.adoptOrder < adopting);
  const early = (s: MachineState) => s.m.session.online === 0;
  const nodes = await buildDht(clock, net, adopters.map((s) => ({ address: s.m.address, nat: s.m.session.nat, early: early(s) })), random, { storage: DAY_STORAGE });
  adopters.forEach((s, i) => (s.node = nodes[i]));
  const files = world.workload.files;

  const bytes = { received: 0, useful: 0, mirror: 0, mirrorNoPeers: 0, directMirror: 0, peers: 0, wasted: 0, mirrorSent: 0, peersSent: 0 };
  const usefulByAdopters = { mirror: 0, peers: 0 };
  const lookupTimes: number[] = [];
  const missed = { lookups: 0, bytes: 0 };
  /** Reachable machines holding each file: the truth a lookup is measured against. */
  const holders = files.map(() => new Set<MachineState>());
  const announces = { count: 0, stored: 0 };
  const failures: unknown[] = [];

  // The day starts now; the machines on at publication are up, the others come later.
  const day = clock.now();
  let finished = 0;
  const finish = (s: MachineState): void => {
    s.finishedAt = clock.now();
    finished++;
    clock.at(Math.max(clock.now(), day + s.m.session.end), () => depart(s));
  };
  const depart = (s: MachineState): void => {
    s.online = false;
    s.leftAt = clock.now();
    net.setOnline(s.m.address, false);
    for (const flow of [...s.uploads]) flow.abort();
  };

  const envFor = (s: MachineState, adopter: boolean): SwarmEnv => ({
    clock,
    flows,
    random,
    mirrorHost,
    hostOf: (machine) => states[machine]!.host,
    rttMs: (from, to) => 2 * world.latencyMs(hostAddress[from]!, hostAddress[to]!),
    serving: (machine) => states[machine]!.online,
    uploads: (machine) => states[machine]!.uploads,
    delivered: (kind, n, peersKnown) => {
      bytes.useful += n;
      if (kind === "mirror" && !peersKnown) bytes.mirrorNoPeers += n;
      bytes[kind === "mirror" ? "mirror" : "peers"] += n;
      if (adopter) usefulByAdopters[kind === "mirror" ? "mirror" : "peers"] += n;
    },
    wasted: (n) => (bytes.wasted += n),
  });

  const fetchP2p = async (s: MachineState, f: number): Promise<void> => {
    const file = files[f]!;
    const key = idFromHex(file.sha256.slice(0, 40));
    const found = await s.node!.getPeers(key);
    lookupTimes.push(found.durationMs);
    const now = clock.now();
    const peers = new Set<number>();
    for (const p of found.peers) {
      const holder = byAddress.get(p.address);
      if (holder === undefined || holder === s || (holder.leftAt !== undefined && now - holder.leftAt > VALUE_TTL_MS)) continue;
      peers.add(holder.m.index);
    }
    if (peers.size === 0 && [...holders[f]!].some((h) => h.online)) {
      missed.lookups++;
      missed.bytes += file.size;
    }
    await simulateSwarm(envFor(s, true), s.m.index, file.size, [...peers], policy);
    if (s.m.session.nat) return; // cannot be connected to: serves nobody, announces nothing
    holders[f]!.add(s);
    announces.count++;
    s.node!.announce(key, DHT_PORT, pieceInfo(file.sha256, file.size)).then(
      (r) => (announces.stored += r.stored),
      (err: unknown) => failures.push(err),
    );
  };

  const fetchDirect = (s: MachineState, f: number): Promise<void> =>
    new Promise((resolve) => {
      const size = files[f]!.size;
      flows.start(mirrorHost, s.host, size, 2 * world.latencyMs(world.mirror.address, s.m.address), (end) => {
        bytes.useful += end.bytes;
        bytes.mirror += end.bytes;
        bytes.directMirror += end.bytes;
        resolve();
      });
    });

  const update = async (s: MachineState): Promise<void> => {
    await s.joining;
    s.updateStart = clock.now();
    const queue = [...s.m.updates];
    const worker = async (): Promise<void> => {
      for (let f = queue.shift(); f !== undefined; f = queue.shift()) await (s.node !== undefined ? fetchP2p(s, f) : fetchDirect(s, f));
    };
    await Promise.all(Array.from({ length: DEFAULT_GET_CONCURRENCY }, worker));
    finish(s);
  };

  for (const s of states) {
    clock.at(day + s.m.session.online, () => {
      s.online = true;
      // The daemon starts at boot: it pings its saved contacts and looks itself up.
      if (s.node !== undefined && !early(s)) s.joining = s.node.start().catch((err: unknown) => void failures.push(err));
    });
    clock.at(day + s.m.session.arrive, () => void update(s).catch((err: unknown) => failures.push(err)));
  }
  await clock.run({ stop: () => finished === count || failures.length > 0 });
  if (failures.length > 0) throw failures[0];

  for (const s of states) {
    bytes.received += flows.received[s.host]!;
    bytes.peersSent += flows.sent[s.host]!;
  }
  bytes.mirrorSent = flows.sent[mirrorHost]!;
  const updating = states.filter((s) => s.m.updates.length > 0);
  const times = (list: MachineState[]) => list.filter((s) => s.finishedAt !== undefined).map((s) => s.finishedAt! - s.updateStart!);
  const p2pTimes = times(updating.filter((s) => s.node !== undefined));
  const directTimes = times(updating.filter((s) => s.node === undefined));
  const servers = adopters.filter((s) => !s.m.session.nat);
  const uploaded = servers.map((s) => flows.sent[s.host]!);
  const peakRatios = servers.map((s) => flows.peakUpBps[s.host]! / s.m.uploadLimitBps);
  return {
    adoption,
    machines: count,
    adopters: adopters.length,
    updating: updating.length,
    files: files.length,
    bytes,
    mirrorBytesPerMachine: bytes.mirrorSent / count,
    peerShare: bytes.peers / bytes.useful,
    mirrorShare: bytes.mirror / bytes.useful,
    peerShareAdopters: usefulByAdopters.peers / Math.max(1, usefulByAdopters.peers + usefulByAdopters.mirror),
    finishMs: {
      p2p: { p50: quantile(p2pTimes, 0.5), p99: quantile(p2pTimes, 0.99), count: p2pTimes.length },
      direct: { p50: quantile(directTimes, 0.5), p99: quantile(directTimes, 0.99), count: directTimes.length },
    },
    lookupsMs: { p50: quantile(lookupTimes, 0.5), p99: quantile(lookupTimes, 0.99), count: lookupTimes.length },
    missed,
    announces,
    uploads: {
      servers: servers.length,
      p50Bytes: quantile(uploaded, 0.5),
      p99Bytes: quantile(uploaded, 0.99),
      maxBytes: Math.max(0, ...uploaded),
      maxPeakOverLimit: Math.max(0, ...peakRatios),
      atLimit: peakRatios.filter((r) => r >= 0.999).length,
    },
    unfinished: count - finished,
    cost: { events: clock.executed, datagrams: net.counters.datagrams, seconds: (performance.now() - wall) / 1000 },
  };
}

/** What a seeder attaches to its announce (DESIGN.md, "Pieces"), with stand-in piece hashes. */
function pieceInfo(sha256: string, size: number): Uint8Array | undefined {
  const seed = Buffer.from(sha256, "hex");
  const hashes = Array.from({ length: pieceCount(size) }, (_, i) => {
    const h = seed.subarray(0, PIECE_HASH_BYTES);
    const out = new Uint8Array(h);
    out[0] = (out[0]! + i) & 0xff;
    out[1] = (out[1]! + (i >> 8)) & 0xff;
    return out;
  });
  return announceInfo(hashes);
}
