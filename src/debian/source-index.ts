/**
 * Streaming reader of APT `Sources` indexes (deb-src): for each source package, the pool directory and
 * the SHA-256 and size of each of its files (.dsc, .orig.tar.*, .debian.tar.*), which `apt-get source`
 * fetches next. Only the fields apt-p2p needs are kept; a stanza lacking them is skipped.
 */

export interface SourceFile {
  /** Path relative to the archive root, e.g. pool/main/h/hello/hello_2.10-3.dsc */
  path: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
}

const CHECKSUM_LINE = /^\s+([0-9a-fA-F]{64})\s+(\d+)\s+(\S+)\s*$/;

/** Parses Sources text arriving in chunks; yields the files of the stanzas completed by each chunk. */
export async function* parseSourceFiles(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<SourceFile[]> {
  const decoder = new TextDecoder();
  let carry = "";
  for await (const chunk of chunks) {
    const text = carry + decoder.decode(chunk, { stream: true });
    const end = text.lastIndexOf("\n\n");
    if (end < 0) {
      carry = text;
      continue;
    }
    carry = text.slice(end + 2);
    const files = stanzaFiles(text.slice(0, end));
    if (files.length > 0) yield files;
  }
  const files = stanzaFiles(carry + decoder.decode());
  if (files.length > 0) yield files;
}

/** The files of every complete stanza in `text` (stanzas separated by blank lines). */
function stanzaFiles(text: string): SourceFile[] {
  const files: SourceFile[] = [];
  for (const stanza of text.split(/\n[ \t]*\n/)) {
    let directory: string | undefined;
    const listed: { name: string; size: number; sha256: string }[] = [];
    let inChecksums = false;
    for (const rawLine of stanza.split("\n")) {
      const line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
      if (line.startsWith(" ") || line.startsWith("\t")) {
        if (!inChecksums) continue;
        const match = CHECKSUM_LINE.exec(line);
        if (match !== null) listed.push({ sha256: match[1]!.toLowerCase(), size: Number(match[2]), name: match[3]! });
        continue;
      }
      const colon = line.indexOf(":");
      const field = colon > 0 ? line.slice(0, colon).toLowerCase() : "";
      inChecksums = field === "checksums-sha256";
      if (field === "directory") directory = line.slice(colon + 1).trim();
    }
    if (directory === undefined || !isSafeRelative(directory)) continue;
    for (const file of listed) {
      if (file.name.includes("/")) continue;
      files.push({ path: `${directory.replace(/^\.\//, "").replace(/\/+$/, "")}/${file.name}`, size: file.size, sha256: file.sha256 });
    }
  }
  return files;
}

function isSafeRelative(path: string): boolean {
  return path !== "" && !path.startsWith("/") && !path.split("/").some((segment) => segment === "..");
}
