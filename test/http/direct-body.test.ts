/** Direct bodies read through their stream (what any reader but the HTTP server sees). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bodyStream, directBodyOf, directResponse, fileRangeBody, memoryBody, type BodyOutcome, type DirectBody } from "../../src/http/direct-body.ts";

let dir: string;
const bytes = new Uint8Array(700_000).map((_, i) => (i * 13 + 5) % 251);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-direct-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("a file range reads as exactly its bytes, in chunks of at most chunkBytes, and settles complete once", async () => {
  const path = join(dir, "a");
  await writeFile(path, bytes);
  const outcomes: BodyOutcome[] = [];
  let counted = 0;
  const body = fileRangeBody({ path, start: 1000, length: 600_000, chunkBytes: 100_000, onRead: (n) => (counted += n), settle: (o) => outcomes.push(o) });
  const chunks: number[] = [];
  const got: Uint8Array[] = [];
  for await (const chunk of bodyStream(body)) {
    chunks.push(chunk.length);
    got.push(chunk);
  }
  expect(Buffer.concat(got).equals(Buffer.from(bytes.subarray(1000, 601_000)))).toBe(true);
  expect(Math.max(...chunks)).toBeLessThanOrEqual(100_000);
  expect(counted).toBe(600_000);
  expect(outcomes).toEqual(["complete"]);
});

test("a file shorter than promised fails the stream and settles as short", async () => {
  const path = join(dir, "b");
  await writeFile(path, bytes);
  const outcomes: BodyOutcome[] = [];
  const body = fileRangeBody({ path, start: 0, length: bytes.length, chunkBytes: 100_000, settle: (o) => outcomes.push(o) });
  const reader = bodyStream(body).getReader();
  expect((await reader.read()).value!.length).toBe(100_000);
  await truncate(path, 150_000);
  await expect(reader.read()).rejects.toThrow("changed on disk");
  expect(outcomes).toEqual(["short"]);
});

test("a body whose read gives no bytes is an error, not an endless loop; a cancelled one settles cancelled", async () => {
  const outcomes: BodyOutcome[] = [];
  const stuck: DirectBody = { length: 10, chunkBytes: 10, read: async () => 0, settle: (o) => outcomes.push(o) };
  await expect(new Response(bodyStream(stuck)).bytes()).rejects.toThrow("gave 0 bytes");
  const cancelled: BodyOutcome[] = [];
  const reader = bodyStream(memoryBody(bytes, { chunkBytes: 1000, settle: (o) => cancelled.push(o) })).getReader();
  await reader.read();
  await reader.cancel();
  expect(outcomes).toEqual(["error"]);
  expect(cancelled).toEqual(["cancelled"]);
});

test("a direct response carries its body for the server and the same bytes as a stream for anyone else", async () => {
  const body = memoryBody(bytes.subarray(0, 5000), { chunkBytes: 1024, settle: () => {} });
  const response = directResponse(body, { status: 200 });
  expect(directBodyOf(response)).toBe(body);
  expect(directBodyOf(new Response("x"))).toBeUndefined();
  expect(Buffer.from(await response.bytes()).equals(Buffer.from(bytes.subarray(0, 5000)))).toBe(true);
});
