/**
 * VmdkWriter: streamOptimized VMDK written strictly front to back (works on a pipe), in the
 * layout of docs/output-formats.md §2.2, which VmdkExtentEmitter (extent-emitter.ts) lays out.
 *
 * State machine: header/descriptor emitted on first use → grains (each non-zero 64 KiB grain is
 * deflated — zlib-wrapped, RFC 1950, §2.2 — and appended; crossing into a new 512-grain group closes
 * the previous grain table) → finish: last GT, GD, footer, EOS → finished. A failure is sticky
 * (WriterGuard).
 *
 * Invariants:
 *  - grains are emitted in ascending LBA order, in the order `write()` delivered them, even when
 *    several are deflated concurrently (on the thread pool; results are re-sequenced in a FIFO);
 *  - besides the emitter's tables and staging, only a bounded number of in-flight 1 MiB batches
 *    stay in memory;
 *  - the last grain is always a whole 64 KiB grain (zero padded past the capacity): VirtualBox
 *    inflates every grain to exactly one grain, qemu accepts either;
 *  - a grain's stored payload is never larger than its "stored" zlib encoding (65552 bytes, §2.4),
 *    so every grain takes at most 129 sectors and `vmdkUpperBoundSize` is a true bound; with
 *    `level: 0` every grain takes exactly 129 sectors and `vmdkExactStoredSize` is the exact size.
 */
import { randomInt } from 'node:crypto';
import { OutputError } from '../../errors';
import { ClusterAligner } from '../cluster-aligner';
import { WriterGuard } from '../writer-guard';
import type { DiskImageWriter, ImageWriteResult } from '../../io/disk';
import type { SequentialTarget } from '../../output/target';
import { isAllZero } from '../../io/zero';
import { VmdkExtentEmitter } from './extent-emitter';
import { VMDK_CID_MAX_EXCLUSIVE, VMDK_GRAIN_SIZE, VMDK_MAX_FILE_SECTORS, vmdkCapacitySectors, type VmdkDescriptorOptions } from './format';
import { defaultDeflateStreams, InlineDeflater, ThreadPoolDeflater, type DeflatedBatch, type GrainDeflater } from './grain-deflaters';
import { vmdkGrainCount, vmdkSizeBound } from './size';

export interface VmdkWriterOptions {
  /** Guest disk size in bytes. */
  virtualSize: number;
  /**
   * zlib level 0-9 (default 6, zlib's default, as qemu-img uses). Level 0 writes stored deflate
   * blocks: larger, but the file size is exactly `vmdkExactStoredSize` (§2.4).
   */
  level?: number;
  /**
   * Grains deflated at once on libuv's thread pool (default 4, the pool's size, on a multi-core
   * machine; 0 = deflate on the calling thread). Ignored for level 0.
   */
  workers?: number;
  /** Descriptor CID; random by default (injectable for reproducible output). */
  cid?: number;
  /** Name in the descriptor's extent line (default "disk.vmdk"). */
  extentName?: string;
  /** ddb.adapterType (default "lsilogic"). */
  adapterType?: VmdkDescriptorOptions['adapterType'];
}

export interface VmdkWriteResult extends ImageWriteResult {
  /** Grains stored (non-zero 64 KiB grains). */
  grains: number;
  /** Grain tables written. */
  grainTables: number;
}

const DEFAULT_LEVEL = 6;
/** Grains per deflate batch: 16 × 64 KiB = 1 MiB (one XVA chunk). */
const BATCH_GRAINS = 16;
/**
 * Batches in flight per deflate stream before the writer waits for the oldest one (four streams
 * × one batch keep the pool busy; more only adds RSS).
 */
const IN_FLIGHT_PER_STREAM = 1;

interface PendingBatch {
  firstGrains: number[];
  result: Promise<DeflatedBatch>;
}

export class VmdkWriter implements DiskImageWriter {
  private readonly virtualSize: number;
  private readonly level: number;
  private readonly aligner: ClusterAligner;
  private readonly emitter: VmdkExtentEmitter;
  private readonly deflater: GrainDeflater | undefined;
  private readonly maxInFlight: number;
  private readonly guard: WriterGuard;
  /** Batch being filled (deflate mode). */
  private batch: Buffer | undefined;
  private batchGrains: number[] = [];
  private readonly inFlight: PendingBatch[] = [];
  private readonly spareBatches: Buffer[] = [];

