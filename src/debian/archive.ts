/**
 * Keeping the verified index of one APT source up to date: InRelease (or Release + Release.gpg) checked
 * with gpgv, then each Packages index checked against the Release's SHA-256 before it is parsed and
 * stored. Nothing is parsed before it is verified. Unchanged Releases cost one conditional request.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AptP2pError, ErrorCode } from "../errors.ts";
import type { Fetcher } from "../http/fetch.ts";
import { compressionOf, decompress } from "./decompress.ts";
import type { IndexRef, IndexStore } from "./index-store.ts";
import { parsePackageBatches } from "./packages.ts";
import { parseRelease, stripClearsign, verifyDetached, verifyInRelease, type KeyringSpec, type Release } from "./release.ts";
import type { SourceEntry } from "./sources.ts";

/** Downloads the first of `urls` that works to `path`, verified against `expected`, or throws. */
export type IndexDownloader = (urls: string[], expected: { name: string; size: number; sha256: string }, path: string) => Promise<void>;

export interface ArchiveDeps {
  fetcher: Fetcher;
  download: IndexDownloader;
  store: IndexStore;
  /** Keyrings trusted for sources without Signed-By paths (trusted.gpg, trusted.gpg.d/*). */
  systemKeyrings: string[];
  now: () => number;
  warn: (message: string) => void;
}

export interface SyncResult {
  key: string;
  /** True when the mirror could not be reached and the stored index was used. */
  offline: boolean;
}

/** Preference order of the forms of one Packages index. */
const INDEX_FORMS = ["Packages.xz", "Packages.gz", "Packages"] as const;

export function releaseKey(entry: Pick<SourceEntry, "uri" | "suite">): string {
  return `${entry.uri}|${entry.suite}`;
}

/** The directory holding InRelease: dists/<suite> or, for a flat repository, the suite path itself. */
export function releaseBase(entry: Pick<SourceEntry, "uri" | "suite">): string {
  if (entry.suite.endsWith("/")) {
    const path = entry.suite.replace(/^\.\/?/, "").replace(/\/+$/, "");
    return path === "" ? entry.uri : `${entry.uri}/${path}`;
  }
  return `${entry.uri}/dists/${entry.suite}`;
}

export function keysFor(entry: SourceEntry, systemKeyrings: string[]): KeyringSpec {
  const signedBy = entry.signedBy;
  const own = signedBy !== undefined && (signedBy.paths.length > 0 || signedBy.inline !== undefined);
  return {
    paths: own ? signedBy.paths : systemKeyrings,
    inline: signedBy?.inline !== undefined ? [signedBy.inline] : [],
    fingerprints: signedBy?.fingerprints ?? [],
  };
}

export async function syncSource(
  deps: ArchiveDeps,
  entry: SourceEntry,
  arches: string[],
  options: { refresh: boolean },
): Promise<SyncResult> {
  const key = releaseKey(entry);
  const base = releaseBase(entry);
  const stored = options.refresh ? null : deps.store.getRelease(key);
  const storedText = stored?.releaseText ?? null;

  let fetched: FetchedRelease;
  try {
    fetched = await fetchRelease(deps, entry, base, storedText === null ? null : stored);
  } catch (err) {
    if (storedText === null || !(err instanceof AptP2pError) || err.code !== ErrorCode.MirrorUnreachable) throw err;
    deps.warn(`${err.message}; using the index verified at ${new Date(stored!.fetchedAt).toISOString()}`);
    await ensureIndexes(deps, entry, base, parseRelease(storedText), arches, { offline: true, refresh: false });
    return { key, offline: true };
  }

  const text = fetched.text ?? storedText!;
  const release = parseRelease(text);
  if (release.validUntil !== undefined && release.validUntil.getTime() < deps.now()) {
    throw AptP2pError.badSignature(
      `${base}/InRelease`,
      `the Release file expired on ${release.validUntil.toUTCString()} (Valid-Until); the mirror may be out of date`,
    );
  }
  const indexes = await ensureIndexes(deps, entry, base, release, arches, { offline: false, refresh: options.refresh });
  const releaseSha256 = new Bun.CryptoHasher("sha256").update(text).digest("hex");
  const row = {
    key,
    uri: entry.uri,
    suite: entry.suite,
    releaseSha256,
    releaseText: text,
    lastModified: fetched.lastModified ?? undefined,
    etag: fetched.etag ?? undefined,
    fetchedAt: deps.now(),
  };
  await exclusively(deps.store, async () => deps.store.setRelease(row, indexes));
  return { key, offline: false };
}

