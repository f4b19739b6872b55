/**
 * Qcow2StreamWriter: qcow2 (v3 or v2) written strictly front to back — to a pipe, an HTTP body or
 * a tar member — using layout "front" (docs/output-formats.md §1.10):
 *
 *   cluster 0              header (final values: everything is known from the map)
 *   next L1c clusters      L1 table
 *   next `table`           refcount table
 *   next `blocks`          refcount blocks (every cluster 0 … total-1 has refcount 1)
 *   next U clusters        L2 tables of the used L1 indices, ascending
 *   next D clusters        data clusters, ascending guest order
 *
 * It needs the AllocationMap (which guest clusters are non-zero) before the first byte, usually
 * from a first pass with AllocationMapBuilder. The map is authoritative:
 *  - a mapped cluster is written whatever arrives — zeros included, and zeros when nothing
 *    arrives for it at all;
 *  - an unmapped cluster must arrive as zeros (it is dropped); non-zero data there means the
 *    source changed between the passes → XvaError, the image would be wrong.
 *
 * State machine: fresh → (first write or finish) metadata emitted → data: cursor over the map
 * (`nextMapped`, the next mapped cluster not yet emitted) → finish: remaining mapped clusters
 * emitted as zeros, total byte count asserted against `qcow2ExactFileSize` → finished.
 *
 * Output is a pure function of (virtualSize, compat, map, data): deterministic.
 */
import { OutputError, XvaFormatError } from '../../errors';
import { AllocationMap, allocatedGuestBytes } from '../allocation-map';
import { ClusterAligner } from '../cluster-aligner';
import { WriterGuard } from '../writer-guard';
import {
  QCOW2_CLUSTER_SIZE,
  encodeQcow2HeaderCluster,
  encodeQcow2L1Table,
  encodeQcow2RefcountTable,
  qcow2FrontPlacement,
  qcow2Geometry,
  qcow2HeaderFor,
  qcow2Version,
  type Qcow2Compat,
  type Qcow2Geometry,
  type Qcow2Placement,
} from './layout';
import { appendQcow2L2Tables, appendQcow2RefcountBlocks, assertQcow2VirtualSize, type Qcow2WriteResult } from './writer';
import type { DiskImageWriter } from '../../io/disk';
import type { SequentialTarget } from '../../output/target';
import { isAllZero, zeros } from '../../io/zero';

export interface Qcow2StreamWriterOptions {
  /** Guest disk size in bytes; must equal `map.virtualSize`. */
  virtualSize: number;
  /** Non-zero clusters, from a first pass (AllocationMapBuilder). */
  map: AllocationMap;
  /** '1.1' → qcow2 v3 (default), '0.10' → v2 (§1.2). */
  compat?: Qcow2Compat;
}

/** Clusters of metadata assembled per write (1 MiB batches). */
const METADATA_BATCH_CLUSTERS = 16;
/** Largest zero write when filling mapped clusters that never arrived. */
const ZERO_FILL_BYTES = 4 * 1024 * 1024;

export class Qcow2StreamWriter implements DiskImageWriter {
  private readonly target: SequentialTarget;
  private readonly map: AllocationMap;
  private readonly version: 2 | 3;
  private readonly base: number;
  private readonly geometry: Qcow2Geometry;
  private readonly placement: Qcow2Placement;
  private readonly aligner: ClusterAligner;
  /** The next mapped guest cluster not yet emitted, or -1 when all are out. */
  private nextMapped: number;
  private metadataDone = false;
  private readonly guard = new WriterGuard('Qcow2StreamWriter');

  constructor(target: SequentialTarget, options: Qcow2StreamWriterOptions) {
    assertQcow2VirtualSize(options.virtualSize);
    if (options.map.virtualSize !== options.virtualSize) {
      throw new RangeError(`allocation map is for ${options.map.virtualSize} bytes, not ${options.virtualSize}`);
    }
    this.target = target;
    this.map = options.map;
    this.version = qcow2Version(options.compat);
    this.base = target.position;
    this.geometry = qcow2Geometry(options.virtualSize, this.map.count, this.map.usedRegions);
    this.placement = qcow2FrontPlacement(this.geometry);
    this.nextMapped = this.map.nextAllocated(0);
    this.aligner = new ClusterAligner({
      blockSize: QCOW2_CLUSTER_SIZE,
      limit: options.virtualSize,
      sink: (first, data) => this.emitClusters(first, data),
    });
  }

