/**
 * Raw (flat) disk images.
 *
 * To a regular file: only non-zero 4 KiB blocks are written (pwrite at the guest offset), so
 * counter gaps and all-zero blocks become holes; `finish()` sets the length to the virtual size.
 * To a stream: bytes are written front to back and holes are sent as zeros.
 *
 * Speed, for files: writes are batched and pipelined. Non-zero runs are copied into a batch
 * slab while they stay contiguous (consecutive chunks usually are), and a full or broken batch
 * goes out as one pwrite — fewer, larger system calls and thread-pool wake-ups. Up to
 * MAX_IN_FLIGHT batches are pending while the reader parses and hashes the next chunks (libuv
 * runs the pwrites on its thread pool). Regions never overlap, so completion order does not
 * matter. A failed write is reported by the next write() or by finish().
 */
import { forEachNonZeroRun, zeros } from './zero';
import { isRandomAccess, type DiskImageWriter, type ImageWriteResult, type RandomAccessTarget, type SequentialTarget } from './types';

/** File-system block granularity for hole detection (ext4/xfs/btrfs blocks are 4 KiB). */
export const RAW_HOLE_GRANULARITY = 4096;
const ZERO_WRITE_PIECE = 4 * 1024 * 1024;
/** Bytes per batched pwrite. */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Batches pending at once: keeps the thread pool busy, bounds memory to a few tens of MiB. */
const MAX_IN_FLIGHT = 3;

interface Batch {
  slab: Buffer;
  /** Guest offset of slab[0]. */
  offset: number;
  length: number;
}

export class RawWriter implements DiskImageWriter {
  private written = 0;
  private skipped = 0;
  private end = 0;
  private inFlight = 0;
  private failure: unknown;
  private batch: Batch | undefined;
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
    for (const [s, e] of runs) {
      this.written += e - s;
      await this.append(target, data, s, e, offset + s);
    }
    this.skipped += data.length - runs.reduce((n, [s, e]) => n + e - s, 0);
  }

  /** Adds data[s, e) (guest offset `at`) to the current batch, sending batches as they fill. */
  private async append(target: RandomAccessTarget, data: Buffer, s: number, e: number, at: number): Promise<void> {
    while (s < e) {
      let b = this.batch;
      if (b && (b.offset + b.length !== at || b.length === b.slab.length)) {
        await this.send(target, b);
        b = undefined;
      }
      if (!b) {
        b = this.batch = { slab: this.slabs.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES), offset: at, length: 0 };
      }
      const n = Math.min(e - s, b.slab.length - b.length);
      data.copy(b.slab, b.length, s, s + n);
      b.length += n;
      s += n;
      at += n;
    }
  }

  private async send(target: RandomAccessTarget, b: Batch): Promise<void> {
    this.batch = undefined;
    while (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.failure !== undefined) throw this.failure;
    this.inFlight++;
    target
      .pwrite(b.slab.subarray(0, b.length), b.offset)
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => {
        this.inFlight--;
        this.slabs.push(b.slab);
        const wake = this.wake;
        this.wake = undefined;
        wake?.();
      });
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
    const target = this.target;
    if (isRandomAccess(target)) {
      if (this.batch && this.failure === undefined) await this.send(target, this.batch);
      await this.drain();
      if (this.failure !== undefined) throw this.failure;
      await target.truncate(this.virtualSize);
    } else {
      await this.fillZerosTo(this.virtualSize);
    }
    return { bytesWritten: this.written, zeroBytesSkipped: this.skipped, imageSize: this.virtualSize };
  }
}
