/**
 * The hosted sparse VMDK extent format, shared by the writer (streamOptimized) and the stream
 * reader: constants, the sparse extent header codec (docs/output-formats.md §2.1), markers
 * (§2.2) and the embedded descriptor text (§2.3). No I/O and no zlib here.
 */
import { CLUSTER_SIZE, imageVirtualSize, SECTOR_SIZE } from '../types';

// ---- constants (§2.1 – §2.3) --------------------------------------------------------------------

export const VMDK_SECTOR_SIZE = SECTOR_SIZE;
/** "KDMV" little-endian (§2.1). */
export const VMDK_MAGIC = 0x564d444b;
/** streamOptimized files are version 3 (§2.1). */
export const VMDK_VERSION = 3;
/** bit 0 valid newline detection, bit 16 compressed grains, bit 17 markers: 0x00030001 (§2.1). */
export const VMDK_FLAG_VALID_NEWLINE_DETECTION = 1 << 0;
/** Bit 2: a GT entry of 1 means "zeroed grain" (read by §2.6, never written). */
export const VMDK_FLAG_ZEROED_GRAIN_GTE = 1 << 2;
export const VMDK_FLAG_COMPRESSED = 1 << 16;
export const VMDK_FLAG_MARKERS = 1 << 17;
export const VMDK_FLAGS = VMDK_FLAG_VALID_NEWLINE_DETECTION | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS;
/** Grain = 64 KiB = 128 sectors (§2.1), the same as a qcow2 cluster. */
export const VMDK_GRAIN_SIZE = CLUSTER_SIZE;
export const VMDK_GRAIN_SECTORS = VMDK_GRAIN_SIZE / VMDK_SECTOR_SIZE;
/** Embedded descriptor: sectors 1 … 20 (§2.1). */
export const VMDK_DESCRIPTOR_OFFSET_SECTORS = 1;
export const VMDK_DESCRIPTOR_SECTORS = 20;
/** Grain table entries per GT (§2.1; qemu rejects more). */
export const VMDK_GTES_PER_GT = 512;
/** GT/GD entries are u32 sector offsets (§2.2). */
export const VMDK_TABLE_ENTRY_BYTES = 4;
export const VMDK_GT_BYTES = VMDK_GTES_PER_GT * VMDK_TABLE_ENTRY_BYTES;
export const VMDK_GT_SECTORS = VMDK_GT_BYTES / VMDK_SECTOR_SIZE;
/** gdOffset in the leading header when the GD follows the grains (§2.1). */
export const VMDK_GD_AT_END_WORD = 0xffff_ffff;
/** Sectors before the first grain: header + descriptor, rounded to one grain (§2.1, VirtualBox). */
export const VMDK_OVERHEAD_SECTORS = VMDK_GRAIN_SECTORS;
/** compressAlgorithm 1 = DEFLATE (§2.1). */
export const VMDK_COMPRESSION_DEFLATE = 1;
/** Metadata marker types (§2.2). */
export const VMDK_MARKER_EOS = 0;
export const VMDK_MARKER_GT = 1;
export const VMDK_MARKER_GD = 2;
export const VMDK_MARKER_FOOTER = 3;
/** Grain marker header: u64 LBA + u32 compressed size (§2.2). */
export const VMDK_GRAIN_MARKER_BYTES = 12;
/** Marker fields: u64 at 0 (LBA or numSectors), u32 size at 8, u32 type at 12 (metadata only) (§2.2). */
const MARKER_SIZE_OFFSET = 8;
const MARKER_TYPE_OFFSET = 12;
/** GT/GD entries hold u32 sectors: the file cannot exceed 2^32 sectors = 2 TiB (§2.2). */
export const VMDK_MAX_FILE_SECTORS = 2 ** 32;
/** CIDs with special meaning: ffffffff = "no parent", fffffffe reserved (§2.3). */
export const VMDK_CID_MAX_EXCLUSIVE = 0xffff_fffe;

const TWO_POW_32 = 2 ** 32;
/** Largest high word of a u64 that still gives a safe integer (2^53 - 1). */
const MAX_SAFE_HIGH_WORD = 0x1fffff;

/** Capacity in sectors: a partial last sector rounds up (`imageVirtualSize`). */
export function vmdkCapacitySectors(virtualSize: number): number {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new RangeError(`invalid virtual size ${virtualSize}`);
  return imageVirtualSize(virtualSize) / VMDK_SECTOR_SIZE;
}

