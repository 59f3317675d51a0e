/**
 * Upload-rate shaping of local servers on the loopback device with tc: an HTB root qdisc on `lo`, one
 * class per server, and a u32 filter sending the packets whose SOURCE port is the server's port into
 * it. Only what a server sends is shaped (the data of a download); the client's ACKs and requests go
 * to that port as destination and stay unshaped, and so does every unclassified packet (HTB's default
 * class 0 is the unshaped direct queue).
 *
 * `htbCommands()` is pure; `LoopbackShaper` runs the commands and removes the root qdisc it added.
 */

export interface ShapeRule {
  /** The server's TCP (and UDP) port: packets with this source port are shaped. */
  port: number;
  bytesPerSecond: number;
}

export const LOOPBACK_DEVICE = "lo";
/**
 * Token bucket depth of each class. Loopback hands whole GSO segments of up to 64 KiB to the qdisc, so
 * the burst must exceed that or HTB never sends a packet at the configured rate; 256 KiB is 25 ms at
 * 10 MB/s, too little to show in a transfer of seconds.
 */
export const HTB_BURST_BYTES = 256 * 1024;
/** Bytes a class sends per round; at least one 64 KiB segment (the default r2q would warn "quantum is big"). */
export const HTB_QUANTUM_BYTES = 200_000;
/** Each tc command is bounded in time. */
const TC_TIMEOUT_MS = 10_000;
/** First class minor id; class 1:(FIRST_CLASS + i, in hex) shapes rule i. */
const FIRST_CLASS = 10;

/** The tc invocations (argument vectors without "tc") that install `rules` under a fresh root qdisc. */
export function htbCommands(device: string, rules: ShapeRule[]): string[][] {
  const commands: string[][] = [["qdisc", "add", "dev", device, "root", "handle", "1:", "htb"]];
  rules.forEach((rule, i) => {
    const classId = `1:${(FIRST_CLASS + i).toString(16)}`; // tc reads class minor ids as hex
    const bits = `${Math.round(rule.bytesPerSecond * 8)}bit`;
    commands.push([
      "class", "add", "dev", device, "parent", "1:", "classid", classId, "htb",
      "rate", bits, "ceil", bits, "burst", String(HTB_BURST_BYTES), "cburst", String(HTB_BURST_BYTES), "quantum", String(HTB_QUANTUM_BYTES),
    ]);
    commands.push([
      "filter", "add", "dev", device, "parent", "1:", "protocol", "ip", "prio", "1",
      "u32", "match", "ip", "sport", String(rule.port), "0xffff", "flowid", classId,
    ]);
  });
  return commands;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function tc(args: string[]): Promise<CommandResult> {
  const proc = Bun.spawn(["tc", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: TC_TIMEOUT_MS });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, stdout, stderr };
}

export class LoopbackShaper {
  readonly device: string;
  /** True while a root qdisc we added is installed. */
  #installed = false;

  constructor(device = LOOPBACK_DEVICE) {
    this.device = device;
  }

  /**
   * Whether shaping works here: root, a free `lo`, and a trial class on the discard port that installs
   * and clears. `why` says what failed, for the benchmark's header.
   */
  async trial(): Promise<{ tc: boolean; why: string }> {
    if (process.getuid?.() !== 0) return { tc: false, why: "not root" };
    const why = await this.unusableBecause();
    if (why !== null) return { tc: false, why };
    try {
      await this.apply([{ port: 9, bytesPerSecond: 1_000_000 }]);
      await this.clear();
      return { tc: true, why: "" };
    } catch (err) {
      return { tc: false, why: err instanceof Error ? err.message : String(err) };
    }
  }

  /** Why shaping cannot be used here, or null when `lo` has no root qdisc of anyone else's. */
  async unusableBecause(): Promise<string | null> {
    if (Bun.which("tc") === null) return "tc is not installed (apt-get install -y iproute2)";
    const shown = await tc(["qdisc", "show", "dev", this.device]).catch((err: unknown) => ({ code: -1, stdout: "", stderr: String(err) }));
    if (shown.code !== 0) return `tc qdisc show dev ${this.device} failed: ${shown.stderr.trim()}`;
    const root = shown.stdout.split("\n").find((l) => / root /.test(l)) ?? "";
    if (root !== "" && !/^qdisc noqueue /.test(root)) {
      return `${this.device} already has a root qdisc (${root.trim()}); not replacing it (remove it with: tc qdisc del dev ${this.device} root)`;
    }
    return null;
  }

  /** Installs `rules`, replacing what this shaper installed before. Throws (having removed it all) on failure. */
  async apply(rules: ShapeRule[]): Promise<void> {
    await this.clear();
    for (const args of htbCommands(this.device, rules)) {
      const result = await tc(args);
      if (args[0] === "qdisc" && result.code === 0) this.#installed = true;
      if (result.code !== 0) {
        await this.clear();
        throw new Error(`tc ${args.join(" ")} failed (${result.code}): ${result.stderr.trim()}`);
      }
    }
  }

  /** Removes the root qdisc this shaper added (and with it its classes and filters). Idempotent. */
  async clear(): Promise<void> {
    if (!this.#installed) return;
    const result = await tc(["qdisc", "del", "dev", this.device, "root"]);
    if (result.code !== 0) throw new Error(`tc qdisc del dev ${this.device} root failed (${result.code}): ${result.stderr.trim()}`);
    this.#installed = false;
  }

  /** Bytes sent by each class so far, by the port of its rule (to check the shaping was in the path). */
  async sentBytes(rules: ShapeRule[]): Promise<Map<number, number>> {
    const shown = await tc(["-s", "class", "show", "dev", this.device]);
    const sent = new Map<number, number>();
    for (const block of shown.stdout.split(/\n(?=class )/)) {
      const id = /^class htb 1:([0-9a-f]+) /.exec(block);
      const bytes = /Sent (\d+) bytes/.exec(block);
      if (id === null || bytes === null) continue;
      const rule = rules[parseInt(id[1]!, 16) - FIRST_CLASS];
      if (rule !== undefined) sent.set(rule.port, Number(bytes[1]));
    }
    return sent;
  }
}
