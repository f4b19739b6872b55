/**
 * Random-access reader for hosted sparse VMDK extents (docs/output-formats.md §2.6): streamOptimized
 * (compressed grains with markers, as in OVAs) and uncompressed monolithicSparse. The extent
 * may sit at a byte offset inside another file (a member of an OVA tar), so every position
 * below is relative to `base` and nothing outside [base, base + length) is read.
 *
 *   sector 0          sparse header (magic "KDMV", little-endian)
 *   gdOffset          grain directory: u32 sector offsets of the grain tables (0 = none)
 *   GT entries        u32 sector offsets: of the grain *marker* (streamOptimized: u64 lba,
 *                     u32 size, zlib data) or of the raw grain data (uncompressed); 0 = hole
 *
 * When the header's gdOffset is GD_AT_END (all ones), the real value is in the footer, the
 * header copy that sits at `length - 1024` behind a footer marker at `length - 1536` (a
 * stream-written VMDK). qemu-img and open-vmdk put the GD at the front instead; both work.
 *
 * Refused with ImageFormatError: text descriptors / flat extents (no "KDMV" magic),
 * compression other than deflate, compressed grains without markers, grain sizes that are not
 * a power of two, absurd table sizes, and grains whose marker names another LBA.
 * The last inflated grain is cached (reads ascend); grain tables are cached (LRU).
 */
import type { FileHandle } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import { ImageFormatError } from '../../errors';
import { mergeExtents, openImageFile } from '../disk-reader';
import type { DiskExtent, DiskReader } from '../../io/disk';
import {
  decodeVmdkGrainMarker,
  decodeVmdkHeader,
  isVmdkFooterMarker,
  isVmdkMagic,
  VMDK_COMPRESSION_DEFLATE,
  VMDK_FLAG_COMPRESSED,
  VMDK_FLAG_MARKERS,
  VMDK_FLAG_ZEROED_GRAIN_GTE,
  VMDK_GRAIN_MARKER_BYTES,
  VMDK_HEADER_MIN_BYTES,
  VMDK_SECTOR_SIZE as SECTOR,
  VMDK_TABLE_ENTRY_BYTES,
} from './format';

/** Largest grain we accept: 2048 sectors (1 MiB); real images use 128 (64 KiB). */
const MAX_GRAIN_SECTORS = 2048;
const MAX_GTES_PER_GT = 8192;
/** Largest grain directory held in memory (64 MiB covers far more than the 2 TiB u32 limit). */
const MAX_GD_BYTES = 64 * 1024 * 1024;
const GT_CACHE = 32;

export interface VmdkHeader {
  version: number;
  flags: number;
  /** Sectors. */
  capacity: number;
  /** Sectors per grain. */
  grainSize: number;
  numGTEsPerGT: number;
  /** Sector of the grain directory actually used (footer's when the header says GD_AT_END). */
  gdOffset: number;
  compressed: boolean;
  markers: boolean;
  /** True when the header said GD_AT_END and the footer was used. */
  footer: boolean;
}

export interface VmdkOpenOptions {
  /** Byte offset of the extent in the file (default 0). */
  offset?: number;
  /** Bytes of the extent (default: to the end of the file). */
  length?: number;
  /** Name for messages (default the path). */
  label?: string;
}

