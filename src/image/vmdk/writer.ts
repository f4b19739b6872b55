/**
 * VmdkWriter: streamOptimized VMDK written strictly front to back (works on a pipe), exactly the
 * layout of docs/output-formats.md §2.2:
 *
 *   sector 0          sparse extent header, gdOffset = GD_AT_END (§2.1)
 *   sectors 1 … 20    embedded descriptor (§2.3), zero padded
 *   … OVERHEAD        zero padding up to `overHead` (one grain, 128 sectors)
 *   grain marker + zlib grain     (ascending LBA; all-zero grains are not stored)
 *   GT marker + GT                (after the grains of each 512-grain group that had grains)
 *   GD marker + GD
 *   footer marker + footer (the header again, with the real gdOffset)
 *   EOS marker
 *
 * State machine: header/descriptor emitted on first use → grains (each non-zero 64 KiB grain is
 * deflated — zlib-wrapped, RFC 1950, §2.2 — and appended; crossing into a new 512-grain group closes
 * the previous grain table) → finish: last GT, GD, footer, EOS → finished.
 *
 * Invariants:
 *  - every marker and block starts on a 512-byte sector boundary; `offset` is always a multiple
 *    of SECTOR_SIZE;
 *  - grains are emitted in ascending LBA order, in the order `write()` delivered them, even when
 *    several are deflated concurrently (on the thread pool; results are re-sequenced in a FIFO);
 *  - only the current grain table (2 KiB) and the grain directory (4 bytes per 32 MiB of disk)
 *    stay in memory, plus a bounded number of in-flight 1 MiB batches;
 *  - the last grain is always a whole 64 KiB grain (zero padded past the capacity): VirtualBox
 *    inflates every grain to exactly one grain, qemu accepts either;
 *  - a grain's stored payload is never larger than its "stored" zlib encoding (65552 bytes, §2.4):
 *    if deflate would produce more, the stored encoding is written instead. Hence every grain
 *    takes at most 129 sectors and `vmdkUpperBoundSize` is a true bound; with `level: 0` every
 *    grain takes exactly 129 sectors and `vmdkExactStoredSize` is the exact size.
 */
import { randomInt } from 'node:crypto';
import * as os from 'node:os';
import * as zlib from 'node:zlib';
import { OutputError } from '../../errors';
import type { AllocationMap } from '../allocation-map';
import { ClusterAligner } from '../cluster-aligner';
import { CLUSTER_SIZE, imageVirtualSize, SECTOR_SIZE } from '../types';
import type { DiskImageWriter, ImageWriteResult } from '../../io/disk';
import type { SequentialTarget } from '../../output/target';
import { isAllZero } from '../../io/zero';

// ---- format constants (docs/output-formats.md §2.1 – §2.4) --------------------------------------------------

export const VMDK_SECTOR_SIZE = SECTOR_SIZE;
/** "KDMV" little-endian (§2.1). */
export const VMDK_MAGIC = 0x564d444b;
/** streamOptimized files are version 3 (§2.1). */
export const VMDK_VERSION = 3;
/** bit 0 valid newline detection, bit 16 compressed grains, bit 17 markers: 0x00030001 (§2.1). */
export const VMDK_FLAG_VALID_NEWLINE_DETECTION = 1 << 0;
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

/** zlib stream framing (RFC 1950/1951) used for the "stored" grain encoding (§2.4). */
const ZLIB_HEADER_BYTES = 2;
const ZLIB_ADLER_BYTES = 4;
const DEFLATE_STORED_BLOCK_HEADER_BYTES = 5;
const DEFLATE_STORED_BLOCK_MAX = 65535;
/** CMF 0x78 (deflate, 32 KiB window) + FLG 0x01 (level "fastest", FCHECK so that 0x7801 % 31 == 0). */
const ZLIB_HEADER_CMF = 0x78;
const ZLIB_HEADER_FLG_STORED = 0x01;
const ADLER_MOD = 65521;
/** Largest byte count whose Adler-32 sums cannot overflow 2^53 before reduction (zlib's NMAX is 5552 for u32). */
const ADLER_NMAX = 5552;
/** Adler-32 = (b << 16) | a. */
const ADLER_B_FACTOR = 0x10000;

