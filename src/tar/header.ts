/**
 * Pure encode/decode of 512-byte tar header blocks (no I/O).
 *
 * Three write dialects (docs/xva-format.md §2.2):
 *  - 'xapi'  : exactly what XAPI writes through ocaml-tar 2.x in V7 mode: no magic, every
 *              numeric field zero-padded to (width - 1) octal digits + NUL — including the
 *              checksum (7 digits + NUL) — typeflag NUL, mode 0400 by default.
 *  - 'v7'    : classic V7 as GNU `tar --format=v7` writes it: no magic, typeflag '0',
 *              checksum 6 digits + NUL + space, mode 0644 by default.
 *  - 'ustar' : POSIX ustar (`ustar\0` `00`), typeflag '0', checksum 6 digits + NUL + space,
 *              mode 0644 by default — what §2.2 recommends for XVAs meant for import.
 * Numbers too large for the octal field (sizes >= 8 GiB) are written in GNU base-256, which
 * GNU tar, bsdtar and Python's tarfile all read.
 *
 * The decoder accepts V7, ustar and old-GNU headers, verifies the checksum (unsigned byte
 * sum, falling back to the historic signed sum), and parses octal fields leniently
 * (leading spaces, trailing NUL/space) as well as base-256.
 */
import { XvaFormatError } from '../errors';

export const TAR_BLOCK = 512;

// Field offsets and widths of the 512-byte header (POSIX ustar layout; V7 uses the first 257).
export const NAME_OFFSET = 0;
export const NAME_SIZE = 100;
export const MODE_OFFSET = 100;
export const MODE_SIZE = 8;
export const UID_OFFSET = 108;
export const UID_SIZE = 8;
export const GID_OFFSET = 116;
export const GID_SIZE = 8;
export const SIZE_OFFSET = 124;
export const SIZE_SIZE = 12;
export const MTIME_OFFSET = 136;
export const MTIME_SIZE = 12;
export const CHECKSUM_OFFSET = 148;
export const CHECKSUM_SIZE = 8;
export const TYPEFLAG_OFFSET = 156;
export const LINKNAME_OFFSET = 157;
export const LINKNAME_SIZE = 100;
export const MAGIC_OFFSET = 257;
export const MAGIC_SIZE = 6;
export const VERSION_OFFSET = 263;
export const VERSION_SIZE = 2;
export const UNAME_OFFSET = 265;
export const UNAME_SIZE = 32;
export const GNAME_OFFSET = 297;
export const GNAME_SIZE = 32;
export const DEVMAJOR_OFFSET = 329;
export const DEVMAJOR_SIZE = 8;
export const DEVMINOR_OFFSET = 337;
export const DEVMINOR_SIZE = 8;
export const PREFIX_OFFSET = 345;
export const PREFIX_SIZE = 155;

/** `ustar\0` + version `00` (POSIX). */
const USTAR_MAGIC = Buffer.from('ustar\u0000', 'latin1');
const USTAR_VERSION = Buffer.from('00', 'latin1');
/** Old GNU tar: `ustar ` + version ` \0`. */
const GNU_MAGIC = Buffer.from('ustar ', 'latin1');

/** The checksum is computed with the checksum field itself read as eight spaces. */
const CHECKSUM_SPACES_SUM = CHECKSUM_SIZE * 0x20;

/** Marks a numeric field as GNU base-256 (first byte 0x80; 0xff would be negative). */
const BASE256_POSITIVE = 0x80;
const BASE256_NEGATIVE = 0xff;

export type TarDialect = 'xapi' | 'v7' | 'ustar';

/**
 * The dialects an XVA is written in (pack): ustar (the default) or xapi (V7 exactly as XAPI
 * writes it). Plain v7 is left to tests.
 */
export const XVA_TAR_DIALECTS = ['ustar', 'xapi'] as const satisfies readonly TarDialect[];
export type XvaTarDialect = (typeof XVA_TAR_DIALECTS)[number];

export type TarFormat = 'v7' | 'ustar' | 'gnu';

