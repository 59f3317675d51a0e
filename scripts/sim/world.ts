/**
 * The machines of one simulation, fixed for every adoption level so that levels differ only in who runs
 * apt-p2p: sessions, lines, latencies, what each updates, and the order in which machines adopt (the 10%
 * running apt-p2p are among the 50% that do).
 */
import type { Workload } from "./archive.ts";
import { drawSessions, type ChurnOptions, type Session } from "./churn.ts";
import { seeded, shuffle } from "./random.ts";

const MBIT = 1_000_000 / 8;

/** Home and office lines, download/upload in Mbit/s, with their shares (assumed, a plausible spread). */
export const LINES: { share: number; downMbit: number; upMbit: number }[] = [
  { share: 0.2, downMbit: 16, upMbit: 1 },
  { share: 0.3, downMbit: 50, upMbit: 10 },
  { share: 0.3, downMbit: 100, upMbit: 40 },
  { share: 0.2, downMbit: 500, upMbit: 200 },
];
/** apt-p2p machines cap their uploads at this share of their line (--upload-limit), keeping the rest for their users. */
export const UPLOAD_LIMIT_SHARE = 0.5;
/** The mirror's line: 1 Gbit/s out. */
export const MIRROR_UP_BPS = 1_000 * MBIT;

export interface SimMachine {
  index: number;
  address: string;
  session: Session;
  downBps: number;
  upBps: number;
  /** What it may upload to peers: UPLOAD_LIMIT_SHARE of its line. */
  uploadLimitBps: number;
  /** Files (indices into workload.files) it downloads today. */
  updates: number[];
  /** Lower adopts first: machine runs apt-p2p at adoption a when adoptOrder < a × machines. */
  adoptOrder: number;
  /** One-way access latency, ms, and a position on a ring standing for geography. */
  accessMs: number;
  place: number;
}

export interface World {
  machines: SimMachine[];
  workload: Workload;
  mirror: { address: string; accessMs: number; place: number };
  latencyMs(a: string, b: string): number;
}

export function buildWorld(workload: Workload, seed: number, churn: ChurnOptions = {}): World {
  const random = seeded(seed ^ 0x5eed);
  const count = workload.perMachine.length;
  const sessions = drawSessions(count, random, churn);
  const order = shuffle(Array.from({ length: count }, (_, i) => i), random);
  const machines: SimMachine[] = sessions.map((session, index) => {
    const line = pickLine(random());
    return {
      index,
      address: addressOf(index + 1),
      session,
      downBps: line.downMbit * MBIT,
      upBps: line.upMbit * MBIT,
      uploadLimitBps: line.upMbit * MBIT * UPLOAD_LIMIT_SHARE,
      updates: workload.perMachine[index]!,
      adoptOrder: 0,
      accessMs: 2 + random() * 18,
      place: random(),
    };
  });
  order.forEach((m, rank) => (machines[m]!.adoptOrder = rank));
  const mirror = { address: "10.255.255.254", accessMs: 1, place: random() };
  const where = new Map<string, { accessMs: number; place: number }>(machines.map((m) => [m.address, m]));
  where.set(mirror.address, mirror);
  return {
    machines,
    workload,
    mirror,
    latencyMs: (a, b) => linkLatency(where.get(a)!, where.get(b)!),
  };
}

/** One-way latency: both access links plus the distance between places (up to 60 ms half way round). */
export function linkLatency(a: { accessMs: number; place: number }, b: { accessMs: number; place: number }): number {
  const d = Math.abs(a.place - b.place);
  return a.accessMs + b.accessMs + 120 * Math.min(d, 1 - d);
}

/** Fake 10.x.y.z addresses: only map keys inside this process. */
export function addressOf(n: number): string {
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

function pickLine(u: number): (typeof LINES)[number] {
  let acc = 0;
  for (const line of LINES) {
    acc += line.share;
    if (u < acc) return line;
  }
  return LINES[LINES.length - 1]!;
}
