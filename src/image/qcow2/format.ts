/**
 * The qcow2 on-disk format (docs/output-formats.md §1.2, §1.4, §1.11): magic, header field offsets,
 * feature bits, header extension ids, L1/L2 entry bits, and the header codec — pure, no I/O.
 *
 * One module for both directions, so the writers (through layout.ts) and `Qcow2Reader` agree on
 * every offset and bit, and the magic the probes look for (disk-reader.ts, the OVA reader) is the
 * magic the writers write. The size and placement maths of our own files stays in layout.ts.
 *
 * Offsets are JS numbers: u64 fields the reader relies on are refused past 2^53
 * (`joinQcow2U64`), far beyond any image qemu opens (§1.3).
 */
import { ImageFormatError } from '../../errors';

// ---- header (§1.2) ------------------------------------------------------------------------------

/** "QFI\xfb", the first four bytes of every qcow2 file (§1.2). */
export const QCOW2_MAGIC = 0x514649fb;

/** Byte offsets of the header fields (§1.2); the v3 fields start at `incompatibleFeatures`. */
export const QCOW2_HEADER_OFFSETS = {
  magic: 0,
  version: 4,
  backingFileOffset: 8,
  backingFileSize: 16,
  clusterBits: 20,
  size: 24,
  cryptMethod: 32,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  nbSnapshots: 60,
  snapshotsOffset: 64,
  incompatibleFeatures: 72,
  compatibleFeatures: 80,
  autoclearFeatures: 88,
  refcountOrder: 96,
  headerLength: 100,
  /** One byte, present only when header_length > 104 (otherwise zlib). */
  compressionType: 104,
} as const;
const H = QCOW2_HEADER_OFFSETS;

/** Header lengths: v2 is exactly 72 bytes, v3 at least 104 (§1.2). */
export const QCOW2_V2_HEADER_LENGTH = 72;
export const QCOW2_V3_HEADER_LENGTH = 104;
/** Header extension end marker: `u32 type = 0, u32 length = 0` (§1.2). */
export const QCOW2_END_OF_EXTENSIONS_BYTES = 8;

export type Qcow2Version = 2 | 3;

/** cluster_bits our writers put in the header: 64 KiB clusters (§1.2, §1.7). */
export const QCOW2_CLUSTER_BITS = 16;
/** refcount_order our writers put in a v3 header, and v2's implicit one: 16-bit refcounts (§1.2, §1.5). */
export const QCOW2_REFCOUNT_ORDER = 4;
/** cluster_bits qemu accepts when opening an image: 512 B … 2 MiB clusters (§1.11). */
export const QCOW2_MIN_CLUSTER_BITS = 9;
export const QCOW2_MAX_CLUSTER_BITS = 21;

/** Incompatible feature bits (v3 header bytes 72-79; all in the low word). */
export const QCOW2_INCOMPAT_DIRTY = 1;
export const QCOW2_INCOMPAT_CORRUPT = 2;
export const QCOW2_INCOMPAT_EXTERNAL_DATA = 4;
export const QCOW2_INCOMPAT_COMPRESSION_TYPE = 8;
export const QCOW2_INCOMPAT_EXTENDED_L2 = 16;
const QCOW2_INCOMPAT_KNOWN =
  QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_EXTERNAL_DATA | QCOW2_INCOMPAT_COMPRESSION_TYPE | QCOW2_INCOMPAT_EXTENDED_L2;

/** compression_type values (header byte 104). */
export const QCOW2_COMPRESSION_ZLIB = 0;
export const QCOW2_COMPRESSION_ZSTD = 1;

/** Header extension types (`u32 type, u32 length, data padded to 8`), after the header. */
export const QCOW2_EXT_END = 0;
export const QCOW2_EXT_BACKING_FORMAT = 0xe2792aca;

// ---- L1 / L2 / refcount-table entries (§1.4, §1.5) ----------------------------------------------

