/**
 * A small command for the index benchmark, compiled with `bun build --compile`: the first step of
 * `apt-p2p get`, without the download. It runs get's own resolveNames() (src/cli/get.ts): read the
 * sources file, bring the verified index up to date (InRelease checked with gpgv; Packages.xz checked,
 * parsed and stored on the first run; one conditional read of InRelease once stored), then resolve the
 * names. `apt-p2p` has no offline resolve command of its own (`get` always downloads, `dht lookup`
 * needs a daemon), so this is the least network-dependent way to time a resolve in a compiled binary.
 *
 * Usage: resolve-cli <sources file> <cache dir> <apt dir> <name...>
 * Prints "name version sha256" per name; exits 1 with the error otherwise.
 */
import { resolveNames } from "../../../src/cli/get.ts";
import { processIO } from "../../../src/cli/io.ts";

const [sourcesFile, cacheDir, aptDir, ...names] = process.argv.slice(2);
if (sourcesFile === undefined || cacheDir === undefined || aptDir === undefined || names.length === 0) {
  process.stderr.write("usage: resolve-cli <sources file> <cache dir> <apt dir> <name...>\n");
  process.exit(2);
}
// No top-level await: compiled with --bytecode, like src/cli.ts.
resolveNames(names, { sourcesFile, cacheDir, aptDir, arches: ["amd64"], refresh: false }, processIO()).then(
  (rows) => {
    for (const row of rows) process.stdout.write(`${row.package} ${row.version} ${row.sha256}\n`);
  },
  (err: unknown) => {
    process.stderr.write(`resolve failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
