/**
 * Random-access qcow2 reader (versions 2 and 3) with backing chains, following qemu's
 * docs/interop/qcow2.rst (docs/output-formats.md §1.11).
 *
 * Guest cluster g resolves, top layer first:
 *   L1[g / l2_entries] == 0            → unallocated here: ask the backing file (zeros without one)
 *   L2 entry bit 0 (v3 "reads as zero") → zeros, the backing file is NOT consulted
 *   L2 entry bit 62 (compressed)        → raw-deflate data at the descriptor's host offset
 *   L2 host offset != 0                 → data at that host offset
 *   otherwise                           → unallocated here: ask the backing file
 * A backing file shorter than the image reads as zeros past its end. Backing names are
 * resolved relative to the directory of the image that names them (as qemu does); the
 * backing format comes from the header extension 0xE2792ACA, or is probed from the magic.
 *
 * Refused with ImageFormatError: encryption, external data files (incompatible bit 2),
 * extended L2 entries (bit 4), the corrupt bit, unknown incompatible bits (these header checks
 * are `decodeQcow2Header` in format.ts), zstd-compressed clusters, protocol backing names
 * (`nbd:`, `json:`), chains deeper than 64 and loops.
 * L2 tables are cached (LRU); the active L1 table is held in memory (at most 32 MiB).
 */
import { realpath, type FileHandle } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { ImageFormatError } from '../../errors';
import { mergeExtents, openImageFile, probeImageFormat } from '../disk-reader';
import {
  QCOW2_COMPRESSION_ZSTD,
  QCOW2_EXT_BACKING_FORMAT,
  QCOW2_EXT_END,
  QCOW2_MAX_L1_BYTES,
  QCOW2_OFLAG_COMPRESSED_HIGH_WORD,
  QCOW2_OFLAG_ZERO_LOW_WORD,
  QCOW2_TABLE_ENTRY_BYTES,
  QCOW2_V3_HEADER_LENGTH,
  decodeQcow2CompressedEntry,
  decodeQcow2Header,
  qcow2EntryHostOffset,
  type Qcow2Version,
} from './format';
import type { DiskExtent, DiskReader } from '../../io/disk';
import { RawReader } from '../raw/reader';

/** qemu limits backing_file_size to 1023 bytes. */
const MAX_BACKING_NAME = 1023;
const MAX_CHAIN_DEPTH = 64;
const L2_CACHE_TABLES = 64;

const enum Kind {
  Unallocated,
  Zero,
  Data,
  Compressed,
}

interface Mapping {
  kind: Kind;
  /** Data: host offset of the cluster. Compressed: host offset of the compressed stream. */
  host: number;
  /** Compressed: bytes to read. */
  csize: number;
}

export interface Qcow2Info {
  version: Qcow2Version;
  clusterBits: number;
  virtualSize: number;
  backingFile?: string;
  backingFormat?: string;
}

export interface Qcow2OpenOptions {
  /** Internal: real paths of the images above this one (loop detection). */
  chain?: string[];
  /**
   * The image is a slice of `path` (e.g. a member of an OVA tar): it starts at byte `offset`
   * and is `length` bytes long (default: to the end of the file). All image offsets are
   * relative to `offset`; nothing outside the slice is read. Such an image cannot have a
   * backing file.
   */
  offset?: number;
  length?: number;
}

function fail(path: string, message: string): ImageFormatError {
  return new ImageFormatError(message, { input: path });
}

