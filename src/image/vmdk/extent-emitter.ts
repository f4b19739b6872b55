/**
 * VmdkExtentEmitter: the bytes of a streamOptimized extent, strictly front to back (works on a
 * pipe), exactly the layout of docs/output-formats.md §2.2:
 *
 *   sector 0          sparse extent header, gdOffset = GD_AT_END (§2.1)
 *   sectors 1 … 20    embedded descriptor (§2.3), zero padded
 *   … OVERHEAD        zero padding up to `overHead` (one grain, 128 sectors)
 *   grain marker + zlib grain     (ascending LBA; the caller skips all-zero grains)
 *   GT marker + GT                (after the grains of each 512-grain group that had grains)
 *   GD marker + GD
 *   footer marker + footer (the header again, with the real gdOffset)
 *   EOS marker
 *
 * The caller (VmdkWriter) decides what each grain's payload is; this module places it and keeps
 * the tables.
 *
 * Invariants:
 *  - every marker and block starts on a 512-byte sector boundary; `offset` is always a multiple
 *    of SECTOR_SIZE;
 *  - only the current grain table (2 KiB) and the grain directory (4 bytes per 32 MiB of disk)
 *    stay in memory, plus the staging buffer;
 *  - a grain's stored payload is never larger than its "stored" zlib encoding (65552 bytes, §2.4):
 *    a larger deflated payload is replaced by the stored encoding. Hence every grain takes at most
 *    129 sectors and `vmdkSizeBound` (size.ts) is a true bound.
 */
import { OutputError } from '../../errors';
import type { SequentialTarget } from '../../output/target';
import {
  encodeVmdkHeader,
  VMDK_DESCRIPTOR_OFFSET_SECTORS,
  VMDK_DESCRIPTOR_SECTORS,
  VMDK_GRAIN_MARKER_BYTES,
  VMDK_GRAIN_SECTORS,
  VMDK_GT_BYTES,
  VMDK_GT_SECTORS,
  VMDK_GTES_PER_GT,
  VMDK_MARKER_EOS,
  VMDK_MARKER_FOOTER,
  VMDK_MARKER_GD,
  VMDK_MARKER_GT,
  VMDK_MAX_FILE_SECTORS,
  VMDK_OVERHEAD_SECTORS,
  VMDK_SECTOR_SIZE,
  VMDK_TABLE_ENTRY_BYTES,
  vmdkDescriptor,
  writeVmdkGrainMarker,
  writeVmdkMetadataMarker,
  type VmdkDescriptorOptions,
} from './format';
import { VMDK_FOOTER_SECTORS, VMDK_MARKER_SECTORS, vmdkGdSectors, vmdkGrainCount, vmdkGrainTableCount } from './size';
import { VMDK_MAX_GRAIN_SECTORS, VMDK_STORED_GRAIN_ZLIB_BYTES, writeStoredZlib } from './stored-zlib';

/** Output staging buffer: grains, markers and GTs are assembled here and written in 1+ MiB writes. */
const STAGING_BYTES = 2 * 1024 * 1024;
/** A GT marker sector + the GT itself. */
const GT_RECORD_BYTES = (VMDK_MARKER_SECTORS + VMDK_GT_SECTORS) * VMDK_SECTOR_SIZE;
/** Footer marker + footer + EOS marker. */
const TRAILER_BYTES = (VMDK_MARKER_SECTORS + VMDK_FOOTER_SECTORS + VMDK_MARKER_SECTORS) * VMDK_SECTOR_SIZE;

export class VmdkExtentEmitter {
  private readonly base: number;
  /** Bytes of the image produced so far (written + staged); always sector aligned. */
  private offset = 0;
  private readonly staging = Buffer.allocUnsafe(STAGING_BYTES);
  private staged = 0;
  /** Grain directory: sector of each GT (0 = GT not written). */
  private readonly gd: Uint32Array;
  private readonly gt = Buffer.alloc(VMDK_GT_BYTES);
  private currentGt = -1;
  private started = false;
  private tablesWritten = 0;
  private grainsStored = 0;
  private lastStored = false;

  constructor(
    private readonly target: SequentialTarget,
    private readonly virtualSize: number,
    private readonly descriptor: VmdkDescriptorOptions,
  ) {
    this.base = target.position;
    this.gd = new Uint32Array(vmdkGrainTableCount(virtualSize));
  }

  /** Bytes produced so far. */
  get size(): number {
    return this.offset;
  }

  /** Grains stored. */
  get grains(): number {
    return this.grainsStored;
  }

  /** Grain tables written. */
  get grainTables(): number {
    return this.tablesWritten;
  }

  /** The last grain of the disk was stored (it extends past the virtual size). */
  get lastGrainStored(): boolean {
    return this.lastStored;
  }

