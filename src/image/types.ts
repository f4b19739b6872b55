/**
 * The seam between readers (XVA, qcow2 chains, raw files) and image writers.
 *
 * A reader delivers a disk's bytes to a DiskImageWriter as `write(offset, data)` calls:
 *  - offsets are guest byte offsets, strictly ascending and non-overlapping within one disk;
 *  - anything never written reads as zeros (gaps are holes);
 *  - offsets and lengths are arbitrary (usually 1 MiB aligned, but a non-XAPI producer can
 *    shift the cursor), so writers that work in clusters/grains must align internally;
 *  - `data` belongs to the caller again once the returned promise resolves (buffers are reused).
 * Writers decide what is a hole: all-zero blocks inside `data` need not be stored.
 */
export interface DiskImageWriter {
  write(offset: number, data: Buffer): Promise<void>;
  /** All data delivered: complete the image (metadata, final length = virtual size). */
  finish(): Promise<ImageWriteResult>;
}

export interface ImageWriteResult {
  /** Bytes of guest data actually stored (not counting holes). */
  bytesWritten: number;
  /** Bytes of delivered data that were all zeros and left as holes/unallocated. */
  zeroBytesSkipped: number;
  /** Size in bytes of the produced image file/stream. */
  imageSize: number;
}

export type ImageFormat = 'raw' | 'qcow2' | 'vmdk';

/** Sequential byte destination: a file written front to back, a pipe, a tar member. */
export interface SequentialTarget {
  /** Bytes written so far (the next write lands at this position). */
  readonly position: number;
  /** Appends. The caller may reuse `data` after the promise resolves. */
  write(data: Uint8Array): Promise<void>;
}

/** A seekable destination (a regular file). Sequential writes append at `position`. */
export interface RandomAccessTarget extends SequentialTarget {
  pwrite(data: Uint8Array, position: number): Promise<void>;
  /** Sets the length (extends with a hole or cuts). */
  truncate(length: number): Promise<void>;
}

export function isRandomAccess(t: SequentialTarget): t is RandomAccessTarget {
  return typeof (t as RandomAccessTarget).pwrite === 'function';
}

/** Guest cluster / grain size used by the qcow2 and VMDK writers. */
export const CLUSTER_SIZE = 64 * 1024;