interface FetchedRelease {
  /** The verified Release text, or null when the mirror said it is unchanged (304). */
  text: string | null;
  lastModified: string | null;
  etag: string | null;
}

async function fetchRelease(
  deps: ArchiveDeps,
  entry: SourceEntry,
  base: string,
  stored: { lastModified?: string; etag?: string } | null,
): Promise<FetchedRelease> {
  const headers: Record<string, string> = {};
  if (stored?.lastModified) headers["If-Modified-Since"] = stored.lastModified;
  if (stored?.etag) headers["If-None-Match"] = stored.etag;
  const keys = keysFor(entry, deps.systemKeyrings);

  const inReleaseUrl = `${base}/InRelease`;
  const response = await deps.fetcher(inReleaseUrl, { headers });
  const meta = { lastModified: response.headers.get("last-modified"), etag: response.headers.get("etag") };
  if (response.status === 304) {
    await response.body?.cancel();
    return { text: null, ...meta };
  }
  if (response.status === 200) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (entry.trusted) return { text: stripClearsign(new TextDecoder().decode(bytes)), ...meta };
    const { text } = await verifyInRelease(inReleaseUrl, bytes, keys);
    return { text, ...meta };
  }
  await response.body?.cancel();
  if (response.status !== 404 && response.status !== 403 && response.status !== 410) {
    throw AptP2pError.mirror(inReleaseUrl, `HTTP ${response.status}`);
  }

  const releaseUrl = `${base}/Release`;
  const releaseResponse = await deps.fetcher(releaseUrl, { headers });
  if (releaseResponse.status === 304) {
    await releaseResponse.body?.cancel();
    return { text: null, lastModified: releaseResponse.headers.get("last-modified"), etag: releaseResponse.headers.get("etag") };
  }
  if (releaseResponse.status !== 200) {
    await releaseResponse.body?.cancel();
    throw AptP2pError.mirror(releaseUrl, `HTTP ${releaseResponse.status}: neither InRelease nor Release found; check the suite name`);
  }
  const release = new Uint8Array(await releaseResponse.arrayBuffer());
  const releaseMeta = { lastModified: releaseResponse.headers.get("last-modified"), etag: releaseResponse.headers.get("etag") };
  if (entry.trusted) return { text: new TextDecoder().decode(release), ...releaseMeta };

  const sigUrl = `${base}/Release.gpg`;
  const sigResponse = await deps.fetcher(sigUrl);
  if (sigResponse.status !== 200) {
    await sigResponse.body?.cancel();
    if (sigResponse.status === 404) {
      throw AptP2pError.badSignature(releaseUrl, "the repository is not signed (no InRelease, no Release.gpg)");
    }
    throw AptP2pError.mirror(sigUrl, `HTTP ${sigResponse.status}`);
  }
  const signature = new Uint8Array(await sigResponse.arrayBuffer());
  const { text } = await verifyDetached(releaseUrl, release, signature, keys);
  return { text, ...releaseMeta };
}

/** Writes to one store happen one at a time: an import is one long transaction on its connection. */
const storeQueues = new WeakMap<IndexStore, Promise<unknown>>();

function exclusively<T>(store: IndexStore, work: () => Promise<T>): Promise<T> {
  const previous = storeQueues.get(store) ?? Promise.resolve();
  const next = previous.then(work, work);
  storeQueues.set(store, next.catch(() => undefined));
  return next;
}

/** Fetches, verifies and imports each Packages index the Release lists for these architectures. */
async function ensureIndexes(
  deps: ArchiveDeps,
  entry: SourceEntry,
  base: string,
  release: Release,
  arches: string[],
  options: { offline: boolean; refresh: boolean },
): Promise<IndexRef[]> {
  const flat = entry.suite.endsWith("/");
  const components = flat ? [""] : entry.components;
  const wanted = [...(entry.architectures ?? arches)];
  if (!flat && !release.allInArchIndexes && !wanted.includes("all")) wanted.push("all");
  const refs: IndexRef[] = [];
  for (const component of components) {
    let found = 0;
    for (const arch of wanted) {
      const dir = flat ? "" : `${component}/binary-${arch}/`;
      const form = INDEX_FORMS.find((name) => release.files.has(dir + name));
      if (form === undefined) continue;
      found++;
      const path = dir + form;
      const listed = release.files.get(path)!;
      if (options.refresh || !deps.store.hasIndex(listed.sha256)) {
        if (options.offline) throw AptP2pError.mirror(`${base}/${path}`, "the mirror is unreachable and this index was never fetched");
        await importIndex(deps, base, path, listed, release.acquireByHash, options.refresh);
      }
      refs.push({ component, arch: flat ? (arches[0] ?? "all") : arch, indexSha256: listed.sha256 });
    }
    if (found === 0 && !flat && !release.components.some((c) => c === component || c.endsWith(`/${component}`))) {
      deps.warn(`${entry.origin}: the Release of ${entry.suite} has no component '${component}'`);
    }
  }
  return refs;
}

