/**
 * The workload: the real bookworm package list (names, sources, sizes), a popularity for each package
 * skewed as Debian's popcon shows, and the day's updates. Only the updated packages matter for the day,
 * so a machine's installed set is drawn only where it meets them (each package independently, with its
 * popularity as the chance of being installed; the core set has popularity 1).
 */
import { decompress } from "../../src/debian/decompress.ts";
import { parsePackageBatches } from "../../src/debian/packages.ts";
import { shuffle } from "./random.ts";

export const BOOKWORM_PACKAGES = new URL("../../../shared/fixtures/debian-bookworm/main/binary-amd64/Packages.xz", import.meta.url).pathname;

/** Packages installed on a machine on average (assumed: between a server's few hundred and a desktop's few thousand). */
export const INSTALLED_MEAN = 1_500;
/** The popcon shape asked for: this share of packages is used by fewer than RARE_BELOW of machines. */
export const RARE_SHARE = 0.8;
export const RARE_BELOW = 0.01;
/** About 1% of the archive changes per day (point releases and security updates, averaged). */
export const DAILY_CHANGE_SHARE = 0.01;

export interface ArchivePackage {
  name: string;
  source: string;
  size: number;
  sha256: string;
}

/** Reads the package list with the project's own decompressor and parser. */
export async function loadArchive(path = BOOKWORM_PACKAGES): Promise<ArchivePackage[]> {
  const out: ArchivePackage[] = [];
  for await (const batch of parsePackageBatches(decompress(Bun.file(path).stream(), "xz"))) {
    for (const r of batch) out.push({ name: r.package, source: (r.source ?? r.package).split(" ")[0]!, size: r.size, sha256: r.sha256 });
  }
  return out;
}

/**
 * Popularity by rank (0 = most used): p(r) = min(1, (r0 / (r + 1))^a), a Zipf-like law with a core of
 * packages on every machine. r0 puts RARE_BELOW at the rank past which RARE_SHARE of the archive lies; the
 * exponent a is then solved so that a machine installs `installedMean` packages on average.
 */
export function popularityLaw(count: number, installedMean = INSTALLED_MEAN): { exponent: number; core: number; p: (rank: number) => number } {
  const law = (a: number) => {
    const r0 = ((1 - RARE_SHARE) * count + 1) * RARE_BELOW ** (1 / a);
    return { r0, p: (rank: number) => Math.min(1, (r0 / (rank + 1)) ** a) };
  };
  const mean = (a: number) => {
    const { p } = law(a);
    let sum = 0;
    for (let r = 0; r < count; r++) sum += p(r);
    return sum;
  };
  // The mean grows with the exponent (a steeper tail pushes r0, the core, outward): bisect.
  let lo = 0.2;
  let hi = 20;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (mean(mid) < installedMean) lo = mid;
    else hi = mid;
  }
  const { r0, p } = law((lo + hi) / 2);
  return { exponent: (lo + hi) / 2, core: Math.floor(r0), p };
}

/**
 * The day's changes: whole source packages (an upload rebuilds all its binaries), drawn at random until
 * `share` of the binary packages are covered. Returns, per source, indices into `packages`.
 */
export function dailyUpdate(packages: ArchivePackage[], random: () => number, share = DAILY_CHANGE_SHARE): number[][] {
  const bySource = new Map<string, number[]>();
  packages.forEach((p, i) => {
    const list = bySource.get(p.source);
    if (list === undefined) bySource.set(p.source, [i]);
    else list.push(i);
  });
  const sources = shuffle([...bySource.keys()].sort(), random);
  const goal = Math.round(share * packages.length);
  const out: number[][] = [];
  let binaries = 0;
  for (const source of sources) {
    if (binaries >= goal) break;
    out.push(bySource.get(source)!);
    binaries += bySource.get(source)!.length;
  }
  return out;
}

export interface Workload {
  /** The updated packages: size, DHT key source (sha256) and popularity. */
  files: { name: string; size: number; sha256: string; popularity: number }[];
  /** For each machine, the indices into `files` it has installed, so downloads today. */
  perMachine: number[][];
  archive: { packages: number; bytes: number; exponent: number; core: number; installedMean: number };
  /** The day's update in full, and the share of its source packages simulated. */
  day: { sources: number; files: number; bytes: number; simulatedShare: number };
}

/**
 * Ranks the archive at random, applies the law, draws the update and every machine's share of it.
 * `filesShare` < 1 simulates only that share of the day's source packages, to bound the DHT work (see
 * sampleSources); a machine's update is about that much smaller.
 */
export function buildWorkload(packages: ArchivePackage[], machines: number, random: () => number, options: { installedMean?: number; filesShare?: number } = {}): Workload {
  const installedMean = options.installedMean ?? INSTALLED_MEAN;
  const filesShare = options.filesShare ?? 1;
  const law = popularityLaw(packages.length, installedMean);
  const rankOf = shuffle(packages.map((_, i) => i), random);
  const rank = new Array<number>(packages.length);
  rankOf.forEach((pkg, r) => (rank[pkg] = r));
  const groups = dailyUpdate(packages, random);
  const day = { sources: groups.length, files: 0, bytes: 0, simulatedShare: filesShare };
  for (const g of groups) for (const i of g) (day.files++, (day.bytes += packages[i]!.size));
  // Shuffled first: ties in the sample's order fall at random.
  const updated = sampleSources(shuffle(groups, random), (i) => machines * law.p(rank[i]!) * packages[i]!.size, filesShare, random).flat();
  const files = updated.map((i) => ({ name: packages[i]!.name, size: packages[i]!.size, sha256: packages[i]!.sha256, popularity: law.p(rank[i]!) }));
  const perMachine: number[][] = Array.from({ length: machines }, () => []);
  files.forEach((file, f) => {
    for (let m = 0; m < machines; m++) if (random() < file.popularity) perMachine[m]!.push(f);
  });
  let bytes = 0;
  for (const p of packages) bytes += p.size;
  return { files, perMachine, archive: { packages: packages.length, bytes, exponent: law.exponent, core: law.core, installedMean }, day };
}

/**
 * A systematic sample of source packages: sorted by the bytes they are expected to bring to the
 * machines, every (1 / share)-th from a random start. A plain random sample of sources varies wildly in
 * volume (a few popular sources with many binaries carry most of the day), this one keeps the day's mix
 * of popular and rare, large and small.
 */
export function sampleSources(groups: number[][], expectedBytes: (pkg: number) => number, share: number, random: () => number): number[][] {
  if (share >= 1) return groups;
  const weighted = groups.map((g) => ({ g, w: g.reduce((sum, i) => sum + expectedBytes(i), 0) })).sort((a, b) => b.w - a.w);
  const step = 1 / share;
  const out: number[][] = [];
  for (let at = random() * step; at < weighted.length; at += step) out.push(weighted[Math.floor(at)]!.g);
  return out.length > 0 ? out : [weighted[0]!.g];
}
