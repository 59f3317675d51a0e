/**
 * Who may see the status page, /metrics and /api/status, and what the page is made of. The handlers are
 * called directly with a remote address, so that a non-loopback client needs no second interface.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { handleControl } from "../../src/daemon/control-api.ts";
import type { MetricsSnapshot } from "../../src/daemon/metrics.ts";
import { handleStatus, STATUS_PAGE_HTML } from "../../src/daemon/status-page.ts";
import { DhtNode } from "../../src/dht/node.ts";
import { MemoryNetwork } from "../../src/dht/socket.ts";
import { parseCidrList } from "../../src/proxy/allow.ts";

const LAN = parseCidrList("192.0.2.0/24", "--status-allow");
const info = (remoteAddress: string, rawTarget = "/") => ({ remoteAddress, remotePort: 40_000, rawTarget });
const get = (path: string, method = "GET") => new Request(`http://127.0.0.1:9977${path}`, { method });

const SNAPSHOT: MetricsSnapshot = {
  version: "0.0.0",
  startedAt: 0,
  bytesFrom: { mirror: 0, peer: 0, cache: 0 },
  bytesSent: { peer: 0, apt: 0 },
  proxy: { requests: 0, refused: 0, verified: 0, passedThrough: 0, stale: 0, active: 0 },
  peerServer: { requests: 0, refused503: 0, notFound: 0 },
  peersSeen: 0,
  dht: { tableSize: 0, storedValues: 0, bytesIn: 0, bytesOut: 0, rateLimited: 0, outcomesOut: {}, outcomesIn: {}, lookupDurations: { boundsMs: [], counts: [0], sumMs: 0, count: 0 } },
};
const deps = (clients = LAN) => ({ clients, metrics: () => SNAPSHOT });

let closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers) close();
  closers = [];
});

describe("handleStatus()", () => {
  test("answers loopback (v4 and v6) with the page, and the clients of --status-allow", async () => {
    for (const address of ["127.0.0.1", "::1", "::ffff:127.0.0.1", "192.0.2.44"]) {
      const response = handleStatus(get("/"), info(address), deps());
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(await response.text()).toBe(STATUS_PAGE_HTML);
    }
  });

  test("refuses other addresses, for the page and for /metrics", async () => {
    for (const path of ["/", "/metrics"]) {
      const response = handleStatus(get(path), info("198.51.100.7", path), deps());
      expect(response.status).toBe(403);
      expect(await response.text()).toContain("--status-allow");
    }
    expect(handleStatus(get("/"), info("192.0.2.44"), deps([])).status).toBe(403);
  });

  test("GET /metrics gives the text format; HEAD has no body; other methods get 405", async () => {
    const metrics = handleStatus(get("/metrics"), info("192.0.2.1", "/metrics"), deps());
    expect(metrics.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(await metrics.text()).toContain("# TYPE apt_p2p_download_bytes_total counter\n");
    expect(await handleStatus(get("/", "HEAD"), info("127.0.0.1"), deps()).text()).toBe("");
    const post = handleStatus(get("/metrics", "POST"), info("127.0.0.1", "/metrics"), deps());
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  test("the page loads nothing from elsewhere, and its policy forbids it", () => {
    const csp = handleStatus(get("/"), info("127.0.0.1"), deps()).headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(STATUS_PAGE_HTML).not.toMatch(/\b(src|href)\s*=/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/url\(|@import|https?:\/\/(?!www\.w3\.org\/2000\/svg)/i);
    expect(STATUS_PAGE_HTML).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(STATUS_PAGE_HTML).toContain('fetch("/api/status"');
  });
});

describe("handleControl() and --status-allow", () => {
  function controlDeps() {
    const node = new DhtNode({ socket: new MemoryNetwork().bind(), bootstrap: [], maintenance: false });
    closers.push(() => node.close());
    return { node, peerPort: 9977, startedAt: Date.now(), version: "0.0.0", statusClients: LAN, status: () => ({ figure: 42 }) };
  }

  test("GET /api/status answers the clients of --status-allow", async () => {
    const response = await handleControl(get("/api/status"), info("192.0.2.9", "/api/status"), controlDeps());
    expect(response.status).toBe(200);
    expect(((await response.json()) as { figure: number }).figure).toBe(42);
  });

  test("the other control endpoints stay loopback-only", async () => {
    const d = controlDeps();
    expect((await handleControl(get("/api/dht/stats"), info("192.0.2.9", "/api/dht/stats"), d)).status).toBe(403);
    expect((await handleControl(get("/api/dht/announce?key=" + "ab".repeat(20), "POST"), info("192.0.2.9"), d)).status).toBe(403);
    expect((await handleControl(get("/api/status"), info("198.51.100.7", "/api/status"), d)).status).toBe(403);
    expect((await handleControl(get("/api/dht/stats"), info("127.0.0.1", "/api/dht/stats"), d)).status).toBe(200);
  });
});
