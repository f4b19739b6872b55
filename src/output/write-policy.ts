/**
 * How image files are written: through the page cache in small pieces, with writeback started
 * behind the writer, and one flush before the rename. The reasoning and the measurements are in
 * docs/design/write-policy.md; in short:
 *
 *  - Page cache by default, O_DIRECT only when asked (`directIo: true`, `--direct-io`). Direct
 *    writes into a sparse file's holes make the file system allocate under every write, and a
 *    few writes in flight cannot hide that: on the 2-vCPU VMs we measure, plain XVA -> raw took
 *    17-35 s direct against 8-9 s through the page cache (3.8 GB image). No probe at start-up
 *    could tell the cases apart reliably in less time than it would cost, so the default is the
 *    one that is never badly wrong: the page cache, as `qemu-img convert` and `cp` use it.
 *  - Writeback behind the writer: an fdatasync is started (not awaited) every FLUSH_BEHIND_BYTES,
 *    one at a time (FileTarget.flushBehind). The kernel then writes the image to disk while the
 *    conversion goes on, instead of all of it in the final fsync; the guarantee is unchanged
 *    (the final fsync still runs before the rename). Node has no sync_file_range, which would
 *    start writeback without waiting; one fdatasync in flight is the closest it offers.
 *  - Small pieces: each write(2) covers at most PAGE_CACHE_PIECE_BYTES, aligned to that size in
 *    the file. The kernel sizes a new page-cache folio by the length of the write(2) that creates
 *    it; large folios are high-order allocations, and VMs that report free memory to their host
 *    hand exactly those blocks back, so every page of a large folio then faults in the host.
 *    Measured with dd of a 3.8 GB file: bs=64K-256K 0.95-1.5 s of kernel time, bs=1M-4M 3.8-5.2 s.
 *    On a machine without that reporting, 256 KiB pieces cost ~15 000 more system calls per
 *    3.8 GB (tens of milliseconds), so the rule holds everywhere.
 */

/** Largest write(2) into the page cache, and the file alignment of its pieces (see above). */
export const PAGE_CACHE_PIECE_BYTES = 256 * 1024;

/** Bytes written between two background fdatasyncs (see above and FileTarget). */
export const FLUSH_BEHIND_BYTES = 32 * 1024 * 1024;

/** Bytes from `position` to the end of its page-cache piece. */
export function pageCacheRoom(position: number): number {
  return PAGE_CACHE_PIECE_BYTES - (position % PAGE_CACHE_PIECE_BYTES);
}

export interface ImageWritePolicy {
  /** Write aligned image data with O_DIRECT (the caller asked for it). */
  directIo: boolean;
  /** Start an fdatasync every this many bytes (0: never; nothing will be synced). */
  flushBehindBytes: number;
}

/**
 * The policy for one image file. `sync` (default true): the image is fsynced before its rename,
 * so writeback is started behind the writer; without it nothing waits for the disk and the
 * kernel writes back when it likes (`--no-sync`). `directIo` only when explicitly true.
 */
export function imageWritePolicy(options: { sync?: boolean; directIo?: boolean } = {}): ImageWritePolicy {
  const sync = options.sync !== false;
  return { directIo: options.directIo === true, flushBehindBytes: sync ? FLUSH_BEHIND_BYTES : 0 };
}
