/**
 * The two seams every disk goes through, so that sources and image formats never import each
 * other: a DiskImageWriter takes a disk's bytes in ascending order (from an XVA's chunks, a disk
 * image being packed, an OVA member), a DiskReader gives a disk image's bytes at any offset.
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
 * A random-access disk image (raw, a qcow2 chain, an OVA member). It answers two questions: "what
 * are the bytes at [offset, offset+length)" and "which ranges may hold data" (everything outside
 * `allocatedExtents()` reads as zeros).
 */
export interface DiskReader {
  /** The image as the user named it (for messages). */
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
  /** Guest-visible size in bytes. */
  readonly virtualSize: number;
  /** Fills `buf` with the guest bytes at `offset` (zeros past the virtual size). */
  readInto(buf: Buffer, offset: number): Promise<void>;
  /** Reads `length` guest bytes at `offset` into a new buffer. */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Ascending, non-overlapping, merged ranges within [start, end) that may hold data; anything
   * else reads as zeros. Defaults: the whole disk.
   */
  allocatedExtents(start?: number, end?: number): AsyncGenerator<DiskExtent>;
  /** Releases file handles (also of backing files). Safe to call twice. */
  close(): Promise<void>;
}