/** A DiskReader over a sparse VMDK extent (a file, or a slice of one: an OVA member). */
export class VmdkStreamReader implements DiskReader {
  readonly format = 'vmdk' as const;
  readonly virtualSize: number;
  private readonly grainBytes: number;
  private readonly gtCache = new Map<number, Uint32Array>();
  private lastGrain: { index: number; data: Buffer } | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    /** For messages (VmdkOpenOptions.label, default the path). */
    readonly name: string,
    private readonly fh: FileHandle,
    private readonly base: number,
    private readonly length: number,
    readonly header: VmdkHeader,
    private readonly gd: Uint32Array,
  ) {
    this.virtualSize = header.capacity * SECTOR;
    this.grainBytes = header.grainSize * SECTOR;
  }

  static async open(path: string, options: VmdkOpenOptions = {}): Promise<VmdkStreamReader> {
    const label = options.label ?? path;
    const { handle: fh, stat } = await openImageFile(path, label);
    try {
      const size = stat.size;
      const base = options.offset ?? 0;
      const length = options.length ?? size - base;
      if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length < 0 || base + length > size) {
        throw new ImageFormatError(`VMDK extent ${base}+${length} lies outside the file (${size} bytes)`, { input: label });
      }
      const rd = (buf: Buffer, pos: number): Promise<number> => readAt(fh, base, length, buf, pos);
      const header = await readHeader(label, rd, length);
      const numGTs = Math.ceil(header.capacity / (header.grainSize * header.numGTEsPerGT));
      if (numGTs * VMDK_TABLE_ENTRY_BYTES > MAX_GD_BYTES) throw new ImageFormatError(`VMDK grain directory too large (${numGTs} tables)`, { input: label });
      const gdBuf = Buffer.alloc(numGTs * VMDK_TABLE_ENTRY_BYTES);
      if (numGTs > 0) {
        if (header.gdOffset <= 0 || header.gdOffset * SECTOR + gdBuf.length > length) {
          throw new ImageFormatError(`VMDK grain directory at sector ${header.gdOffset} lies outside the image (${length} bytes)`, { input: label });
        }
        await rd(gdBuf, header.gdOffset * SECTOR);
      }
      const gd = new Uint32Array(numGTs);
      for (let i = 0; i < numGTs; i++) gd[i] = gdBuf.readUInt32LE(i * VMDK_TABLE_ENTRY_BYTES);
      return new VmdkStreamReader(path, label, fh, base, length, header, gd);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  private fail(message: string): ImageFormatError {
    return new ImageFormatError(message, { input: this.name });
  }

  private async gt(index: number): Promise<Uint32Array | undefined> {
    const sector = this.gd[index] ?? 0;
    if (sector === 0) return undefined;
    const hit = this.gtCache.get(index);
    if (hit) return hit;
    const n = this.header.numGTEsPerGT;
    const buf = Buffer.alloc(n * VMDK_TABLE_ENTRY_BYTES);
    if (sector * SECTOR + buf.length > this.length) throw this.fail(`VMDK grain table ${index} at sector ${sector} lies outside the image`);
    await readAt(this.fh, this.base, this.length, buf, sector * SECTOR);
    const table = new Uint32Array(n);
    for (let i = 0; i < n; i++) table[i] = buf.readUInt32LE(i * VMDK_TABLE_ENTRY_BYTES);
    if (this.gtCache.size >= GT_CACHE) this.gtCache.delete(this.gtCache.keys().next().value!);
    this.gtCache.set(index, table);
    return table;
  }

  /** The GT entry of grain `g` (0 = unallocated, 1 = zeroed grain when the flag is set). */
  private async entry(g: number): Promise<number> {
    const n = this.header.numGTEsPerGT;
    const table = await this.gt(Math.floor(g / n));
    return table ? table[g % n]! : 0;
  }

  private isData(entry: number): boolean {
    if (entry === 0) return false;
    if (entry === 1 && this.header.flags & VMDK_FLAG_ZEROED_GRAIN_GTE) return false;
    return true;
  }

  /** Bytes of grain `g` inside the virtual disk (the last grain may be short). */
  private grainLength(g: number): number {
    return Math.min(this.grainBytes, this.virtualSize - g * this.grainBytes);
  }

  private async grain(g: number, sector: number): Promise<Buffer> {
    if (this.lastGrain?.index === g) return this.lastGrain.data;
    const at = sector * SECTOR;
    const want = this.grainLength(g);
    let data: Buffer;
    if (this.header.compressed) {
      const head = Buffer.alloc(VMDK_GRAIN_MARKER_BYTES);
      if (at + VMDK_GRAIN_MARKER_BYTES > this.length) throw this.fail(`VMDK grain ${g}: marker at sector ${sector} lies outside the image`);
      await readAt(this.fh, this.base, this.length, head, at);
      const { lba, size } = decodeVmdkGrainMarker(head);
      if (lba !== g * this.header.grainSize) throw this.fail(`VMDK grain ${g}: marker at sector ${sector} names LBA ${lba}, expected ${g * this.header.grainSize}`);
      if (size === 0 || size > this.grainBytes * 2 + 4096 || at + VMDK_GRAIN_MARKER_BYTES + size > this.length) throw this.fail(`VMDK grain ${g}: invalid compressed size ${size} at sector ${sector}`);
      const packed = Buffer.alloc(size);
      await readAt(this.fh, this.base, this.length, packed, at + VMDK_GRAIN_MARKER_BYTES);
      try {
        data = inflateSync(packed);
      } catch (err) {
        throw this.fail(`VMDK grain ${g}: cannot inflate (sector ${sector}): ${(err as Error).message}`);
      }
      if (data.length > this.grainBytes) throw this.fail(`VMDK grain ${g}: inflates to ${data.length} bytes, more than a grain (${this.grainBytes})`);
    } else {
      data = Buffer.alloc(want);
      const n = await readAt(this.fh, this.base, this.length, data, at);
      if (n < want) data.fill(0, n); // a truncated last grain reads as zeros, as qemu does
    }
    if (data.length < want) data = Buffer.concat([data, Buffer.alloc(want - data.length)]);
    this.lastGrain = { index: g, data };
    return data;
  }

  async readInto(buf: Buffer, offset: number): Promise<void> {
    const end = offset + buf.length;
    const vend = Math.min(end, this.virtualSize);
    let pos = offset;
    while (pos < vend) {
      const g = Math.floor(pos / this.grainBytes);
      const gEnd = Math.min(vend, (g + 1) * this.grainBytes);
      const out = buf.subarray(pos - offset, gEnd - offset);
      const e = await this.entry(g);
      if (!this.isData(e)) out.fill(0);
      else {
        const data = await this.grain(g, e);
        const from = pos - g * this.grainBytes;
        data.copy(out, 0, from, from + out.length);
      }
      pos = gEnd;
    }
    if (vend < end) buf.fill(0, Math.max(0, vend - offset));
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  allocatedExtents(start = 0, end = this.virtualSize): AsyncGenerator<DiskExtent> {
    return mergeExtents(this.grainExtents(start, Math.min(end, this.virtualSize)));
  }

  private async *grainExtents(start: number, end: number): AsyncGenerator<DiskExtent> {
    let pos = start;
    const gtBytes = this.grainBytes * this.header.numGTEsPerGT;
    while (pos < end) {
      const t = Math.floor(pos / gtBytes);
      if ((this.gd[t] ?? 0) === 0) {
        pos = Math.min(end, (t + 1) * gtBytes);
        continue;
      }
      const g = Math.floor(pos / this.grainBytes);
      const gEnd = Math.min(end, (g + 1) * this.grainBytes);
      if (this.isData(await this.entry(g))) yield { offset: pos, length: gEnd - pos };
      pos = gEnd;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.gtCache.clear();
    this.lastGrain = undefined;
    await this.fh.close();
  }
}

/** Reads up to buf.length bytes at extent position `pos`, never past `length`; returns the count. */
async function readAt(fh: FileHandle, base: number, length: number, buf: Buffer, pos: number): Promise<number> {
  const want = Math.max(0, Math.min(buf.length, length - pos));
  let done = 0;
  while (done < want) {
    const { bytesRead } = await fh.read(buf, done, want - done, base + pos + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  if (done < buf.length) buf.fill(0, done);
  return done;
}

/** Parses the sparse header (and the footer when gdOffset is GD_AT_END). */
async function readHeader(label: string, rd: (buf: Buffer, pos: number) => Promise<number>, length: number): Promise<VmdkHeader> {
  const fail = (m: string): ImageFormatError => new ImageFormatError(m, { input: label });
  const h = Buffer.alloc(SECTOR);
  const n = await rd(h, 0);
  if (n < 4 || !isVmdkMagic(h)) {
    throw fail('not a sparse VMDK extent (no "KDMV" header): descriptor-only, flat and split VMDKs are not supported');
  }
  if (n < VMDK_HEADER_MIN_BYTES) throw fail('truncated VMDK header');
  const fields = decodeVmdkHeader(h);
  const { version, flags, capacity, grainSize, numGTEsPerGT } = fields;
  if (version < 1 || version > 3) throw fail(`unsupported VMDK version ${version}`);
  if (capacity === undefined) throw fail('VMDK capacity is too large');
  if (grainSize === undefined || grainSize < 1 || grainSize > MAX_GRAIN_SECTORS || (grainSize & (grainSize - 1)) !== 0) throw fail(`unsupported VMDK grain size ${grainSize ?? 'huge'} sectors (a power of two up to ${MAX_GRAIN_SECTORS})`);
  if (numGTEsPerGT < 1 || numGTEsPerGT > MAX_GTES_PER_GT) throw fail(`invalid VMDK numGTEsPerGT ${numGTEsPerGT}`);
  const compressed = (flags & VMDK_FLAG_COMPRESSED) !== 0;
  const markers = (flags & VMDK_FLAG_MARKERS) !== 0;
  if (compressed) {
    const algo = fields.compressAlgorithm;
    if (algo !== VMDK_COMPRESSION_DEFLATE) throw fail(`unsupported VMDK compression algorithm ${algo} (only deflate)`);
    if (!markers) throw fail('compressed VMDK grains without markers are not supported');
  }
  let gdOffset: number | undefined;
  let footer = false;
  if (fields.gdAtEnd) {
    // Stream-written: footer marker, footer (a header copy with the real gdOffset), EOS.
    if (length < 3 * SECTOR) throw fail('VMDK says its grain directory is at the end, but the image is too short for a footer');
    const tail = Buffer.alloc(3 * SECTOR);
    await rd(tail, length - 3 * SECTOR);
    const marker = tail.subarray(0, SECTOR);
    const foot = tail.subarray(SECTOR, 2 * SECTOR);
    if (!isVmdkFooterMarker(marker) || !isVmdkMagic(foot)) {
      throw fail('VMDK says its grain directory is at the end, but no valid footer precedes the end-of-stream marker (truncated stream?)');
    }
    const footFields = decodeVmdkHeader(foot);
    if (footFields.gdAtEnd) throw fail('VMDK footer has no grain directory offset');
    gdOffset = footFields.gdOffset;
    footer = true;
  } else {
    gdOffset = fields.gdOffset;
  }
  if (gdOffset === undefined) throw fail('VMDK grain directory offset is too large');
  return { version, flags, capacity, grainSize, numGTEsPerGT, gdOffset, compressed, markers, footer };
}
