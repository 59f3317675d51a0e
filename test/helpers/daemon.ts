/** Runs `apt-p2p serve` as a subprocess on 127.0.0.1 with a port chosen by the system. */
import { join } from "node:path";
import { REPO_ROOT } from "./cli.ts";

export interface ServeProcess {
  port: number;
  url: string;
  /** Everything it logged so far. */
  log(): string;
  stop(): Promise<number>;
}

export async function startServe(args: string[], options: { env?: Record<string, string> } = {}): Promise<ServeProcess> {
  const proc = Bun.spawn([process.execPath, join(REPO_ROOT, "src/cli.ts"), "serve", "--bind", "127.0.0.1", "--port", "0", "--no-seed-apt-archives", ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let logged = "";
  const decoder = new TextDecoder();
  const reader = proc.stderr.getReader();
  const port = await new Promise<number>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`serve did not start within 15 s:\n${logged}`)), 15_000);
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        logged += decoder.decode(value, { stream: true });
        const match = /listening on [\d.]+:(\d+) /.exec(logged);
        if (match) {
          clearTimeout(deadline);
          resolve(Number(match[1]));
        }
      }
      clearTimeout(deadline);
      reject(new Error(`serve exited before listening (code ${await proc.exited}):\n${logged}`));
    })().catch(reject);
  });
  // Keep draining stderr so the child never blocks on a full pipe.
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) break;
      logged += decoder.decode(value, { stream: true });
    }
  })();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    log: () => logged,
    stop: async () => {
      proc.kill("SIGTERM");
      return proc.exited;
    },
  };
}

/** Polls until `check` is true or the time is up. */
export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return;
    await Bun.sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}
