/**
 * Streaming parser of APT `Packages` indexes (deb822 paragraphs), keeping only the fields apt-p2p needs.
 *
 * The text is never held whole: each chunk is scanned line by line with indexOf, complete stanzas
 * become records, and only the bytes of the unfinished stanza at the end of a chunk are carried over.
 *
 * Speed and memory: a chunk is scanned as a Latin-1 string (one char per byte, so char offsets are
 * byte offsets and no decoder state spans chunks), and only the values we keep are decoded, as UTF-8,
 * straight from the bytes. Those are fresh strings: a substring of the chunk text would keep the
 * whole chunk alive for as long as the record lives. Records come in batches (one array per input
 * chunk) because a `yield` per record from an async generator costs more than parsing the record.
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

const CHAR_LF = 10;
const CHAR_CR = 13;
const CHAR_SPACE = 32;
const CHAR_TAB = 9;
const CHAR_HASH = 35;
const CHAR_0 = 48;
const CHAR_9 = 57;
const ASCII_LOWER_BIT = 0x20;
const SHA256_HEX_LENGTH = 64;

/** Field slots: value offsets live at [2 * slot, 2 * slot + 1] of the offsets array. */
const PACKAGE = 0;
const VERSION = 1;
const ARCHITECTURE = 2;
const FILENAME = 3;
const SIZE = 4;
const SHA256 = 5;
const SOURCE = 6;
const MULTI_ARCH = 7;
const SLOTS = 8;
const REQUIRED: [slot: number, name: string][] = [
  [PACKAGE, "Package"],
  [VERSION, "Version"],
  [ARCHITECTURE, "Architecture"],
  [FILENAME, "Filename"],
  [SIZE, "Size"],
  [SHA256, "SHA256"],
];

/**
 * Parses Packages text arriving in chunks; yields the records of each chunk as one array, in order.
 * Empty arrays are not yielded.
 */
export async function* parsePackageBatches(
  chunks: AsyncIterable<Uint8Array>,
  options: ParseOptions = {},
): AsyncGenerator<PackageRecord[]> {
  const scanner = new StanzaScanner(options.onSkipped);
  for await (const chunk of chunks) {
    const records = scanner.push(chunk, false);
    if (records.length > 0) yield records;
  }
  const records = scanner.push(new Uint8Array(0), true);
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
  return new StanzaScanner(options.onSkipped).push(bytes, true);
}

class StanzaScanner {
  /** Bytes of the unfinished stanza (and unfinished line) from the previous chunk. */
  private carry: Buffer = Buffer.alloc(0);
  private stanzaNumber = 0;
  private readonly onSkipped: ((reason: string) => void) | undefined;
  /** Value offsets [start, end) per slot for the current stanza; -1 when absent. */
  private readonly offsets = new Int32Array(SLOTS * 2);
  /** Whether the current stanza has any line yet (runs of blank lines are not stanzas). */
  private inStanza = false;

  constructor(onSkipped: ((reason: string) => void) | undefined) {
    this.onSkipped = onSkipped;
  }

  /** Scans `chunk` appended to the carried bytes; `final` flushes the last stanza. */
  push(chunk: Uint8Array, final: boolean): PackageRecord[] {
    const view = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const bytes = this.carry.length > 0 ? Buffer.concat([this.carry, view]) : view;
    const text = bytes.toString("latin1");
    const out: PackageRecord[] = [];
    const end = text.length;
    let stanzaStart = 0;
    let pos = 0;
    this.startStanza();

    while (pos < end) {
      let eol = text.indexOf("\n", pos);
      if (eol === -1) {
        if (!final) break; // an unfinished line: wait for the rest
        eol = end;
      }
      let lineEnd = eol;
      while (lineEnd > pos && text.charCodeAt(lineEnd - 1) === CHAR_CR) lineEnd--;
      const first = lineEnd > pos ? text.charCodeAt(pos) : CHAR_LF;

      if (first === CHAR_LF || ((first === CHAR_SPACE || first === CHAR_TAB) && isBlank(text, pos, lineEnd))) {
        // An empty line ends a stanza; deb822 lets parsers take whitespace-only lines as empty too.
        this.finishStanza(bytes, out);
        stanzaStart = eol + 1;
      } else if (first !== CHAR_SPACE && first !== CHAR_TAB && first !== CHAR_HASH) {
        // A field line. Continuation lines (leading space or tab) never hold a field we keep, and a
        // line without a colon is malformed: both still belong to the stanza.
        this.inStanza = true;
        const colon = text.indexOf(":", pos);
        if (colon !== -1 && colon < lineEnd) this.storeField(text, pos, colon, lineEnd);
      } else if (first !== CHAR_HASH) {
        this.inStanza = true; // a continuation line
      }
      pos = eol + 1;
    }

    if (final) {
      this.finishStanza(bytes, out);
      this.carry = Buffer.alloc(0);
    } else {
      // Copy, so that the carry does not pin the chunk it came from.
      this.carry = Buffer.from(bytes.subarray(stanzaStart));
    }
    return out;
  }

  private startStanza(): void {
    this.offsets.fill(-1);
    this.inStanza = false;
  }

