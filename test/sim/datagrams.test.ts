/** Simulated datagrams: per-link latency, offline hosts, NAT filtering, loss. */
import { describe, expect, test } from "bun:test";
import { SimClock } from "../../scripts/sim/clock.ts";
import { SimDatagramNetwork } from "../../scripts/sim/datagrams.ts";
import { seeded } from "../../scripts/sim/random.ts";

const LATENCY: Record<string, number> = { "a>b": 40, "a>c": 10, "b>a": 40, "c>a": 10, "b>c": 25, "c>b": 25 };

function setup(options: { loss?: number } = {}) {
  const clock = new SimClock();
  const net = new SimDatagramNetwork(clock, { latencyMs: (f, t) => LATENCY[`${f}>${t}`]!, loss: options.loss, random: seeded(3) });
  const got: { at: number; to: string; text: string; from: string }[] = [];
  const sockets = Object.fromEntries(
    ["a", "b", "c"].map((host) => {
      const s = net.bind(host, 1, { nat: host === "c" });
      s.onDatagram((data, from) => got.push({ at: clock.now(), to: host, text: new TextDecoder().decode(data), from: from.address }));
      return [host, s];
    }),
  );
  const send = (from: string, to: string, text: string) => sockets[from]!.send(new TextEncoder().encode(text), { address: to, port: 1 });
  return { clock, net, got, send };
}

describe("SimDatagramNetwork", () => {
  test("a datagram arrives after its link's latency: the shorter link first, whatever the sending order", async () => {
    const { clock, got, send } = setup();
    send("b", "a", "slow");
    send("c", "a", "fast-but-natted-sender");
    await clock.run();
    expect(got.map((g) => [g.text, g.at])).toEqual([
      ["fast-but-natted-sender", 10],
      ["slow", 40],
    ]);
  });

  test("datagrams on one link arrive in the order they were sent", async () => {
    const { clock, got, send } = setup();
    for (let i = 0; i < 5; i++) send("a", "b", `${i}`);
    await clock.run();
    expect(got.map((g) => g.text)).toEqual(["0", "1", "2", "3", "4"]);
  });

  test("an offline host neither receives nor sends, and is reachable again once online", async () => {
    const { clock, net, got, send } = setup();
    net.setOnline("b", false);
    send("a", "b", "lost");
    send("b", "a", "never sent");
    await clock.run();
    expect(got).toEqual([]);
    net.setOnline("b", true);
    send("a", "b", "back");
    await clock.run();
    expect(got.map((g) => g.text)).toEqual(["back"]);
    expect(net.counters.dropped).toBe(2);
  });

  test("a host behind a NAT hears only from endpoints it sent to", async () => {
    const { clock, got, send } = setup();
    send("a", "c", "unsolicited");
    await clock.run();
    expect(got).toEqual([]);
    send("c", "a", "query");
    await clock.run();
    send("a", "c", "answer");
    send("b", "c", "stranger");
    await clock.run();
    expect(got.map((g) => `${g.from}>${g.to}:${g.text}`)).toEqual(["c>a:query", "a>c:answer"]);
  });

  test("loss drops about the configured share, repeatably for a seed", async () => {
    const { clock, got, send } = setup({ loss: 0.2 });
    for (let i = 0; i < 2_000; i++) send("a", "b", "x");
    await clock.run();
    expect(got.length).toBeGreaterThan(1_500);
    expect(got.length).toBeLessThan(1_700);
  });
});