// ---- little-endian u64 --------------------------------------------------------------------------

export function writeU64LE(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value % TWO_POW_32, at);
  buf.writeUInt32LE(Math.floor(value / TWO_POW_32), at + 4);
}

/** A u64 field, or undefined when it exceeds 2^53 - 1. */
function readSafeU64LE(buf: Buffer, at: number): number | undefined {
  const lo = buf.readUInt32LE(at);
  const hi = buf.readUInt32LE(at + 4);
  if (hi > MAX_SAFE_HIGH_WORD) return undefined;
  return hi * TWO_POW_32 + lo;
}

// ---- sparse extent header (§2.1) ----------------------------------------------------------------

const HDR = {
  magic: 0,
  version: 4,
  flags: 8,
  capacity: 12,
  grainSize: 20,
  descriptorOffset: 28,
  descriptorSize: 36,
  numGTEsPerGT: 44,
  rgdOffset: 48,
  gdOffset: 56,
  overHead: 64,
  uncleanShutdown: 72,
  newlineDetection: 73,
  compressAlgorithm: 77,
} as const;
/** singleEndLineChar, nonEndLineChar, doubleEndLineChar1/2 (§2.1). */
const NEWLINE_DETECTION_BYTES = [0x0a, 0x20, 0x0d, 0x0a];
/** Bytes a header must have for every field `decodeVmdkHeader` reads (up to compressAlgorithm). */
export const VMDK_HEADER_MIN_BYTES = HDR.compressAlgorithm + 2;

/** The 512-byte sparse extent header; `gdSector` undefined = GD_AT_END (leading header). */
export function encodeVmdkHeader(virtualSize: number, gdSector?: number): Buffer {
  const h = Buffer.alloc(VMDK_SECTOR_SIZE);
  h.writeUInt32LE(VMDK_MAGIC, HDR.magic);
  h.writeUInt32LE(VMDK_VERSION, HDR.version);
  h.writeUInt32LE(VMDK_FLAGS, HDR.flags);
  writeU64LE(h, vmdkCapacitySectors(virtualSize), HDR.capacity);
  writeU64LE(h, VMDK_GRAIN_SECTORS, HDR.grainSize);
  writeU64LE(h, VMDK_DESCRIPTOR_OFFSET_SECTORS, HDR.descriptorOffset);
  writeU64LE(h, VMDK_DESCRIPTOR_SECTORS, HDR.descriptorSize);
  h.writeUInt32LE(VMDK_GTES_PER_GT, HDR.numGTEsPerGT);
  // rgdOffset 0: no redundant GD (flag bit 1 clear).
  if (gdSector === undefined) {
    h.writeUInt32LE(VMDK_GD_AT_END_WORD, HDR.gdOffset);
    h.writeUInt32LE(VMDK_GD_AT_END_WORD, HDR.gdOffset + 4);
  } else {
    writeU64LE(h, gdSector, HDR.gdOffset);
  }
  writeU64LE(h, VMDK_OVERHEAD_SECTORS, HDR.overHead);
  // uncleanShutdown 0.
  NEWLINE_DETECTION_BYTES.forEach((b, i) => (h[HDR.newlineDetection + i] = b));
  h.writeUInt16LE(VMDK_COMPRESSION_DEFLATE, HDR.compressAlgorithm);
  return h;
}

/** The header fields a reader uses, as stored: checking them is the reader's work (§2.6). */
export interface VmdkHeaderFields {
  version: number;
  flags: number;
  /** Sectors; undefined when larger than 2^53 - 1. */
  capacity: number | undefined;
  /** Sectors per grain; undefined when larger than 2^53 - 1. */
  grainSize: number | undefined;
  numGTEsPerGT: number;
  /** gdOffset is GD_AT_END: the real one is in the footer (§2.2). */
  gdAtEnd: boolean;
  /** Sector of the GD; undefined when larger than 2^53 - 1 (or GD_AT_END). */
  gdOffset: number | undefined;
  compressAlgorithm: number;
}