/** zlib bytes of one grain in stored (level 0) encoding: 2 + 2×5 + 65536 + 4 = 65552 (§2.4). */
export const VMDK_STORED_GRAIN_ZLIB_BYTES =
  ZLIB_HEADER_BYTES + Math.ceil(VMDK_GRAIN_SIZE / DEFLATE_STORED_BLOCK_MAX) * DEFLATE_STORED_BLOCK_HEADER_BYTES + VMDK_GRAIN_SIZE + ZLIB_ADLER_BYTES;
/** Sectors of a grain marker + stored grain: ceil(65564 / 512) = 129. Also the per-grain bound. */
export const VMDK_MAX_GRAIN_SECTORS = Math.ceil((VMDK_GRAIN_MARKER_BYTES + VMDK_STORED_GRAIN_ZLIB_BYTES) / VMDK_SECTOR_SIZE);

const TWO_POW_32 = 2 ** 32;
/** CIDs with special meaning: ffffffff = "no parent", fffffffe reserved (§2.3). */
const CID_MAX_EXCLUSIVE = 0xffff_fffe;

// ---- size math (§2.4) ---------------------------------------------------------------------------

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/** Capacity in sectors: a partial last sector rounds up (`imageVirtualSize`). */
export function vmdkCapacitySectors(virtualSize: number): number {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new RangeError(`invalid virtual size ${virtualSize}`);
  return imageVirtualSize(virtualSize) / VMDK_SECTOR_SIZE;
}

export function vmdkGrainCount(virtualSize: number): number {
  return ceilDiv(vmdkCapacitySectors(virtualSize), VMDK_GRAIN_SECTORS);
}

/** Grain tables (= GD entries) covering the capacity. */
export function vmdkGrainTableCount(virtualSize: number): number {
  return ceilDiv(vmdkGrainCount(virtualSize), VMDK_GTES_PER_GT);
}

function gdSectors(virtualSize: number): number {
  return ceilDiv(vmdkGrainTableCount(virtualSize) * VMDK_TABLE_ENTRY_BYTES, VMDK_SECTOR_SIZE);
}

/** A metadata marker (GT, GD, footer, EOS) is one sector (§2.2). */
const MARKER_SECTORS = 1;
/** The footer is one sector: a copy of the header (§2.2). */
const FOOTER_SECTORS = 1;

/** Everything but the grains and GTs: overhead, GD marker + GD, footer marker + footer, EOS marker. */
function fixedSectors(virtualSize: number): number {
  return VMDK_OVERHEAD_SECTORS + MARKER_SECTORS + gdSectors(virtualSize) + MARKER_SECTORS + FOOTER_SECTORS + MARKER_SECTORS;
}

function sizeFor(virtualSize: number, grains: number, grainTables: number): number {
  return (fixedSectors(virtualSize) + grains * VMDK_MAX_GRAIN_SECTORS + grainTables * (MARKER_SECTORS + VMDK_GT_SECTORS)) * VMDK_SECTOR_SIZE;
}

/**
 * Upper bound of the file size when `allocatedGrains` grains are stored: each grain takes at most
 * 129 sectors (its payload never exceeds the 65552-byte stored encoding, see the module comment),
 * and at most min(grains, grain tables) GTs are written.
 */
export function vmdkUpperBoundSize(virtualSize: number, allocatedGrains: number): number {
  const grains = vmdkGrainCount(virtualSize);
  if (!Number.isSafeInteger(allocatedGrains) || allocatedGrains < 0 || allocatedGrains > grains) {
    throw new RangeError(`allocated grains ${allocatedGrains} out of range 0..${grains}`);
  }
  return sizeFor(virtualSize, allocatedGrains, Math.min(allocatedGrains, vmdkGrainTableCount(virtualSize)));
}

