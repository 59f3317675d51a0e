/**
 * The Debian package: scripts/package-deb.sh builds it from the compiled binary; dpkg-deb shows the
 * promised fields and files; it installs, removes and purges cleanly in a scratch root; the unit file
 * passes systemd-analyze; the man page covers every command; the default configuration and APT's
 * proxy setting agree with what the program itself accepts and prints.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import packageJson from "../../package.json";
import { REPO_ROOT } from "../helpers/cli.ts";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function exec(cmd: string[], options: { cwd?: string; env?: Record<string, string | undefined>; replaceEnv?: boolean } = {}): Promise<Result> {
  const env = options.replaceEnv ? options.env : { ...process.env, ...options.env };
  const proc = Bun.spawn(cmd, { cwd: options.cwd, env: env as Record<string, string>, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, stdout, stderr };
}

async function ok(cmd: string[], options: Parameters<typeof exec>[1] = {}): Promise<string> {
  const r = await exec(cmd, options);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

const SERVICE = "/lib/systemd/system/apt-p2p.service";
const CONFIG = "/etc/apt-p2p/apt-p2p.conf";
const APT_SNIPPET = "/etc/apt/apt.conf.d/30apt-p2p";
const APT_SNIPPET_TARGET = "/usr/share/apt-p2p/apt.conf.d/30apt-p2p";
const MAN_PAGE = "/usr/share/man/man1/apt-p2p.1.gz";

let work: string;
let binary: string;
let deb: string;
/** The package's files without the binary (the test has that one at `binary`). */
let extracted: string;
let arch: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "apt-p2p-deb-"));
  binary = join(work, "apt-p2p");
  // The same command as `bun run build`, to a temp path so that the test leaves dist/ alone (building
  // takes seconds; a reused dist/apt-p2p could be older than src/).
  const build = packageJson.scripts.build.replace("dist/apt-p2p", binary).replace(/^bun /, `"${process.execPath}" `);
  await ok(["sh", "-c", build], { cwd: REPO_ROOT });
  // Uncompressed: xz would take a minute or two for ~110 MB and proves nothing about our packaging.
  const out = await ok([join(REPO_ROOT, "scripts/package-deb.sh"), "--binary", binary, "--out", work, "--compress", "none"], { cwd: REPO_ROOT });
  deb = out.trim().split("\n").pop()!;
  arch = (await ok(["dpkg", "--print-architecture"])).trim();
  extracted = join(work, "extracted");
  await mkdir(extracted);
  await ok(["sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x --exclude=./usr/bin/apt-p2p -C "$2"`, "sh", deb, extracted]);
}, 240_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

test("scripts/package-deb.sh names the package apt-p2p_<version>_<arch>.deb", () => {
  expect(deb).toBe(join(work, `apt-p2p_${packageJson.version}_${arch}.deb`));
});

test("dpkg-deb --info shows the control fields and the maintainer scripts", async () => {
  const field = async (name: string) => (await ok(["dpkg-deb", "--field", deb, name])).trim();
  expect(await field("Package")).toBe("apt-p2p");
  expect(await field("Version")).toBe(packageJson.version);
  expect(await field("Architecture")).toBe(arch);
  expect(await field("Section")).toBe("net");
  expect(await field("Priority")).toBe("optional");
  expect(await field("Maintainer")).toMatch(/^.+ <.+@.+>$/);
  const depends = (await field("Depends")).split(/,\s*/);
  expect(depends).toContain("gpgv");
  expect(depends).toContain("xz-utils");
  expect(depends).toContain("adduser | passwd");
  // From dpkg-shlibdeps: the binary links against libc.
  expect(depends.some((d) => /^libc6 \(>= [0-9.]+\)$/.test(d))).toBe(true);
  const description = await field("Description");
  expect(description.split("\n")[0]).toBe("peer-to-peer downloader and caching proxy for APT");
  const kib = Number(await field("Installed-Size"));
  const binaryKib = Bun.file(binary).size / 1024;
  expect(kib).toBeGreaterThan(binaryKib);
  expect(kib).toBeLessThan(binaryKib + 100);

  const info = await ok(["dpkg-deb", "--info", deb]);
  // Maintainer scripts are marked executable (`*`); the others are data.
  for (const script of ["postinst", "prerm", "postrm"]) expect(info).toMatch(new RegExp(`\\*\\s+${script}\\s+#!/bin/sh`));
  for (const member of ["control", "md5sums", "conffiles"]) expect(info).toMatch(new RegExp(`lines\\s+${member}\\s`));
  expect((await ok(["dpkg-deb", "--info", deb, "conffiles"])).trim()).toBe(CONFIG);
  const sums = (await ok(["dpkg-deb", "--info", deb, "md5sums"])).trim().split("\n");
  expect(sums.map((line) => line.split(/\s+/)[1]).sort()).toEqual(
    ["etc/apt-p2p/apt-p2p.conf", "lib/systemd/system/apt-p2p.service", "usr/bin/apt-p2p", "usr/share/apt-p2p/apt.conf.d/30apt-p2p", "usr/share/doc/apt-p2p/changelog.gz", "usr/share/doc/apt-p2p/copyright", "usr/share/lintian/overrides/apt-p2p", "usr/share/man/man1/apt-p2p.1.gz"].sort(),
  );
});

test("dpkg-deb --contents lists exactly the expected files, owned by root, with their modes", async () => {
  const listing = (await ok(["dpkg-deb", "--contents", deb])).trim().split("\n");
  const entries = listing.map((line) => {
    const [mode, owner, , , , path, arrow, target] = line.split(/\s+/);
    return { mode: mode!, owner: owner!, path: path!.replace(/^\./, ""), target: arrow === "->" ? target : undefined };
  });
  for (const e of entries) expect(`${e.path} ${e.owner}`).toBe(`${e.path} root/root`);
  for (const e of entries.filter((e) => e.mode.startsWith("d"))) expect(`${e.path} ${e.mode}`).toBe(`${e.path} drwxr-xr-x`);
  const files = Object.fromEntries(entries.filter((e) => !e.mode.startsWith("d")).map((e) => [e.path, e.target === undefined ? e.mode : `${e.mode} -> ${e.target}`]));
  expect(files).toEqual({
    "/usr/bin/apt-p2p": "-rwxr-xr-x",
    [SERVICE]: "-rw-r--r--",
    [CONFIG]: "-rw-r--r--",
    [APT_SNIPPET_TARGET]: "-rw-r--r--",
    // A link, not a conffile: `dpkg -r` removes it (see scripts/package-deb.sh).
    [APT_SNIPPET]: `lrwxrwxrwx -> ${APT_SNIPPET_TARGET}`,
    [MAN_PAGE]: "-rw-r--r--",
    "/usr/share/doc/apt-p2p/copyright": "-rw-r--r--",
    "/usr/share/doc/apt-p2p/changelog.gz": "-rw-r--r--",
    "/usr/share/lintian/overrides/apt-p2p": "-rw-r--r--",
  });
});

describe("in a scratch root", () => {
  /*
   * dpkg --root=DIR installs under DIR with its database in DIR/var/lib/dpkg, which must hold an empty
   * status file and the info, updates and triggers directories. --force-script-chrootless runs the
   * maintainer scripts without chroot (DIR has no shell) and with DPKG_ROOT=DIR, which our scripts and
   * deb-systemd-helper honour, so that nothing outside DIR changes; --log keeps dpkg out of the host's
   * /var/log/dpkg.log; --force-depends because DIR has none of the dependencies. As root this is all.
   * As another user dpkg also needs --force-not-root (harmless as root, so always given): it cannot
   * chown, so the files are the caller's; DIR then has no /etc/passwd and postinst skips the user.
   */
  let root: string;
  const dpkg = (...args: string[]) =>
    exec(["dpkg", `--root=${root}`, `--log=${join(work, "dpkg.log")}`, "--force-not-root", "--force-script-chrootless", ...args], {
      env: { PATH: `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` },
    });
  const status = async () => (await dpkg("--status", "apt-p2p")).stdout.match(/^Status: (.*)$/m)?.[1];
  const inRoot = (path: string) => join(root, path);
  const asRoot = process.getuid?.() === 0;
  // postinst enables the service through deb-systemd-helper (init-system-helpers, essential in Debian).
  const enables = Bun.which("deb-systemd-helper") !== null;

  beforeAll(async () => {
    root = join(work, "root");
    for (const dir of ["info", "updates", "triggers"]) await mkdir(join(root, "var/lib/dpkg", dir), { recursive: true });
    await writeFile(join(root, "var/lib/dpkg/status"), "");
    await writeFile(join(root, "var/lib/dpkg/available"), "");
    if (asRoot) {
      // Enough of an /etc for useradd --prefix to add the daemon's user to this root.
      await mkdir(join(root, "etc"));
      await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
      await writeFile(join(root, "etc/group"), "root:x:0:\n");
      await writeFile(join(root, "etc/shadow"), "root:*::::::\n", { mode: 0o640 });
      await writeFile(join(root, "etc/gshadow"), "root:*::\n", { mode: 0o640 });
    }
  });

  test("dpkg -i installs it, dpkg -r takes APT's proxy setting away, dpkg -P leaves nothing", async () => {
    const hostSnippet = existsSync(APT_SNIPPET);
    const hostUser = (await exec(["getent", "passwd", "apt-p2p"])).stdout;

    const install = await dpkg("--force-depends", "-i", deb);
    expect(install.code).toBe(0);
    expect(await status()).toBe("install ok installed");
    for (const path of ["/usr/bin/apt-p2p", SERVICE, CONFIG, MAN_PAGE]) expect(existsSync(inRoot(path))).toBe(true);
    // Every installed file matches the package's md5sums.
    expect(await dpkg("--verify", "apt-p2p")).toEqual({ code: 0, stdout: "", stderr: "" });

    // APT's setting is in place, and APT reads from it the proxy `apt-p2p serve` listens as.
    expect(lstatSync(inRoot(APT_SNIPPET)).isSymbolicLink()).toBe(true);
    expect(readlinkSync(inRoot(APT_SNIPPET))).toBe(APT_SNIPPET_TARGET);
    const aptConfig = join(work, "apt.conf");
    // APT_CONFIG names the settings file; parts from the package's directory (the link is absolute,
    // so it resolves on the host, not in this root), and none of the host's.
    await writeFile(aptConfig, `Dir::Etc::parts "${inRoot("/usr/share/apt-p2p/apt.conf.d")}";\nDir::Etc::main "/dev/null";\n`);
    const proxy = await ok(["apt-config", "shell", "HTTP", "Acquire::http::Proxy", "HTTPS", "Acquire::https::Proxy"], { env: { APT_CONFIG: aptConfig } });
    expect(proxy).toBe("HTTP='http://127.0.0.1:9977'\nHTTPS='DIRECT'\n");

    if (asRoot) {
      const passwd = await readFile(inRoot("/etc/passwd"), "utf8");
      expect(passwd).toMatch(/^apt-p2p:x:\d+:\d+:[^:]*:\/var\/lib\/apt-p2p:\/usr\/sbin\/nologin$/m);
      expect(await readFile(inRoot("/etc/group"), "utf8")).toMatch(/^apt-p2p:/m);
    } else {
      expect(install.stderr).toContain("not creating the apt-p2p user");
    }
    const wants = inRoot("/etc/systemd/system/multi-user.target.wants/apt-p2p.service");
    if (enables) expect(readlinkSync(wants)).toBe(SERVICE);

    // The host saw none of it.
    expect(existsSync(APT_SNIPPET)).toBe(hostSnippet);
    expect((await exec(["getent", "passwd", "apt-p2p"])).stdout).toBe(hostUser);

    const remove = await dpkg("-r", "apt-p2p");
    expect(remove.code).toBe(0);
    expect(await status()).toBe("deinstall ok config-files");
    // No link, no target: APT no longer points at a proxy that is gone.
    expect(lstatSync(inRoot(APT_SNIPPET), { throwIfNoEntry: false })).toBeUndefined();
    expect(existsSync(inRoot(APT_SNIPPET_TARGET))).toBe(false);
    expect(existsSync(inRoot("/usr/bin/apt-p2p"))).toBe(false);
    expect(existsSync(inRoot(SERVICE))).toBe(false);
    // The administrator's configuration stays until purge.
    expect(existsSync(inRoot(CONFIG))).toBe(true);

    const purge = await dpkg("-P", "apt-p2p");
    expect(purge.code).toBe(0);
    expect(await status()).toBeUndefined();
    expect(existsSync(inRoot("/etc/apt-p2p"))).toBe(false);
    expect(lstatSync(wants, { throwIfNoEntry: false })).toBeUndefined();
    if (asRoot) {
      expect(await readFile(inRoot("/etc/passwd"), "utf8")).not.toContain("apt-p2p");
      expect(await readFile(inRoot("/etc/group"), "utf8")).not.toContain("apt-p2p");
    }
  }, 60_000);
});

describe("the systemd unit", () => {
  const unit = () => readFile(join(extracted, SERVICE), "utf8");

  test("runs `apt-p2p serve` as the apt-p2p user with the state and cache directories systemd makes", async () => {
    const text = await unit();
    expect(text).toMatch(/^ExecStart=\/usr\/bin\/apt-p2p serve$/m);
    expect(text).toMatch(/^User=apt-p2p$/m);
    expect(text).toMatch(/^Restart=on-failure$/m);
    expect(text).toMatch(/^Environment=APT_P2P_STATE_DIR=\/var\/lib\/apt-p2p$/m);
    expect(text).toMatch(/^StateDirectory=apt-p2p$/m);
    expect(text).toMatch(/^Environment=APT_P2P_CACHE_DIR=\/var\/cache\/apt-p2p$/m);
    expect(text).toMatch(/^CacheDirectory=apt-p2p$/m);
    for (const setting of ["ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes", "PrivateTmp=yes", "PrivateDevices=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"]) {
      expect(text).toContain(`\n${setting}\n`);
    }
  });

  const analyze = Bun.which("systemd-analyze");
  // systemd-analyze comes with systemd; a machine without it (a container image) skips these two.
  test.skipIf(analyze === null)("passes systemd-analyze verify without a warning", async () => {
    // verify checks that ExecStart's program exists: point it at the packaged binary's copy here.
    const dir = join(work, "unit");
    await mkdir(dir, { recursive: true });
    const path = join(dir, "apt-p2p.service");
    await writeFile(path, (await unit()).replace("ExecStart=/usr/bin/apt-p2p", `ExecStart=${binary}`));
    // Documentation=man:apt-p2p(1) is checked with man against the packaged page, where man exists.
    const man = Bun.which("man") !== null;
    const r = await exec([analyze!, "verify", ...(man ? [] : ["--man=no"]), path], { env: { MANPATH: join(extracted, "usr/share/man") } });
    // An unknown or misspelt setting is only a warning (exit 0): no output at all is the pass.
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  test.skipIf(analyze === null)("keeps systemd-analyze security's exposure level under 2.5", async () => {
    const path = join(extracted, SERVICE);
    const r = await exec([analyze!, "security", "--offline=yes", "--threshold=25", "--no-pager", path]);
    expect(r.stdout).toMatch(/Overall exposure level for apt-p2p\.service: [0-2]\.\d/);
    expect(r.code).toBe(0);
  });
});

/** Command paths ("get", "dht stats") from the binary's --help, as a reader of it would find them. */
async function commandPaths(prefix: string[] = []): Promise<string[][]> {
  const help = await ok([binary, ...prefix, "--help"]);
  const block = help.split(/^Commands:$/m)[1]?.split(/\n\n/)[0] ?? "";
  const names = [...block.matchAll(/^ {2}([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!).filter((n) => n !== "help");
  const paths: string[][] = [];
  for (const name of names) paths.push([...prefix, name], ...(await commandPaths([...prefix, name])));
  return paths;
}

test("the man page has every command and every option of each", async () => {
  const roff = gunzipSync(await readFile(join(extracted, MAN_PAGE))).toString("utf8");
  const text = roff.replace(/\\f[BIRP]/g, "").replaceAll("\\-", "-").replaceAll("\\e", "\\");
  expect(text).toMatch(/^\.TH APT-P2P "1"/m);
  const paths = await commandPaths();
  expect(paths.map((p) => p.join(" "))).toEqual(expect.arrayContaining(["get", "serve", "apt-config", "dht", "dht stats"]));
  for (const path of paths) {
    expect(text).toContain(`.SS "apt-p2p ${path.join(" ")}`);
    const help = await ok([binary, ...path, "--help"]);
    for (const [option] of help.matchAll(/--[a-z][a-z0-9-]*/g)) expect(`${path.join(" ")}: ${text.includes(option) ? option : "missing"}`).toBe(`${path.join(" ")}: ${option}`);
  }
  for (const file of [CONFIG, APT_SNIPPET, SERVICE]) expect(text).toContain(file);
});

describe("the default configuration file", () => {
  const settingLine = /^# ([a-z][a-z0-9-]*) = (.*)$/;

  async function runConfig(args: string[], env: Record<string, string>): Promise<Record<string, { value: unknown; source: string }>> {
    // Only the given environment: no APT_P2P_* from the caller, no user configuration file.
    const home = join(work, "home");
    const out = await ok([binary, "config", "--json", ...args], { replaceEnv: true, env: { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: join(home, "config"), ...env } });
    return JSON.parse(out).serve;
  }

  test("sets nothing: every setting is commented out", async () => {
    const lines = (await readFile(join(extracted, CONFIG), "utf8")).split("\n");
    expect(lines.filter((l) => l.trim() !== "" && !l.startsWith("#"))).toEqual(["[serve]"]);
  });

  test("names every setting of serve, with values it accepts and the defaults the service runs with", async () => {
    const text = await readFile(join(extracted, CONFIG), "utf8");
    const shown = new Map<string, string>();
    for (const line of text.split("\n")) {
      const m = settingLine.exec(line);
      if (m) shown.set(m[1]!, m[2]!);
    }
    // Uncommented, the file must be accepted as it stands, every value read from it.
    const uncommented = join(work, "uncommented.conf");
    await writeFile(uncommented, text.replace(/^# ([a-z][a-z0-9-]* = )/gm, "$1"));
    const fromFile = await runConfig(["--config", uncommented], {});
    expect([...shown.keys()].sort()).toEqual(Object.keys(fromFile).sort());
    for (const [key, setting] of Object.entries(fromFile)) expect(`${key}: ${setting.source}`).toBe(`${key}: file`);

    // Without a file but with the unit's environment, serve resolves the values the file shows,
    // except for the settings that have no default, which the file shows an example of.
    const unitEnv = Object.fromEntries([...(await readFile(join(extracted, SERVICE), "utf8")).matchAll(/^Environment=([A-Z_0-9]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    const defaults = await runConfig([], unitEnv);
    for (const [key, { value }] of Object.entries(defaults)) {
      if (value === null || value === "" || (Array.isArray(value) && value.length === 0)) continue;
      expect(`${key} = ${shown.get(key)}`).toBe(`${key} = ${String(value)}`);
    }
  });
});

test("APT's proxy setting is the one `apt-p2p apt-config` prints", async () => {
  const acquire = (text: string) => text.split("\n").filter((l) => l.startsWith("Acquire::"));
  // The sources part of the output is deb822 stanzas: the Acquire:: lines are the apt.conf part.
  const printed = await ok([binary, "apt-config", "--sources", "/dev/null"], { cwd: work });
  const shipped = await readFile(join(extracted, APT_SNIPPET_TARGET), "utf8");
  expect(acquire(shipped)).toEqual(acquire(printed));
  expect(acquire(shipped)).toContain('Acquire::http::Proxy "http://127.0.0.1:9977";');
});
