/** The simulator's clock: events in time order, microtasks settled within their event, cancellation. */
import { describe, expect, test } from "bun:test";
import { SimClock, SIM_EPOCH_MS } from "../../scripts/sim/clock.ts";

describe("SimClock", () => {
  test("run() executes events in time order, ties in the order they were added", async () => {
    const clock = new SimClock();
    const seen: string[] = [];
    clock.at(30, () => seen.push("c@30"));
    clock.at(10, () => seen.push("a@10"));
    clock.at(10, () => seen.push("b@10"));
    clock.after(20, () => seen.push(`d@${clock.now()}`));
    await clock.run();
    expect(seen).toEqual(["a@10", "b@10", "d@20", "c@30"]);
    expect(clock.now()).toBe(30);
  });

  test("an event never runs in the past: at() before now runs at now", async () => {
    const clock = new SimClock();
    const times: number[] = [];
    clock.at(50, () => clock.at(10, () => times.push(clock.now())));
    await clock.run();
    expect(times).toEqual([50]);
  });

  test("promise continuations started by an event run at that event's time", async () => {
    const clock = new SimClock();
    const times: number[] = [];
    clock.at(100, () => {
      void (async () => {
        for (let i = 0; i < 5; i++) await Promise.resolve();
        times.push(clock.now());
      })();
    });
    clock.at(101, () => times.push(clock.now()));
    await clock.run();
    expect(times).toEqual([100, 101]);
  });

  test("a cancelled event does not run, and the DHT timers adapter cancels through clearTimeout", async () => {
    const clock = new SimClock();
    const timers = clock.timers();
    let ran = 0;
    const handle = timers.setTimeout(() => ran++, 10);
    timers.setTimeout(() => ran += 10, 20);
    timers.clearTimeout(handle);
    await clock.run();
    expect(ran).toBe(10);
    expect(timers.now()).toBe(20);
    expect(clock.wallClock()()).toBe(SIM_EPOCH_MS + 20);
  });

  test("run({ until }) stops before later events and leaves them queued", async () => {
    const clock = new SimClock();
    let ran = 0;
    clock.at(10, () => ran++);
    clock.at(1000, () => ran++);
    await clock.run({ until: 500 });
    expect(ran).toBe(1);
    expect(clock.now()).toBe(500);
    expect(clock.pending).toBe(1);
  });

  test("runUntil() resolves with the awaited value once simulated work completes it", async () => {
    const clock = new SimClock();
    const value = clock.runUntil(new Promise<string>((resolve) => clock.after(5_000, () => resolve("done"))));
    expect(await value).toBe("done");
    expect(clock.now()).toBe(5_000);
  });

  test("runUntil() fails when the queue runs dry first", async () => {
    const clock = new SimClock();
    await expect(clock.runUntil(new Promise(() => {}))).rejects.toThrow("ran dry");
  });
});
