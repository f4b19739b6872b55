/**
 * Qcow2Writer: single-pass qcow2 (v3 or v2) onto a seekable target, layout "end" (docs/output-formats.md §1.9).
 *
 *   cluster 0              header — reserved (zeros) at start, written last with pwrite
 *   clusters 1 … D         data clusters, appended in arrival order = ascending guest order
 *   next U clusters        L2 tables of the used L1 indices, ascending
 *   next L1c clusters      L1 table
 *   next `blocks`          refcount blocks (every cluster 0 … total-1 has refcount 1)
 *   next `table`           refcount table
 *
 * State machine: writing (data appended as `write()` delivers it) → finishing (tables appended,
 * optional fsync, header pwritten, length fixed) → finished. Any failure is kept (WriterGuard) and
 * later calls rethrow it; a file without its header is not a qcow2 image, so a crash or error
 * mid-way never leaves a plausible-looking but wrong image.
 *
 * Invariants:
 *  - writes arrive in strictly ascending guest order (DiskImageWriter contract, enforced by the
 *    ClusterAligner), so the k-th allocated guest cluster is host cluster 1 + k: the guest→host
 *    map *is* the AllocationMap (a 1 KiB bitmap per touched 512 MiB region) plus its rank;
 *  - all-zero clusters are never allocated (unallocated reads as zero: no backing file, §1.4);
 *  - consecutive non-zero clusters are contiguous on the host too (appended), so they go out
 *    through a WriteQueue: batched pwritev, several batches in flight while the next chunks are
 *    read and verified, no copy when the caller lends its buffer (BufferLease);
 *  - the final size equals `qcow2ExactFileSize(virtualSize, D, U)` by construction (§1.6).
 */
import { OutputError } from '../../errors';
import { AllocationMap, allocatedGuestBytes } from '../allocation-map';
import { ClusterAligner } from '../cluster-aligner';
import { WriterGuard } from '../writer-guard';
import {
  QCOW2_CLUSTER_SIZE,
  QCOW2_MAX_VIRTUAL_SIZE,
  encodeQcow2L1Table,
  encodeQcow2RefcountTable,
  fillQcow2L2Table,
  fillQcow2RefcountBlock,
  qcow2EndPlacement,
  qcow2Geometry,
  qcow2HeaderFor,
  qcow2Version,
  type Qcow2Compat,
  type Qcow2Geometry,
  type Qcow2Placement,
} from './layout';
import { encodeQcow2Header } from './format';
import type { BufferLease, DiskImageWriter, ImageWriteResult } from '../../io/disk';
import type { RandomAccessTarget, SequentialTarget } from '../../output/target';
import { WriteQueue } from '../write-queue';
import { isZeroRange, zeros } from '../../io/zero';

export interface Qcow2WriterOptions {
  /** Guest disk size in bytes. */
  virtualSize: number;
  /** '1.1' → qcow2 v3 (default), '0.10' → v2 for very old consumers (§1.2). */
  compat?: Qcow2Compat;
  /** fsync the metadata before writing the header (needs a target with `sync()`). Default false. */
  durable?: boolean;
}

export interface Qcow2WriteResult extends ImageWriteResult {
  geometry: Qcow2Geometry;
  placement: Qcow2Placement;
}

/** Clusters of metadata assembled per write when appending tables (1 MiB batches). */
const METADATA_BATCH_CLUSTERS = 16;

/** Validates the virtual size against what qemu can open (§1.3). */
export function assertQcow2VirtualSize(virtualSize: number): void {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) {
    throw new OutputError('OUTPUT_UNSUPPORTED', `invalid qcow2 virtual size ${virtualSize}`);
  }
  if (virtualSize > QCOW2_MAX_VIRTUAL_SIZE) {
    throw new OutputError('OUTPUT_UNSUPPORTED', `qcow2 cannot hold a ${virtualSize}-byte disk (largest L1 table qemu opens covers ${QCOW2_MAX_VIRTUAL_SIZE} bytes)`);
  }
}

/**
 * Appends the L2 tables (ascending used regions) for data clusters stored from host cluster
 * `p.dataCluster` on, batching several tables per write through `scratch`.
 */
export async function appendQcow2L2Tables(target: SequentialTarget, map: AllocationMap, p: Qcow2Placement, scratch: Buffer): Promise<void> {
  const perBatch = Math.floor(scratch.length / QCOW2_CLUSTER_SIZE);
  let filled = 0;
  let nextData = p.dataCluster;
  for (let region = 0; region < map.regionCount; region++) {
    if (map.countInRegion(region) === 0) continue;
    const table = scratch.subarray(filled * QCOW2_CLUSTER_SIZE, (filled + 1) * QCOW2_CLUSTER_SIZE);
    nextData = fillQcow2L2Table(table, map, region, nextData);
    if (++filled === perBatch) {
      await target.write(scratch.subarray(0, filled * QCOW2_CLUSTER_SIZE));
      filled = 0;
    }
  }
  if (filled > 0) await target.write(scratch.subarray(0, filled * QCOW2_CLUSTER_SIZE));
}