/** Reads the fields of a header (or footer) of at least VMDK_HEADER_MIN_BYTES; the magic is not checked. */
export function decodeVmdkHeader(h: Buffer): VmdkHeaderFields {
  return {
    version: h.readUInt32LE(HDR.version),
    flags: h.readUInt32LE(HDR.flags),
    capacity: readSafeU64LE(h, HDR.capacity),
    grainSize: readSafeU64LE(h, HDR.grainSize),
    numGTEsPerGT: h.readUInt32LE(HDR.numGTEsPerGT),
    gdAtEnd: h.readUInt32LE(HDR.gdOffset) === VMDK_GD_AT_END_WORD && h.readUInt32LE(HDR.gdOffset + 4) === VMDK_GD_AT_END_WORD,
    gdOffset: readSafeU64LE(h, HDR.gdOffset),
    compressAlgorithm: h.readUInt16LE(HDR.compressAlgorithm),
  };
}

/** True when the buffer starts with the sparse VMDK magic. */
export function isVmdkMagic(head: Uint8Array): boolean {
  return head.length >= 4 && Buffer.from(head.buffer, head.byteOffset, 4).readUInt32LE(HDR.magic) === VMDK_MAGIC;
}

// ---- markers (§2.2) -----------------------------------------------------------------------------

/** One metadata marker sector: u64 numSectors, u32 size 0, u32 type, zero padding (§2.2). */
export function writeVmdkMetadataMarker(buf: Buffer, at: number, numSectors: number, type: number): void {
  buf.fill(0, at, at + VMDK_SECTOR_SIZE);
  writeU64LE(buf, numSectors, at);
  // size (at MARKER_SIZE_OFFSET) stays 0: that is what distinguishes metadata from grain markers.
  buf.writeUInt32LE(type, at + MARKER_TYPE_OFFSET);
}

/** True when the sector is a footer marker: size 0 (metadata) and type FOOTER (§2.2). */
export function isVmdkFooterMarker(sector: Buffer): boolean {
  return sector.readUInt32LE(MARKER_SIZE_OFFSET) === 0 && sector.readUInt32LE(MARKER_TYPE_OFFSET) === VMDK_MARKER_FOOTER;
}

/** The 12-byte head of a grain marker: u64 LBA (sectors), u32 size of the zlib data that follows. */
export function writeVmdkGrainMarker(buf: Buffer, at: number, lba: number, size: number): void {
  writeU64LE(buf, lba, at);
  buf.writeUInt32LE(size, at + MARKER_SIZE_OFFSET);
}

export function decodeVmdkGrainMarker(head: Buffer): { lba: number; size: number } {
  return { lba: head.readUInt32LE(0) + head.readUInt32LE(4) * TWO_POW_32, size: head.readUInt32LE(MARKER_SIZE_OFFSET) };
}

// ---- embedded descriptor (§2.3) -----------------------------------------------------------------

export interface VmdkDescriptorOptions {
  /** Content ID, u32 except 0xffffffff/0xfffffffe. */
  cid: number;
  /** File name in the extent line. */
  extentName: string;
  adapterType: 'ide' | 'buslogic' | 'lsilogic' | 'legacyESX';
}

/** BIOS geometry used in the DDB: 255 heads, 63 sectors, cylinders capped at 65535 (§2.3). */
const GEOMETRY_HEADS = 255;
const GEOMETRY_SECTORS = 63;
const GEOMETRY_MAX_CYLINDERS = 65535;
/** qemu's default toolsVersion (§2.3). */
const DDB_TOOLS_VERSION = '2147483647';
const DDB_VIRTUAL_HW_VERSION = '4';

/** The embedded descriptor text (§2.3); at most 20 sectors. */
export function vmdkDescriptor(virtualSize: number, o: VmdkDescriptorOptions): string {
  const capacity = vmdkCapacitySectors(virtualSize);
  const cylinders = Math.min(GEOMETRY_MAX_CYLINDERS, Math.ceil(capacity / (GEOMETRY_HEADS * GEOMETRY_SECTORS)));
  const name = o.extentName.replace(/["\r\n\\]/g, '_');
  return [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    `CID=${o.cid.toString(16).padStart(8, '0')}`,
    'parentCID=ffffffff',
    'createType="streamOptimized"',
    '',
    '# Extent description',
    `RW ${capacity} SPARSE "${name}"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    `ddb.virtualHWVersion = "${DDB_VIRTUAL_HW_VERSION}"`,
    `ddb.geometry.cylinders = "${cylinders}"`,
    `ddb.geometry.heads = "${GEOMETRY_HEADS}"`,
    `ddb.geometry.sectors = "${GEOMETRY_SECTORS}"`,
    `ddb.adapterType = "${o.adapterType}"`,
    `ddb.toolsVersion = "${DDB_TOOLS_VERSION}"`,
    '',
  ].join('\n');
}
