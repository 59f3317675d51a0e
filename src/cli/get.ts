/**
 * `apt-p2p get`: resolve names through the verified index of the APT sources, obtain each file (cache,
 * else download), verify it and write it to the destination atomically.
 */
import { existsSync } from "node:fs";
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
import type { Contact } from "../dht/id.ts";
import { DHT_STATE_FILE, DhtState } from "../dht/persist.ts";
import { downloadToFile } from "../transfer/download.ts";
import { deliverFile, fromSources, obtainFile } from "../transfer/obtain.ts";
import { startPeerFinder, type PeerFinder } from "../transfer/peer-finder.ts";
import { RangeClient } from "../transfer/range-client.ts";
import { HttpSource } from "../transfer/source.ts";
import { swarmDownload } from "../transfer/swarm.ts";
import { findDaemon, viaDaemon } from "./daemon-get.ts";
import type { CliIO } from "./io.ts";
import { fileReport, makeReporter, sourcesOf, type FileReport, type Reporter } from "./progress.ts";

const SUPPORTED_SCHEMES = ["http:", "https:", "file:"];

export interface GetDeps {
  fetcher: Fetcher;
  /** Reads pieces from peers (the fetcher does when absent). */
  rangeClient?: RangeClient;
  now: () => number;
}

export const defaultGetDeps: GetDeps = { fetcher: fetchUrl, rangeClient: new RangeClient(), now: () => Date.now() };

/** Runs a get; resolves with the reports of the files written, or throws the first error. */
export async function runGet(names: string[], config: GetConfig, io: CliIO, deps: GetDeps = defaultGetDeps): Promise<FileReport[]> {
  // Looking for a daemon, then (when none takes the work) joining the DHT and opening the cache, overlap
  // the index update: round trips, and the cache's SQLite file created on a first run.
  const probe = config.dht.enabled ? findDaemon(config.dht.daemonUrl, config.dht.daemonExplicit) : Promise.resolve(null);
  const joining = probe.then((daemon) => (daemon === null && config.dht.enabled ? startFinder(config, io) : null));
  const opening = probe.then((daemon) => (daemon === null ? openCache(config.cacheDir) : null));
  // Awaited below; an early failure is not an unhandled one meanwhile.
  for (const started of [joining, opening]) started.catch(() => undefined);
  let rows: PackageRow[];
  try {
    rows = await resolveNames(names, config, io, deps);
    await prepareDestination(config.dest);
  } catch (err) {
    (await joining.catch(() => null))?.close();
    (await opening.catch(() => null))?.close();
    throw err;
  }
  const daemon = await probe;
  const finder = await joining;
  const unique = [...new Map(rows.map((row) => [row.sha256, row])).values()];
  const reporter = makeReporter(io, config.output);
  if (daemon !== null) return downloadAll(unique, config, reporter, (row) => viaDaemon(daemon, row, config, reporter));
  try {
    const cache = (await opening)!;
    try {
      return await downloadAll(unique, config, reporter, (row) => downloadOne(row, config, cache, finder, deps, reporter));
    } finally {
      cache.close();
    }
  } finally {
    finder?.close();
    deps.rangeClient?.close();
  }
}

function openCache(dir: string): Promise<ContentCache> {
  return ContentCache.open(dir).catch((err: unknown) => {
    throw asDestinationError(dir, err);
  });
}

/** A short-lived DHT node for this get, joined through --bootstrap or the daemon's saved contacts. */
async function startFinder(config: GetConfig, io: CliIO): Promise<PeerFinder | null> {
  let saved: Contact[] = [];
  if (config.dht.bootstrap.length === 0 && existsSync(join(config.dht.stateDir, DHT_STATE_FILE))) {
    try {
      const state = DhtState.open(config.dht.stateDir);
      saved = state.contacts();
      state.close();
    } catch (err) {
      io.stderr(`W: cannot read the saved DHT contacts in ${config.dht.stateDir}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  try {
    return await startPeerFinder({ bind: config.dht.bind, bootstrap: config.dht.bootstrap, saved });
  } catch (err) {
    io.stderr(`W: cannot start a DHT node (${err instanceof Error ? err.message : String(err)}); using the mirror only\n`);
    return null;
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
  reporter: Reporter,
  downloadRow: (row: PackageRow) => Promise<FileReport>,
): Promise<FileReport[]> {
  reporter.begin(rows.map((row) => ({ key: row.sha256, label: basename(row.filename), size: row.size })));
  const reports: FileReport[] = [];
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < rows.length) {
      const row = rows[next++]!;
      try {
        const report = await downloadRow(row);
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

/** Without a daemon: the cache, else peers found by a short-lived DHT node and the mirror together. */
async function downloadOne(
  row: PackageRow,
  config: GetConfig,
  cache: ContentCache,
  finder: PeerFinder | null,
  deps: GetDeps,
  reporter: Reporter,
): Promise<FileReport> {
  const started = deps.now();
  const name = basename(row.filename);
  const target = { name, size: row.size, sha256: row.sha256 };
  const mirror = `${row.uri}/${row.filename}`;
  const destPath = join(config.dest, name);
  const fetchInto = async (path: string) => {
    const peers = finder === null ? [] : await finder.peersFor(row.sha256, row.size).catch(() => []);
    if (peers.length === 0) {
      return fromSources(target, [new HttpSource(mirror, deps.fetcher)], { onProgress: (n) => reporter.progress(row.sha256, n, "mirror") })(path);
    }
    reporter.peers(row.sha256, peers.length);
    return swarmDownload(target, { mirrors: [mirror], peers }, path, { fetcher: deps.fetcher, rangeClient: deps.rangeClient, getItem: (key) => finder!.getItem(key) }, {
      onProgress: (event) => reporter.progress(row.sha256, event.bytes, event.kind),
    });
  };
  const onCacheHit = (n: number) => reporter.progress(row.sha256, n, "cache");
  let obtained = await obtainFile({ cache, now: deps.now }, target, fetchInto, onCacheHit);
  try {
    // A file just downloaded was verified moments ago; one from the cache is checked again on the way out.
    await deliverFile(obtained.file, target, destPath, { verified: obtained.bytes.cache === 0 });
  } catch (err) {
    if (!(err instanceof HashMismatchError)) throw err;
    // The cached copy was damaged on disk after it was verified: drop it and fetch again once.
    await cache.forget(row.sha256);
    obtained = await obtainFile({ cache, now: deps.now }, target, fetchInto, onCacheHit);
    await deliverFile(obtained.file, target, destPath);
  }
  return fileReport(row, destPath, sourcesOf(obtained.bytes, obtained.perPeer), (deps.now() - started) / 1000);
}

