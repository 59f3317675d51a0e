/** "Did you mean": ranking package names close to a mistyped one. Pure. */

/** How many edits a name may be from the one typed and still be suggested. */
export function suggestionDistance(wanted: string): number {
  return wanted.length <= 4 ? 1 : 2;
}

/**
 * Up to `limit` of `candidates`, best first: small edit distance first, then names that it starts with
 * or that start with it, then names that contain it; ties go to the closer length, then alphabetical.
 */
export function rankSuggestions(wanted: string, candidates: string[], maxDistance: number, limit: number): string[] {
  const scored: { name: string; score: number }[] = [];
  for (const candidate of candidates) {
    if (candidate === wanted) continue;
    const distance = editDistance(wanted, candidate, maxDistance);
    let score: number;
    if (distance <= maxDistance) score = distance;
    else if (candidate.startsWith(wanted) || wanted.startsWith(candidate)) score = maxDistance + 1;
    else if (candidate.includes(wanted)) score = maxDistance + 2;
    else continue;
    scored.push({ name: candidate, score });
  }
  scored.sort(
    (a, b) =>
      a.score - b.score ||
      Math.abs(a.name.length - wanted.length) - Math.abs(b.name.length - wanted.length) ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  return scored.slice(0, limit).map((s) => s.name);
}

/**
 * Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), or `max + 1` as soon
 * as it must exceed `max`.
 */
export function editDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let prevPrev: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      let value = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a.charCodeAt(i - 1) === b.charCodeAt(j - 2) && a.charCodeAt(i - 2) === b.charCodeAt(j - 1)) {
        value = Math.min(value, prevPrev[j - 2]! + 1);
      }
      row.push(value);
      if (value < rowMin) rowMin = value;
    }
    if (rowMin > max) return max + 1;
    prevPrev = prev;
    prev = row;
  }
  return Math.min(prev[b.length]!, max + 1);
}
