import { describe, expect, test } from "bun:test";
import { BAN_AFTER_FAULTS, DEFAULT_MAX_IN_FLIGHT, MAX_COPIES, PieceScheduler } from "../../src/transfer/scheduler.ts";
import { mulberry32 } from "../helpers/random.ts";

const rng = mulberry32;

const sequential = (n: number) => new PieceScheduler(n, { random: rng(1), sequential: true });

describe("PieceScheduler", () => {
  test("fills each source up to its in-flight bound, no piece twice before the endgame", () => {
    const s = sequential(20);
    s.addSource({ id: "a", kind: "peer", pieces: "all" });
    s.addSource({ id: "b", kind: "peer", pieces: "all", maxInFlight: 2 });
    const requests = s.next();
    expect(requests.filter((r) => r.source === "a")).toHaveLength(DEFAULT_MAX_IN_FLIGHT);
    expect(requests.filter((r) => r.source === "b")).toHaveLength(2);
    expect(new Set(requests.map((r) => r.piece)).size).toBe(requests.length);
    expect(s.next()).toEqual([]);
  });

  test("a source that refused a request as busy gets one request fewer in flight, down to one, and the piece goes to the pool", () => {
    const s = sequential(20);
    s.addSource({ id: "a", kind: "peer", pieces: "all" });
    const first = s.next();
    expect(first).toHaveLength(DEFAULT_MAX_IN_FLIGHT);
    const refused = first[0]!.piece;
    expect(s.busy("a")).toBe(true);
    s.failed(refused, "a", false);
    // Still DEFAULT_MAX_IN_FLIGHT - 1 in flight, its new bound: nothing more to send yet.
    expect(s.next()).toEqual([]);
    s.completed(first[1]!.piece, "a");
    // A slot came free: the refused piece is asked for again, first in file order.
    expect(s.next()).toEqual([{ piece: refused, source: "a" }]);
    for (let limit = DEFAULT_MAX_IN_FLIGHT - 1; limit > 1; limit--) expect(s.busy("a")).toBe(true);
    expect(s.busy("a")).toBe(false);
    expect(s.busy("gone")).toBe(false);
  });

  test("asks a source only for pieces it has", () => {
    const s = sequential(10);
    s.addSource({ id: "a", kind: "peer", pieces: new Set([7, 8]) });
    expect(s.next().map((r) => r.piece).sort()).toEqual([7, 8]);
  });

  test("rarest first: a piece held by one peer goes before pieces held by two", () => {
    const s = sequential(3);
    s.addSource({ id: "a", kind: "peer", pieces: new Set([0, 1, 2]), maxInFlight: 1 });
    s.addSource({ id: "b", kind: "peer", pieces: new Set([0, 1]), maxInFlight: 0 });
    expect(s.next()).toEqual([{ piece: 2, source: "a" }]);
  });

  test("the mirror takes the pieces no peer has first, and counts for nothing in rarity", () => {
    const s = sequential(4);
    s.addSource({ id: "peer", kind: "peer", pieces: new Set([0, 1]), maxInFlight: 0 });
    s.addSource({ id: "mirror", kind: "mirror", pieces: "all", maxInFlight: 2 });
    expect(s.next().map((r) => r.piece).sort()).toEqual([2, 3]);
  });

  test("in sequential mode the mirror works from the end while peers take part, and in order without them", () => {
    const s = sequential(10);
    s.addSource({ id: "peer", kind: "peer", pieces: "all", maxInFlight: 2 });
    s.addSource({ id: "mirror", kind: "mirror", pieces: "all", maxInFlight: 2 });
    const first = s.next();
    expect(first.filter((r) => r.source === "peer").map((r) => r.piece)).toEqual([0, 1]);
    expect(first.filter((r) => r.source === "mirror").map((r) => r.piece)).toEqual([9, 8]);
    s.removeSource("peer");
    s.completed(9, "mirror");
    // The peer's pieces went back to the pool: alone, the mirror now takes them first, in order.
    expect(s.next()).toEqual([{ piece: 0, source: "mirror" }]);
  });

  test("a faster source, finishing sooner, is given more pieces", () => {
    const s = sequential(40);
    s.addSource({ id: "fast", kind: "peer", pieces: "all", maxInFlight: 1 });
    s.addSource({ id: "slow", kind: "peer", pieces: "all", maxInFlight: 1 });
    let inFlight = s.next();
    const delivered: Record<string, number> = { fast: 0, slow: 0 };
    // The fast source completes a piece every round, the slow one every third round.
    for (let round = 0; !s.complete && round < 100; round++) {
      for (const r of inFlight.filter((r) => r.source === "fast" || round % 3 === 2)) {
        s.completed(r.piece, r.source);
        delivered[r.source]!++;
      }
      inFlight = inFlight.filter((r) => !s.isDone(r.piece)).concat(s.next());
    }
    expect(s.complete).toBe(true);
    expect(delivered.fast).toBeGreaterThanOrEqual(2.5 * delivered.slow!);
  });

  test("the endgame duplicates a piece in flight elsewhere, at most MAX_COPIES, and names the copies to cancel", () => {
    const s = sequential(2);
    s.addSource({ id: "a", kind: "peer", pieces: "all", maxInFlight: 2 });
    s.addSource({ id: "b", kind: "peer", pieces: "all", maxInFlight: 2 });
    s.addSource({ id: "c", kind: "peer", pieces: "all", maxInFlight: 2 });
    const first = s.next();
    const copies = new Map<number, number>();
    for (const r of first) copies.set(r.piece, (copies.get(r.piece) ?? 0) + 1);
    for (const n of copies.values()) expect(n).toBeLessThanOrEqual(MAX_COPIES);
    expect(first.length).toBe(2 * MAX_COPIES);
    const holders = first.filter((r) => r.piece === 0).map((r) => r.source);
    const cancel = s.completed(0, holders[0]!);
    expect(cancel).toEqual(holders.slice(1));
  });

  test("with an endgame delay, a piece in flight is duplicated only once the delay has passed", () => {
    let now = 0;
    const s = new PieceScheduler(1, { random: rng(1), sequential: true, endgameDelayMs: 1000, now: () => now });
    s.addSource({ id: "peer", kind: "peer", pieces: "all" });
    s.addSource({ id: "mirror", kind: "mirror", pieces: "all" });
    expect(s.next()).toEqual([{ piece: 0, source: "peer" }]);
    now = 999;
    expect(s.next()).toEqual([]);
    expect(s.nextWake()).toBe(1000);
    now = 1000;
    expect(s.next()).toEqual([{ piece: 0, source: "mirror" }]);
    expect(s.nextWake()).toBeUndefined();
  });

  describe("before the endgame delay, by the rates seen", () => {
    /**
     * One request in flight each: "fast" lands a piece every 20 ms, "slow" its first at t = 100 (if
     * `slowDelivers`) and is then asked for the last piece, 6, while fast still has piece 5.
     */
    function fastAndSlow(slowDelivers: boolean) {
      let now = 0;
      const s = new PieceScheduler(slowDelivers ? 7 : 6, { random: rng(1), sequential: true, endgameDelayMs: 10_000, now: () => now });
      s.addSource({ id: "fast", kind: "peer", pieces: "all", maxInFlight: 1 });
      s.addSource({ id: "slow", kind: "peer", pieces: "all", maxInFlight: 1 });
      expect(s.next()).toEqual([
        { piece: 0, source: "fast" },
        { piece: 1, source: "slow" },
      ]);
      for (const piece of [0, 2, 3, 4]) {
        now += 20;
        s.completed(piece, "fast");
        expect(s.next()).toEqual([{ piece: piece === 0 ? 2 : piece + 1, source: "fast" }]);
      }
      if (slowDelivers) {
        now = 100;
        s.completed(1, "slow");
        expect(s.next()).toEqual([{ piece: 6, source: "slow" }]);
      }
      return { s, at: (t: number) => (now = t) };
    }

    test("a fast source copies a piece the slow one would land much later", () => {
      const { s, at } = fastAndSlow(true);
      at(100);
      s.completed(5, "fast"); // fast: 20 ms a piece; slow: 100 ms, piece 6 just asked
      expect(s.next()).toEqual([{ piece: 6, source: "fast" }]);
      expect(s.completed(6, "fast")).toEqual(["slow"]);
      expect(s.complete).toBe(true);
    });

    test("the mirror makes no early copy, however much sooner it would land the piece", () => {
      let now = 0;
      const s = new PieceScheduler(3, { random: rng(1), sequential: true, endgameDelayMs: 10_000, now: () => now });
      s.addSource({ id: "slow", kind: "peer", pieces: "all", maxInFlight: 1 });
      expect(s.next()).toEqual([{ piece: 0, source: "slow" }]);
      now = 100;
      s.completed(0, "slow"); // 100 ms a piece
      expect(s.next()).toEqual([{ piece: 1, source: "slow" }]);
      s.addSource({ id: "mirror", kind: "mirror", pieces: "all", maxInFlight: 1 });
      expect(s.next()).toEqual([{ piece: 2, source: "mirror" }]);
      now = 120;
      s.completed(2, "mirror"); // 20 ms a piece; piece 1 at slow has about 80 ms to go
      expect(s.next()).toEqual([]);
      expect(s.nextWake()).toBe(10_100); // after the delay
    });

    test("no copy where the source that has the piece will land it soon enough", () => {
      const { s, at } = fastAndSlow(true);
      at(185);
      s.completed(5, "fast"); // fast: 185 ms for 5 pieces, 37 a piece; piece 6 at slow: 85 of its 100 ms gone
      expect(s.next()).toEqual([]);
      expect(s.nextWake()).toBe(10_100);
    });

    test("no copy of a piece at a source that has delivered nothing: that waits for the delay", () => {
      const { s, at } = fastAndSlow(false);
      at(100);
      s.completed(5, "fast");
      expect(s.next()).toEqual([]); // piece 1 at slow, whose pace is unknown
      at(10_000);
      expect(s.next()).toEqual([{ piece: 1, source: "fast" }]);
    });
  });

  test("bad pieces get a source banned after BAN_AFTER_FAULTS, and its pieces go to others", () => {
    const s = sequential(4);
    s.addSource({ id: "evil", kind: "peer", pieces: "all", maxInFlight: 4 });
    const got = s.next();
    let banned = false;
    for (let i = 0; i < BAN_AFTER_FAULTS; i++) banned = s.failed(got[i]!.piece, "evil", true);
    expect(banned).toBe(true);
    expect(s.isBanned("evil")).toBe(true);
    s.addSource({ id: "evil", kind: "peer", pieces: "all" }); // a banned source cannot come back
    s.addSource({ id: "good", kind: "peer", pieces: "all" });
    expect(s.next().map((r) => r.source)).toEqual(["good", "good", "good", "good"]);
  });

  test("a failure without fault just puts the piece back", () => {
    const s = sequential(1);
    s.addSource({ id: "a", kind: "peer", pieces: "all" });
    const [r] = s.next();
    expect(s.failed(r!.piece, "a", false)).toBe(false);
    expect(s.next()).toEqual([{ piece: 0, source: "a" }]);
  });

  test("removing a source returns its pieces in flight and reports what cannot be had", () => {
    const s = sequential(3);
    s.addSource({ id: "a", kind: "peer", pieces: new Set([0, 1]) });
    s.addSource({ id: "b", kind: "peer", pieces: new Set([2]) });
    s.next();
    expect(s.removeSource("b")).toEqual([2]);
    expect(s.unobtainable()).toEqual([2]);
  });

  test("with a random start, different downloaders begin at different pieces", () => {
    const starts = new Set<number>();
    for (let seed = 1; seed <= 8; seed++) {
      const s = new PieceScheduler(100, { random: rng(seed) });
      s.addSource({ id: "m", kind: "mirror", pieces: "all", maxInFlight: 1 });
      starts.add(s.next()[0]!.piece);
    }
    expect(starts.size).toBeGreaterThan(4);
  });

  test("a random simulation always completes every piece exactly once", () => {
    const random = rng(99);
    const s = new PieceScheduler(57, { random });
    s.addSource({ id: "mirror", kind: "mirror", pieces: "all", maxInFlight: 2 });
    for (let p = 0; p < 5; p++) {
      const have = new Set<number>();
      for (let i = 0; i < 57; i++) if (random() < 0.6) have.add(i);
      s.addSource({ id: `p${p}`, kind: "peer", pieces: have });
    }
    const completedPieces: number[] = [];
    let inFlight = s.next();
    for (let step = 0; !s.complete && step < 10_000; step++) {
      const i = Math.floor(random() * inFlight.length);
      const r = inFlight.splice(i, 1)[0]!;
      if (s.isDone(r.piece)) continue;
      if (random() < 0.1) s.failed(r.piece, r.source, false);
      else {
        const cancelled = s.completed(r.piece, r.source);
        completedPieces.push(r.piece);
        inFlight = inFlight.filter((q) => !(q.piece === r.piece && cancelled.includes(q.source)));
      }
      inFlight.push(...s.next());
    }
    expect(s.complete).toBe(true);
    expect(completedPieces.sort((a, b) => a - b)).toEqual(Array.from({ length: 57 }, (_, i) => i));
  });
});
