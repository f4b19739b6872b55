/**
 * ClusterAligner: turns the DiskImageWriter input — `write(offset, data)` calls with strictly
 * ascending, non-overlapping, arbitrarily aligned offsets (see types.ts) — into runs of whole,
 * aligned blocks (64 KiB qcow2 clusters / VMDK grains) delivered in ascending block order.
 *
 * State machine (one instance per disk):
 *
 *   idle ──push(partial block)──▶ pending(block b, buffer zero-filled, bytes copied in)
 *   pending(b) ──push touching b──▶ pending(b) (more bytes copied; gaps stay zero)
 *   pending(b) ──b complete, or push beyond b, or flush()──▶ emit(b) ──▶ idle
 *   idle ──push(whole aligned blocks)──▶ emit(subarray of the caller's data, no copy) ──▶ idle
 *
 * Invariants:
 *  - at most one partial block is buffered (`pending`, one reusable block-sized buffer);
 *  - every emitted block index is larger than the previous one (blocks are emitted once);
 *  - gaps inside a block read as zeros, blocks never touched are never emitted (they are holes);
 *  - the block containing the end of the disk (`limit`) is emitted as a whole block, zero padded
 *    past `limit`, as soon as its last byte has arrived;
 *  - bytes past `limit` must be zero (they are dropped), otherwise the push fails;
 *  - the sink owns `data` only until its promise resolves: it is either the caller's buffer
 *    (valid until the caller's `push` resolves) or `pending`, which is reused afterwards. The
 *    caller's BufferLease, if any, is passed on with the caller's own bytes (never with `pending`).
 */
import { XvaFormatError } from '../errors';
import type { BufferLease } from '../io/disk';
import { isAllZero } from '../io/zero';

/**
 * Receives `data.length / blockSize` consecutive whole blocks starting at block `firstBlock`.
 * `data` may only be used until the returned promise resolves, unless a `lease` comes with it.
 */
export type AlignedBlockSink = (firstBlock: number, data: Buffer, lease?: BufferLease) => Promise<void>;

export interface ClusterAlignerOptions {
  /** Block size in bytes (CLUSTER_SIZE for qcow2 clusters and VMDK grains). */
  blockSize: number;
  /** Disk size in bytes: data past it must be zero; the last block is padded to a whole block. */
  limit: number;
  sink: AlignedBlockSink;
}

export class ClusterAligner {
  readonly blockSize: number;
  readonly limit: number;
  private readonly sink: AlignedBlockSink;
  /** End (exclusive) of the last pushed range: the next push must start at or after it. */
  private cursor = 0;
  /** Bytes handed to `push` (before clipping at `limit`). */
  private delivered = 0;
  private pending: Buffer | undefined;
  /** Index of the block held in `pending`, or -1 when idle. */
  private pendingBlock = -1;

  constructor(options: ClusterAlignerOptions) {
    const { blockSize, limit } = options;
    if (!Number.isSafeInteger(blockSize) || blockSize <= 0) throw new RangeError(`invalid block size ${blockSize}`);
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`invalid limit ${limit}`);
    this.blockSize = blockSize;
    this.limit = limit;
    this.sink = options.sink;
  }

  /** Bytes delivered through `push` so far. */
  get bytesDelivered(): number {
    return this.delivered;
  }

  /** Number of blocks covering `limit` (the last may be partial on the guest side). */
  get blockCount(): number {
    return Math.ceil(this.limit / this.blockSize);
  }

  async push(offset: number, data: Buffer, lease?: BufferLease): Promise<void> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new XvaFormatError('XVA_CHUNK_ORDER', `invalid write offset ${offset}`);
    }
    if (offset < this.cursor) {
      throw new XvaFormatError('XVA_CHUNK_ORDER', `write at byte ${offset} overlaps or precedes the previous write ending at byte ${this.cursor}`);
    }
    this.cursor = offset + data.length;
    this.delivered += data.length;
    if (this.cursor > this.limit) {
      const inside = Math.max(0, this.limit - offset);
      if (!isAllZero(data.subarray(inside))) {
        throw new XvaFormatError('XVA_DATA_PAST_END', `non-zero data past the end of the ${this.limit}-byte disk (write at byte ${offset}, ${data.length} bytes)`);
      }
      data = data.subarray(0, inside);
    }
    if (data.length === 0) return;

    const bs = this.blockSize;
    let pos = offset;
    let src = 0;
    const end = offset + data.length;
    const block = Math.floor(pos / bs);
    if (this.pendingBlock >= 0 && this.pendingBlock !== block) await this.emitPending();

    // Head: a block that is already pending or that this write enters in its middle.
    if (this.pendingBlock === block || pos % bs !== 0) {
      const n = Math.min(bs - (pos % bs), end - pos);
      this.copyIntoPending(block, pos % bs, data, src, n);
      pos += n;
      src += n;
      if (this.pendingComplete(pos)) await this.emitPending();
      if (pos === end) return;
    }

    // Middle: whole aligned blocks straight from the caller's buffer.
    const whole = Math.floor((end - pos) / bs) * bs;
    if (whole > 0) {
      await this.sink(pos / bs, data.subarray(src, src + whole), lease);
      pos += whole;
      src += whole;
    }

    // Tail: a partial block; kept until it completes (or is the last block of the disk).
    if (pos < end) {
      this.copyIntoPending(pos / bs, 0, data, src, end - pos);
      pos = end;
      if (this.pendingComplete(pos)) await this.emitPending();
    }
  }

  /** Emits the buffered partial block, if any (zero padded). Call once all data is pushed. */
  async flush(): Promise<void> {
    if (this.pendingBlock >= 0) await this.emitPending();
  }

  private copyIntoPending(block: number, at: number, data: Buffer, src: number, n: number): void {
    if (this.pendingBlock !== block) {
      this.pending ??= Buffer.allocUnsafe(this.blockSize);
      this.pending.fill(0);
      this.pendingBlock = block;
    }
    data.copy(this.pending!, at, src, src + n);
  }

  /** True when `pos` (just past the last copied byte) ends the pending block or the disk. */
  private pendingComplete(pos: number): boolean {
    const blockEnd = Math.min((this.pendingBlock + 1) * this.blockSize, this.limit);
    return pos >= blockEnd;
  }

  private async emitPending(): Promise<void> {
    const block = this.pendingBlock;
    this.pendingBlock = -1;
    await this.sink(block, this.pending!);
  }
}