  constructor(target: SequentialTarget, options: VmdkWriterOptions) {
    const { virtualSize } = options;
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new OutputError('OUTPUT_UNSUPPORTED', `invalid VMDK virtual size ${virtualSize}`);
    this.level = options.level ?? DEFAULT_LEVEL;
    if (!Number.isInteger(this.level) || this.level < 0 || this.level > 9) throw new RangeError(`invalid zlib level ${options.level}`);
    if (vmdkCapacitySectors(virtualSize) > VMDK_MAX_FILE_SECTORS) {
      throw new OutputError('OUTPUT_UNSUPPORTED', `a ${virtualSize}-byte disk exceeds the 2 TiB capacity of a VMDK sparse extent`);
    }
    const cid = options.cid ?? randomInt(0, VMDK_CID_MAX_EXCLUSIVE);
    if (!Number.isInteger(cid) || cid < 0 || cid >= VMDK_CID_MAX_EXCLUSIVE) throw new RangeError(`invalid VMDK CID ${cid}`);
    this.virtualSize = virtualSize;
    this.emitter = new VmdkExtentEmitter(target, virtualSize, {
      cid,
      extentName: options.extentName ?? 'disk.vmdk',
      adapterType: options.adapterType ?? 'lsilogic',
    });
    const streams = this.level === 0 ? 0 : options.workers ?? defaultDeflateStreams();
    this.deflater = this.level === 0 ? undefined : streams > 0 ? new ThreadPoolDeflater(this.level, streams) : new InlineDeflater(this.level);
    this.maxInFlight = Math.max(1, streams * IN_FLIGHT_PER_STREAM);
    this.guard = new WriterGuard('VmdkWriter', () => this.releaseDeflater());
    this.aligner = new ClusterAligner({
      blockSize: VMDK_GRAIN_SIZE,
      limit: virtualSize,
      sink: (first, data) => this.onGrains(first, data),
    });
  }

  async write(offset: number, data: Buffer): Promise<void> {
    return this.guard.write(() => this.aligner.push(offset, data));
  }

  async finish(): Promise<VmdkWriteResult> {
    return this.guard.finish(async () => {
      await this.aligner.flush();
      await this.emitter.start();
      this.submitBatch();
      await this.drain(0);
      await this.emitter.finish();
      const { size, grains, grainTables } = this.emitter;
      const bound = vmdkSizeBound(this.virtualSize, grains, grainTables);
      if (size > bound || (this.level === 0 && size !== bound)) {
        throw new OutputError('OUTPUT_IO', `VMDK writer: produced ${size} bytes, size bound is ${bound}`);
      }
      await this.deflater?.close();
      let stored = grains * VMDK_GRAIN_SIZE;
      if (this.emitter.lastGrainStored) stored -= vmdkGrainCount(this.virtualSize) * VMDK_GRAIN_SIZE - this.virtualSize;
      return {
        bytesWritten: stored,
        zeroBytesSkipped: Math.max(0, this.aligner.bytesDelivered - stored),
        imageSize: size,
        grains,
        grainTables,
      };
    });
  }

  /** After a failure: settles in-flight batches so no rejection goes unobserved, then drops the deflate streams. */
  private async releaseDeflater(): Promise<void> {
    for (const p of this.inFlight.splice(0)) p.result.catch(() => undefined);
    await this.deflater?.close().catch(() => undefined);
  }

  /** Aligner sink: whole grains starting at grain `first`. */
  private async onGrains(first: number, data: Buffer): Promise<void> {
    await this.emitter.start();
    const n = data.length / VMDK_GRAIN_SIZE;
    for (let i = 0; i < n; i++) {
      const grain = data.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE);
      if (isAllZero(grain)) continue;
      if (this.deflater === undefined) {
        await this.emitter.appendGrain(first + i, grain, undefined);
      } else {
        // Copy into the current batch: the caller's buffer is only ours until this call returns.
        this.batch ??= this.spareBatches.pop() ?? Buffer.allocUnsafeSlow(BATCH_GRAINS * VMDK_GRAIN_SIZE);
        grain.copy(this.batch, this.batchGrains.length * VMDK_GRAIN_SIZE);
        this.batchGrains.push(first + i);
        if (this.batchGrains.length === BATCH_GRAINS) {
          this.submitBatch();
          await this.drain(this.maxInFlight);
        }
      }
    }
  }

  private submitBatch(): void {
    if (this.deflater === undefined || this.batch === undefined || this.batchGrains.length === 0) return;
    const result = this.deflater.deflate(this.batch, this.batchGrains.length);
    this.inFlight.push({ firstGrains: this.batchGrains, result });
    this.batch = undefined;
    this.batchGrains = [];
  }

  /** Emits finished batches, oldest first, until at most `keep` remain in flight. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const { firstGrains, result } = this.inFlight.shift()!;
      const batch = await result;
      let at = 0;
      for (let i = 0; i < firstGrains.length; i++) {
        const len = batch.lengths[i]!;
        const raw = batch.input.subarray(i * VMDK_GRAIN_SIZE, (i + 1) * VMDK_GRAIN_SIZE);
        await this.emitter.appendGrain(firstGrains[i]!, raw, batch.out.subarray(at, at + len));
        at += len;
      }
      if (batch.input.length === BATCH_GRAINS * VMDK_GRAIN_SIZE) this.spareBatches.push(batch.input);
    }
  }
}
