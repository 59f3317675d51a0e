import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DAYS_KEPT, localDay, TrafficTotals } from "../../src/daemon/totals.ts";

const DAY_MS = 24 * 60 * 60_000;
/** Days counted from 0 in the tests, so that "today" does not depend on the machine's time zone. */
const dayOf = (ms: number) => `day-${String(Math.floor(ms / DAY_MS)).padStart(4, "0")}`;
const noLog = () => undefined;

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-totals-"));
  path = join(dir, "traffic.json");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("TrafficTotals", () => {
  test("record() adds the growth of the counters to today and to all time", async () => {
    const totals = await TrafficTotals.load(path, 0, noLog, dayOf);
    totals.record(1_000, { mirror: 100, peer: 300, cache: 0, upload: 50 });
    totals.record(2_000, { mirror: 150, peer: 300, cache: 20, upload: 50 });
    expect(totals.today(2_000)).toEqual({ day: "day-0000", mirror: 150, peer: 300, cache: 20, upload: 50 });
    expect(totals.allTime()).toEqual({ since: 0, mirror: 150, peer: 300, cache: 20, upload: 50 });
  });

  test("a new day starts at 0 while all time goes on", async () => {
    const totals = await TrafficTotals.load(path, 0, noLog, dayOf);
    totals.record(1_000, { mirror: 100, peer: 0, cache: 0, upload: 0 });
    totals.record(DAY_MS + 1_000, { mirror: 130, peer: 0, cache: 0, upload: 0 });
    expect(totals.today(DAY_MS + 1_000)).toMatchObject({ day: "day-0001", mirror: 30 });
    expect(totals.today(2 * DAY_MS)).toEqual({ day: "day-0002", mirror: 0, peer: 0, cache: 0, upload: 0 });
    expect(totals.allTime().mirror).toBe(130);
  });

  test("the totals survive a restart: the new process's counters start at 0 and add on", async () => {
    const first = await TrafficTotals.load(path, 0, noLog, dayOf);
    first.record(1_000, { mirror: 100, peer: 200, cache: 0, upload: 7 });
    await first.save();
    const second = await TrafficTotals.load(path, 5_000, noLog, dayOf);
    second.record(6_000, { mirror: 1, peer: 2, cache: 3, upload: 4 });
    expect(second.today(6_000)).toEqual({ day: "day-0000", mirror: 101, peer: 202, cache: 3, upload: 11 });
    expect(second.allTime().since).toBe(0);
  });

  test("save() writes nothing when nothing changed", async () => {
    const totals = await TrafficTotals.load(path, 0, noLog, dayOf);
    totals.record(1_000, { mirror: 0, peer: 0, cache: 0, upload: 0 });
    await totals.save();
    expect(await Bun.file(path).exists()).toBe(false);
  });

  test("an unreadable file is set aside and counting starts again, with a log line", async () => {
    await writeFile(path, "{ not json");
    const lines: string[] = [];
    const totals = await TrafficTotals.load(path, 42, (line) => lines.push(line), dayOf);
    expect(totals.allTime()).toEqual({ since: 42, mirror: 0, peer: 0, cache: 0, upload: 0 });
    expect(lines.join("\n")).toContain("unreadable");
    expect(await readFile(`${path}.bad`, "utf8")).toBe("{ not json");
  });

  test(`only the last ${DAYS_KEPT} days are kept; older ones stay in all time`, async () => {
    const totals = await TrafficTotals.load(path, 0, noLog, dayOf);
    for (let d = 0; d < DAYS_KEPT + 5; d++) totals.record(d * DAY_MS, { mirror: d + 1, peer: 0, cache: 0, upload: 0 });
    await totals.save();
    const file = JSON.parse(await readFile(path, "utf8")) as { days: Record<string, unknown> };
    expect(Object.keys(file.days)).toHaveLength(DAYS_KEPT);
    expect(file.days["day-0004"]).toBeUndefined();
    expect(totals.allTime().mirror).toBe(DAYS_KEPT + 5);
  });

  test("localDay() names the local calendar date", () => {
    const d = new Date(2024, 0, 9, 23, 59);
    expect(localDay(d.getTime())).toBe("2024-01-09");
  });
});