/** Typeflags this project cares about (as single characters; '\0' = V7 regular file). */
export const TYPE_FILE_V7 = '\u0000';
export const TYPE_FILE = '0';
export const TYPE_DIRECTORY = '5';
export const TYPE_PAX_HEADER = 'x';
export const TYPE_PAX_GLOBAL = 'g';
export const TYPE_GNU_LONGNAME = 'L';

export interface TarHeaderInput {
  /** Entry name, at most 100 bytes (ustar: may be split into prefix + name up to 256). */
  name: string;
  size: number;
  /** Permission bits; default 0o400 for 'xapi', 0o644 otherwise. */
  mode?: number;
  /** Seconds since the epoch; default 0. */
  mtime?: number;
  /** Single character; default '\0' for 'xapi', '0' otherwise. */
  typeflag?: string;
  uid?: number;
  gid?: number;
  /** ustar only. */
  uname?: string;
  gname?: string;
  dialect: TarDialect;
}

export interface TarHeader {
  /** Full name (ustar prefix joined with '/'). */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Single character as stored; '\0' for a V7 regular file. */
  typeflag: string;
  linkname: string;
  format: TarFormat;
  uname: string;
  gname: string;
  /** Checksum value as stored in the header. */
  checksum: number;
}

/** Default modes per dialect (docs/xva-format.md §2.1/§2.2). */
export const DEFAULT_MODE: Record<TarDialect, number> = { xapi: 0o400, v7: 0o644, ustar: 0o644 };

/** Zero bytes needed after `size` bytes of data to reach the next block boundary. */
export function tarPadding(size: number): number {
  const rest = size % TAR_BLOCK;
  return rest === 0 ? 0 : TAR_BLOCK - rest;
}

/** The end-of-archive marker: two zero blocks (all XAPI writes, docs/xva-format.md §1.4). */
export function tarEndBlocks(): Buffer {
  return Buffer.alloc(2 * TAR_BLOCK);
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < TAR_BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Largest value `digits` octal digits can hold. */
function octalCapacity(digits: number): number {
  return 8 ** digits - 1;
}

/**
 * Writes `value` as octal zero-padded to `digits` digits, followed by the terminator bytes
 * (`\0` or `\0 `), or in base-256 when it does not fit and the field allows it.
 */
function writeNumber(block: Buffer, offset: number, width: number, value: number, digits: number, field: string, allowBase256: boolean): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`tar header: ${field} must be a non-negative safe integer, got ${value}`);
  if (value <= octalCapacity(digits)) {
    block.write(value.toString(8).padStart(digits, '0'), offset, digits, 'latin1');
    // Bytes after the digits stay NUL unless the caller adds a trailing space.
    return;
  }
  if (!allowBase256) throw new RangeError(`tar header: ${field} ${value} does not fit in ${digits} octal digits`);
  writeBase256(block, offset, width, value);
}

