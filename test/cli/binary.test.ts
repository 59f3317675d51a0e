/** The single binary from `bun build --compile` works on its own: --version and a verified get. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import packageJson from "../../package.json";
import { jsonLines, REPO_ROOT, runApt } from "../helpers/cli.ts";
import { startMirror, type TestMirror } from "../helpers/mirror.ts";
import { buildRepo, dropGpgKey, makeGpgKey, run, sha256File, type GpgKey, type Repo } from "../helpers/repo.ts";

let work: string;
let binary: string;
let key: GpgKey;
let repo: Repo;
let mirror: TestMirror;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-bin-"));
  binary = join(work, "apt-p2p");
  // The same command as `bun run build`, written to a temp path so that the test leaves dist/ alone.
  const script = packageJson.scripts.build.replace("dist/apt-p2p", binary);
  await run(["sh", "-c", script.replace(/^bun /, `"${process.execPath}" `)], { cwd: REPO_ROOT });
  key = await makeGpgKey("binary-test");
  repo = await buildRepo(join(work, "repo"), { key, packages: [{ name: "hello", version: "1.0-1", payloadBytes: 20_000 }] });
  mirror = await startMirror(repo.root);
}, 120_000);

afterAll(async () => {
  await mirror?.stop();
  if (key) await dropGpgKey(key);
  await rm(work, { recursive: true, force: true });
});

test("the compiled binary prints its version", async () => {
  const r = await runApt(["--version"], { binary, cwd: work });
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe(packageJson.version);
});

test("the compiled binary downloads and verifies a package from a signed repository", async () => {
  const sources = join(work, "repo.list");
  await Bun.write(sources, `deb [signed-by=${key.keyring}] ${mirror.url} stable main\n`);
  const dest = join(work, "dest");
  const r = await runApt(["get", "--json", "--sources", sources, "--cache-dir", join(work, "cache"), "--dest", dest, "--arch", "amd64", "hello"], {
    binary,
    cwd: work,
  });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(jsonLines(r.stdout)[0]?.version).toBe("1.0-1");
  expect(await readdir(dest)).toEqual(["hello_1.0-1_amd64.deb"]);
  expect(await sha256File(join(dest, "hello_1.0-1_amd64.deb"))).toBe(await sha256File(join(repo.root, repo.debs.get("hello_1.0-1")!)));
});
