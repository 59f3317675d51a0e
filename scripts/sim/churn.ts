/**
 * When machines are online on the update day. The mirror publishes at time 0. Some machines are on then
 * and run the update within the hour (apt-daily-upgrade's randomized delay); the others come online
 * through the day and update at boot. Sessions are exponential with a median of five hours, so about
 * half the machines are gone five hours after they came; a machine stays until its update has finished
 * (an upgrade is not cut off). Some share sit behind a NAT: they download but cannot be connected to.
 */
import { exponential } from "./random.ts";

const HOUR_MS = 3_600_000;
/** Half the machines are gone this long after they came online (the churn figure). */
export const MEDIAN_SESSION_MS = 5 * HOUR_MS;
/** Machines come online over this window of the day. */
export const ARRIVAL_WINDOW_MS = 12 * HOUR_MS;
/** Share of machines already on at publication, updating within TIMER_SPREAD_MS. */
export const ON_AT_PUBLICATION = 0.3;
/** apt-daily-upgrade.timer's RandomizedDelaySec (60 minutes). */
export const TIMER_SPREAD_MS = HOUR_MS;
/** Share of machines behind a NAT that accepts no incoming connection (assumed). */
export const NAT_SHARE = 0.25;

export interface Session {
  /** When the machine comes online (0 for those already on at publication). */
  online: number;
  /** When it starts its update (ms). */
  arrive: number;
  /** When the session would end; the machine leaves at the later of this and its update's end. */
  end: number;
  nat: boolean;
}

export interface ChurnOptions {
  medianSessionMs?: number;
  arrivalWindowMs?: number;
  onAtPublication?: number;
  natShare?: number;
}

export function drawSessions(count: number, random: () => number, options: ChurnOptions = {}): Session[] {
  const median = options.medianSessionMs ?? MEDIAN_SESSION_MS;
  const window = options.arrivalWindowMs ?? ARRIVAL_WINDOW_MS;
  const early = options.onAtPublication ?? ON_AT_PUBLICATION;
  const natShare = options.natShare ?? NAT_SHARE;
  return Array.from({ length: count }, () => {
    const onAtPublication = random() < early;
    const arrive = onAtPublication ? random() * Math.min(TIMER_SPREAD_MS, window) : random() * window;
    const online = onAtPublication ? 0 : arrive;
    return { online, arrive, end: online + exponential(random, median), nat: random() < natShare };
  });
}
