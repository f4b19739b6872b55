/**
 * WriteQueue: the file writes of the raw and qcow2 writers, batched and kept in flight.
 *
 * Why: writing a chunk costs the kernel a copy into the page cache. Awaiting each write before
 * reading and hashing the next chunk leaves the main thread idle for most of a conversion (a
 * profile of the qcow2 path showed it 64 % idle). Here writes are queued and sent without
 * waiting for them, up to MAX_IN_FLIGHT batches at once on libuv's thread pool, so the kernel
 * copies chunk N while the main thread verifies chunk N+1 — the queue depth qemu-img uses too.
 *
 * Batching: contiguous pieces (consecutive chunks of a disk usually are; appended qcow2 clusters
 * always are) are gathered up to BATCH_BYTES and go out as one pwritev: fewer system calls and
 * thread-pool round trips, and no copy.
 *
 * Ownership: a piece offered with a BufferLease is written straight from the caller's buffer,
 * which the queue holds until the write completed. A piece without a lease must be free again
 * when `add()` resolves, so it is copied into the batch's slab (reused, BATCH_BYTES each).
 *
 * Errors: a failed write is reported by the next `add()` or by `flush()`; nothing more is sent.
 */
import { allocAligned } from '../io/aligned-buffer';
import type { BufferLease } from '../io/disk';
import type { RandomAccessTarget } from '../output/target';

/** Bytes per batch (one pwritev). */
export const BATCH_BYTES = 4 * 1024 * 1024;
/** Batches being written at once: enough to keep the thread pool busy, bounded memory. */
export const MAX_IN_FLIGHT = 2;

/** Where a piece goes: a byte position, or 'append' (after everything queued before). */
export type WritePosition = number | 'append';

interface Batch {
  /** Target byte position of pieces[0]; undefined = append at the target's position when sent. */
  position: number | undefined;
  pieces: Buffer[];
  bytes: number;
  releases: Array<() => void>;
  /** Copy space for pieces without a lease (taken on first use). */
  slab: Buffer | undefined;
  slabUsed: number;
}

export class WriteQueue {
  private batch: Batch | undefined;
  private inFlight = 0;
  private failure: { err: unknown } | undefined;
  private readonly slabs: Buffer[] = [];
  private waiters: Array<() => void> = [];
  private readonly maxInFlight: number;

  constructor(
    private readonly target: RandomAccessTarget,
    options: { maxInFlight?: number } = {},
  ) {
    // Without the vectored calls, a batch is several awaited writes; overlapping batches could
    // then interleave their appends, so such a target gets one batch at a time.
    this.maxInFlight = target.pwritev && target.writev ? (options.maxInFlight ?? MAX_IN_FLIGHT) : 1;
  }

  /** Queues `data` for `at`. Resolves when the queue can take more; rejects with an earlier write's error. */
  async add(at: WritePosition, data: Buffer, lease?: BufferLease): Promise<void> {
    if (this.failure) await this.failed();
    let off = 0;
    while (off < data.length) {
      let b = this.batch;
      const contiguous = b !== undefined && (at === 'append' ? b.position === undefined : b.position !== undefined && b.position + b.bytes === at + off);
      if (b && (!contiguous || b.bytes === BATCH_BYTES)) {
        await this.send(b);
        b = undefined;
      }
      if (!b) {
        b = this.batch = { position: at === 'append' ? undefined : at + off, pieces: [], bytes: 0, releases: [], slab: undefined, slabUsed: 0 };
      }
      const n = Math.min(data.length - off, BATCH_BYTES - b.bytes);
      const piece = data.subarray(off, off + n);
      if (lease) {
        b.releases.push(lease.hold());
        b.pieces.push(piece);
      } else {
        b.slab ??= this.slabs.pop() ?? allocAligned(BATCH_BYTES);
        piece.copy(b.slab, b.slabUsed);
        b.pieces.push(b.slab.subarray(b.slabUsed, b.slabUsed + n));
        b.slabUsed += n;
      }
      b.bytes += n;
      off += n;
    }
  }

  /** Sends what is batched and waits for every write; rethrows the first failure. */
  async flush(): Promise<void> {
    if (this.batch && !this.failure) await this.send(this.batch);
    await this.failed();
  }

  /**
   * Waits until no write is in flight, then rethrows the first failure, if any. Waiting first
   * matters: the caller closes the file after an error, and a write still queued on the thread
   * pool must not find its descriptor number reused by another file. After a failure nothing
   * more is written: what is batched is dropped (its leases released).
   */
  private async failed(): Promise<void> {
    while (this.inFlight > 0) await this.waitForSlot();
    if (!this.failure) return;
    if (this.batch) this.settle(this.batch);
    this.batch = undefined;
    throw this.failure.err;
  }

  private waitForSlot(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private async send(b: Batch): Promise<void> {
    this.batch = undefined;
    while (this.inFlight >= this.maxInFlight) await this.waitForSlot();
    if (this.failure) {
      this.settle(b);
      await this.failed();
    }
    this.inFlight++;
    this.write(b)
      .catch((err: unknown) => {
        this.failure ??= { err };
      })
      .finally(() => {
        this.inFlight--;
        this.settle(b);
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      });
  }

  private write(b: Batch): Promise<void> {
    const t = this.target;
    if (b.position !== undefined) {
      if (t.pwritev) return t.pwritev(b.pieces, b.position);
      return b.pieces.reduce<Promise<number>>((p, piece) => p.then((at) => t.pwrite(piece, at).then(() => at + piece.length)), Promise.resolve(b.position)).then(() => {});
    }
    if (t.writev) return t.writev(b.pieces);
    return b.pieces.reduce<Promise<void>>((p, piece) => p.then(() => t.write(piece)), Promise.resolve());
  }

  /** The batch's buffers are free again: release leases, keep the slab for reuse. */
  private settle(b: Batch): void {
    for (const release of b.releases) release();
    b.releases = [];
    if (b.slab) this.slabs.push(b.slab);
    b.slab = undefined;
  }
}