export class Qcow2Reader implements DiskReader {
  readonly format = 'qcow2' as const;
  readonly clusterSize: number;
  private readonly l2Entries: number;
  private readonly l2Cache = new Map<number, Buffer>();
  private lastCompressed: { host: number; data: Buffer } | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly fileSize: number,
    readonly info: Qcow2Info,
    private readonly l1: Buffer,
    private readonly zstd: boolean,
    /** The backing image, if any (raw or qcow2). */
    readonly backing: DiskReader | undefined,
    /** File offset of the image's byte 0 (non-zero for a slice, see Qcow2OpenOptions.offset). */
    private readonly base: number = 0,
  ) {
    this.clusterSize = 2 ** info.clusterBits;
    this.l2Entries = this.clusterSize / QCOW2_TABLE_ENTRY_BYTES;
  }

  get virtualSize(): number {
    return this.info.virtualSize;
  }

  /** For messages: the image file (the OVA for an image inside one). */
  get name(): string {
    return this.path;
  }

  /** Number of images in the chain, this one included. */
  get chainLength(): number {
    return 1 + (this.backing instanceof Qcow2Reader ? this.backing.chainLength : this.backing ? 1 : 0);
  }

  static async open(path: string, options: Qcow2OpenOptions = {}): Promise<Qcow2Reader> {
    const { handle: fh } = await openImageFile(path);
    try {
      return await Qcow2Reader.parse(path, fh, options);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  private static async parse(path: string, fh: FileHandle, options: Qcow2OpenOptions): Promise<Qcow2Reader> {
    const st = await fh.stat();
    const base = options.offset ?? 0;
    if (!Number.isSafeInteger(base) || base < 0 || base > st.size) throw fail(path, `image offset ${base} lies outside the file`);
    const fileSize = options.length ?? st.size - base;
    if (!Number.isSafeInteger(fileSize) || fileSize < 0 || base + fileSize > st.size) throw fail(path, `image slice ${base}+${fileSize} runs past the end of the file`);
    // The v3 header and the byte after it (compression_type); the decoder validates what we rely on.
    const head = Buffer.alloc(QCOW2_V3_HEADER_LENGTH + 8);
    const bytesRead = await readUpTo(fh, head, 0, base, fileSize);
    const header = decodeQcow2Header(head.subarray(0, bytesRead), path);
    const { version, clusterBits, virtualSize, l1Size, l1TableOffset: l1Offset, headerLength } = header;
    const { backingFileOffset: backingOffset, backingFileSize: backingSize } = header;
    const clusterSize = 2 ** clusterBits;
    const zstd = header.compressionType === QCOW2_COMPRESSION_ZSTD;

    // L1 must cover the virtual size.
    const clusters = Math.ceil(virtualSize / clusterSize);
    const l2Entries = clusterSize / QCOW2_TABLE_ENTRY_BYTES;
    const needL1 = Math.ceil(clusters / l2Entries);
    if (l1Size < needL1) throw fail(path, `L1 table too small (${l1Size} entries for ${needL1} needed)`);
    if (l1Size * QCOW2_TABLE_ENTRY_BYTES > QCOW2_MAX_L1_BYTES) throw fail(path, 'L1 table too large');
    if (needL1 > 0 && (l1Offset % clusterSize !== 0 || l1Offset + needL1 * QCOW2_TABLE_ENTRY_BYTES > fileSize)) throw fail(path, 'L1 table offset is invalid or beyond the end of the file');
    const l1 = Buffer.alloc(needL1 * QCOW2_TABLE_ENTRY_BYTES);
    if (needL1 > 0) await readFully(fh, l1, l1Offset, base, fileSize);

    // Header extensions (only the backing format matters here).
    let backingFormat: string | undefined;
    const extEnd = Math.min(clusterSize, backingOffset > 0 ? backingOffset : clusterSize, fileSize);
    if (extEnd > headerLength) {
      const ext = Buffer.alloc(extEnd - headerLength);
      await readFully(fh, ext, headerLength, base, fileSize);
      let p = 0;
      while (p + 8 <= ext.length) {
        const type = ext.readUInt32BE(p);
        const len = ext.readUInt32BE(p + 4);
        if (type === QCOW2_EXT_END) break;
        if (p + 8 + len > ext.length) throw fail(path, 'header extension runs past the header cluster');
        if (type === QCOW2_EXT_BACKING_FORMAT) backingFormat = ext.toString('utf8', p + 8, p + 8 + len);
        p += 8 + Math.ceil(len / 8) * 8;
      }
    }

    let backingFile: string | undefined;
    if (backingOffset !== 0 && backingSize > 0) {
      if (backingSize > MAX_BACKING_NAME || backingOffset + backingSize > Math.min(clusterSize, fileSize)) throw fail(path, 'invalid backing file name location');
      const nameBuf = Buffer.alloc(backingSize);
      await readFully(fh, nameBuf, backingOffset, base, fileSize);
      backingFile = nameBuf.toString('utf8');
    }

    const info: Qcow2Info = { version, clusterBits, virtualSize, backingFile, backingFormat };
    if (backingFile !== undefined && options.offset !== undefined) throw fail(path, `a qcow2 image inside an archive cannot have a backing file ("${backingFile}")`);
    const backing = backingFile === undefined ? undefined : await openBacking(path, backingFile, backingFormat, options.chain ?? []);
    return new Qcow2Reader(path, fh, fileSize, info, l1, zstd, backing, base);
  }

  /** Resolves one guest cluster in this layer only. */
  private async lookup(g: number): Promise<Mapping> {
    const l2Offset = qcow2EntryHostOffset(this.l1, Math.floor(g / this.l2Entries), 'L2 table offset', this.path);
    if (l2Offset === 0) return { kind: Kind.Unallocated, host: 0, csize: 0 };
    const l2 = await this.loadL2(l2Offset);
    return this.decodeL2(l2, g % this.l2Entries);
  }

  private decodeL2(l2: Buffer, index: number): Mapping {
    const hi = l2.readUInt32BE(index * QCOW2_TABLE_ENTRY_BYTES);
    const lo = l2.readUInt32BE(index * QCOW2_TABLE_ENTRY_BYTES + 4);
    if (hi & QCOW2_OFLAG_COMPRESSED_HIGH_WORD) return { kind: Kind.Compressed, ...decodeQcow2CompressedEntry(hi, lo, this.info.clusterBits) };
    if (this.info.version === 3 && lo & QCOW2_OFLAG_ZERO_LOW_WORD) return { kind: Kind.Zero, host: 0, csize: 0 };
    const host = qcow2EntryHostOffset(l2, index, 'data cluster offset', this.path);
    if (host === 0) return { kind: Kind.Unallocated, host: 0, csize: 0 };
    if (host % this.clusterSize !== 0) throw fail(this.path, `data cluster offset ${host} is not cluster aligned`);
    return { kind: Kind.Data, host, csize: 0 };
  }

  private async loadL2(offset: number): Promise<Buffer> {
    const hit = this.l2Cache.get(offset);
    if (hit) {
      this.l2Cache.delete(offset);
      this.l2Cache.set(offset, hit);
      return hit;
    }
    if (offset % this.clusterSize !== 0) throw fail(this.path, `L2 table offset ${offset} is not cluster aligned`);
    if (offset + this.clusterSize > this.fileSize) throw fail(this.path, `L2 table at ${offset} lies beyond the end of the file`);
    const table = Buffer.alloc(this.clusterSize);
    await readFully(this.fh, table, offset, this.base, this.fileSize);
    if (this.l2Cache.size >= L2_CACHE_TABLES) this.l2Cache.delete(this.l2Cache.keys().next().value!);
    this.l2Cache.set(offset, table);
    return table;
  }

  private async readCompressed(m: Mapping): Promise<Buffer> {
    if (this.lastCompressed?.host === m.host) return this.lastCompressed.data;
    if (this.zstd) throw fail(this.path, 'zstd-compressed clusters are not supported (re-compress with zlib or convert with `qemu-img convert`)');
    const raw = Buffer.alloc(Math.max(0, Math.min(m.csize, this.fileSize - m.host)));
    await readFully(this.fh, raw, m.host, this.base, this.fileSize);
    let data: Buffer;
    try {
      // The stored range can extend past the end of the deflate stream (sector rounding).
      data = inflateRawSync(raw, { finishFlush: 2 /* Z_SYNC_FLUSH */ });
    } catch (err) {
      throw fail(this.path, `cannot inflate compressed cluster at ${m.host}: ${(err as Error).message}`);
    }
    if (data.length < this.clusterSize) data = Buffer.concat([data, Buffer.alloc(this.clusterSize - data.length)]);
    this.lastCompressed = { host: m.host, data };
    return data;
  }

  async readInto(buf: Buffer, offset: number): Promise<void> {
    const end = offset + buf.length;
    const vend = Math.min(end, this.virtualSize);
    let pos = offset;
    const cs = this.clusterSize;
    while (pos < vend) {
      // Gather a run of clusters of one kind (host-contiguous for data) into one I/O.
      const first = await this.lookup(Math.floor(pos / cs));
      let runEnd = Math.min(vend, (Math.floor(pos / cs) + 1) * cs);
      if (first.kind !== Kind.Compressed) {
        let expectHost = first.host + cs;
        while (runEnd < vend) {
          const m = await this.lookup(runEnd / cs);
          if (m.kind !== first.kind) break;
          if (m.kind === Kind.Data && m.host !== expectHost) break;
          expectHost += cs;
          runEnd = Math.min(vend, runEnd + cs);
        }
      }
      const out = buf.subarray(pos - offset, runEnd - offset);
      switch (first.kind) {
        case Kind.Zero:
          out.fill(0);
          break;
        case Kind.Unallocated:
          if (this.backing) await this.backing.readInto(out, pos);
          else out.fill(0);
          break;
        case Kind.Data: {
          const host = first.host + (pos % cs);
          const n = await readUpTo(this.fh, out, host, this.base, this.fileSize);
          // Past the end of the file reads as zeros (as qemu's block layer does).
          if (n < out.length) out.fill(0, n);
          break;
        }
        case Kind.Compressed: {
          const data = await this.readCompressed(first);
          data.copy(out, 0, pos % cs, (pos % cs) + out.length);
          break;
        }
      }
      pos = runEnd;
    }
    if (vend < end) buf.fill(0, Math.max(0, vend - offset));
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  /**
   * Union over the chain: a range is allocated when the first layer (from the top) that has
   * an opinion about it holds data. Zero-flag clusters are holes and hide lower layers.
   */
  allocatedExtents(start = 0, end = this.virtualSize): AsyncGenerator<DiskExtent> {
    return mergeExtents(this.layerExtents(start, Math.min(end, this.virtualSize)));
  }

  private async *layerExtents(start: number, end: number): AsyncGenerator<DiskExtent> {
    if (end <= start) return;
    const cs = this.clusterSize;
    const regionBytes = cs * this.l2Entries;
    let pos = start;
    let pending: { kind: Kind; start: number; end: number } | undefined;
    const flush = async function* (this: Qcow2Reader, p: { kind: Kind; start: number; end: number }): AsyncGenerator<DiskExtent> {
      if (p.kind === Kind.Data || p.kind === Kind.Compressed) yield { offset: p.start, length: p.end - p.start };
      else if (p.kind === Kind.Unallocated && this.backing) {
        const bEnd = Math.min(p.end, this.backing.virtualSize);
        if (bEnd > p.start) yield* this.backing.allocatedExtents(p.start, bEnd);
      }
    };
    const add = async function* (this: Qcow2Reader, kind: Kind, s: number, e: number): AsyncGenerator<DiskExtent> {
      // Data and compressed clusters are both "data"; merge them into one pending run.
      const k = kind === Kind.Compressed ? Kind.Data : kind;
      if (pending && pending.kind === k && pending.end === s) {
        pending.end = e;
        return;
      }
      if (pending) yield* flush.call(this, pending);
      pending = { kind: k, start: s, end: e };
    };
    while (pos < end) {
      const l1Index = Math.floor(pos / regionBytes);
      const regionEnd = Math.min(end, (l1Index + 1) * regionBytes);
      const l2Offset = qcow2EntryHostOffset(this.l1, l1Index, 'L2 table offset', this.path);
      if (l2Offset === 0) {
        yield* add.call(this, Kind.Unallocated, pos, regionEnd);
        pos = regionEnd;
        continue;
      }
      const l2 = await this.loadL2(l2Offset);
      while (pos < regionEnd) {
        const g = Math.floor(pos / cs);
        const cEnd = Math.min(regionEnd, (g + 1) * cs);
        const m = this.decodeL2(l2, g % this.l2Entries);
        yield* add.call(this, m.kind, pos, cEnd);
        pos = cEnd;
      }
    }
    if (pending) yield* flush.call(this, pending);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.l2Cache.clear();
    await this.fh.close();
    await this.backing?.close();
  }
}

async function readFully(fh: FileHandle, buf: Buffer, position: number, base = 0, limit = Infinity): Promise<void> {
  const n = await readUpTo(fh, buf, position, base, limit);
  if (n < buf.length) buf.fill(0, n);
}

/** Reads up to buf.length image bytes at `position` (file offset base + position), never at or past `limit`. */
async function readUpTo(fh: FileHandle, buf: Buffer, position: number, base = 0, limit = Infinity): Promise<number> {
  const want = Math.max(0, Math.min(buf.length, limit - position));
  let done = 0;
  while (done < want) {
    const { bytesRead } = await fh.read(buf, done, want - done, base + position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function openBacking(imagePath: string, name: string, format: string | undefined, chain: string[]): Promise<DiskReader> {
  if (/^[a-z][a-z0-9+.-]*:/i.test(name) && !nodePath.isAbsolute(name)) {
    throw fail(imagePath, `backing file "${name}" uses a protocol or json: specification; only local files are supported`);
  }
  const resolved = nodePath.resolve(nodePath.dirname(imagePath), name);
  const self = await realpath(imagePath);
  let target: string;
  try {
    target = await realpath(resolved);
  } catch {
    throw fail(imagePath, `backing file "${name}" not found (looked for ${resolved})`);
  }
  const seen = [...chain, self];
  if (seen.includes(target)) throw fail(imagePath, `backing chain loops back to ${target}`);
  if (seen.length >= MAX_CHAIN_DEPTH) throw fail(imagePath, `backing chain deeper than ${MAX_CHAIN_DEPTH} images`);
  const fmt = format ?? (await probeImageFormat(resolved));
  if (fmt === 'qcow2') return Qcow2Reader.open(resolved, { chain: seen });
  if (fmt === 'raw') return RawReader.open(resolved);
  throw fail(imagePath, `backing file "${name}" has unsupported format "${fmt}" (raw and qcow2 are supported)`);
}

/** Opens a raw or qcow2 image (format probed from the magic unless given), backing chain included. */
export async function openDiskImage(path: string, format?: 'raw' | 'qcow2'): Promise<DiskReader> {
  const fmt = format ?? (await probeImageFormat(path));
  return fmt === 'qcow2' ? Qcow2Reader.open(path) : RawReader.open(path);
}
