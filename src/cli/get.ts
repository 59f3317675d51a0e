/**
 * `apt-p2p get`: resolve names through the verified index of the APT sources, obtain each file (cache,
 * else download), verify it and write it to the destination atomically.
 */
import { access, constants, mkdir } from "node:fs/promises";
import { basename, join } from "node:path";
import type { GetConfig } from "../config.ts";
import { describeEntries, mergeEntries, syncAll, systemKeyrings, type ArchiveDeps } from "../debian/archive.ts";
import { IndexStore, type PackageRow } from "../debian/index-store.ts";
import { parseRequest, resolveRequest, type ResolveScope } from "../debian/resolve.ts";
import { loadSourcesFile, loadSystemSources, type SourceEntry } from "../debian/sources.ts";
import { AptP2pError, ErrorCode, HashMismatchError, asDestinationError } from "../errors.ts";
import { fetchUrl, type Fetcher } from "../http/fetch.ts";
import { ContentCache } from "../store/cache.ts";
import { downloadToFile } from "../transfer/download.ts";
import { deliverFile, obtainFile } from "../transfer/obtain.ts";
import { HttpSource } from "../transfer/source.ts";
import type { CliIO } from "./io.ts";
import { makeReporter, sourcesOf, type FileReport, type Reporter } from "./progress.ts";

const SUPPORTED_SCHEMES = ["http:", "https:", "file:"];

export interface GetDeps {
  fetcher: Fetcher;
  now: () => number;
}

export const defaultGetDeps: GetDeps = { fetcher: fetchUrl, now: () => Date.now() };

/** Runs a get; resolves with the reports of the files written, or throws the first error. */
export async function runGet(names: string[], config: GetConfig, io: CliIO, deps: GetDeps = defaultGetDeps): Promise<FileReport[]> {
  const rows = await resolveNames(names, config, io, deps);
  const unique = [...new Map(rows.map((row) => [row.sha256, row])).values()];
  await prepareDestination(config.dest);
  const cache = await ContentCache.open(config.cacheDir).catch((err: unknown) => {
    throw asDestinationError(config.cacheDir, err);
  });
  try {
    return await downloadAll(unique, config, cache, deps, makeReporter(io, config.output));
  } finally {
    cache.close();
  }
}

/**
 * Brings the verified indexes of the APT sources up to date and resolves each name to its index entry.
 * A source that fails is reported and skipped; a name missing because of it gets that source's error.
 */
export async function resolveNames(
  names: string[],
  config: Pick<GetConfig, "sourcesFile" | "aptDir" | "cacheDir" | "arches" | "refresh">,
  io: CliIO,
  deps: GetDeps = defaultGetDeps,
): Promise<PackageRow[]> {
  const requests = names.map(parseRequest);
  const entries = await loadEntries(config, io);
  await mkdir(config.cacheDir, { recursive: true }).catch((err: unknown) => {
    throw asDestinationError(config.cacheDir, err);
  });
  const store = IndexStore.open(join(config.cacheDir, "index.sqlite"));
  try {
    const archive: ArchiveDeps = {
      fetcher: deps.fetcher,
      store,
      systemKeyrings: await systemKeyrings(config.aptDir),
      now: deps.now,
      warn: (message) => io.stderr(`W: ${message}\n`),
      download: async (urls, expected, path) => {
        await downloadToFile(expected, urls.map((url) => new HttpSource(url, deps.fetcher)), path);
      },
    };
    const synced = await syncAll(archive, entries, config.arches, { refresh: config.refresh });
    for (const failure of synced.failures) {
      const why = failure.error instanceof Error ? failure.error.message : String(failure.error);
      io.stderr(`W: ${failure.entry.origin}: ${why}; going on without ${failure.entry.uri} ${failure.entry.suite}\n`);
    }
    const scope: ResolveScope = { releaseKeys: synced.keys, arches: config.arches, describe: describeEntries(entries) };
    return requests.map((request) => {
      try {
        return resolveRequest(store, request, scope);
      } catch (err) {
        // A package that is missing because its source failed is that source's failure, not an unknown name.
        const firstFailure = synced.failures[0]?.error;
        if (firstFailure !== undefined && err instanceof AptP2pError && err.code === ErrorCode.UnknownPackage) throw firstFailure;
        throw err;
      }
    });
  } finally {
    store.close();
  }
}

async function loadEntries(config: Pick<GetConfig, "sourcesFile" | "aptDir">, io: CliIO): Promise<SourceEntry[]> {
  let all: SourceEntry[];
  let searched: string[];
  if (config.sourcesFile !== undefined) {
    all = await loadSourcesFile(config.sourcesFile);
    searched = [config.sourcesFile];
  } else {
    ({ entries: all, searched } = await loadSystemSources(config.aptDir));
  }
  const usable: SourceEntry[] = [];
  for (const entry of all) {
    if (entry.type !== "deb") continue;
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(entry.uri)?.[0].toLowerCase() ?? "";
    if (SUPPORTED_SCHEMES.includes(scheme)) usable.push(entry);
    else io.stderr(`W: ${entry.origin}: skipping ${entry.uri}: only http, https and file URIs are supported\n`);
  }
  if (usable.length === 0) throw AptP2pError.noSources(searched);
  return mergeEntries(usable);
}

async function prepareDestination(dest: string): Promise<void> {
  try {
    await mkdir(dest, { recursive: true });
    await access(dest, constants.W_OK);
  } catch (err) {
    throw asDestinationError(dest, err);
  }
}

async function downloadAll(
  rows: PackageRow[],
  config: GetConfig,
  cache: ContentCache,
  deps: GetDeps,
  reporter: Reporter,
): Promise<FileReport[]> {
  reporter.begin(rows.map((row) => ({ key: row.sha256, label: basename(row.filename), size: row.size })));
  const reports: FileReport[] = [];
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < rows.length) {
      const row = rows[next++]!;
      try {
        const report = await downloadOne(row, config, cache, deps, reporter);
        reports.push(report);
        reporter.done(report);
      } catch (err) {
        errors.push(err);
        reporter.failed(row.sha256, err instanceof Error ? err.message : String(err));
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(config.concurrency, rows.length) }, worker));
  } finally {
    reporter.end();
  }
  if (errors.length > 0) throw errors[0];
  return reports;
}

async function downloadOne(row: PackageRow, config: GetConfig, cache: ContentCache, deps: GetDeps, reporter: Reporter): Promise<FileReport> {
  const started = deps.now();
  const name = basename(row.filename);
  const target = { name, size: row.size, sha256: row.sha256 };
  const sources = [new HttpSource(`${row.uri}/${row.filename}`, deps.fetcher)];
  const destPath = join(config.dest, name);
  const options = { onProgress: (bytes: number) => reporter.progress(row.sha256, bytes) };
  let obtained = await obtainFile({ cache, now: deps.now }, target, sources, options);
  try {
    await deliverFile(obtained.file, target, destPath);
  } catch (err) {
    if (!(err instanceof HashMismatchError)) throw err;
    // The cached copy was damaged on disk after it was verified: drop it and fetch again once.
    await cache.forget(row.sha256);
    obtained = await obtainFile({ cache, now: deps.now }, target, sources, options);
    await deliverFile(obtained.file, target, destPath);
  }
  return {
    package: row.package,
    version: row.version,
    filename: row.filename,
    path: destPath,
    size: row.size,
    sha256: row.sha256,
    sources: sourcesOf(obtained.bytes),
    seconds: (deps.now() - started) / 1000,
  };
}