/** Upper bound for a disk whose every grain holds data (what "fully allocated" means for VMDK). */
export function vmdkFullyAllocatedSize(virtualSize: number): number {
  return vmdkUpperBoundSize(virtualSize, vmdkGrainCount(virtualSize));
}

/** Exact size with `level: 0` (stored deflate, §2.4) for the grains of `map`. */
export function vmdkExactStoredSize(virtualSize: number, map: AllocationMap): number {
  if (map.virtualSize !== virtualSize) throw new RangeError(`allocation map is for ${map.virtualSize} bytes, not ${virtualSize}`);
  return sizeFor(virtualSize, map.count, map.countUsedGroups(VMDK_GTES_PER_GT));
}

// ---- header, descriptor, markers (§2.1 – §2.3) --------------------------------------------------

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

function writeU64LE(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value % TWO_POW_32, at);
  buf.writeUInt32LE(Math.floor(value / TWO_POW_32), at + 4);
}

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
  const cylinders = Math.min(GEOMETRY_MAX_CYLINDERS, ceilDiv(capacity, GEOMETRY_HEADS * GEOMETRY_SECTORS));
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

/** One metadata marker sector: u64 numSectors, u32 size 0, u32 type, zero padding (§2.2). */
function writeMetadataMarker(buf: Buffer, at: number, numSectors: number, type: number): void {
  buf.fill(0, at, at + VMDK_SECTOR_SIZE);
  writeU64LE(buf, numSectors, at);
  // size (at MARKER_SIZE_OFFSET) stays 0: that is what distinguishes metadata from grain markers.
  buf.writeUInt32LE(type, at + MARKER_TYPE_OFFSET);
}

// ---- stored (level 0) zlib encoding (§2.4) ------------------------------------------------------

export function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < data.length; ) {
    const end = Math.min(i + ADLER_NMAX, data.length);
    for (; i < end; i++) {
      a += data[i];
      b += a;
    }
    a %= ADLER_MOD;
    b %= ADLER_MOD;
  }
  return (b * ADLER_B_FACTOR + a) >>> 0;
}

/**
 * Writes `grain` (one whole grain) as a zlib stream of stored deflate blocks into `out` at `at`;
 * returns the number of bytes written (always VMDK_STORED_GRAIN_ZLIB_BYTES).
 */
export function writeStoredZlib(grain: Uint8Array, out: Buffer, at: number): number {
  const start = at;
  out[at++] = ZLIB_HEADER_CMF;
  out[at++] = ZLIB_HEADER_FLG_STORED;
  for (let src = 0; src < grain.length; ) {
    const n = Math.min(DEFLATE_STORED_BLOCK_MAX, grain.length - src);
    const final = src + n === grain.length ? 1 : 0;
    out[at++] = final; // BFINAL + BTYPE 00 (stored)
    out.writeUInt16LE(n, at);
    out.writeUInt16LE(~n & 0xffff, at + 2);
    at += 4;
    out.set(grain.subarray(src, src + n), at);
    at += n;
    src += n;
  }
  out.writeUInt32BE(adler32(grain), at);
  at += ZLIB_ADLER_BYTES;
  return at - start;
}

// ---- deflate engines ----------------------------------------------------------------------------

/** Compresses batches of whole grains; results keep the order of the input grains. */
interface GrainDeflater {
  /** `grains` holds `count` whole grains; it is owned by the deflater from now on. */
  deflate(grains: Buffer, count: number): Promise<DeflatedBatch>;
  close(): Promise<void>;
}

interface DeflatedBatch {
  /** Concatenated zlib streams. */
  out: Buffer;
  lengths: Uint32Array;
  /** The input buffer, handed back for the stored fallback and for reuse. */
  input: Buffer;
}

/** deflateSync on the calling thread. */
class InlineDeflater implements GrainDeflater {
  constructor(private readonly level: number) {}

