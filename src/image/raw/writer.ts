/**
 * Raw (flat) disk images.
 *
 * To a regular file: only non-zero 4 KiB blocks are written (pwrite at the guest offset), so
 * counter gaps and all-zero blocks become holes; `finish()` sets the length to the virtual size.
 * To a stream: bytes are written front to back and holes are sent as zeros.
 * To a block device or a file written in place (`holesReadAsZero` false): every byte up to the
 * virtual size is written, holes as zeros from a shared zero buffer, batched with the data
 * around them (docs/design/block-devices.md); the length is left as it is.
 *
 * Speed, for files: the non-zero runs go through a WriteQueue (batched pwritev, several in
 * flight, no copy when the caller lends its buffer), so the kernel copies earlier chunks into
 * the page cache while the reader verifies the next ones. Regions never overlap, so completion
 * order does not matter. A failed write is reported by the next write() or by finish().
 */
import { forEachNonZeroRun, sharedZeros, zeros } from '../../io/zero';
import { isRandomAccess, type RandomAccessTarget, type SequentialTarget } from '../../output/target';
import type { BufferLease, DiskImageWriter, ImageWriteResult } from '../../io/disk';
import { WriteQueue } from '../write-queue';

/** File-system block granularity for hole detection (ext4/xfs/btrfs blocks are 4 KiB). */
export const RAW_HOLE_GRANULARITY = 4096;
const ZERO_WRITE_PIECE = 4 * 1024 * 1024;
/** The shared zero buffer is never reused for anything else: holding it costs nothing. */
const ZEROS_LEASE: BufferLease = { hold: () => () => {} };

export class RawWriter implements DiskImageWriter {
  private written = 0;
  private skipped = 0;
  private end = 0;
  private readonly queue: WriteQueue | undefined;
  /** Holes must be written as zeros (a target whose unwritten bytes may hold anything). */
  private readonly zeroHoles: boolean = false;
  /** With zeroHoles: bytes [0, covered) are queued, as data or as zeros. */
  private covered = 0;
  private zeroed = 0;

  constructor(private readonly target: SequentialTarget | RandomAccessTarget, readonly virtualSize: number) {
    if (isRandomAccess(target)) {
      this.queue = new WriteQueue(target);
      this.zeroHoles = target.holesReadAsZero === false;
    }
  }

  async write(offset: number, data: Buffer, lease?: BufferLease): Promise<void> {
    if (offset < this.end) throw new Error(`RawWriter: write at ${offset} before ${this.end} (writes must ascend)`);
    this.end = offset + data.length;
    const queue = this.queue;
    if (!queue) {
      await this.fillZerosTo(offset);
      await this.target.write(data);
      this.written += data.length;
      return;
    }
    const runs: Array<[number, number]> = [];
    forEachNonZeroRun(data, RAW_HOLE_GRANULARITY, (s, e) => runs.push([s, e]));
    let stored = 0;
    for (const [s, e] of runs) {
      stored += e - s;
      await this.zeroHolesTo(queue, offset + s);
      await queue.add(offset + s, data.subarray(s, e), lease);
      this.covered = offset + e;
    }
    this.written += stored;
    this.skipped += data.length - stored;
  }

  /** With zeroHoles: queues zeros from `covered` to `offset`. */
  private async zeroHolesTo(queue: WriteQueue, offset: number): Promise<void> {
    if (!this.zeroHoles) return;
    while (this.covered < offset) {
      const n = Math.min(ZERO_WRITE_PIECE, offset - this.covered);
      await queue.add(this.covered, sharedZeros(n), ZEROS_LEASE);
      this.covered += n;
      this.zeroed += n;
    }
  }

  private async fillZerosTo(offset: number): Promise<void> {
    while (this.target.position < offset) {
      await this.target.write(zeros(Math.min(ZERO_WRITE_PIECE, offset - this.target.position)));
    }
  }

  async finish(): Promise<ImageWriteResult> {
    const target = this.target;
    if (this.queue && isRandomAccess(target)) {
      await this.zeroHolesTo(this.queue, this.virtualSize);
      await this.queue.flush();
      await target.truncate(this.virtualSize);
    } else {
      await this.fillZerosTo(this.virtualSize);
    }
    const zeroBytesSkipped = this.zeroHoles ? 0 : this.skipped;
    return { bytesWritten: this.written, zeroBytesSkipped, imageSize: this.virtualSize, zeroBytesWritten: this.zeroed };
  }
}
