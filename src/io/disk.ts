/**
 * The two seams every disk goes through, so that sources and image formats never import each
 * other: a DiskImageWriter takes a disk's bytes in ascending order (from an XVA's chunks, a disk
 * image being packed, an OVA member), a DiskReader gives a disk's bytes and where its data is
 * (raw, qcow2 and VMDK images, a buffer, a stream, the repack pipe).
 */

/**
 * The seam between readers (XVA, qcow2 chains, raw files) and image writers.
 *
 * A reader delivers a disk's bytes to a DiskImageWriter as `write(offset, data)` calls:
 *  - offsets are guest byte offsets, strictly ascending and non-overlapping within one disk;
 *  - anything never written reads as zeros (gaps are holes);
 *  - offsets and lengths are arbitrary (usually 1 MiB aligned, but a non-XAPI producer can
 *    shift the cursor), so writers that work in clusters/grains must align internally;
 *  - `data` belongs to the caller again once the returned promise resolves (buffers are reused),
 *    unless the caller passes a `lease`: then the writer may keep using `data` after the promise
 *    resolved, for as long as it holds the lease (see BufferLease).
 * Writers decide what is a hole: all-zero blocks inside `data` need not be stored.
 */
export interface DiskImageWriter {
  write(offset: number, data: Buffer, lease?: BufferLease): Promise<void>;
  /** All data delivered: complete the image (metadata, final length = virtual size). */
  finish(): Promise<ImageWriteResult>;
}

/**
 * Offered with a buffer by a caller that can wait to reuse it (the tar reader's pooled chunk
 * buffers). A writer that wants to overlap writing `data` with the caller reading and hashing
 * the next chunks calls `hold()` before its write() resolves and the returned release function
 * (exactly once) when it no longer needs the bytes. Without a lease a writer must finish with
 * `data` (or copy it) before resolving.
 */
export interface BufferLease {
  hold(): () => void;
}

export interface ImageWriteResult {
  /** Bytes of guest data actually stored (not counting holes). */
  bytesWritten: number;
  /** Bytes of delivered data that were all zeros and left as holes/unallocated. */
  zeroBytesSkipped: number;
  /** Size in bytes of the produced image file/stream. */
  imageSize: number;
  /**
   * Bytes of zeros written over holes, on a target whose unwritten bytes are not known to read
   * as zeros (a block device, a file written in place); absent or 0 elsewhere.
   */
  zeroBytesWritten?: number;
}

/** A half-open byte range [offset, offset + length) of a disk. */
export interface DiskExtent {
  offset: number;
  length: number;
}

/**
 * How a DiskReader's bytes are stored: 'qcow2' and 'vmdk' images map guest ranges to their
 * clusters/grains; 'raw' is the guest bytes as they are (a raw file or a slice of one, a buffer,
 * a byte stream, the repack pipe), as qemu's raw driver reads any file or pipe.
 */
export type DiskReaderFormat = 'raw' | 'qcow2' | 'vmdk';

/**
 * A disk to read, in the manner of qemu's block drivers: its bytes at any offset (`read`,
 * `readInto`) and its block status (`allocatedExtents`: everything outside reads as zeros, so a
 * consumer need not read it). Every disk source implements it: the image readers (raw, qcow2
 * with its backing chain, VMDK; src/image/), the in-memory and stream sources
 * (src/xva/disk-sources.ts) and the repack pipe (src/xva/repack.ts). Consumers: the XVA writer
 * (pack), streamDiskImage (ova --disk), a qcow2 image's backing file.
 *
 * Reads stay inside [0, virtualSize): past it the image readers return zeros, the other
 * sources reject with a RangeError. A buffer returned by `read` is the caller's to keep (the
 * reader never reuses it) but not to write into: it may be a view of the reader's own memory
 * or of shared zeros.
 */
export interface DiskReader {
  /** For messages: the image as the user named it (a path, `ova: member`), or what the bytes come from. */
  readonly name: string;
  readonly format: DiskReaderFormat;
  /** Guest-visible size in bytes. */
  readonly virtualSize: number;
  /**
   * True for a source that can only be read front to back (a byte stream, the repack pipe):
   * every read must start at or after the end of the one before (bytes skipped are consumed),
   * and `allocatedExtents()` is the whole disk. Absent or false: any offset, in any order.
   */
  readonly sequential?: boolean;
  /** Fills `buf` with the guest bytes at `offset`. */
  readInto(buf: Buffer, offset: number): Promise<void>;
  /** Reads `length` guest bytes at `offset` into a buffer of its own. */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Block status: ascending, non-overlapping, merged ranges within [start, end) that may hold
   * data; anything else reads as zeros. Defaults: the whole disk. A source that cannot tell
   * reports everything (wholeDisk).
   */
  allocatedExtents(start?: number, end?: number): AsyncGenerator<DiskExtent>;
  /** Releases what the reader holds (file handles, backing files, a stream). Safe to call twice. */
  close(): Promise<void>;
}

/** The block status of a reader that cannot tell holes from data: [start, min(end, size)). */
export async function* wholeDisk(virtualSize: number, start = 0, end = virtualSize): AsyncGenerator<DiskExtent> {
  const e = Math.min(end, virtualSize);
  if (e > start) yield { offset: start, length: e - start };
}