async function importIndex(
  deps: ArchiveDeps,
  base: string,
  path: string,
  listed: { size: number; sha256: string },
  byHash: boolean,
  replace: boolean,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "apt-p2p-index-"));
  try {
    const file = join(dir, path.split("/").pop()!);
    const canonical = `${base}/${path}`;
    const slash = path.lastIndexOf("/");
    const byHashUrl = `${base}/${path.slice(0, slash + 1)}by-hash/SHA256/${listed.sha256}`;
    const urls = byHash ? [byHashUrl, canonical] : [canonical];
    try {
      await deps.download(urls, { name: canonical, ...listed }, file);
    } catch (err) {
      if (err instanceof AptP2pError && err.code === ErrorCode.FileHashMismatch) {
        throw new AptP2pError(ErrorCode.IndexHashMismatch, err.message, { cause: err, hints: err.hints });
      }
      throw err;
    }
    await exclusively(deps.store, async () => {
      if (replace) deps.store.dropIndex(listed.sha256);
      else if (deps.store.hasIndex(listed.sha256)) return; // Another source of this run imported the same file.
      await deps.store.importIndex(listed.sha256, parsePackageBatches(decompress(Bun.file(file).stream(), compressionOf(file))));
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** APT sources that name the same (uri, suite) more than once are one source with the union of components. */
export function mergeEntries(entries: SourceEntry[]): SourceEntry[] {
  const byKey = new Map<string, SourceEntry>();
  for (const entry of entries) {
    const key = releaseKey(entry);
    const seen = byKey.get(key);
    if (seen === undefined) byKey.set(key, { ...entry, components: [...entry.components] });
    else for (const c of entry.components) if (!seen.components.includes(c)) seen.components.push(c);
  }
  return [...byKey.values()];
}

export interface SyncAllResult {
  /** Sources whose verified index can be used. */
  keys: string[];
  /** Sources that could not be brought up to date, with why. */
  failures: { entry: SourceEntry; error: unknown }[];
}

/** Brings every source up to date at once; a failing source does not stop the others. */
export async function syncAll(
  deps: ArchiveDeps,
  entries: SourceEntry[],
  arches: string[],
  options: { refresh: boolean },
): Promise<SyncAllResult> {
  const results = await Promise.allSettled(entries.map((entry) => syncSource(deps, entry, arches, options)));
  // Only once every source has said which indexes it uses may the others go.
  await exclusively(deps.store, async () => deps.store.pruneIndexes());
  const keys: string[] = [];
  const failures: SyncAllResult["failures"] = [];
  results.forEach((result, i) => {
    if (result.status === "fulfilled") keys.push(result.value.key);
    else failures.push({ entry: entries[i]!, error: result.reason });
  });
  return { keys, failures };
}

/** "bookworm, bookworm-updates (main, contrib)", for messages. */
export function describeEntries(entries: SourceEntry[]): string {
  const suites = [...new Set(entries.map((e) => e.suite))];
  const components = [...new Set(entries.flatMap((e) => e.components))];
  return components.length > 0 ? `${suites.join(", ")} (${components.join(", ")})` : suites.join(", ");
}

/** The system's trusted keyrings, as APT reads them: trusted.gpg and trusted.gpg.d/*.{gpg,asc}. */
export async function systemKeyrings(aptDir: string): Promise<string[]> {
  const paths = [join(aptDir, "trusted.gpg")];
  const names = await readdir(join(aptDir, "trusted.gpg.d")).catch(() => [] as string[]);
  for (const name of names.sort()) {
    if (name.endsWith(".gpg") || name.endsWith(".asc")) paths.push(join(aptDir, "trusted.gpg.d", name));
  }
  return paths;
}
