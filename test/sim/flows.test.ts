/** Simulated byte streams: round trip before data, max-min fair sharing of hosts' capacity, aborts. */
import { describe, expect, test } from "bun:test";
import { SimClock } from "../../scripts/sim/clock.ts";
import { FlowNetwork, maxMinFair } from "../../scripts/sim/flows.ts";

const MB = 1_000_000;

function net() {
  const clock = new SimClock();
  return { clock, flows: new FlowNetwork(clock) };
}

describe("maxMinFair()", () => {
  test("flows through one bottleneck share it equally", () => {
    const hosts = [
      { upBps: 10, downBps: 1e9 },
      { upBps: 1e9, downBps: 1e9 },
      { upBps: 1e9, downBps: 1e9 },
    ];
    const flows = [
      { from: 0, to: 1, rate: 0 },
      { from: 0, to: 2, rate: 0 },
    ];
    maxMinFair(flows, hosts);
    expect(flows.map((f) => f.rate)).toEqual([5, 5]);
  });

  test("a flow held back elsewhere leaves its share of a common link to the others", () => {
    // Receiver 2 downloads 12 from sender 0 (upload 2) and sender 1 (upload 100): 2 and 10.
    const hosts = [
      { upBps: 2, downBps: 1e9 },
      { upBps: 100, downBps: 1e9 },
      { upBps: 1e9, downBps: 12 },
    ];
    const flows = [
      { from: 0, to: 2, rate: 0 },
      { from: 1, to: 2, rate: 0 },
    ];
    maxMinFair(flows, hosts);
    expect(flows.map((f) => f.rate)).toEqual([2, 10]);
  });
});

describe("FlowNetwork", () => {
  test("a flow ends one round trip plus size ÷ the slower end's capacity after it starts", async () => {
    const { clock, flows } = net();
    const a = flows.addHost({ upBps: 2 * MB, downBps: 100 * MB });
    const b = flows.addHost({ upBps: 100 * MB, downBps: 4 * MB });
    let endedAt = -1;
    flows.start(a, b, 4 * MB, 50, (end) => {
      endedAt = clock.now();
      expect(end).toEqual({ bytes: 4 * MB, aborted: false });
    });
    await clock.run();
    expect(endedAt).toBeCloseTo(50 + 2_000, 6);
    expect(flows.sent[a]).toBeCloseTo(4 * MB, 3);
    expect(flows.received[b]).toBeCloseTo(4 * MB, 3);
  });

  test("two downloads share the receiver's line, and the survivor speeds up when one ends", async () => {
    const { clock, flows } = net();
    const s1 = flows.addHost({ upBps: 100 * MB, downBps: 1 });
    const s2 = flows.addHost({ upBps: 100 * MB, downBps: 1 });
    const r = flows.addHost({ upBps: 1, downBps: 2 * MB });
    const ends: number[] = [];
    flows.start(s1, r, 1 * MB, 0, () => ends.push(clock.now()));
    flows.start(s2, r, 3 * MB, 0, () => ends.push(clock.now()));
    await clock.run();
    // Both at 1 MB/s until the small one ends at 1 s; the big one then has 2 MB left at 2 MB/s.
    expect(ends[0]).toBeCloseTo(1_000, 6);
    expect(ends[1]).toBeCloseTo(2_000, 6);
  });

  test("a host's uploads never exceed its capacity together, however many start", async () => {
    const { clock, flows } = net();
    const seeder = flows.addHost({ upBps: 1 * MB, downBps: 1e9 });
    for (let i = 0; i < 20; i++) {
      const r = flows.addHost({ upBps: 1e9, downBps: (1 + i) * 100_000 });
      clock.at(i * 37, () => flows.start(seeder, r, 500_000, 10 + i, () => {}));
    }
    await clock.run();
    expect(flows.peakUpBps[seeder]).toBeLessThanOrEqual(1 * MB * (1 + 1e-9));
    expect(flows.peakUpBps[seeder]).toBeGreaterThan(0.99 * MB);
    expect(flows.sent[seeder]).toBeCloseTo(20 * 500_000, 0);
  });

  test("an aborted flow reports the bytes it moved and frees its share", async () => {
    const { clock, flows } = net();
    const a = flows.addHost({ upBps: 1 * MB, downBps: 1e9 });
    const b = flows.addHost({ upBps: 1e9, downBps: 1e9 });
    let result: { bytes: number; aborted: boolean } | undefined;
    const flow = flows.start(a, b, 10 * MB, 0, (end) => (result = end));
    clock.at(2_500, () => flow.abort());
    await clock.run();
    expect(result!.aborted).toBe(true);
    expect(result!.bytes).toBeCloseTo(2.5 * MB, 3);
    expect(flows.activeFlows).toBe(0);
    expect(flows.received[b]).toBeCloseTo(2.5 * MB, 3);
  });

  test("a flow aborted during its round trip moves nothing", async () => {
    const { clock, flows } = net();
    const a = flows.addHost({ upBps: 1 * MB, downBps: 1e9 });
    const b = flows.addHost({ upBps: 1e9, downBps: 1e9 });
    let result: { bytes: number; aborted: boolean } | undefined;
    const flow = flows.start(a, b, MB, 100, (end) => (result = end));
    clock.at(50, () => flow.abort());
    await clock.run();
    expect(result).toEqual({ bytes: 0, aborted: true });
    expect(flows.sent[a]).toBe(0);
  });
});
