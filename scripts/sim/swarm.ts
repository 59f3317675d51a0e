/**
 * One file downloaded by an apt-p2p machine on the simulated network, with the project's PieceScheduler
 * and the same policy as src/transfer/swarm.ts (its constants imported): peers and the mirror as sources,
 * the mirror with MIRROR_IN_FLIGHT requests, pieces in file order, the endgame after ENDGAME_DELAY_MS, a
 * source that stalls failing after STALL_MS and dropped after MAX_SOURCE_ERRORS. Piece hashes are not
 * simulated (every piece is good).
 */
import { pieceCount, pieceRange } from "../../src/transfer/pieces.ts";
import { PieceScheduler } from "../../src/transfer/scheduler.ts";
import { ENDGAME_DELAY_MS, MAX_SOURCE_ERRORS, MIRROR_IN_FLIGHT, STALL_MS } from "../../src/transfer/swarm.ts";
import type { SimClock, SimEvent } from "./clock.ts";
import type { Flow, FlowNetwork } from "./flows.ts";

export const MIRROR_SOURCE = "mirror";

export interface SwarmEnv {
  clock: SimClock;
  flows: FlowNetwork;
  random: () => number;
  mirrorHost: number;
  /** Flow host of a machine. */
  hostOf(machine: number): number;
  rttMs(fromHost: number, toHost: number): number;
  /** Whether a peer accepts connections now (online, serving). */
  serving(machine: number): boolean;
  /** The peer's uploads, so that its departure cuts them. */
  uploads(machine: number): Set<Flow>;
  /** Verified bytes of a piece, by kind of source; `peersKnown`: the lookup had found peers for the file. */
  delivered(kind: "mirror" | "peer", bytes: number, peersKnown: boolean): void;
  /** Bytes that crossed the network but were not used (a duplicate that lost, a cut transfer). */
  wasted(bytes: number): void;
}

/**
 * The swarm's timing policy; the default is src/transfer/swarm.ts's. Other values answer "what if" for
 * the report (run.ts --endgame-delay-ms, --mirror-delay-ms).
 */
export interface SwarmPolicy {
  endgameDelayMs: number;
  /** The mirror joins this long after the start (when peers are known and the file is not done yet). */
  mirrorDelayMs: number;
}

export const PROJECT_POLICY: SwarmPolicy = { endgameDelayMs: ENDGAME_DELAY_MS, mirrorDelayMs: 0 };

interface InFlight {
  flow?: Flow;
  timer?: SimEvent;
  cancelled: boolean;
}

/** Downloads `size` bytes to machine `downloader` from `peers` (machine indices) and the mirror. */
export function simulateSwarm(env: SwarmEnv, downloader: number, size: number, peers: number[], policy: SwarmPolicy = PROJECT_POLICY): Promise<void> {
  const scheduler = new PieceScheduler(pieceCount(size), { random: env.random, sequential: true, endgameDelayMs: policy.endgameDelayMs, now: () => env.clock.now() });
  const inFlight = new Map<string, InFlight>();
  const errors = new Map<string, number>();
  const to = env.hostOf(downloader);
  for (const peer of peers) scheduler.addSource({ id: `${peer}`, kind: "peer", pieces: "all" });
  const addMirror = () => scheduler.addSource({ id: MIRROR_SOURCE, kind: "mirror", pieces: "all", maxInFlight: MIRROR_IN_FLIGHT });
  let wake: SimEvent | undefined;

  return new Promise<void>((resolve, reject) => {
    if (policy.mirrorDelayMs <= 0 || peers.length === 0) addMirror();
    else
      env.clock.after(policy.mirrorDelayMs, () => {
        if (scheduler.complete) return;
        addMirror();
        pump();
      });
    const pump = (): void => {
      if (scheduler.complete) {
        env.clock.cancel(wake);
        return resolve();
      }
      for (const request of scheduler.next()) fetch(request.piece, request.source);
      env.clock.cancel(wake);
      const next = scheduler.nextWake();
      wake = next === undefined ? undefined : env.clock.at(next, pump);
      const mirrorComing = !scheduler.activeSources().includes(MIRROR_SOURCE) && policy.mirrorDelayMs > 0 && peers.length > 0;
      if (inFlight.size === 0 && next === undefined && !mirrorComing) reject(new Error(`sim swarm: no source left for a file of ${size} bytes`));
    };

    const stalled = (piece: number, source: string, key: string): void => {
      inFlight.delete(key);
      scheduler.failed(piece, source, false);
      const count = (errors.get(source) ?? 0) + 1;
      errors.set(source, count);
      if (count >= MAX_SOURCE_ERRORS) scheduler.removeSource(source);
      pump();
    };

    const fetch = (piece: number, source: string): void => {
      const key = `${piece}@${source}`;
      const range = pieceRange(piece, size);
      const bytes = range.end - range.start;
      const entry: InFlight = { cancelled: false };
      inFlight.set(key, entry);
      const peer = source === MIRROR_SOURCE ? -1 : Number(source);
      if (peer >= 0 && !env.serving(peer)) {
        // Nobody answers at the peer's address: the request stalls.
        entry.timer = env.clock.after(STALL_MS, () => stalled(piece, source, key));
        return;
      }
      const from = peer >= 0 ? env.hostOf(peer) : env.mirrorHost;
      const flow = env.flows.start(from, to, bytes, env.rttMs(from, to), (end) => {
        if (peer >= 0) env.uploads(peer).delete(flow);
        if (!end.aborted) {
          inFlight.delete(key);
          if (scheduler.isDone(piece)) {
            env.wasted(end.bytes);
          } else {
            errors.set(source, 0);
            env.delivered(peer >= 0 ? "peer" : "mirror", end.bytes, peers.length > 0);
            for (const other of scheduler.completed(piece, source)) cancel(`${piece}@${other}`);
          }
          return pump();
        }
        env.wasted(end.bytes);
        if (entry.cancelled) return; // a duplicate that lost the race: released by cancel()
        // The peer went away mid-transfer: the downloader sees the stream stall.
        entry.timer = env.clock.after(STALL_MS, () => stalled(piece, source, key));
      });
      entry.flow = flow;
      if (peer >= 0) env.uploads(peer).add(flow);
    };

    const cancel = (key: string): void => {
      const entry = inFlight.get(key);
      if (entry === undefined) return;
      inFlight.delete(key);
      entry.cancelled = true;
      env.clock.cancel(entry.timer);
      entry.flow?.abort();
      const at = key.indexOf("@");
      scheduler.released(Number(key.slice(0, at)), key.slice(at + 1));
    };

    pump();
  });
}
