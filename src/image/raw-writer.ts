/**
 * Raw (flat) disk images.
 *
 * To a regular file: only non-zero 4 KiB blocks are written (pwrite at the guest offset), so
 * counter gaps and all-zero blocks become holes; `finish()` sets the length to the virtual size.
 * To a stream: bytes are written front to back and holes are sent as zeros.
 */
import { forEachNonZeroRun, zeros } from './zero';
import { isRandomAccess, type DiskImageWriter, type ImageWriteResult, type RandomAccessTarget, type SequentialTarget } from './types';

/** File-system block granularity for hole detection (ext4/xfs/btrfs blocks are 4 KiB). */
export const RAW_HOLE_GRANULARITY = 4096;
const ZERO_WRITE_PIECE = 4 * 1024 * 1024;

export class RawWriter implements DiskImageWriter {
  private written = 0;
  private skipped = 0;
  private end = 0;

  constructor(private readonly target: SequentialTarget | RandomAccessTarget, readonly virtualSize: number) {}

  async write(offset: number, data: Buffer): Promise<void> {
    if (offset < this.end) throw new Error(`RawWriter: write at ${offset} before ${this.end} (writes must ascend)`);
    const target = this.target;
    if (isRandomAccess(target)) {
      const runs: Array<[number, number]> = [];
      forEachNonZeroRun(data, RAW_HOLE_GRANULARITY, (s, e) => runs.push([s, e]));
      let stored = 0;
      for (const [s, e] of runs) {
        await target.pwrite(data.subarray(s, e), offset + s);
        stored += e - s;
      }
      this.written += stored;
      this.skipped += data.length - stored;
    } else {
      await this.fillZerosTo(offset);
      await target.write(data);
      this.written += data.length;
    }
    this.end = offset + data.length;
  }

  private async fillZerosTo(offset: number): Promise<void> {
    while (this.target.position < offset) {
      await this.target.write(zeros(Math.min(ZERO_WRITE_PIECE, offset - this.target.position)));
    }
  }

  async finish(): Promise<ImageWriteResult> {
    const target = this.target;
    if (isRandomAccess(target)) await target.truncate(this.virtualSize);
    else await this.fillZerosTo(this.virtualSize);
    return { bytesWritten: this.written, zeroBytesSkipped: this.skipped, imageSize: this.virtualSize };
  }
}
