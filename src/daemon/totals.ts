/**
 * Traffic totals that survive restarts: bytes by source and bytes uploaded, per day and since the first
 * start, for the status page's "today" and "all time". Kept as a small JSON file in the state dir
 * (written every minute and at shutdown: a crash loses at most a minute of counting).
 *
 * The daemon's counters restart from 0 with every process; record() adds what they grew by since its
 * last call, so the file only ever accumulates.
 */
import { rename, writeFile } from "node:fs/promises";

/** How often the daemon writes the totals. */
export const TOTALS_SAVE_MS = 60_000;
/** Days kept in the file; older days still count in the all-time total. */
export const DAYS_KEPT = 400;
const FILE_VERSION = 1;

export interface TrafficBytes {
  /** Verified bytes of files with a known hash, by where they came from. */
  mirror: number;
  peer: number;
  cache: number;
  /** Bytes sent to peers. */
  upload: number;
}

interface TotalsFile {
  version: number;
  /** ms since epoch of the first start counted. */
  since: number;
  allTime: TrafficBytes;
  /** By local date, "YYYY-MM-DD". */
  days: Record<string, TrafficBytes>;
}

export function zeroTraffic(): TrafficBytes {
  return { mirror: 0, peer: 0, cache: 0, upload: 0 };
}

/** The local calendar day of `ms`: what an administrator means by "today". */
export function localDay(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

export class TrafficTotals {
  private last = zeroTraffic();
  private dirty = false;

  private constructor(
    private readonly path: string,
    private readonly file: TotalsFile,
    private readonly dayOf: (ms: number) => string,
  ) {}

  /**
   * The totals kept at `path`, or fresh ones starting at `now`. A file that cannot be read as totals is
   * set aside (renamed to `<path>.bad`) and reported through `log`: losing the counts must not stop the daemon.
   */
  static async load(path: string, now: number, log: (line: string) => void, dayOf: (ms: number) => string = localDay): Promise<TrafficTotals> {
    const text = await Bun.file(path).text().catch((err: unknown) => {
      if ((err as { code?: string }).code === "ENOENT") return null;
      throw err;
    });
    if (text !== null) {
      const parsed = parseTotals(text);
      if (parsed !== null) return new TrafficTotals(path, parsed, dayOf);
      log(`traffic totals in ${path} are unreadable: starting again from 0 (the old file is kept as ${path}.bad)`);
      await rename(path, `${path}.bad`);
    }
    return new TrafficTotals(path, { version: FILE_VERSION, since: now, allTime: zeroTraffic(), days: {} }, dayOf);
  }

  /** Adds what the daemon's counters (cumulative since it started) grew by since the last call, as of `now`. */
  record(now: number, counters: TrafficBytes): void {
    const day = (this.file.days[this.dayOf(now)] ??= zeroTraffic());
    for (const key of Object.keys(counters) as (keyof TrafficBytes)[]) {
      const grown = Math.max(0, counters[key] - this.last[key]);
      if (grown === 0) continue;
      day[key] += grown;
      this.file.allTime[key] += grown;
      this.dirty = true;
    }
    this.last = { ...counters };
    this.prune();
  }

  today(now: number): TrafficBytes & { day: string } {
    const day = this.dayOf(now);
    return { day, ...(this.file.days[day] ?? zeroTraffic()) };
  }

  allTime(): TrafficBytes & { since: number } {
    return { since: this.file.since, ...this.file.allTime };
  }

  /** Writes the file if anything changed (write then rename, so a crash leaves the old or the new one). */
  async save(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const temp = `${this.path}.tmp`;
    try {
      await writeFile(temp, `${JSON.stringify(this.file)}\n`);
      await rename(temp, this.path);
    } catch (err) {
      this.dirty = true; // try again next time
      throw err;
    }
  }

  private prune(): void {
    const days = Object.keys(this.file.days);
    if (days.length <= DAYS_KEPT) return;
    for (const day of days.sort().slice(0, days.length - DAYS_KEPT)) delete this.file.days[day];
  }
}

function parseTotals(text: string): TotalsFile | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null; // the caller reports the file as unreadable
  }
  const file = value as Partial<TotalsFile> | null;
  if (file === null || typeof file !== "object" || file.version !== FILE_VERSION || typeof file.since !== "number") return null;
  if (!isTraffic(file.allTime) || typeof file.days !== "object" || file.days === null) return null;
  if (!Object.values(file.days).every(isTraffic)) return null;
  return file as TotalsFile;
}

function isTraffic(value: unknown): value is TrafficBytes {
  const t = value as Partial<TrafficBytes> | null;
  return t !== null && typeof t === "object" && (["mirror", "peer", "cache", "upload"] as const).every((k) => Number.isFinite(t[k]) && t[k]! >= 0);
}
