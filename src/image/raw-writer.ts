/**
 * Raw (flat) disk images.
 *
 * To a regular file: only non-zero 4 KiB blocks are written (pwrite at the guest offset), so
 * counter gaps and all-zero blocks become holes; `finish()` sets the length to the virtual size.
 * To a stream: bytes are written front to back and holes are sent as zeros.
 *
 * Speed: file writes are pipelined. Each write() copies the chunk into a pooled slab and
 * returns as soon as fewer than MAX_IN_FLIGHT writes are pending, so the reader parses and
 * hashes the next chunk while the kernel copies this one (libuv runs the pwrites on its thread
 * pool, in parallel). Regions never overlap, so completion order does not matter. A failed
 * write is reported by the next write() or by finish().
 */
import { forEachNonZeroRun, zeros } from './zero';
import { isRandomAccess, type DiskImageWriter, type ImageWriteResult, type RandomAccessTarget, type SequentialTarget } from './types';

/** File-system block granularity for hole detection (ext4/xfs/btrfs blocks are 4 KiB). */
export const RAW_HOLE_GRANULARITY = 4096;
const ZERO_WRITE_PIECE = 4 * 1024 * 1024;
/** Pending pwrites: enough to keep both cores and the thread pool busy, bounded for memory. */
const MAX_IN_FLIGHT = 4;
/** Slab size: one XVA chunk. Larger writes get a one-off buffer. */
const SLAB_BYTES = 1024 * 1024;

export class RawWriter implements DiskImageWriter {
  private written = 0;
  private skipped = 0;
  private end = 0;
  private inFlight = 0;
  private failure: unknown;
  private readonly slabs: Buffer[] = [];
  private wake: (() => void) | undefined;

  constructor(private readonly target: SequentialTarget | RandomAccessTarget, readonly virtualSize: number) {}

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (offset < this.end) throw new Error(`RawWriter: write at ${offset} before ${this.end} (writes must ascend)`);
    this.end = offset + data.length;
    const target = this.target;
    if (!isRandomAccess(target)) {
      await this.fillZerosTo(offset);
      await target.write(data);
      this.written += data.length;
      return;
    }
    const runs: Array<[number, number]> = [];
    forEachNonZeroRun(data, RAW_HOLE_GRANULARITY, (s, e) => runs.push([s, e]));
    let stored = 0;
    for (const [s, e] of runs) stored += e - s;
    this.written += stored;
    this.skipped += data.length - stored;
    if (runs.length === 0) return;
    while (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.failure !== undefined) throw this.failure;
    const slab = this.takeSlab(data.length);
    data.copy(slab);
    const pooled = slab.length === SLAB_BYTES;
    this.inFlight++;
    Promise.all(runs.map(([s, e]) => target.pwrite(slab.subarray(s, e), offset + s)))
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => {
        this.inFlight--;
        if (pooled) this.slabs.push(slab);
        const wake = this.wake;
        this.wake = undefined;
        wake?.();
      });
  }

  /** A whole slab (from the pool) when `length` fits one, else a one-off buffer. */
  private takeSlab(length: number): Buffer {
    if (length > SLAB_BYTES) return Buffer.allocUnsafeSlow(length);
    return this.slabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
  }

  private async drain(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((resolve) => (this.wake = resolve));
  }

  private async fillZerosTo(offset: number): Promise<void> {
    while (this.target.position < offset) {
      await this.target.write(zeros(Math.min(ZERO_WRITE_PIECE, offset - this.target.position)));
    }
  }

  async finish(): Promise<ImageWriteResult> {
    await this.drain();
    if (this.failure !== undefined) throw this.failure;
    const target = this.target;
    if (isRandomAccess(target)) await target.truncate(this.virtualSize);
    else await this.fillZerosTo(this.virtualSize);
    return { bytesWritten: this.written, zeroBytesSkipped: this.skipped, imageSize: this.virtualSize };
  }
}