  async deflate(grains: Buffer, count: number): Promise<DeflatedBatch> {
    const parts: Buffer[] = [];
    const lengths = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const part = zlib.deflateSync(grains.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE), { level: this.level });
      parts.push(part);
      lengths[i] = part.length;
    }
    return { out: count === 1 ? parts[0] : Buffer.concat(parts), lengths, input: grains };
  }

  async close(): Promise<void> {}
}

/** Output buffer per deflate call: a whole grain's zlib stream fits (one call, one chunk). */
const DEFLATE_CHUNK_BYTES = 80 * 1024;

/**
 * Async node:zlib on libuv's thread pool: grains are compressed on all cores at once without a
 * worker isolate per core (each isolate costs ~50 MB of RSS).
 *
 * A small, fixed set of deflate streams is reused (`reset()` after each grain's Z_FINISH) rather
 * than one `zlib.deflate()` call per grain: a one-shot call allocates a fresh deflate state
 * (~270 KiB of native memory) that is only freed when V8 next collects garbage, and V8 lets such
 * external memory grow by ~64 MB before it does — that, not the data, was most of a VMDK
 * conversion's 230 MB peak RSS.
 */
class ThreadPoolDeflater implements GrainDeflater {
  private readonly idle: zlib.Deflate[] = [];
  private readonly waiting: Array<(d: zlib.Deflate) => void> = [];
  private readonly all: zlib.Deflate[] = [];

  constructor(level: number, streams: number) {
    for (let i = 0; i < streams; i++) {
      const d = zlib.createDeflate({ level, flush: zlib.constants.Z_FINISH, chunkSize: DEFLATE_CHUNK_BYTES });
      // Errors reach the grain being compressed (deflateGrain); this keeps a late one from
      // becoming an unhandled 'error' event.
      d.on('error', () => {});
      this.all.push(d);
      this.idle.push(d);
    }
  }