/** Every L1, L2, refcount-table entry is a big-endian u64 (§1.4, §1.5). */
export const QCOW2_TABLE_ENTRY_BYTES = 8;
/** Bit 63 of an L1/L2 entry ("COPIED": refcount is exactly 1), as a bit of the high u32 (§1.4). */
export const QCOW2_OFLAG_COPIED_HIGH_WORD = 0x8000_0000;
/** Bit 62 of an L2 entry: the cluster is compressed (a descriptor, not an offset), high u32. */
export const QCOW2_OFLAG_COMPRESSED_HIGH_WORD = 0x4000_0000;
/** Bit 0 of a v3 L2 entry: the cluster reads as zeros, low u32. */
export const QCOW2_OFLAG_ZERO_LOW_WORD = 1;
/** Host offset bits 9-55 of an L1/L2 entry, split into the high and low u32 (§1.4). */
const OFFSET_MASK_HIGH_WORD = 0x00ff_ffff;
const OFFSET_MASK_LOW_WORD = 0xffff_fe00;
/** Largest host offset an L1/L2 entry can hold: bits 9-55 (§1.4). */
export const QCOW2_MAX_HOST_OFFSET = 2 ** 56 - 1;
/** Largest L1 table qemu opens, `QCOW_MAX_L1_SIZE`: 32 MiB (§1.3). */
export const QCOW2_MAX_L1_BYTES = 32 * 1024 * 1024;

const TWO_POW_32 = 2 ** 32;
const SECTOR = 512;

function writeU64BE(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_POW_32), at);
  buf.writeUInt32BE(value % TWO_POW_32, at + 4);
}

/** Unchecked: exact up to 2^53, for fields nobody here relies on. */
function readU64BE(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * TWO_POW_32 + buf.readUInt32BE(at + 4);
}

/** An IMAGE_BAD error naming the image file `input` when the caller knows it. */
function formatError(message: string, input: string | undefined): ImageFormatError {
  return new ImageFormatError(message, input === undefined ? undefined : { input });
}

/** Combines two 32-bit words into a Number, refusing values beyond 2^53 (ImageFormatError naming `input`). */
export function joinQcow2U64(hi: number, lo: number, what: string, input?: string): number {
  if (hi > 0x1fffff) throw formatError(`${what} is too large (${hi.toString(16)}${lo.toString(16).padStart(8, '0')})`, input);
  return hi * TWO_POW_32 + lo;
}

/** The host offset of L1/L2 entry `index` (flags masked off); 0 = unallocated. */
export function qcow2EntryHostOffset(table: Buffer, index: number, what: string, input?: string): number {
  const at = index * QCOW2_TABLE_ENTRY_BYTES;
  return joinQcow2U64(table.readUInt32BE(at) & OFFSET_MASK_HIGH_WORD, (table.readUInt32BE(at + 4) & OFFSET_MASK_LOW_WORD) >>> 0, what, input);
}

/**
 * Writes L1/L2 entry `index` of `table`: the host byte offset with the COPIED flag (bit 63).
 * `hostOffset` must be cluster aligned (qemu-check rejects unaligned entries, §1.8).
 */
export function setQcow2MappingEntry(table: Buffer, index: number, hostOffset: number): void {
  const at = index * QCOW2_TABLE_ENTRY_BYTES;
  table.writeUInt32BE((QCOW2_OFLAG_COPIED_HIGH_WORD | Math.floor(hostOffset / TWO_POW_32)) >>> 0, at);
  table.writeUInt32BE(hostOffset % TWO_POW_32, at + 4);
}

/** Writes refcount-table entry `index`: the host offset of a refcount block (no flags, §1.5). */
export function setQcow2RefcountTableEntry(table: Buffer, index: number, blockOffset: number): void {
  writeU64BE(table, blockOffset, index * QCOW2_TABLE_ENTRY_BYTES);
}

