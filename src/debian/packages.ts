/**
 * Streaming parser of APT `Packages` indexes (deb822 paragraphs), keeping only the fields apt-p2p needs.
 *
 * The text is never held whole: each chunk is scanned line by line with indexOf, complete stanzas
 * become records, and only the unfinished stanza at the end of a chunk is carried over.
 *
 * Speed: bytes are read as Latin-1 (one char per byte: no decoder state across chunks, and the
 * engine keeps 8-bit strings), and only the few values we keep are re-decoded as UTF-8 when they
 * contain a non-ASCII byte. Records are produced in batches (one array per input chunk) because a
 * `yield` per record from an async generator costs more than parsing the record.
 */

export interface PackageRecord {
  package: string;
  version: string;
  architecture: string;
  /** Pool path relative to the archive root, e.g. pool/main/h/hello/hello_2.10-3_amd64.deb */
  filename: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
  source?: string;
  multiArch?: string;
}

export interface ParseOptions {
  /** Called once per stanza that lacks a required field or has an invalid one. */
  onSkipped?: (reason: string) => void;
}

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const DECIMAL = /^[0-9]+$/;

const CHAR_LF = 10;
const CHAR_CR = 13;
const CHAR_SPACE = 32;
const CHAR_TAB = 9;
const CHAR_HASH = 35;
const ASCII_LOWER_BIT = 0x20;

/** The fields of one stanza seen so far. */
interface Fields {
  package?: string;
  version?: string;
  architecture?: string;
  filename?: string;
  size?: string;
  sha256?: string;
  source?: string;
  multiArch?: string;
  /** Whether the stanza had any field at all (blank runs between stanzas are not stanzas). */
  any: boolean;
}

function emptyFields(): Fields {
  return { any: false };
}

/**
 * Parses Packages text arriving in chunks; yields the records of each chunk as one array, in order.
 * Empty arrays are not yielded.
 */
export async function* parsePackageBatches(
  chunks: AsyncIterable<Uint8Array>,
  options: ParseOptions = {},
): AsyncGenerator<PackageRecord[]> {
  const parser = new StanzaScanner(options.onSkipped);
  for await (const chunk of chunks) {
    const records = parser.push(latin1(chunk), false);
    if (records.length > 0) yield records;
  }
  const records = parser.push("", true);
  if (records.length > 0) yield records;
}

/** Parses Packages text arriving in chunks; yields records one by one, in order. */
export async function* parsePackages(
  chunks: AsyncIterable<Uint8Array>,
  options: ParseOptions = {},
): AsyncGenerator<PackageRecord> {
  for await (const batch of parsePackageBatches(chunks, options)) yield* batch;
}

/** Parses a complete Packages file held in memory (for small inputs and tests). */
export function parsePackagesBytes(bytes: Uint8Array, options: ParseOptions = {}): PackageRecord[] {
  return new StanzaScanner(options.onSkipped).push(latin1(bytes), true);
}

/** Bytes as a string of one char per byte (ISO-8859-1), without copying the bytes first. */
function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

const NON_ASCII = /[\u0080-\u00ff]/;

/** A value read as Latin-1, re-decoded as the UTF-8 it is when it holds a non-ASCII byte. */
function utf8(value: string): string {
  return NON_ASCII.test(value) ? Buffer.from(value, "latin1").toString("utf8") : value;
}

class StanzaScanner {
  /** Text of the unfinished stanza from the previous chunk (starts at a line start). */
  private carry = "";
  private stanzaNumber = 0;
  private readonly onSkipped: ((reason: string) => void) | undefined;

  constructor(onSkipped: ((reason: string) => void) | undefined) {
    this.onSkipped = onSkipped;
  }

  /** Scan `text` appended to the carried partial stanza; `final` flushes the last stanza. */
  push(text: string, final: boolean): PackageRecord[] {
    let buf = this.carry.length > 0 ? this.carry + text : text;
    // CRLF: drop every CR right before a LF. A lone CR at the very end is kept and joined next time.
    if (buf.indexOf("\r") !== -1) buf = buf.replace(/\r+\n/g, "\n");
    const out: PackageRecord[] = [];
    const end = buf.length;
    let fields = emptyFields();
    let stanzaStart = 0;
    let pos = 0;

    while (pos < end) {
      let eol = buf.indexOf("\n", pos);
      if (eol === -1) {
        if (!final) break; // incomplete line: wait for more text
        eol = end;
      }
      let lineEnd = eol;
      if (final && lineEnd === end && lineEnd > pos && buf.charCodeAt(lineEnd - 1) === CHAR_CR) lineEnd--;
      const first = lineEnd > pos ? buf.charCodeAt(pos) : CHAR_LF;

      if (first === CHAR_SPACE || first === CHAR_TAB) {
        // A continuation line, or a whitespace-only line that deb822 parsers may take as a separator.
        if (isBlank(buf, pos, lineEnd)) {
          this.finish(fields, out);
          fields = emptyFields();
          stanzaStart = eol + 1;
        }
      } else if (first === CHAR_LF) {
        this.finish(fields, out);
        fields = emptyFields();
        stanzaStart = eol + 1;
      } else if (first !== CHAR_HASH) {
        // A line without a colon is malformed; it still belongs to the stanza but carries no field.
        fields.any = true;
        const colon = buf.indexOf(":", pos);
        if (colon !== -1 && colon < lineEnd) storeField(fields, buf, pos, colon, lineEnd);
      }
      pos = eol + 1;
    }

    if (final) {
      this.finish(fields, out);
      this.carry = "";
    } else {
      this.carry = stanzaStart < end ? buf.slice(stanzaStart) : "";
    }
    return out;
  }