  /** The exact number of bytes this writer will produce (= qcow2ExactFileSize for the map). */
  get imageSize(): number {
    return this.geometry.totalClusters * QCOW2_CLUSTER_SIZE;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    return this.guard.write(() => this.aligner.push(offset, data));
  }

  async finish(): Promise<Qcow2WriteResult> {
    return this.guard.finish(async () => {
      await this.aligner.flush();
      await this.emitMetadata();
      await this.emitMappedZerosBefore(Number.POSITIVE_INFINITY);
      const written = this.target.position - this.base;
      if (written !== this.imageSize) {
        throw new OutputError('OUTPUT_IO', `qcow2 stream writer produced ${written} bytes, expected exactly ${this.imageSize}`);
      }
      const stored = allocatedGuestBytes(this.map);
      return {
        bytesWritten: stored,
        zeroBytesSkipped: Math.max(0, this.aligner.bytesDelivered - stored),
        imageSize: this.imageSize,
        geometry: this.geometry,
        placement: this.placement,
      };
    });
  }

  /** Header, L1, refcount table, refcount blocks, L2 tables — once, before any data. */
  private async emitMetadata(): Promise<void> {
    if (this.metadataDone) return;
    this.metadataDone = true;
    if (this.target.position !== this.base) {
      throw new OutputError('OUTPUT_IO', 'qcow2 stream writer: the target was written to by someone else');
    }
    const g = this.geometry;
    const p = this.placement;
    await this.target.write(encodeQcow2HeaderCluster(qcow2HeaderFor(this.version, g, p)));
    await this.target.write(encodeQcow2L1Table(g, p, this.map));
    await this.target.write(encodeQcow2RefcountTable(g, p));
    const scratch = Buffer.allocUnsafe(METADATA_BATCH_CLUSTERS * QCOW2_CLUSTER_SIZE);
    await appendQcow2RefcountBlocks(this.target, g, scratch);
    await appendQcow2L2Tables(this.target, this.map, p, scratch);
    const expected = this.base + p.dataCluster * QCOW2_CLUSTER_SIZE;
    if (this.target.position !== expected) {
      throw new OutputError('OUTPUT_IO', `qcow2 stream writer: metadata ended at byte ${this.target.position - this.base}, expected ${expected - this.base}`);
    }
  }

  /** Emits zero clusters for every mapped cluster below `cluster` that has not been emitted. */
  private async emitMappedZerosBefore(cluster: number): Promise<void> {
    let pending = 0;
    while (this.nextMapped >= 0 && this.nextMapped < cluster) {
      pending++;
      if (pending * QCOW2_CLUSTER_SIZE === ZERO_FILL_BYTES) {
        await this.target.write(zeros(ZERO_FILL_BYTES));
        pending = 0;
      }
      this.nextMapped = this.map.nextAllocated(this.nextMapped + 1);
    }
    if (pending > 0) await this.target.write(zeros(pending * QCOW2_CLUSTER_SIZE));
  }

  /** Aligner sink: writes the mapped clusters of `data` (runs in one write), checks the rest. */
  private async emitClusters(first: number, data: Buffer): Promise<void> {
    await this.emitMetadata();
    await this.emitMappedZerosBefore(first);
    const n = data.length / QCOW2_CLUSTER_SIZE;
    let runStart = -1;
    for (let i = 0; i < n; i++) {
      const cluster = first + i;
      const at = i * QCOW2_CLUSTER_SIZE;
      if (cluster === this.nextMapped) {
        if (runStart < 0) runStart = i;
        this.nextMapped = this.map.nextAllocated(cluster + 1);
        continue;
      }
      if (runStart >= 0) {
        await this.target.write(data.subarray(runStart * QCOW2_CLUSTER_SIZE, at));
        runStart = -1;
      }
      if (!isAllZero(data.subarray(at, at + QCOW2_CLUSTER_SIZE))) {
        throw new XvaFormatError(
          'XVA_BAD_ENTRY',
          `source changed between passes: guest cluster ${cluster} (byte ${cluster * QCOW2_CLUSTER_SIZE}) holds data but was all zeros when the allocation map was built`,
        );
      }
    }
    if (runStart >= 0) await this.target.write(data.subarray(runStart * QCOW2_CLUSTER_SIZE));
  }
}