/**
 * A compressed cluster's L2 descriptor (`hi`, `lo`: its two u32 words, bit 62 set): the low
 * x = 62 - (cluster_bits - 8) bits are the host byte offset, the next cluster_bits - 8 bits the
 * number of additional 512-byte sectors. Returns the offset and the bytes to read from it.
 */
export function decodeQcow2CompressedEntry(hi: number, lo: number, clusterBits: number): { host: number; csize: number } {
  const entry = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
  const x = BigInt(62 - (clusterBits - 8));
  const host = Number(entry & ((1n << x) - 1n));
  const extraSectors = Number((entry >> x) & ((1n << BigInt(clusterBits - 8)) - 1n));
  return { host, csize: (extraSectors + 1) * SECTOR - (host % SECTOR) };
}

// ---- header codec (§1.2, §1.11) -------------------------------------------------------------------

/** What our writers vary in the header; everything else is fixed (§1.2). */
export interface Qcow2HeaderFields {
  version: Qcow2Version;
  virtualSize: number;
  /** Number of L1 entries (not clusters). */
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
}

function headerLength(version: Qcow2Version): number {
  return version === 2 ? QCOW2_V2_HEADER_LENGTH : QCOW2_V3_HEADER_LENGTH;
}

/**
 * The header bytes followed by the 8-byte end-of-extensions marker: 80 bytes for v2, 112 for v3.
 * The rest of cluster 0 is zero. Feature bits are all clear (never dirty/corrupt, §1.3).
 */
export function encodeQcow2Header(h: Qcow2HeaderFields): Buffer {
  const len = headerLength(h.version);
  const buf = Buffer.alloc(len + QCOW2_END_OF_EXTENSIONS_BYTES);
  buf.writeUInt32BE(QCOW2_MAGIC, H.magic);
  buf.writeUInt32BE(h.version, H.version);
  // backing file offset/size, crypt method, snapshots: 0 (already zero).
  buf.writeUInt32BE(QCOW2_CLUSTER_BITS, H.clusterBits);
  writeU64BE(buf, h.virtualSize, H.size);
  buf.writeUInt32BE(h.l1Size, H.l1Size);
  writeU64BE(buf, h.l1TableOffset, H.l1TableOffset);
  writeU64BE(buf, h.refcountTableOffset, H.refcountTableOffset);
  buf.writeUInt32BE(h.refcountTableClusters, H.refcountTableClusters);
  if (h.version === 3) {
    // incompatible/compatible/autoclear features: 0.
    buf.writeUInt32BE(QCOW2_REFCOUNT_ORDER, H.refcountOrder);
    buf.writeUInt32BE(len, H.headerLength);
  }
  // End-of-extensions marker at `len`: eight zero bytes (already zero).
  return buf;
}

export interface DecodedQcow2Header extends Qcow2HeaderFields {
  clusterBits: number;
  refcountOrder: number;
  /** Where the header extensions start. */
  headerLength: number;
  /** The low word of the incompatible features (the high word is refused when non-zero). */
  incompatibleFeatures: number;
  /** 0 = no backing file. */
  backingFileOffset: number;
  backingFileSize: number;
  /** QCOW2_COMPRESSION_ZLIB or QCOW2_COMPRESSION_ZSTD. */
  compressionType: number;
}

/**
 * Decodes and validates the header at the start of `buf` (the bytes available, ideally the
 * first 112: a v3 header with its compression type byte). Refuses, in this order, with an
 * ImageFormatError naming `input`, what `Qcow2Reader` cannot read (§1.11): a bad magic or short
 * header, versions other than 2 and 3, cluster_bits outside 9-21, u64 fields past 2^53,
 * encryption, unknown incompatible features, the corrupt bit, external data files, extended L2
 * entries, an invalid header_length, unknown compression types. The refcount table fields and
 * refcount_order are decoded but not checked (reading does not use them).
 */
