/**
 * Learning signed hashes from what passes through the proxy: a Release file is believed only once gpgv
 * accepts its signature with the keys the APT sources give for it; an index (Packages, Sources) is read
 * only once its bytes matched the hash that Release gives. Reading a large index takes a second or so: it
 * runs in the background, and a lookup that misses waits for the reads in progress first.
 */
import { decompress, compressionOf } from "../debian/decompress.ts";
import { parsePackageBatches } from "../debian/packages.ts";
import { parseRelease, verifyDetached, verifyInRelease, type KeyringSpec } from "../debian/release.ts";
import { parseSourceFiles } from "../debian/source-index.ts";
import type { IndexKind, KnownFile, KnownFiles } from "./known.ts";

export interface LearnDeps {
  known: KnownFiles;
  /** Fetches a file with a signed hash (from the cache, peers or the mirror) and gives its verified path. */
  fetchVerified: (url: string, file: KnownFile) => Promise<string>;
  /** Architectures whose Packages indexes are worth reading to find an unknown .deb ("all" debs use these). */
  arches: string[];
  /** The keys allowed to sign the Release in directory `dir` (a URL). */
  keysFor: (dir: string) => Promise<KeyringSpec>;
  log: (line: string) => void;
  now: () => number;
}

export class Learner {
  private readonly pending = new Set<Promise<void>>();
  /** Index reads by "sha256 root", so that two requests for one index read it once. */
  private readonly reading = new Map<string, Promise<void>>();
  /** Discoveries running, by "root arch". */
  private readonly discovering = new Map<string, Promise<void>>();

  constructor(private readonly deps: LearnDeps) {}

  /** Verifies an InRelease fetched from `dir` and learns what it lists; false (logged) when it does not verify. */
  async inRelease(dir: string, bytes: Uint8Array): Promise<boolean> {
    return this.learnVerified(dir, async (keys) => (await verifyInRelease(`${dir}/InRelease`, bytes, keys)).text);
  }

  /** Verifies a Release against its detached signature and learns what it lists. */
  async detachedRelease(dir: string, release: Uint8Array, signature: Uint8Array): Promise<boolean> {
    return this.learnVerified(dir, async (keys) => (await verifyDetached(`${dir}/Release`, release, signature, keys)).text);
  }

  private async learnVerified(dir: string, verify: (keys: KeyringSpec) => Promise<string>): Promise<boolean> {
    try {
      const text = await verify(await this.deps.keysFor(dir));
      const release = parseRelease(text);
      this.deps.known.learnRelease(dir, release, this.deps.now());
      return true;
    } catch (err) {
      this.deps.log(`not learning from ${dir}: ${err instanceof Error ? err.message : String(err)}`);
      return false;
    }
  }

  /**
   * Reads a verified index (the file at `path`, fetched as `url`, with SHA-256 `sha256`) in the background
   * and learns the files it lists, once per index and archive root.
   */
  readIndex(url: string, kind: IndexKind, path: string, sha256: string, compressedAs: string = url): Promise<void> {
    const root = indexRoot(url);
    const key = `${sha256} ${root}`;
    const running = this.reading.get(key);
    if (running !== undefined) return running;
    if (this.deps.known.hasRead(sha256, root)) return Promise.resolve();
    const work = this.read(root, kind, path, compressionOf(compressedAs))
      .then(
        (count) => {
          this.deps.known.markRead(sha256, root, this.deps.now());
          this.deps.log(`learned ${count} file hashes from ${url}`);
        },
        (err: unknown) => this.deps.log(`cannot read index ${url}: ${err instanceof Error ? err.message : String(err)}`),
      )
      .finally(() => {
        this.pending.delete(work);
        this.reading.delete(key);
      });
    this.pending.add(work);
    this.reading.set(key, work);
    return work;
  }

  private async read(root: string, kind: IndexKind, path: string, compression: ReturnType<typeof compressionOf>): Promise<number> {
    const chunks = decompress(Bun.file(path).stream(), compression);
    let count = 0;
    if (kind === "packages") {
      for await (const batch of parsePackageBatches(chunks)) {
        this.deps.known.learnListed(root, batch.map((r) => ({ path: r.filename, sha256: r.sha256, size: r.size })), this.deps.now());
        count += batch.length;
      }
    } else {
      for await (const batch of parseSourceFiles(chunks)) {
        this.deps.known.learnListed(root, batch, this.deps.now());
        count += batch.length;
      }
    }
    return count;
  }

  /**
   * The signed hash of `url`, waiting for index reads in progress when it is not known yet. A .deb in a
   * pool that no index read so far lists (APT did not fetch the indexes through us: they were current)
   * makes us read the Packages indexes its verified Releases list, once.
   */
  async lookup(url: string): Promise<KnownFile | null> {
    const found = this.deps.known.lookup(url);
    if (found !== null) return found;
    if (this.pending.size > 0) {
      await Promise.all([...this.pending]);
      const after = this.deps.known.lookup(url);
      if (after !== null) return after;
    }
    const pool = /^(.*?)\/pool\/.*_([a-z0-9-]+)\.deb$/.exec(url);
    if (pool === null) return null;
    const arches = pool[2] === "all" ? this.deps.arches : [pool[2]!];
    await Promise.all(arches.map((arch) => this.discover(pool[1]!, arch)));
    return this.deps.known.lookup(url);
  }

  private discover(root: string, arch: string): Promise<void> {
    const key = `${root} ${arch}`;
    const running = this.discovering.get(key);
    if (running !== undefined) return running;
    const work = (async () => {
      for (const index of this.deps.known.unreadPackagesIndexes(root, arch)) {
        try {
          const path = await this.deps.fetchVerified(index.url, index);
          await this.readIndex(index.url, "packages", path, index.sha256);
        } catch (err) {
          this.deps.log(`cannot fetch index ${index.url}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    })().finally(() => this.discovering.delete(key));
    this.discovering.set(key, work);
    return work;
  }

  /** Resolves when no index read is in progress. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }
}

/**
 * What the paths of an index at `url` are relative to: the archive root before "/dists/", or for a flat
 * repository the directory holding the index.
 */
export function indexRoot(url: string): string {
  const dists = url.lastIndexOf("/dists/");
  return dists >= 0 ? url.slice(0, dists) : url.slice(0, url.lastIndexOf("/"));
}
