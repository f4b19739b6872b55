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
}

/** Output image formats (convert, measure). */
export const IMAGE_FORMATS = ['raw', 'qcow2', 'vmdk'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** Disk image formats read as input (pack, ova): probed from the magic unless given. */
export const INPUT_IMAGE_FORMATS = ['raw', 'qcow2'] as const;
export type InputImageFormat = (typeof INPUT_IMAGE_FORMATS)[number];

/** Sequential byte destination: a file written front to back, a pipe, a tar member. */
export interface SequentialTarget {
  /** Bytes written so far (the next write lands at this position). */
  readonly position: number;
  /** Appends. The caller may reuse `data` after the promise resolves. */
  write(data: Uint8Array): Promise<void>;
  /**
   * Appends `chunks` back to back, where the target can do it in one system call (pwritev). The
   * range is reserved when called, so calls may overlap (their order is the call order).
   */
  writev?(chunks: Uint8Array[]): Promise<void>;
}

/** A seekable destination (a regular file). Sequential writes append at `position`. */
export interface RandomAccessTarget extends SequentialTarget {
  pwrite(data: Uint8Array, position: number): Promise<void>;
  /** Writes `chunks` back to back from `position` (one pwritev where the target can). */
  pwritev?(chunks: Uint8Array[], position: number): Promise<void>;
  /** Sets the length (extends with a hole or cuts). */
  truncate(length: number): Promise<void>;
}

export function isRandomAccess(t: SequentialTarget): t is RandomAccessTarget {
  return typeof (t as RandomAccessTarget).pwrite === 'function';
}

/** Guest cluster / grain size used by the qcow2 and VMDK writers. */
export const CLUSTER_SIZE = 64 * 1024;

/** The unit qemu sizes every disk in (docs/output-formats.md, "Virtual size"). */
export const SECTOR_SIZE = 512;

/**
 * The virtual size an image states for a disk of `guestBytes`: rounded up to whole 512-byte
 * sectors, the added tail reading as zeros. qemu reads a qcow2 header's size in whole sectors,
 * rounding *down*, so an odd size would hide the disk's last bytes; `qemu-img create/convert`
 * never write one. Every image header, VMDK capacity, OVF capacity and packed XVA
 * virtual_size goes through this one rule (docs/output-formats.md).
 */
export function imageVirtualSize(guestBytes: number): number {
  return Math.ceil(guestBytes / SECTOR_SIZE) * SECTOR_SIZE;
}
