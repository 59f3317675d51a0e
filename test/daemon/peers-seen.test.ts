import { describe, expect, test } from "bun:test";
import { PeersSeen } from "../../src/daemon/peers-seen.ts";

describe("PeersSeen", () => {
  test("summary() lists the most recently seen first, with what each did", () => {
    const peers = new PeersSeen();
    peers.found("10.0.0.1", 9977, 1_000);
    peers.servedTo("10.0.0.2", 2_000);
    peers.found("10.0.0.1", 9977, 3_000);
    peers.receivedFrom("10.0.0.1:9977", 500, 3_000);
    const summary = peers.summary(4_000);
    expect(summary.total).toBe(2);
    expect(summary.recent).toEqual([
      { peer: "10.0.0.1:9977", firstSeen: 1_000, lastSeen: 3_000, found: 2, received: 500, requests: 0 },
      { peer: "10.0.0.2", firstSeen: 2_000, lastSeen: 2_000, found: 0, received: 0, requests: 1 },
    ]);
  });

  test("lastHour counts the peers seen within the hour", () => {
    const peers = new PeersSeen();
    peers.servedTo("10.0.0.1", 0);
    peers.servedTo("10.0.0.2", 60 * 60_000);
    expect(peers.summary(60 * 60_000 + 1).lastHour).toBe(1);
  });

  test("memory is bounded: the least recently seen peer is forgotten first", () => {
    const peers = new PeersSeen(2);
    peers.servedTo("a", 1);
    peers.servedTo("b", 2);
    peers.servedTo("a", 3);
    peers.servedTo("c", 4);
    expect(peers.summary(5).recent.map((p) => p.peer)).toEqual(["c", "a"]);
  });
});
