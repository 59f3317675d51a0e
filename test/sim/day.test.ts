/**
 * A 50-machine update day on the simulated network, checked for sanity: every machine finishes, bytes
 * are conserved (what machines received is what the mirror and peers sent, and is the verified bytes
 * plus the waste), peers never upload past their limit, and the DHT alone finds what was announced.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { buildWorkload, loadArchive, type ArchivePackage } from "../../scripts/sim/archive.ts";
import { simulateLevel, type LevelResult } from "../../scripts/sim/day.ts";
import { runDhtOnly } from "../../scripts/sim/dht-only.ts";
import { seeded } from "../../scripts/sim/random.ts";
import { buildWorld, type World } from "../../scripts/sim/world.ts";

const MACHINES = 50;

let packages: ArchivePackage[];
let world: World;
let full: LevelResult;
let some: LevelResult;

beforeAll(async () => {
  packages = await loadArchive();
  const workload = buildWorkload(packages, MACHINES, seeded(5), { filesShare: 0.5 });
  world = buildWorld(workload, 5);
  full = await simulateLevel(world, 1, 5);
  some = await simulateLevel(world, 0.2, 5);
}, 60_000);

function expectedBytes(w: World, adopters?: (i: number) => boolean): number {
  let sum = 0;
  w.machines.forEach((m, i) => {
    if (adopters === undefined || adopters(i)) for (const f of m.updates) sum += w.workload.files[f]!.size;
  });
  return sum;
}

describe(`an update day of ${MACHINES} machines`, () => {
  test("the package list is the real bookworm one", () => {
    expect(packages.length).toBeGreaterThan(60_000);
    expect(packages.find((p) => p.name === "hello")?.source).toBe("hello");
  });

  test("every machine with something to update finishes, at every adoption level", () => {
    const updating = world.machines.filter((m) => m.updates.length > 0).length;
    expect(updating).toBeGreaterThan(MACHINES / 2);
    for (const r of [full, some]) {
      expect(r.unfinished).toBe(0);
      expect(r.finishMs.p2p.count + r.finishMs.direct.count).toBe(updating);
    }
    expect(full.finishMs.direct.count).toBe(0);
    expect(some.adopters).toBe(10);
  });

  test("bytes are conserved: received = sent by mirror and peers = verified + wasted, and verified = what machines needed", () => {
    for (const r of [full, some]) {
      const b = r.bytes;
      expect(b.received).toBeCloseTo(b.mirrorSent + b.peersSent, -1);
      expect(b.received).toBeCloseTo(b.useful + b.wasted, -1);
      expect(b.useful).toBe(b.mirror + b.peers);
      expect(b.useful).toBe(expectedBytes(world));
      expect(b.mirrorSent).toBeGreaterThanOrEqual(b.mirror - 1); // floating-point residue of rate × time
    }
  });

  test("at full adoption peers carry bytes; mirror-only machines take everything from the mirror", () => {
    expect(full.bytes.peers).toBeGreaterThan(0);
    expect(full.bytes.directMirror).toBe(0);
    const adopting = (i: number) => world.machines[i]!.adoptOrder < 10;
    expect(some.bytes.directMirror).toBe(expectedBytes(world, (i) => !adopting(i)));
  });

  test("no peer uploads past its limit, and machines behind a NAT upload nothing", () => {
    for (const r of [full, some]) expect(r.uploads.maxPeakOverLimit).toBeLessThanOrEqual(1 + 1e-9);
    expect(full.uploads.servers).toBe(world.machines.filter((m) => !m.session.nat).length);
  });

  test("every file an apt-p2p machine fetched began with a DHT lookup, and reachable ones announced it", () => {
    const files = (nat?: boolean) => world.machines.filter((m) => nat === undefined || m.session.nat === nat).reduce((n, m) => n + m.updates.length, 0);
    expect(full.lookupsMs.count).toBe(files());
    expect(full.announces.count).toBe(files(false));
    expect(full.lookupsMs.p50).toBeGreaterThan(0);
    expect(full.lookupsMs.p99).toBeGreaterThanOrEqual(full.lookupsMs.p50);
  });

  test("the same seed gives the same day", async () => {
    const again = await simulateLevel(world, 0.2, 5);
    expect(again.bytes).toEqual(some.bytes);
    expect(again.finishMs).toEqual(some.finishMs);
  }, 30_000);
});

describe("the DHT alone", () => {
  test("with a quarter of 150 nodes dead, lookups find every announcer", async () => {
    const r = await runDhtOnly({ nodes: 150, seed: 3, lookups: 30 });
    expect(r.dead).toBe(38);
    expect(r.getPeers.success).toBe(1);
    expect(r.findNode.exact).toBeGreaterThan(0.8);
    expect(r.getPeers.p50Ms).toBeGreaterThan(0);
  }, 30_000);
});