export function decodeQcow2Header(buf: Buffer, input?: string): DecodedQcow2Header {
  const fail = (message: string): ImageFormatError => formatError(message, input);
  const u64 = (at: number, what: string): number => joinQcow2U64(buf.readUInt32BE(at), buf.readUInt32BE(at + 4), what, input);
  if (buf.length < QCOW2_V2_HEADER_LENGTH || buf.readUInt32BE(H.magic) !== QCOW2_MAGIC) throw fail('not a qcow2 image (bad magic or truncated header)');
  const version = buf.readUInt32BE(H.version);
  if (version !== 2 && version !== 3) throw fail(`unsupported qcow2 version ${version} (2 and 3 are supported)`);
  const clusterBits = buf.readUInt32BE(H.clusterBits);
  if (clusterBits < QCOW2_MIN_CLUSTER_BITS || clusterBits > QCOW2_MAX_CLUSTER_BITS) throw fail(`invalid cluster_bits ${clusterBits}`);
  const clusterSize = 2 ** clusterBits;
  const virtualSize = u64(H.size, 'virtual size');
  if (buf.readUInt32BE(H.cryptMethod) !== 0) throw fail('encrypted qcow2 images are not supported');
  const l1Size = buf.readUInt32BE(H.l1Size);
  const l1TableOffset = u64(H.l1TableOffset, 'L1 table offset');
  const backingFileOffset = u64(H.backingFileOffset, 'backing file offset');
  const backingFileSize = buf.readUInt32BE(H.backingFileSize);

  let headerLength = QCOW2_V2_HEADER_LENGTH;
  let incompatibleFeatures = 0;
  let refcountOrder = QCOW2_REFCOUNT_ORDER;
  let compressionType = QCOW2_COMPRESSION_ZLIB;
  if (version === 3) {
    if (buf.length < QCOW2_V3_HEADER_LENGTH) throw fail('truncated qcow2 v3 header');
    const incompatHi = buf.readUInt32BE(H.incompatibleFeatures);
    const incompat = buf.readUInt32BE(H.incompatibleFeatures + 4);
    if (incompatHi !== 0 || (incompat & ~QCOW2_INCOMPAT_KNOWN) !== 0) throw fail('qcow2 image uses unknown incompatible features');
    if (incompat & QCOW2_INCOMPAT_CORRUPT) throw fail('qcow2 image is marked corrupt (repair it with `qemu-img check -r all`)');
    if (incompat & QCOW2_INCOMPAT_EXTERNAL_DATA) throw fail('qcow2 images with an external data file are not supported');
    if (incompat & QCOW2_INCOMPAT_EXTENDED_L2) throw fail('qcow2 images with extended L2 entries (subclusters) are not supported');
    headerLength = buf.readUInt32BE(H.headerLength);
    if (headerLength < QCOW2_V3_HEADER_LENGTH || headerLength > clusterSize || headerLength % 8 !== 0) throw fail(`invalid header_length ${headerLength}`);
    if (incompat & QCOW2_INCOMPAT_COMPRESSION_TYPE) {
      // A byte missing from `buf` reads as 0, as in the zero-filled buffer a short read leaves.
      compressionType = headerLength > H.compressionType && buf.length > H.compressionType ? buf[H.compressionType]! : QCOW2_COMPRESSION_ZLIB;
      if (compressionType !== QCOW2_COMPRESSION_ZLIB && compressionType !== QCOW2_COMPRESSION_ZSTD) throw fail(`unknown compression type ${compressionType}`);
    }
    incompatibleFeatures = incompat;
    refcountOrder = buf.readUInt32BE(H.refcountOrder);
  }
  return {
    version,
    clusterBits,
    virtualSize,
    l1Size,
    l1TableOffset,
    refcountTableOffset: readU64BE(buf, H.refcountTableOffset),
    refcountTableClusters: buf.readUInt32BE(H.refcountTableClusters),
    incompatibleFeatures,
    refcountOrder,
    headerLength,
    backingFileOffset,
    backingFileSize,
    compressionType,
  };
}