  /** Header, descriptor and padding up to `overHead`, once. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (this.target.position !== this.base) throw new OutputError('OUTPUT_IO', 'VMDK writer: the target was written to by someone else');
    const head = Buffer.alloc(VMDK_OVERHEAD_SECTORS * VMDK_SECTOR_SIZE);
    encodeVmdkHeader(this.virtualSize).copy(head, 0);
    const descriptor = Buffer.from(vmdkDescriptor(this.virtualSize, this.descriptor), 'utf8');
    if (descriptor.length > VMDK_DESCRIPTOR_SECTORS * VMDK_SECTOR_SIZE) throw new OutputError('OUTPUT_UNSUPPORTED', 'VMDK descriptor does not fit in 20 sectors');
    descriptor.copy(head, VMDK_DESCRIPTOR_OFFSET_SECTORS * VMDK_SECTOR_SIZE);
    await this.append(head);
  }

  /**
   * Appends grain marker + payload + sector padding. `deflated` undefined (level 0) or larger than
   * the stored encoding → the stored encoding of `raw` is written instead.
   */
  async appendGrain(grain: number, raw: Buffer, deflated: Buffer | undefined): Promise<void> {
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
    let size: number;
    if (deflated !== undefined && deflated.length <= VMDK_STORED_GRAIN_ZLIB_BYTES) {
      deflated.copy(this.staging, at + VMDK_GRAIN_MARKER_BYTES);
      size = deflated.length;
    } else {
      size = writeStoredZlib(raw, this.staging, at + VMDK_GRAIN_MARKER_BYTES);
    }
    writeVmdkGrainMarker(this.staging, at, grain * VMDK_GRAIN_SECTORS, size);
    const total = Math.ceil((VMDK_GRAIN_MARKER_BYTES + size) / VMDK_SECTOR_SIZE) * VMDK_SECTOR_SIZE;
    this.staging.fill(0, at + VMDK_GRAIN_MARKER_BYTES + size, at + total);
    this.staged += total;
    this.offset += total;
    this.gt.writeUInt32LE(markerSector, (grain % VMDK_GTES_PER_GT) * VMDK_TABLE_ENTRY_BYTES);
    this.grainsStored++;
    if (grain === vmdkGrainCount(this.virtualSize) - 1) this.lastStored = true;
  }

  /** The last GT, GT marker + GD, footer marker + footer, EOS marker; everything flushed to the target. */
  async finish(): Promise<void> {
    await this.ensureRoom(GT_RECORD_BYTES);
    this.closeGrainTable();
    // GD marker + GD.
    const gdSectorCount = vmdkGdSectors(this.virtualSize);
    await this.ensureRoom(VMDK_MARKER_SECTORS * VMDK_SECTOR_SIZE);
    this.appendMetadataMarker(gdSectorCount, VMDK_MARKER_GD);
    const gdSector = this.offset / VMDK_SECTOR_SIZE;
    const gdBytes = Buffer.alloc(gdSectorCount * VMDK_SECTOR_SIZE);
    for (let i = 0; i < this.gd.length; i++) gdBytes.writeUInt32LE(this.gd[i]!, i * VMDK_TABLE_ENTRY_BYTES);
    await this.append(gdBytes);
    // Footer marker + footer + EOS: the last three sectors of the file (docs/output-formats.md §2.2, §2.5).
    await this.ensureRoom(TRAILER_BYTES);
    this.appendMetadataMarker(VMDK_FOOTER_SECTORS, VMDK_MARKER_FOOTER);
    this.appendStaged(encodeVmdkHeader(this.virtualSize, gdSector));
    this.appendMetadataMarker(0, VMDK_MARKER_EOS);
    await this.flushStaging();
    const written = this.target.position - this.base;
    if (written !== this.offset) throw new OutputError('OUTPUT_IO', `VMDK writer: target holds ${written} bytes, expected ${this.offset}`);
  }

  /** Appends GT marker + GT for the current group if it holds grains; records it in the GD. */
  private closeGrainTable(): void {
    if (this.currentGt < 0) return;
    this.appendMetadataMarker(VMDK_GT_SECTORS, VMDK_MARKER_GT);
    const gtSector = this.offset / VMDK_SECTOR_SIZE;
    this.assertSector(gtSector + VMDK_GT_SECTORS);
    this.gd[this.currentGt] = gtSector;
    this.appendStaged(this.gt);
    this.tablesWritten++;
    this.currentGt = -1;
  }

  private appendMetadataMarker(numSectors: number, type: number): void {
    this.reserveStaging(VMDK_SECTOR_SIZE);
    writeVmdkMetadataMarker(this.staging, this.staged, numSectors, type);
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
