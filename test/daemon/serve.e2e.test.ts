/**
 * Several `apt-p2p serve` processes on 127.0.0.1 joined by bootstrap; `dht stats` and `dht lookup`
 * through the CLI; a restarted daemon rejoins through its saved contacts without a bootstrap node.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_CODES } from "../../src/cli/exit-codes.ts";
import { runApt } from "../helpers/cli.ts";
import { startServe, waitFor, type ServeProcess } from "../helpers/daemon.ts";
import { startMirror, type TestMirror } from "../helpers/mirror.ts";
import { buildRepo, dropGpgKey, makeGpgKey, type GpgKey, type Repo } from "../helpers/repo.ts";

const DAEMONS = 4;
let work: string;
let daemons: ServeProcess[] = [];
let key: GpgKey;
let repo: Repo;
let mirror: TestMirror;

async function api<T>(daemon: ServeProcess, path: string, method = "GET"): Promise<T> {
  const response = await fetch(`${daemon.url}${path}`, { method });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

const tableSize = async (d: ServeProcess) => (await api<{ tableSize: number }>(d, "/api/dht/stats")).tableSize;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-serve-"));
  const first = await startServe(["--state-dir", join(work, "state-0"), "--cache-dir", join(work, "cache-0")]);
  daemons.push(first);
  for (let i = 1; i < DAEMONS; i++) {
    daemons.push(await startServe(["--state-dir", join(work, `state-${i}`), "--cache-dir", join(work, `cache-${i}`), "--bootstrap", `127.0.0.1:${first.port}`]));
  }
  // Every daemon ends up knowing all the others: the joins made them ping each other.
  for (const d of daemons) await waitFor(async () => (await tableSize(d)) >= DAEMONS - 1, "full routing tables");
  key = await makeGpgKey("serve-test");
  repo = await buildRepo(join(work, "repo"), { key, packages: [{ name: "hello", version: "1.0-1", payloadBytes: 5000 }] });
  mirror = await startMirror(repo.root);
}, 90_000);

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  await mirror?.stop();
  if (key) await dropGpgKey(key);
  await rm(work, { recursive: true, force: true });
});

describe("apt-p2p serve with the DHT", () => {
  test("dht stats prints the node id, its contacts and counters", async () => {
    const r = await runApt(["dht", "stats", "--daemon", daemons[1]!.url]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^node id +[0-9a-f]{40}$/m);
    expect(r.stdout).toMatch(new RegExp(`^routing table +${DAEMONS - 1} contacts`, "m"));
    expect(r.stdout).toMatch(/^queries in +.*ping \d+/m);
  });

  test("dht stats --json gives the same as the control API", async () => {
    const r = await runApt(["dht", "stats", "--json", "--daemon", daemons[2]!.url]);
    expect(r.code).toBe(0);
    const stats = JSON.parse(r.stdout);
    expect(stats.port).toBe(daemons[2]!.port);
    expect(stats.tableSize).toBe(DAEMONS - 1);
    expect(stats.buckets.reduce((n: number, b: { contacts: number }) => n + b.contacts, 0)).toBe(DAEMONS - 1);
  });

  test("a key announced through one daemon is found by dht lookup on another", async () => {
    const hex = "ab".repeat(20);
    const announced = await api<{ storedAt: number }>(daemons[3]!, `/api/dht/announce?key=${hex}`, "POST");
    expect(announced.storedAt).toBeGreaterThanOrEqual(DAEMONS - 1);
    const r = await runApt(["dht", "lookup", "--json", "--daemon", daemons[0]!.url, hex]);
    expect(r.code).toBe(0);
    const answer = JSON.parse(r.stdout);
    expect(answer.key).toBe(hex);
    expect(answer.peers).toEqual([{ address: "127.0.0.1", port: daemons[3]!.port, pieces: null }]);
    expect(typeof answer.durationMs).toBe("number");
  });

  test("dht lookup by package name resolves it through the signed index to its key", async () => {
    const sources = join(work, "repo.list");
    await Bun.write(sources, `deb [signed-by=${key.keyring}] ${mirror.url} stable main\n`);
    const packagesText = await readFile(join(repo.root, "dists/stable/main/binary-amd64/Packages"), "utf8");
    const sha256 = /^SHA256: ([0-9a-f]{64})$/m.exec(packagesText)![1]!;
    await api(daemons[1]!, `/api/dht/announce?key=${sha256.slice(0, 40)}`, "POST");
    const r = await runApt(["dht", "lookup", "--daemon", daemons[2]!.url, "--sources", sources, "--cache-dir", join(work, "cli-cache"), "--arch", "amd64", "hello"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`hello 1.0-1 (key ${sha256.slice(0, 40)}): 1 peer(s)`);
    expect(r.stdout).toContain(`127.0.0.1:${daemons[1]!.port}`);
  });

  test("a daemon restarted without a bootstrap rejoins through its saved contacts", async () => {
    const state = join(work, "state-restart");
    const before = await startServe(["--state-dir", state, "--cache-dir", join(work, "cache-restart"), "--bootstrap", `127.0.0.1:${daemons[0]!.port}`]);
    await waitFor(async () => (await tableSize(before)) >= DAEMONS, "the new daemon's table");
    const idBefore = (await api<{ id: string }>(before, "/api/dht/stats")).id;
    expect(await before.stop()).toBe(0);

    const after = await startServe(["--state-dir", state, "--cache-dir", join(work, "cache-restart")]);
    daemons.push(after);
    await waitFor(async () => (await tableSize(after)) >= DAEMONS, "the restarted daemon's table");
    const stats = await api<{ id: string }>(after, "/api/dht/stats");
    expect(stats.id).toBe(idBefore);
    const found = await api<{ peers: unknown[] }>(after, `/api/dht/lookup?key=${"ab".repeat(20)}`);
    expect(found.peers).toHaveLength(1);
  }, 60_000);

  test("the control API refuses a bad key, and dht commands name an absent daemon", async () => {
    const bad = await fetch(`${daemons[0]!.url}/api/dht/lookup?key=xyz`);
    expect(bad.status).toBe(400);
    const r = await runApt(["dht", "stats", "--daemon", "http://127.0.0.1:9"]);
    expect(r.code).toBe(EXIT_CODES.DAEMON_UNREACHABLE);
    expect(r.stderr).toContain("Cannot reach the apt-p2p daemon at http://127.0.0.1:9");
  });

  test("serve on a port in use says so with its own exit code", async () => {
    const r = await runApt(["serve", "--bind", "127.0.0.1", "--port", String(daemons[0]!.port), "--state-dir", join(work, "state-busy")]);
    expect(r.code).toBe(EXIT_CODES.ADDRESS_IN_USE);
    expect(r.stderr).toContain("the port is in use");
  });
});