  /** Remembers where the value of a field we keep lies in text[start, lineEnd), trimmed. */
  private storeField(text: string, start: number, colon: number, lineEnd: number): void {
    const slot = fieldSlot(text, start, colon);
    if (slot < 0) return;
    let from = colon + 1;
    let to = lineEnd;
    while (from < to && isSpace(text.charCodeAt(from))) from++;
    while (to > from && isSpace(text.charCodeAt(to - 1))) to--;
    this.offsets[2 * slot] = from;
    this.offsets[2 * slot + 1] = to;
  }

  private finishStanza(bytes: Buffer, out: PackageRecord[]): void {
    if (!this.inStanza) return;
    this.stanzaNumber++;
    const record = this.toRecord(bytes);
    if (record !== null) out.push(record);
    this.startStanza();
  }

  private toRecord(bytes: Buffer): PackageRecord | null {
    const o = this.offsets;
    for (const [slot, name] of REQUIRED) {
      if (o[2 * slot]! < 0 || o[2 * slot]! === o[2 * slot + 1]!) return this.skip(bytes, `no ${name} field`);
    }
    const size = decimal(bytes, o[2 * SIZE]!, o[2 * SIZE + 1]!);
    if (size < 0) return this.skip(bytes, `invalid Size "${this.value(bytes, SIZE)}"`);
    const sha256 = this.value(bytes, SHA256).toLowerCase();
    if (!isSha256Hex(sha256)) return this.skip(bytes, `invalid SHA256 "${sha256}"`);
    const record: PackageRecord = {
      package: this.value(bytes, PACKAGE),
      version: this.value(bytes, VERSION),
      architecture: this.value(bytes, ARCHITECTURE),
      filename: this.value(bytes, FILENAME),
      size,
      sha256,
    };
    if (o[2 * SOURCE]! >= 0) record.source = this.value(bytes, SOURCE);
    if (o[2 * MULTI_ARCH]! >= 0) record.multiArch = this.value(bytes, MULTI_ARCH);
    return record;
  }

  /** The value of a slot, decoded as UTF-8 from the bytes (a fresh string). */
  private value(bytes: Buffer, slot: number): string {
    return bytes.toString("utf8", this.offsets[2 * slot]!, this.offsets[2 * slot + 1]!);
  }

  private skip(bytes: Buffer, why: string): null {
    const name = this.offsets[2 * PACKAGE]! >= 0 ? ` (${this.value(bytes, PACKAGE)})` : "";
    this.onSkipped?.(`stanza ${this.stanzaNumber}${name}: ${why}`);
    return null;
  }
}

/**
 * The slot of the field named by text[start, colon), or -1 for a field we do not keep. Names match
 * case-insensitively; the first letter and the length rule out most fields without allocating.
 */
function fieldSlot(text: string, start: number, colon: number): number {
  let nameEnd = colon;
  while (nameEnd > start && isSpace(text.charCodeAt(nameEnd - 1))) nameEnd--;
  const length = nameEnd - start;
  switch (text.charCodeAt(start) | ASCII_LOWER_BIT) {
    case 0x70: // p
      return length === 7 && nameIs(text, start, "package") ? PACKAGE : -1;
    case 0x76: // v
      return length === 7 && nameIs(text, start, "version") ? VERSION : -1;
    case 0x61: // a
      return length === 12 && nameIs(text, start, "architecture") ? ARCHITECTURE : -1;
    case 0x66: // f
      return length === 8 && nameIs(text, start, "filename") ? FILENAME : -1;
    case 0x73: // s
      if (length === 4) return nameIs(text, start, "size") ? SIZE : -1;
      if (length !== 6) return -1;
      if (nameIs(text, start, "sha256")) return SHA256;
      return nameIs(text, start, "source") ? SOURCE : -1;
    case 0x6d: // m
      return length === 10 && nameIs(text, start, "multi-arch") ? MULTI_ARCH : -1;
    default:
      return -1;
  }
}

/** Whether text at `start` spells `lowerName`, ignoring ASCII case. */
function nameIs(text: string, start: number, lowerName: string): boolean {
  for (let i = 0; i < lowerName.length; i++) {
    if ((text.charCodeAt(start + i) | ASCII_LOWER_BIT) !== lowerName.charCodeAt(i)) return false;
  }
  return true;
}

/** A non-negative decimal integer from bytes[from, to), or -1 if it is not one. */
function decimal(bytes: Buffer, from: number, to: number): number {
  let value = 0;
  for (let i = from; i < to; i++) {
    const c = bytes[i]!;
    if (c < CHAR_0 || c > CHAR_9) return -1;
    value = value * 10 + (c - CHAR_0);
  }
  return from < to && Number.isSafeInteger(value) ? value : -1;
}

function isSha256Hex(value: string): boolean {
  if (value.length !== SHA256_HEX_LENGTH) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (!((c >= CHAR_0 && c <= CHAR_9) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

function isBlank(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    if (!isSpace(text.charCodeAt(i))) return false;
  }
  return true;
}

function isSpace(c: number): boolean {
  return c === CHAR_SPACE || c === CHAR_TAB;
}
