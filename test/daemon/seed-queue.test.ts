/** New files are announced once the proxy is idle, or after the longest wait when it never is. */
import { expect, test } from "bun:test";
import { SeedQueue } from "../../src/daemon/seed-queue.ts";

function queue(busy: { value: boolean }, options: { quietMs?: number; maxWaitMs?: number } = {}) {
  const seeded: string[] = [];
  const q = new SeedQueue({ seed: async (sha) => void seeded.push(sha), busy: () => busy.value, log: () => {}, quietMs: 20, ...options });
  return { q, seeded };
}

test("files wait while downloads run and are announced, in order, once the proxy is quiet", async () => {
  const busy = { value: true };
  const { q, seeded } = queue(busy);
  q.add("a");
  q.add("b");
  q.add("a");
  await Bun.sleep(80);
  expect(seeded).toEqual([]);
  busy.value = false;
  await Bun.sleep(80);
  expect(seeded).toEqual(["a", "b"]);
  expect(q.size).toBe(0);
});

test("files landing one after another, with nothing running between them, are not a quiet proxy", async () => {
  const busy = { value: false };
  const { q, seeded } = queue(busy, { quietMs: 40 });
  // An install: a file lands every 15 ms and no download is running at the moments between them.
  for (let i = 0; i < 8; i++) {
    q.add(`f${i}`);
    await Bun.sleep(15);
  }
  expect(seeded).toEqual([]);
  await Bun.sleep(150);
  expect(seeded).toEqual(["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"]);
});

test("a proxy that never goes quiet still announces after the longest wait", async () => {
  const { q, seeded } = queue({ value: true }, { maxWaitMs: 60 });
  q.add("a");
  await Bun.sleep(30);
  expect(seeded).toEqual([]);
  await Bun.sleep(120);
  expect(seeded).toEqual(["a"]);
});

test("close drops what waits and takes no more", async () => {
  const { q, seeded } = queue({ value: true });
  q.add("a");
  await q.close();
  q.add("b");
  await Bun.sleep(80);
  expect(seeded).toEqual([]);
});
