/** The proxy handler as a plain function: who may use it, and where it forwards. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Fetcher } from "../../src/http/fetch.ts";
import type { RequestInfo } from "../../src/http/server.ts";
import { MirrorAllowList, parseCidrList } from "../../src/proxy/allow.ts";
import { KnownFiles } from "../../src/proxy/known.ts";
import { Learner } from "../../src/proxy/learn.ts";
import { LiveDownloads } from "../../src/proxy/live.ts";
import { handleProxy, newProxyStats, type ProxyDeps } from "../../src/proxy/proxy.ts";
import { UrlCache } from "../../src/proxy/url-cache.ts";
import { ContentCache } from "../../src/store/cache.ts";
import { runApt } from "../helpers/cli.ts";
import { writeFile } from "node:fs/promises";

let dir: string;
let known: KnownFiles;
let cache: ContentCache;
const fetched: string[] = [];
const fetcher: Fetcher = async (url) => {
  fetched.push(url);
  return new Response("mirror says hi\n", { status: 200, headers: { "Content-Length": "15" } });
};
let deps: ProxyDeps;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "apt-p2p-proxy-"));
  known = KnownFiles.open(join(dir, "proxy.sqlite"));
  cache = await ContentCache.open(join(dir, "cache"));
  const live = new LiveDownloads({ cache, fetcher, findPeers: async () => [], seed: async () => {}, log: () => {} });
  deps = {
    known,
    learner: new Learner({
      known,
      keysFor: async () => ({ paths: [], inline: [], fingerprints: [] }),
      fetchVerified: async () => {
        throw new Error("not in these tests");
      },
      arches: ["amd64"],
      log: () => {},
      now: Date.now,
    }),
    live,
    urls: await UrlCache.open(join(dir, "cache")),
    fetcher,
    clients: parseCidrList("10.0.0.0/8", "--proxy-allow"),
    mirrors: MirrorAllowList.fromSources([], ["mirror.example.org"]),
    selfPort: 9977,
    stats: newProxyStats(),
    log: () => {},
    now: Date.now,
  };
});
afterAll(async () => {
  known.close();
  cache.close();
  await rm(dir, { recursive: true, force: true });
});

const ask = (rawTarget: string, remoteAddress = "127.0.0.1", method = "GET") => {
  const url = rawTarget.startsWith("/") ? `http://127.0.0.1:9977${rawTarget}` : rawTarget;
  const info: RequestInfo = { remoteAddress, remotePort: 40000, rawTarget };
  return handleProxy(new Request(url, { method }), info, deps);
};

test("a client outside loopback and --proxy-allow is refused, told how to allow it, and nothing is fetched", async () => {
  const before = fetched.length;
  const response = await ask("http://mirror.example.org/debian/pool/x.txt", "192.0.2.7");
  expect(response.status).toBe(403);
  expect(await response.text()).toContain("--proxy-allow");
  expect(fetched.length).toBe(before);
});

test("a client inside --proxy-allow is served", async () => {
  const response = await ask("http://mirror.example.org/debian/pool/x.txt", "10.1.2.3");
  expect(response.status).toBe(200);
  expect(await response.text()).toBe("mirror says hi\n");
  expect(fetched.at(-1)).toBe("http://mirror.example.org/debian/pool/x.txt");
});

test("a mirror not allowed is refused with 403 naming --mirror-allow", async () => {
  const response = await ask("http://elsewhere.example.net/debian/x");
  expect(response.status).toBe(403);
  expect(await response.text()).toContain("--mirror-allow elsewhere.example.net:80");
});

test("APT set up both ways at once (proxy URL naming the proxy itself) is read as the prefix form", async () => {
  const response = await ask("http://127.0.0.1:9977/mirror.example.org/debian/pool/y.txt");
  expect(response.status).toBe(200);
  expect(fetched.at(-1)).toBe("http://mirror.example.org/debian/pool/y.txt");
});

test("`apt-p2p apt-config` prints the apt.conf line and the sources rewritten for this proxy", async () => {
  const sources = join(dir, "sources.list");
  await writeFile(sources, "deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example.org/debian bookworm main\n");
  const r = await runApt(["apt-config", "--sources", sources, "--port", "9988"]);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('Acquire::http::Proxy "http://127.0.0.1:9988";');
  expect(r.stdout).toContain("URIs: http://127.0.0.1:9988/mirror.example.org/debian");
  expect(r.stdout).toContain("Signed-By: /usr/share/keyrings/k.gpg");
});
