/**
 * The real `apt-get`, isolated: its own APT_CONFIG pointing every directory it reads or writes (sources,
 * lists, archives, an empty dpkg status) into a temp dir, so `update` and `install --download-only` touch
 * nothing of the machine.
 */
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sha256File } from "./repo.ts";

export interface IsolatedApt {
  dir: string;
  /** Where `install --download-only` leaves the .debs. */
  archives: string;
  run(args: string[], options?: { timeoutMs?: number; cwd?: string }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** SHA-256 of each .deb in the archives dir, by file name. */
  debs(): Promise<Map<string, string>>;
}

export interface AptSetup {
  /** Lines of sources.list, e.g. `deb [signed-by=/k.gpg] http://127.0.0.1:1234/ stable main`. */
  sources: string[];
  /** Acquire::http::Proxy, for the forward-proxy form. */
  proxy?: string;
  /** More apt.conf lines. */
  extra?: string[];
}

export async function isolatedApt(dir: string, setup: AptSetup): Promise<IsolatedApt> {
  for (const sub of ["etc/apt.conf.d", "etc/preferences.d", "etc/trusted.gpg.d", "etc/sources.list.d", "state/lists/partial", "cache/archives/partial"]) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  await writeFile(join(dir, "status"), "");
  await writeFile(join(dir, "etc/sources.list"), `${setup.sources.join("\n")}\n`);
  const lines = [
    `Dir::Etc "${dir}/etc";`,
    `Dir::Etc::Parts "${dir}/etc/apt.conf.d";`,
    `Dir::Etc::PreferencesParts "${dir}/etc/preferences.d";`,
    `Dir::Etc::TrustedParts "${dir}/etc/trusted.gpg.d";`,
    `Dir::State "${dir}/state";`,
    `Dir::State::status "${dir}/status";`,
    `Dir::Cache "${dir}/cache";`,
    `APT::Architecture "amd64";`,
    `APT::Architectures { "amd64"; };`,
    `Debug::NoLocking "true";`,
    `Acquire::Languages "none";`,
    `Acquire::Retries "0";`,
    `APT::Sandbox::User "root";`,
    ...(setup.proxy === undefined ? [`Acquire::http::Proxy "DIRECT";`] : [`Acquire::http::Proxy "${setup.proxy}";`]),
    ...(setup.extra ?? []),
  ];
  const config = join(dir, "apt.conf");
  await writeFile(config, `${lines.join("\n")}\n`);
  const archives = join(dir, "cache/archives");
  return {
    dir,
    archives,
    run: async (args, options = {}) => {
      const proc = Bun.spawn(["apt-get", "-q", "-y", ...args], {
        cwd: options.cwd,
        env: { ...process.env, APT_CONFIG: config, DEBIAN_FRONTEND: "noninteractive", http_proxy: "", HTTP_PROXY: "", no_proxy: "" },
        stdout: "pipe",
        stderr: "pipe",
      });
      const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 120_000);
      const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
      clearTimeout(timer);
      return { code: await proc.exited, stdout, stderr };
    },
    debs: async () => {
      const found = new Map<string, string>();
      for (const name of await readdir(archives)) if (name.endsWith(".deb")) found.set(name, await sha256File(join(archives, name)));
      return found;
    },
  };
}
