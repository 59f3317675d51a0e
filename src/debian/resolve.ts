/**
 * Turning what a user typed into one index entry: `NAME`, `NAME=VERSION`, `NAME:ARCH`, a `.deb` file name
 * or a pool path. Reads only the stored index, so a warm resolve is a few SQLite lookups.
 */
import { AptP2pError, ErrorCode } from "../errors.ts";
import type { IndexStore, PackageRow } from "./index-store.ts";
import { compareVersions } from "./version.ts";

export type PackageRequest =
  | { kind: "name"; text: string; name: string; version?: string; arch?: string }
  | { kind: "file"; text: string; path: string };

export function parseRequest(text: string): PackageRequest {
  const trimmed = text.trim();
  if (trimmed.endsWith(".deb") || trimmed.includes("/")) {
    return { kind: "file", text, path: trimmed.replace(/^\/+/, "") };
  }
  const eq = trimmed.indexOf("=");
  const namePart = eq < 0 ? trimmed : trimmed.slice(0, eq);
  const version = eq < 0 ? undefined : trimmed.slice(eq + 1);
  const colon = namePart.indexOf(":");
  const name = colon < 0 ? namePart : namePart.slice(0, colon);
  const arch = colon < 0 ? undefined : namePart.slice(colon + 1);
  if (!/^[a-z0-9][a-z0-9+.-]*$/.test(name) || version === "" || arch === "") {
    throw new AptP2pError(ErrorCode.Usage, `Invalid package request '${text}': expected NAME, NAME=VERSION, NAME:ARCH or a .deb file name`);
  }
  return { kind: "name", text, name, version, arch };
}

export interface ResolveScope {
  releaseKeys: string[];
  /** Architectures to accept besides "all", in order of preference. */
  arches: string[];
  /** For messages: what was searched, e.g. "bookworm, bookworm-updates (main)". */
  describe: string;
}

export function resolveRequest(store: IndexStore, request: PackageRequest, scope: ResolveScope): PackageRow {
  if (request.kind === "file") return resolveFile(store, request, scope);
  const arches = request.arch !== undefined ? [request.arch] : scope.arches;
  const accepted = [...arches, "all"];
  const candidates = store.findByName(request.name, scope.releaseKeys, accepted);
  if (candidates.length === 0) {
    const suggestions = store.suggestNames(request.name, scope.releaseKeys, 5).filter((n) => n !== request.name);
    throw new AptP2pError(
      ErrorCode.UnknownPackage,
      `Unknown package '${request.name}': not found in ${scope.describe} for ${accepted.join(", ")}`,
      {
        hints: [
          suggestions.length > 0 ? `Did you mean: ${suggestions.join(", ")}?` : "Check the spelling, or add the suite that has it to your APT sources.",
          "Another architecture can be chosen with --arch ARCH or NAME:ARCH.",
        ],
      },
    );
  }
  const matching = request.version === undefined ? candidates : candidates.filter((c) => c.version === request.version);
  if (matching.length === 0) {
    const versions = [...new Set(candidates.map((c) => c.version))].sort((a, b) => compareVersions(b, a));
    throw new AptP2pError(
      ErrorCode.UnknownVersion,
      `Unknown version '${request.name}=${request.version}': available versions are ${versions.join(", ")}`,
      { hints: [`Ask for one of them, e.g. ${request.name}=${versions[0]}, or give just ${request.name} for the newest.`] },
    );
  }
  return pickBest(matching, accepted);
}

/** Highest version; among equal versions, the preferred architecture. */
export function pickBest(rows: PackageRow[], arches: string[]): PackageRow {
  let best = rows[0]!;
  for (const row of rows.slice(1)) {
    const order = compareVersions(row.version, best.version);
    if (order > 0 || (order === 0 && archRank(row.architecture, arches) < archRank(best.architecture, arches))) best = row;
  }
  return best;
}

function archRank(arch: string, arches: string[]): number {
  const i = arches.indexOf(arch);
  return i < 0 ? arches.length : i;
}

function resolveFile(store: IndexStore, request: { text: string; path: string }, scope: ResolveScope): PackageRow {
  const rows = store.findByFilename(request.path, scope.releaseKeys);
  if (rows.length === 0) {
    throw new AptP2pError(ErrorCode.UnknownPackage, `Unknown file '${request.path}': no package in ${scope.describe} has that file name`, {
      hints: ["Give the archive's file name (name_version_arch.deb) or its pool path, or just the package name."],
    });
  }
  return rows[0]!;
}