/** Appends the refcount blocks: refcount 1 for clusters 0 … totalClusters-1 (§1.5). */
export async function appendQcow2RefcountBlocks(target: SequentialTarget, g: Qcow2Geometry, scratch: Buffer): Promise<void> {
  const perBatch = Math.floor(scratch.length / QCOW2_CLUSTER_SIZE);
  for (let first = 0; first < g.refcountBlocks; first += perBatch) {
    const n = Math.min(perBatch, g.refcountBlocks - first);
    for (let i = 0; i < n; i++) {
      fillQcow2RefcountBlock(scratch.subarray(i * QCOW2_CLUSTER_SIZE, (i + 1) * QCOW2_CLUSTER_SIZE), first + i, g.totalClusters);
    }
    await target.write(scratch.subarray(0, n * QCOW2_CLUSTER_SIZE));
  }
}

type SyncableTarget = RandomAccessTarget & { sync?: () => Promise<void> };

export class Qcow2Writer implements DiskImageWriter {
  private readonly target: SyncableTarget;
  private readonly virtualSize: number;
  private readonly version: 2 | 3;
  private readonly durable: boolean;
  /** Byte position of cluster 0 in the target (the target's position when constructed). */
  private readonly base: number;
  private readonly map: AllocationMap;
  private readonly aligner: ClusterAligner;
  private readonly queue: WriteQueue;
  private started = false;
  private readonly guard = new WriterGuard('Qcow2Writer');

  constructor(target: RandomAccessTarget, options: Qcow2WriterOptions) {
    assertQcow2VirtualSize(options.virtualSize);
    this.target = target;
    this.virtualSize = options.virtualSize;
    this.version = qcow2Version(options.compat);
    this.durable = options.durable ?? false;
    this.base = target.position;
    this.map = new AllocationMap(options.virtualSize);
    this.queue = new WriteQueue(target);
    this.aligner = new ClusterAligner({
      blockSize: QCOW2_CLUSTER_SIZE,
      limit: options.virtualSize,
      sink: (first, data, lease) => this.storeClusters(first, data, lease),
    });
  }

  async write(offset: number, data: Buffer, lease?: BufferLease): Promise<void> {
    return this.guard.write(() => this.aligner.push(offset, data, lease));
  }

  async finish(): Promise<Qcow2WriteResult> {
    return this.guard.finish(async () => {
      await this.aligner.flush();
      await this.reserveHeaderCluster();
      await this.queue.flush();
      const g = qcow2Geometry(this.virtualSize, this.map.count, this.map.usedRegions);
      const p = qcow2EndPlacement(g);
      const expectedDataEnd = this.base + p.l2Cluster * QCOW2_CLUSTER_SIZE;
      if (this.target.position !== expectedDataEnd) {
        throw new OutputError('OUTPUT_IO', `qcow2 writer: data ended at byte ${this.target.position - this.base}, expected ${expectedDataEnd - this.base}`);
      }
      const scratch = Buffer.allocUnsafe(METADATA_BATCH_CLUSTERS * QCOW2_CLUSTER_SIZE);
      await appendQcow2L2Tables(this.target, this.map, p, scratch);
      await this.target.write(encodeQcow2L1Table(g, p, this.map));
      await appendQcow2RefcountBlocks(this.target, g, scratch);
      await this.target.write(encodeQcow2RefcountTable(g, p));
      const imageSize = g.totalClusters * QCOW2_CLUSTER_SIZE;
      if (this.target.position !== this.base + imageSize) {
        throw new OutputError('OUTPUT_IO', `qcow2 writer: wrote ${this.target.position - this.base} bytes, expected ${imageSize}`);
      }
      await this.target.truncate(this.base + imageSize);
      if (this.durable && this.target.sync) await this.target.sync();
      await this.target.pwrite(encodeQcow2Header(qcow2HeaderFor(this.version, g, p)), this.base);
      const stored = allocatedGuestBytes(this.map);
      return {
        bytesWritten: stored,
        zeroBytesSkipped: Math.max(0, this.aligner.bytesDelivered - stored),
        imageSize,
        geometry: g,
        placement: p,
      };
    });
  }

  /** Cluster 0 is written as zeros first so that data clusters can simply be appended. */
  private async reserveHeaderCluster(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (this.target.position !== this.base) {
      throw new OutputError('OUTPUT_IO', 'qcow2 writer: the target was written to by someone else');
    }
    await this.target.write(zeros(QCOW2_CLUSTER_SIZE));
  }

  /** Aligner sink: stores the non-zero clusters of `data`, one write per run of them. */
  private async storeClusters(first: number, data: Buffer, lease?: BufferLease): Promise<void> {
    await this.reserveHeaderCluster();
    let runStart = -1;
    const n = data.length / QCOW2_CLUSTER_SIZE;
    for (let i = 0; i < n; i++) {
      const at = i * QCOW2_CLUSTER_SIZE;
      if (isZeroRange(data, at, at + QCOW2_CLUSTER_SIZE)) {
        if (runStart >= 0) {
          await this.queue.add('append', data.subarray(runStart * QCOW2_CLUSTER_SIZE, at), lease);
          runStart = -1;
        }
        continue;
      }
      this.map.add(first + i);
      if (runStart < 0) runStart = i;
    }
    if (runStart >= 0) await this.queue.add('append', data.subarray(runStart * QCOW2_CLUSTER_SIZE), lease);
  }
}
