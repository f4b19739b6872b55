/**
 * The random-access index of a plain (uncompressed) XVA file: for every disk, where each of its
 * chunks lands in the disk and where its bytes and its checksum lie in the file. Built in one
 * pass over the tar headers (readXva with `skipData`: the header walker seeks over the data),
 * with the converter's own placement (ChunkPlacer: counters, gaps, keep-alives, the short last
 * chunk), so a byte read through the index is the byte the converter writes at that offset.
 *
 * Memory (docs/design/nbd-server.md, "Index"): 27 bytes per stored chunk, in typed-array
 * columns: guest offset and data offset (8 + 8), entry size (4), distance from the end of the
 * data to the checksum text (4), checksum text length (2), checksum kind (1). Keep-alives and
 * holes cost nothing. A fully allocated 1 TiB disk (1 048 576 chunks) needs 27 MiB.
 */
import type { ChecksumKind } from './format';
import type { DiskInfo, XvaMetadata } from './metadata/model';
import type { InputSource } from '../input/types';
import { readXva, type StoredChunk } from './reader';

/** Bytes of index per stored chunk (see the module comment). */
export const INDEX_BYTES_PER_CHUNK = 27;

const KINDS: readonly ChecksumKind[] = ['xxh64', 'sha1'];

interface Columns {
  start: Float64Array;
  dataOffset: Float64Array;
  size: Uint32Array;
  sumGap: Uint32Array;
  sumSize: Uint16Array;
  kind: Uint8Array;
}

function columns(capacity: number): Columns {
  return {
    start: new Float64Array(capacity),
    dataOffset: new Float64Array(capacity),
    size: new Uint32Array(capacity),
    sumGap: new Uint32Array(capacity),
    sumSize: new Uint16Array(capacity),
    kind: new Uint8Array(capacity),
  };
}

function resized(c: Columns, capacity: number, used: number): Columns {
  const n = columns(capacity);
  n.start.set(c.start.subarray(0, used));
  n.dataOffset.set(c.dataOffset.subarray(0, used));
  n.size.set(c.size.subarray(0, used));
  n.sumGap.set(c.sumGap.subarray(0, used));
  n.sumSize.set(c.sumSize.subarray(0, used));
  n.kind.set(c.kind.subarray(0, used));
  return n;
}

/** A run of a disk: `length` bytes from `start`, stored in chunk `chunk` (or zeros: -1). */
export type RunVisitor = (start: number, length: number, chunk: number) => boolean | void;

/** The stored chunks of one disk, in ascending guest order (placement never goes back). */
export class DiskChunkIndex {
  constructor(
    readonly disk: DiskInfo,
    private readonly c: Columns,
    readonly count: number,
  ) {}

  get size(): number {
    return this.disk.virtualSize;
  }

  /** Bytes the index of this disk occupies (INDEX_BYTES_PER_CHUNK per chunk). */
  get bytes(): number {
    const c = this.c;
    return c.start.byteLength + c.dataOffset.byteLength + c.size.byteLength + c.sumGap.byteLength + c.sumSize.byteLength + c.kind.byteLength;
  }

  /** Guest offset of chunk `i`. */
  start(i: number): number {
    return this.c.start[i]!;
  }

  /** End of chunk `i` in the disk (its data clipped at the disk's virtual size). */
  end(i: number): number {
    return Math.min(this.c.start[i]! + this.c.size[i]!, this.disk.virtualSize);
  }

  /** Where chunk `i`'s data entry lies in the file, and its length (the whole entry). */
  stored(i: number): StoredChunk {
    const dataOffset = this.c.dataOffset[i]!;
    const size = this.c.size[i]!;
    return {
      size,
      dataOffset,
      checksum: { kind: KINDS[this.c.kind[i]!]!, dataOffset: dataOffset + size + this.c.sumGap[i]!, size: this.c.sumSize[i]! },
    };
  }

  /** The first chunk that ends after `offset` (`count` when none does). */
  firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.end(mid) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Walks [offset, offset + length) as consecutive runs, each inside one chunk or one stretch of
   * zeros (chunk -1), in order; stops early when `visit` returns false. The range is clipped to
   * the disk.
   */
  forEachRun(offset: number, length: number, visit: RunVisitor): void {
    const stop = Math.min(offset + length, this.disk.virtualSize);
    let pos = offset;
    let i = this.firstEndingAfter(pos);
    while (pos < stop) {
      if (i < this.count && this.start(i) <= pos) {
        const end = Math.min(this.end(i), stop);
        if (visit(pos, end - pos, i) === false) return;
        pos = end;
        i++;
      } else {
        const end = Math.min(i < this.count ? this.start(i) : stop, stop);
        if (visit(pos, end - pos, -1) === false) return;
        pos = end;
      }
    }
  }
}

/** Collects a disk's chunks as readXva reports them. */
export class DiskChunkIndexBuilder {
  private c = columns(256);
  private n = 0;

  constructor(readonly disk: DiskInfo) {}

  add(start: number, stored: StoredChunk): void {
    if (this.n === this.c.start.length) this.c = resized(this.c, this.n * 2, this.n);
    const gap = stored.checksum.dataOffset - (stored.dataOffset + stored.size);
    // The reader bounds both: chunks to 64 MiB, checksum entries to 1 KiB after at most a few
    // small extension headers, so neither column can overflow on an archive it accepted.
    if (gap < 0 || gap > 0xffffffff || stored.checksum.size > 0xffff) throw new RangeError(`checksum entry of ${this.disk.ref} at ${stored.checksum.dataOffset} out of reach`);
    const i = this.n++;
    this.c.start[i] = start;
    this.c.dataOffset[i] = stored.dataOffset;
    this.c.size[i] = stored.size;
    this.c.sumGap[i] = gap;
    this.c.sumSize[i] = stored.checksum.size;
    this.c.kind[i] = KINDS.indexOf(stored.checksum.kind);
  }

  finish(): DiskChunkIndex {
    return new DiskChunkIndex(this.disk, this.n === this.c.start.length ? this.c : resized(this.c, this.n, this.n), this.n);
  }
}

export interface XvaIndex {
  metadata: XvaMetadata;
  /** Every disk of ova.xml, in its order. */
  disks: DiskChunkIndex[];
  checksum?: ChecksumKind;
  warnings: string[];
}

/**
 * Indexes a plain XVA file (`source.kind` 'file'): one pass over its tar headers, with the
 * converter's structure checks (a truncated or misordered archive fails here, as it would there).
 */
export async function indexXva(source: InputSource, options: { signal?: AbortSignal; onWarning?(message: string): void } = {}): Promise<XvaIndex> {
  if (source.kind !== 'file') throw new TypeError('indexXva needs a plain regular file');
  const builders = new Map<string, DiskChunkIndexBuilder>();
  const result = await readXva(
    source,
    {
      onChunk: (disk, _entry, offset, _length, stored) => {
        let b = builders.get(disk.ref);
        if (!b) builders.set(disk.ref, (b = new DiskChunkIndexBuilder(disk)));
        b.add(offset, stored);
      },
      onWarning: options.onWarning,
    },
    { skipData: true, signal: options.signal },
  );
  const disks = result.metadata.disks.map((d) => (builders.get(d.ref) ?? new DiskChunkIndexBuilder(d)).finish());
  return { metadata: result.metadata, disks, checksum: result.checksum, warnings: result.warnings };
}
