/** Churn schedules and the workload's popularity law, against the figures the issue asks for. */
import { describe, expect, test } from "bun:test";
import { dailyUpdate, popularityLaw, RARE_BELOW, type ArchivePackage } from "../../scripts/sim/archive.ts";
import { drawSessions, MEDIAN_SESSION_MS, NAT_SHARE, TIMER_SPREAD_MS } from "../../scripts/sim/churn.ts";
import { seeded } from "../../scripts/sim/random.ts";

const HOUR_MS = 3_600_000;

describe("drawSessions()", () => {
  const sessions = drawSessions(20_000, seeded(11));

  test("about half the machines are gone five hours after they came online", () => {
    const goneBy5h = sessions.filter((s) => s.end - s.online < 5 * HOUR_MS).length / sessions.length;
    expect(MEDIAN_SESSION_MS).toBe(5 * HOUR_MS);
    expect(goneBy5h).toBeGreaterThan(0.48);
    expect(goneBy5h).toBeLessThan(0.52);
  });

  test("about NAT_SHARE of the machines sit behind a NAT", () => {
    const nat = sessions.filter((s) => s.nat).length / sessions.length;
    expect(Math.abs(nat - NAT_SHARE)).toBeLessThan(0.02);
  });

  test("machines on at publication update within the timer's spread, the others when they come online", () => {
    for (const s of sessions) {
      if (s.online === 0) expect(s.arrive).toBeLessThanOrEqual(TIMER_SPREAD_MS);
      else expect(s.arrive).toBe(s.online);
      expect(s.arrive).toBeLessThanOrEqual(12 * HOUR_MS);
      expect(s.end).toBeGreaterThanOrEqual(s.online);
    }
  });

  test("the same seed draws the same day", () => {
    expect(drawSessions(50, seeded(4))).toEqual(drawSessions(50, seeded(4)));
  });
});

describe("popularityLaw()", () => {
  const count = 60_000;
  const law = popularityLaw(count, 2_000);

  test("80% of packages are installed on fewer than 1% of machines", () => {
    let rare = 0;
    for (let r = 0; r < count; r++) if (law.p(r) < RARE_BELOW) rare++;
    expect(rare / count).toBeGreaterThan(0.79);
    expect(rare / count).toBeLessThan(0.81);
  });

  test("a machine installs the asked number of packages on average, with a core every machine has", () => {
    let mean = 0;
    for (let r = 0; r < count; r++) mean += law.p(r);
    expect(mean).toBeCloseTo(2_000, 0);
    expect(law.core).toBeGreaterThan(50);
    expect(law.p(0)).toBe(1);
    expect(law.p(law.core - 1)).toBe(1);
  });
});

describe("dailyUpdate()", () => {
  test("updates whole source packages covering about 1% of the binary packages", () => {
    const packages: ArchivePackage[] = Array.from({ length: 10_000 }, (_, i) => ({ name: `p${i}`, source: `s${Math.floor(i / 3)}`, size: 1000, sha256: "" }));
    const groups = dailyUpdate(packages, seeded(2));
    const files = groups.flat();
    expect(files.length).toBeGreaterThanOrEqual(100);
    expect(files.length).toBeLessThan(103);
    for (const g of groups) expect(new Set(g.map((i) => packages[i]!.source)).size).toBe(1);
    expect(new Set(files).size).toBe(files.length);
  });
});