  private finish(fields: Fields, out: PackageRecord[]): void {
    if (!fields.any) return;
    this.stanzaNumber++;
    const missing = missingField(fields);
    if (missing !== undefined) {
      this.onSkipped?.(`stanza ${this.stanzaNumber}${named(fields)}: ${missing}`);
      return;
    }
    const record: PackageRecord = {
      package: utf8(fields.package!),
      version: utf8(fields.version!),
      architecture: utf8(fields.architecture!),
      filename: utf8(fields.filename!),
      size: Number(fields.size),
      sha256: fields.sha256!.toLowerCase(),
    };
    if (fields.source !== undefined) record.source = utf8(fields.source);
    if (fields.multiArch !== undefined) record.multiArch = utf8(fields.multiArch);
    out.push(record);
  }
}

function named(fields: Fields): string {
  return fields.package === undefined ? "" : ` (${fields.package})`;
}

function missingField(fields: Fields): string | undefined {
  if (!fields.package) return "no Package field";
  if (!fields.version) return "no Version field";
  if (!fields.architecture) return "no Architecture field";
  if (!fields.filename) return "no Filename field";
  if (fields.size === undefined || fields.size === "") return "no Size field";
  if (!DECIMAL.test(fields.size) || !Number.isSafeInteger(Number(fields.size))) return `invalid Size "${fields.size}"`;
  if (!fields.sha256) return "no SHA256 field";
  if (!SHA256_HEX.test(fields.sha256)) return `invalid SHA256 "${fields.sha256}"`;
  return undefined;
}

function isBlank(buf: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = buf.charCodeAt(i);
    if (c !== CHAR_SPACE && c !== CHAR_TAB && c !== CHAR_CR) return false;
  }
  return true;
}

/**
 * Store the value of the field on buf[start, lineEnd) if it is one we keep. Names are matched
 * case-insensitively; the first letter and the length rule out most fields without allocating.
 */
function storeField(fields: Fields, buf: string, start: number, colon: number, lineEnd: number): void {
  let nameEnd = colon;
  while (nameEnd > start && isSpace(buf.charCodeAt(nameEnd - 1))) nameEnd--;
  const length = nameEnd - start;
  const first = buf.charCodeAt(start) | ASCII_LOWER_BIT;
  let key: keyof Omit<Fields, "any"> | undefined;
  switch (first) {
    case 0x70: // p
      if (length === 7 && nameIs(buf, start, nameEnd, "package")) key = "package";
      break;
    case 0x76: // v
      if (length === 7 && nameIs(buf, start, nameEnd, "version")) key = "version";
      break;
    case 0x61: // a
      if (length === 12 && nameIs(buf, start, nameEnd, "architecture")) key = "architecture";
      break;
    case 0x66: // f
      if (length === 8 && nameIs(buf, start, nameEnd, "filename")) key = "filename";
      break;
    case 0x73: // s
      if (length === 4 && nameIs(buf, start, nameEnd, "size")) key = "size";
      else if (length === 6 && nameIs(buf, start, nameEnd, "sha256")) key = "sha256";
      else if (length === 6 && nameIs(buf, start, nameEnd, "source")) key = "source";
      break;
    case 0x6d: // m
      if (length === 10 && nameIs(buf, start, nameEnd, "multi-arch")) key = "multiArch";
      break;
  }
  if (key === undefined) return;
  fields[key] = buf.slice(colon + 1, lineEnd).trim();
}

function nameIs(buf: string, start: number, end: number, lowerName: string): boolean {
  for (let i = start; i < end; i++) {
    if ((buf.charCodeAt(i) | ASCII_LOWER_BIT) !== lowerName.charCodeAt(i - start)) return false;
  }
  return true;
}

function isSpace(c: number): boolean {
  return c === CHAR_SPACE || c === CHAR_TAB;
}