function writeBase256(block: Buffer, offset: number, width: number, value: number): void {
  block[offset] = BASE256_POSITIVE;
  let v = BigInt(value);
  for (let i = offset + width - 1; i > offset; i--) {
    block[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** Unsigned sum of the block with the checksum field counted as spaces. */
export function tarChecksum(block: Uint8Array): number {
  let sum = CHECKSUM_SPACES_SUM;
  for (let i = 0; i < TAR_BLOCK; i++) {
    if (i >= CHECKSUM_OFFSET && i < CHECKSUM_OFFSET + CHECKSUM_SIZE) continue;
    sum += block[i]!;
  }
  return sum;
}

/** Historic signed-char sum (some old tars wrote it; POSIX readers accept both). */
function signedTarChecksum(block: Uint8Array): number {
  let sum = CHECKSUM_SPACES_SUM;
  for (let i = 0; i < TAR_BLOCK; i++) {
    if (i >= CHECKSUM_OFFSET && i < CHECKSUM_OFFSET + CHECKSUM_SIZE) continue;
    const b = block[i]!;
    sum += b > 127 ? b - 256 : b;
  }
  return sum;
}

/** Splits a long ustar name at a '/' so that prefix <= 155 and name <= 100 bytes. */
function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  const bytes = Buffer.byteLength(name);
  if (bytes <= NAME_SIZE) return { prefix: '', name };
  for (let i = name.lastIndexOf('/'); i > 0; i = name.lastIndexOf('/', i - 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= PREFIX_SIZE && Buffer.byteLength(rest) <= NAME_SIZE && rest.length > 0) return { prefix, name: rest };
  }
  return undefined;
}

function writeString(block: Buffer, offset: number, width: number, value: string, field: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > width) throw new RangeError(`tar header: ${field} "${value}" is longer than ${width} bytes`);
  bytes.copy(block, offset);
}

/** Encodes one header block. Throws RangeError for values the dialect cannot represent. */
export function encodeTarHeader(input: TarHeaderInput): Buffer {
  const { dialect } = input;
  const block = Buffer.alloc(TAR_BLOCK);
  const mode = input.mode ?? DEFAULT_MODE[dialect];
  const typeflag = input.typeflag ?? (dialect === 'xapi' ? TYPE_FILE_V7 : TYPE_FILE);
  if (typeflag.length !== 1) throw new RangeError(`tar header: typeflag must be one character, got ${JSON.stringify(typeflag)}`);

  if (dialect === 'ustar') {
    const split = splitUstarName(input.name);
    if (!split) throw new RangeError(`tar header: name "${input.name}" cannot be stored in a ustar header`);
    writeString(block, NAME_OFFSET, NAME_SIZE, split.name, 'name');
    writeString(block, PREFIX_OFFSET, PREFIX_SIZE, split.prefix, 'prefix');
  } else {
    writeString(block, NAME_OFFSET, NAME_SIZE, input.name, 'name');
  }

  // Every numeric field: (width - 1) octal digits + NUL, as ocaml-tar's marshal_int and GNU tar do.
  writeNumber(block, MODE_OFFSET, MODE_SIZE, mode, MODE_SIZE - 1, 'mode', false);
  writeNumber(block, UID_OFFSET, UID_SIZE, input.uid ?? 0, UID_SIZE - 1, 'uid', true);
  writeNumber(block, GID_OFFSET, GID_SIZE, input.gid ?? 0, GID_SIZE - 1, 'gid', true);
  writeNumber(block, SIZE_OFFSET, SIZE_SIZE, input.size, SIZE_SIZE - 1, 'size', true);
  writeNumber(block, MTIME_OFFSET, MTIME_SIZE, input.mtime ?? 0, MTIME_SIZE - 1, 'mtime', true);
  block.write(typeflag, TYPEFLAG_OFFSET, 1, 'latin1');

  if (dialect === 'ustar') {
    USTAR_MAGIC.copy(block, MAGIC_OFFSET);
    USTAR_VERSION.copy(block, VERSION_OFFSET);
    writeString(block, UNAME_OFFSET, UNAME_SIZE, input.uname ?? '', 'uname');
    writeString(block, GNAME_OFFSET, GNAME_SIZE, input.gname ?? '', 'gname');
    writeNumber(block, DEVMAJOR_OFFSET, DEVMAJOR_SIZE, 0, DEVMAJOR_SIZE - 1, 'devmajor', false);
    writeNumber(block, DEVMINOR_OFFSET, DEVMINOR_SIZE, 0, DEVMINOR_SIZE - 1, 'devminor', false);
  }

  const sum = tarChecksum(block);
  if (dialect === 'xapi') {
    // ocaml-tar: marshal_int over the 8-byte field = 7 octal digits + NUL.
    block.write(sum.toString(8).padStart(7, '0'), CHECKSUM_OFFSET, 7, 'latin1');
    block[CHECKSUM_OFFSET + 7] = 0;
  } else {
    // Traditional: 6 octal digits + NUL + space.
    block.write(sum.toString(8).padStart(6, '0'), CHECKSUM_OFFSET, 6, 'latin1');
    block[CHECKSUM_OFFSET + 6] = 0;
    block[CHECKSUM_OFFSET + 7] = 0x20;
  }
  return block;
}

function headerError(message: string): XvaFormatError {
  return new XvaFormatError('TAR_BAD_HEADER', message);
}

/**
 * Parses a numeric field: octal (leading spaces/NULs, digits, then NUL/space terminators)
 * or GNU base-256. An empty field reads as 0.
 */
export function decodeTarNumber(block: Uint8Array, offset: number, width: number, field = 'field'): number {
  const first = block[offset]!;
  if (first === BASE256_POSITIVE || first === BASE256_NEGATIVE) {
    if (first === BASE256_NEGATIVE) throw headerError(`tar header: negative base-256 ${field}`);
    let v = 0n;
    for (let i = offset + 1; i < offset + width; i++) v = (v << 8n) | BigInt(block[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw headerError(`tar header: ${field} too large`);
    return Number(v);
  }
  let i = offset;
  const end = offset + width;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c >= 0x30 && c <= 0x37) {
      value = value * 8 + (c - 0x30);
      digits++;
      continue;
    }
    if (c === 0 || c === 0x20) break;
    throw headerError(`tar header: invalid character 0x${c.toString(16).padStart(2, '0')} in ${field}`);
  }
  // Only NULs and spaces may follow the digits.
  for (; i < end; i++) {
    const c = block[i]!;
    if (c !== 0 && c !== 0x20) throw headerError(`tar header: invalid character 0x${c.toString(16).padStart(2, '0')} in ${field}`);
  }
  if (!Number.isSafeInteger(value)) throw headerError(`tar header: ${field} too large`);
  return digits === 0 ? 0 : value;
}

function readString(block: Uint8Array, offset: number, width: number): string {
  let end = offset;
  while (end < offset + width && block[end] !== 0) end++;
  return Buffer.from(block.buffer, block.byteOffset + offset, end - offset).toString('utf8');
}

function bytesEqual(block: Uint8Array, offset: number, expected: Buffer): boolean {
  for (let i = 0; i < expected.length; i++) if (block[offset + i] !== expected[i]) return false;
  return true;
}

/**
 * Decodes one header block. Returns null for an all-zero block (end of archive).
 * Throws XvaFormatError('TAR_BAD_HEADER') on a checksum mismatch or malformed number.
 */
export function decodeTarHeader(block: Uint8Array): TarHeader | null {
  if (block.length < TAR_BLOCK) throw headerError(`tar header: short block (${block.length} bytes)`);
  if (isZeroBlock(block)) return null;

  const stored = decodeTarNumber(block, CHECKSUM_OFFSET, CHECKSUM_SIZE, 'checksum');
  const unsigned = tarChecksum(block);
  if (stored !== unsigned && stored !== signedTarChecksum(block)) {
    throw headerError(`tar header checksum mismatch: stored ${stored.toString(8)}, computed ${unsigned.toString(8)} (not a tar archive, corrupted, or still compressed?)`);
  }

  let format: TarFormat = 'v7';
  if (bytesEqual(block, MAGIC_OFFSET, USTAR_MAGIC)) format = 'ustar';
  else if (bytesEqual(block, MAGIC_OFFSET, GNU_MAGIC)) format = 'gnu';

  let name = readString(block, NAME_OFFSET, NAME_SIZE);
  if (format === 'ustar') {
    const prefix = readString(block, PREFIX_OFFSET, PREFIX_SIZE);
    if (prefix) name = `${prefix}/${name}`;
  }
  const hasOwnerNames = format !== 'v7';
  return {
    name,
    mode: decodeTarNumber(block, MODE_OFFSET, MODE_SIZE, 'mode'),
    uid: decodeTarNumber(block, UID_OFFSET, UID_SIZE, 'uid'),
    gid: decodeTarNumber(block, GID_OFFSET, GID_SIZE, 'gid'),
    size: decodeTarNumber(block, SIZE_OFFSET, SIZE_SIZE, 'size'),
    mtime: decodeTarNumber(block, MTIME_OFFSET, MTIME_SIZE, 'mtime'),
    typeflag: String.fromCharCode(block[TYPEFLAG_OFFSET]!),
    linkname: readString(block, LINKNAME_OFFSET, LINKNAME_SIZE),
    format,
    uname: hasOwnerNames ? readString(block, UNAME_OFFSET, UNAME_SIZE) : '',
    gname: hasOwnerNames ? readString(block, GNAME_OFFSET, GNAME_SIZE) : '',
    checksum: stored,
  };
}

/** True for typeflags that denote a regular file ('\0', '0', and '7' contiguous file). */
export function isRegularFileType(typeflag: string): boolean {
  return typeflag === TYPE_FILE_V7 || typeflag === TYPE_FILE || typeflag === '7';
}