  async deflate(grains: Buffer, count: number): Promise<DeflatedBatch> {
    const parts = await Promise.all(Array.from({ length: count }, (_, i) => this.deflateGrain(grains.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE))));
    const lengths = new Uint32Array(count);
    for (let i = 0; i < count; i++) lengths[i] = parts[i].length;
    return { out: count === 1 ? parts[0] : Buffer.concat(parts), lengths, input: grains };
  }

  async close(): Promise<void> {
    for (const d of this.all.splice(0)) d.destroy();
  }

  private async deflateGrain(grain: Buffer): Promise<Buffer> {
    const d = this.idle.pop() ?? (await new Promise<zlib.Deflate>((resolve) => this.waiting.push(resolve)));
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const parts: Buffer[] = [];
        const onData = (chunk: Buffer): void => void parts.push(chunk);
        const onError = (err: unknown): void => {
          d.off('data', onData);
          reject(new OutputError('OUTPUT_IO', `VMDK deflate failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
        };
        d.on('data', onData);
        d.once('error', onError);
        // Written with Z_FINISH (the stream's flush mode): one thread-pool job compresses the
        // whole grain, and its callback runs after the output has been pushed.
        d.write(grain, (err) => {
          if (err) return onError(err);
          d.off('data', onData);
          d.off('error', onError);
          d.reset(); // deflateReset: the next grain starts a new zlib stream
          resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts));
        });
      });
    } finally {
      const next = this.waiting.shift();
      if (next) next(d);
      else this.idle.push(d);
    }
  }
}

// ---- the writer ---------------------------------------------------------------------------------

export interface VmdkWriterOptions {
  /** Guest disk size in bytes. */
  virtualSize: number;
  /**
   * zlib level 0-9 (default 6, zlib's default, as qemu-img uses). Level 0 writes stored deflate
   * blocks: larger, but the file size is exactly `vmdkExactStoredSize` (§2.4).
   */
  level?: number;
  /**
   * Grains deflated at once on libuv's thread pool (default 4, the pool's size, on a multi-core
   * machine; 0 = deflate on the calling thread). Ignored for level 0.
   */
  workers?: number;
  /** Descriptor CID; random by default (injectable for reproducible output). */
  cid?: number;
  /** Name in the descriptor's extent line (default "disk.vmdk"). */
  extentName?: string;
  /** ddb.adapterType (default "lsilogic"). */
  adapterType?: VmdkDescriptorOptions['adapterType'];
}

export interface VmdkWriteResult extends ImageWriteResult {
  /** Grains stored (non-zero 64 KiB grains). */
  grains: number;
  /** Grain tables written. */
  grainTables: number;
}

const DEFAULT_LEVEL = 6;
const DEFAULT_DEFLATE_STREAMS = 4;
/** Grains per deflate batch: 16 × 64 KiB = 1 MiB (one XVA chunk). */
const BATCH_GRAINS = 16;
/**
 * Batches in flight per deflate stream before the writer waits for the oldest one (four streams
 * × one batch keep the pool busy; more only adds RSS).
 */
const IN_FLIGHT_PER_STREAM = 1;
/** Output staging buffer: grains, markers and GTs are assembled here and written in 1+ MiB writes. */
const STAGING_BYTES = 2 * 1024 * 1024;
/** A GT marker sector + the GT itself. */
const GT_RECORD_BYTES = (MARKER_SECTORS + VMDK_GT_SECTORS) * VMDK_SECTOR_SIZE;
/** Footer marker + footer + EOS marker. */
const TRAILER_BYTES = (MARKER_SECTORS + FOOTER_SECTORS + MARKER_SECTORS) * VMDK_SECTOR_SIZE;

interface PendingBatch {
  firstGrains: number[];
  result: Promise<DeflatedBatch>;
}

export class VmdkWriter implements DiskImageWriter {
  private readonly target: SequentialTarget;
  private readonly virtualSize: number;
  private readonly level: number;
  private readonly cid: number;
  private readonly extentName: string;
  private readonly adapterType: VmdkDescriptorOptions['adapterType'];
  private readonly aligner: ClusterAligner;
  private readonly deflater: GrainDeflater | undefined;
  private readonly maxInFlight: number;
  private readonly base: number;
  /** Bytes of the image produced so far (written + staged); always sector aligned. */
  private offset = 0;
  private readonly staging = Buffer.allocUnsafe(STAGING_BYTES);
  private staged = 0;
  /** Grain directory: sector of each GT (0 = GT not written). */
  private readonly gd: Uint32Array;
  private readonly gt = Buffer.alloc(VMDK_GT_BYTES);
  private currentGt = -1;
  private grainTables = 0;
  private grains = 0;
  private lastGrainStored = false;
  /** Batch being filled (deflate mode). */
  private batch: Buffer | undefined;
  private batchGrains: number[] = [];
  private readonly inFlight: PendingBatch[] = [];
  private readonly spareBatches: Buffer[] = [];
  private started = false;
  private finished = false;
  private failed: unknown;

  constructor(target: SequentialTarget, options: VmdkWriterOptions) {
    const { virtualSize } = options;
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new OutputError('OUTPUT_UNSUPPORTED', `invalid VMDK virtual size ${virtualSize}`);
    this.level = options.level ?? DEFAULT_LEVEL;
    if (!Number.isInteger(this.level) || this.level < 0 || this.level > 9) throw new RangeError(`invalid zlib level ${options.level}`);
    if (vmdkCapacitySectors(virtualSize) > VMDK_MAX_FILE_SECTORS) {
      throw new OutputError('OUTPUT_UNSUPPORTED', `a ${virtualSize}-byte disk exceeds the 2 TiB capacity of a VMDK sparse extent`);
    }
    const cid = options.cid ?? randomInt(0, CID_MAX_EXCLUSIVE);
    if (!Number.isInteger(cid) || cid < 0 || cid >= CID_MAX_EXCLUSIVE) throw new RangeError(`invalid VMDK CID ${cid}`);
    this.cid = cid;
    this.target = target;
    this.virtualSize = virtualSize;
    this.extentName = options.extentName ?? 'disk.vmdk';
    this.adapterType = options.adapterType ?? 'lsilogic';
    this.base = target.position;
    this.gd = new Uint32Array(vmdkGrainTableCount(virtualSize));
    const streams = this.level === 0 ? 0 : options.workers ?? defaultDeflateStreams();
    this.deflater = this.level === 0 ? undefined : streams > 0 ? new ThreadPoolDeflater(this.level, streams) : new InlineDeflater(this.level);
    this.maxInFlight = Math.max(1, streams * IN_FLIGHT_PER_STREAM);
    this.aligner = new ClusterAligner({
      blockSize: VMDK_GRAIN_SIZE,
      limit: virtualSize,
      sink: (first, data) => this.onGrains(first, data),
    });
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.assertWritable();
    try {
      await this.aligner.push(offset, data);
    } catch (err) {
      await this.fail(err);
      throw err;
    }
  }

  async finish(): Promise<VmdkWriteResult> {
    this.assertWritable();
    this.finished = true;
    try {
      await this.aligner.flush();
      await this.start();
      this.submitBatch();
      await this.drain(0);
      await this.ensureRoom(GT_RECORD_BYTES);
      this.closeGrainTable();
      // GD marker + GD.
      const gdSectorCount = gdSectors(this.virtualSize);
      await this.ensureRoom(MARKER_SECTORS * VMDK_SECTOR_SIZE);
      this.appendMetadataMarker(gdSectorCount, VMDK_MARKER_GD);
      const gdSector = this.offset / VMDK_SECTOR_SIZE;
      const gdBytes = Buffer.alloc(gdSectorCount * VMDK_SECTOR_SIZE);
      for (let i = 0; i < this.gd.length; i++) gdBytes.writeUInt32LE(this.gd[i], i * VMDK_TABLE_ENTRY_BYTES);
      await this.append(gdBytes);
      // Footer marker + footer + EOS: the last three sectors of the file (docs/output-formats.md §2.2, §2.5).
      await this.ensureRoom(TRAILER_BYTES);
      this.appendMetadataMarker(FOOTER_SECTORS, VMDK_MARKER_FOOTER);
      this.appendStaged(encodeVmdkHeader(this.virtualSize, gdSector));
      this.appendMetadataMarker(0, VMDK_MARKER_EOS);
      await this.flushStaging();
      const written = this.target.position - this.base;
      if (written !== this.offset) throw new OutputError('OUTPUT_IO', `VMDK writer: target holds ${written} bytes, expected ${this.offset}`);
      const bound = sizeFor(this.virtualSize, this.grains, this.grainTables);
      if (this.offset > bound || (this.level === 0 && this.offset !== bound)) {
        throw new OutputError('OUTPUT_IO', `VMDK writer: produced ${this.offset} bytes, size bound is ${bound}`);
      }
      await this.deflater?.close();
      let stored = this.grains * VMDK_GRAIN_SIZE;
      if (this.lastGrainStored) stored -= vmdkGrainCount(this.virtualSize) * VMDK_GRAIN_SIZE - this.virtualSize;
      return {
        bytesWritten: stored,
        zeroBytesSkipped: Math.max(0, this.aligner.bytesDelivered - stored),
        imageSize: this.offset,
        grains: this.grains,
        grainTables: this.grainTables,
      };
    } catch (err) {
      await this.fail(err);
      throw err;
    }
  }

  private assertWritable(): void {
    if (this.failed !== undefined) throw this.failed;
    if (this.finished) throw new Error('VmdkWriter: already finished');
  }

  private async fail(err: unknown): Promise<void> {
    this.failed ??= err;
    // Settle in-flight batches so no rejection goes unobserved, then drop the deflate streams.
    for (const p of this.inFlight.splice(0)) p.result.catch(() => undefined);
    await this.deflater?.close().catch(() => undefined);
  }

  /** Header, descriptor and padding up to `overHead`, once. */
  private async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (this.target.position !== this.base) throw new OutputError('OUTPUT_IO', 'VMDK writer: the target was written to by someone else');
    const head = Buffer.alloc(VMDK_OVERHEAD_SECTORS * VMDK_SECTOR_SIZE);
    encodeVmdkHeader(this.virtualSize).copy(head, 0);
    const descriptor = Buffer.from(vmdkDescriptor(this.virtualSize, { cid: this.cid, extentName: this.extentName, adapterType: this.adapterType }), 'utf8');
    if (descriptor.length > VMDK_DESCRIPTOR_SECTORS * VMDK_SECTOR_SIZE) throw new OutputError('OUTPUT_UNSUPPORTED', 'VMDK descriptor does not fit in 20 sectors');
    descriptor.copy(head, VMDK_DESCRIPTOR_OFFSET_SECTORS * VMDK_SECTOR_SIZE);
    await this.append(head);
  }

  /** Aligner sink: whole grains starting at grain `first`. */
  private async onGrains(first: number, data: Buffer): Promise<void> {
    await this.start();
    const n = data.length / VMDK_GRAIN_SIZE;
    for (let i = 0; i < n; i++) {
      const grain = data.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE);
      if (isAllZero(grain)) continue;
      if (this.deflater === undefined) {
        await this.appendGrain(first + i, grain, undefined);
      } else {
        // Copy into the current batch: the caller's buffer is only ours until this call returns.
        this.batch ??= this.spareBatches.pop() ?? Buffer.allocUnsafeSlow(BATCH_GRAINS * VMDK_GRAIN_SIZE);
        grain.copy(this.batch, this.batchGrains.length * VMDK_GRAIN_SIZE);
        this.batchGrains.push(first + i);
        if (this.batchGrains.length === BATCH_GRAINS) {
          this.submitBatch();
          await this.drain(this.maxInFlight);
        }
      }
    }
  }

  private submitBatch(): void {
    if (this.deflater === undefined || this.batch === undefined || this.batchGrains.length === 0) return;
    const result = this.deflater.deflate(this.batch, this.batchGrains.length);
    this.inFlight.push({ firstGrains: this.batchGrains, result });
    this.batch = undefined;
    this.batchGrains = [];
  }

  /** Emits finished batches, oldest first, until at most `keep` remain in flight. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const { firstGrains, result } = this.inFlight.shift()!;
      const batch = await result;
      let at = 0;
      for (let i = 0; i < firstGrains.length; i++) {
        const len = batch.lengths[i];
        const raw = batch.input.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE);
        await this.appendGrain(firstGrains[i], raw, batch.out.subarray(at, at + len));
        at += len;
      }
      if (batch.input.length === BATCH_GRAINS * VMDK_GRAIN_SIZE) this.spareBatches.push(batch.input);
    }
  }

  /**
   * Appends grain marker + payload + sector padding. `deflated` undefined (level 0) or larger than
   * the stored encoding → the stored encoding of `raw` is written instead.
   */
  private async appendGrain(grain: number, raw: Buffer, deflated: Buffer | undefined): Promise<void> {
    await this.ensureRoom(GT_RECORD_BYTES + VMDK_MAX_GRAIN_SECTORS * VMDK_SECTOR_SIZE);
    const gtIndex = Math.floor(grain / VMDK_GTES_PER_GT);
    if (gtIndex !== this.currentGt) {
      this.closeGrainTable();
      this.currentGt = gtIndex;
      this.gt.fill(0);
    }
    const markerSector = this.offset / VMDK_SECTOR_SIZE;
    this.assertSector(markerSector + VMDK_MAX_GRAIN_SECTORS);
    const at = this.staged;
    writeU64LE(this.staging, grain * VMDK_GRAIN_SECTORS, at);
    let size: number;
    if (deflated !== undefined && deflated.length <= VMDK_STORED_GRAIN_ZLIB_BYTES) {
      deflated.copy(this.staging, at + VMDK_GRAIN_MARKER_BYTES);
      size = deflated.length;
    } else {
      size = writeStoredZlib(raw, this.staging, at + VMDK_GRAIN_MARKER_BYTES);
    }
    this.staging.writeUInt32LE(size, at + MARKER_SIZE_OFFSET);
    const total = Math.ceil((VMDK_GRAIN_MARKER_BYTES + size) / VMDK_SECTOR_SIZE) * VMDK_SECTOR_SIZE;
    this.staging.fill(0, at + VMDK_GRAIN_MARKER_BYTES + size, at + total);
    this.staged += total;
    this.offset += total;
    this.gt.writeUInt32LE(markerSector, (grain % VMDK_GTES_PER_GT) * VMDK_TABLE_ENTRY_BYTES);
    this.grains++;
    if (grain === vmdkGrainCount(this.virtualSize) - 1) this.lastGrainStored = true;
  }

  /** Appends GT marker + GT for the current group if it holds grains; records it in the GD. */
  private closeGrainTable(): void {
    if (this.currentGt < 0) return;
    this.appendMetadataMarker(VMDK_GT_SECTORS, VMDK_MARKER_GT);
    const gtSector = this.offset / VMDK_SECTOR_SIZE;
    this.assertSector(gtSector + VMDK_GT_SECTORS);
    this.gd[this.currentGt] = gtSector;
    this.appendStaged(this.gt);
    this.grainTables++;
    this.currentGt = -1;
  }

  private appendMetadataMarker(numSectors: number, type: number): void {
    this.reserveStaging(VMDK_SECTOR_SIZE);
    writeMetadataMarker(this.staging, this.staged, numSectors, type);
    this.staged += VMDK_SECTOR_SIZE;
    this.offset += VMDK_SECTOR_SIZE;
  }

  /** Small sector-multiple blocks (GTs) go through staging synchronously. */
  private appendStaged(bytes: Buffer): void {
    this.reserveStaging(bytes.length);
    bytes.copy(this.staging, this.staged);
    this.staged += bytes.length;
    this.offset += bytes.length;
  }

  /** Flushes staging unless `bytes` more fit; synchronous appends must be preceded by this. */
  private async ensureRoom(bytes: number): Promise<void> {
    if (this.staged + bytes > this.staging.length) await this.flushStaging();
  }

  /** Guards the ensureRoom-before-append discipline. */
  private reserveStaging(bytes: number): void {
    if (this.staged + bytes > this.staging.length) throw new Error('VmdkWriter: staging buffer overflow (internal)');
  }

  /** Appends any sector-multiple block, flushing staging first when it does not fit. */
  private async append(bytes: Buffer): Promise<void> {
    if (this.staged + bytes.length <= this.staging.length) {
      this.appendStaged(bytes);
      return;
    }
    await this.flushStaging();
    await this.target.write(bytes);
    this.offset += bytes.length;
  }

  private async flushStaging(): Promise<void> {
    if (this.staged === 0) return;
    const n = this.staged;
    this.staged = 0;
    await this.target.write(this.staging.subarray(0, n));
  }

  private assertSector(sectorEnd: number): void {
    if (sectorEnd > VMDK_MAX_FILE_SECTORS) {
      throw new OutputError('OUTPUT_UNSUPPORTED', 'VMDK output exceeds 2 TiB (grain table offsets are 32-bit sectors)');
    }
  }
}

function defaultDeflateStreams(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  // Four streams even on two cores: while one stream's result waits for the main thread, the
  // others keep the pool's threads busy (4 streams: 9.3 s, 2 streams: 12.7 s for 1 GiB).
  return cores > 1 ? DEFAULT_DEFLATE_STREAMS : 0;
}
