/**
 * AllocationMap: the set of 64 KiB guest clusters that hold non-zero data.
 *
 * Representation: the guest is cut into regions of QCOW2_L2_ENTRIES (8192) clusters — exactly the
 * span of one qcow2 L2 table, 512 MiB (docs/output-formats.md §1.4). A region owns a 1 KiB bitmap
 * (Uint32Array of 256 words), allocated the first time one of its clusters is added. So the map
 * costs ~1 KiB per *touched* 512 MiB plus one slot per region: a fully allocated 2 TiB disk needs
 * 4 MiB, a sparse one almost nothing.
 *
 * Invariants: `count` = number of set bits; `usedRegions` = regions with at least one bit set
 * (= qcow2 L2 tables needed); `regionCounts[r]` = bits set in region r. Bits are never cleared.
 *
 * AllocationMapBuilder is a DiskImageWriter that only records which clusters are non-zero: the
 * first pass of `measure` and of the two-pass (front layout) qcow2 stream writer.
 */
import { ClusterAligner } from './cluster-aligner';
import { QCOW2_L2_ENTRIES, type Qcow2ClusterSource } from './qcow2/layout';
import { CLUSTER_SIZE } from './types';
import type { DiskImageWriter, ImageWriteResult } from '../io/disk';
import { isAllZero } from '../io/zero';

/** Clusters per region: one qcow2 L2 table (§1.4). */
export const CLUSTERS_PER_REGION = QCOW2_L2_ENTRIES;
const BITS_PER_WORD = 32;
const WORD_SHIFT = 5;
const WORD_MASK = BITS_PER_WORD - 1;
const WORDS_PER_REGION = CLUSTERS_PER_REGION / BITS_PER_WORD;

/** Index of the lowest set bit of a non-zero u32. */
function lowestBit(word: number): number {
  return BITS_PER_WORD - 1 - Math.clz32(word & -word);
}

function popcount(word: number): number {
  let v = word - ((word >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

export interface AllocationStats {
  virtualSize: number;
  /** Guest clusters holding data (= qcow2 data clusters = VMDK grains stored). */
  allocatedClusters: number;
  /** Regions of 8192 clusters with data (= qcow2 L2 tables in our layouts). */
  usedL2Tables: number;
}

export class AllocationMap implements Qcow2ClusterSource {
  readonly virtualSize: number;
  readonly clusterSize = CLUSTER_SIZE;
  /** Guest clusters covering the virtual size. */
  readonly clusterCount: number;
  readonly regionCount: number;
  private readonly bitmaps: (Uint32Array | undefined)[];
  private readonly perRegion: Uint32Array;
  private allocated = 0;
  private regionsUsed = 0;

  constructor(virtualSize: number) {
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new RangeError(`invalid virtual size ${virtualSize}`);
    this.virtualSize = virtualSize;
    this.clusterCount = Math.ceil(virtualSize / CLUSTER_SIZE);
    this.regionCount = Math.ceil(this.clusterCount / CLUSTERS_PER_REGION);
    this.bitmaps = new Array<Uint32Array | undefined>(this.regionCount);
    this.perRegion = new Uint32Array(this.regionCount);
  }

  /** Builds a map from a list of cluster indices (any order, duplicates allowed). */
  static fromClusters(virtualSize: number, clusters: Iterable<number>): AllocationMap {
    const map = new AllocationMap(virtualSize);
    for (const c of clusters) map.add(c);
    return map;
  }

  /** Number of allocated clusters. */
  get count(): number {
    return this.allocated;
  }

  /** Number of regions (L2 tables) holding at least one allocated cluster. */
  get usedRegions(): number {
    return this.regionsUsed;
  }

  get stats(): AllocationStats {
    return { virtualSize: this.virtualSize, allocatedClusters: this.allocated, usedL2Tables: this.regionsUsed };
  }

  /** Approximate heap bytes held by the bitmaps and counters. */
  get memoryBytes(): number {
    return this.regionsUsed * WORDS_PER_REGION * 4 + this.regionCount * 12;
  }

  add(cluster: number): void {
    if (!Number.isInteger(cluster) || cluster < 0 || cluster >= this.clusterCount) {
      throw new RangeError(`cluster ${cluster} outside 0..${this.clusterCount - 1}`);
    }
    const region = Math.floor(cluster / CLUSTERS_PER_REGION);
    let bits = this.bitmaps[region];
    if (bits === undefined) {
      bits = new Uint32Array(WORDS_PER_REGION);
      this.bitmaps[region] = bits;
      this.regionsUsed++;
    }
    const inRegion = cluster - region * CLUSTERS_PER_REGION;
    const word = inRegion >>> WORD_SHIFT;
    const mask = 1 << (inRegion & WORD_MASK);
    if ((bits[word]! & mask) !== 0) return;
    bits[word]! |= mask;
    this.perRegion[region]!++;
    this.allocated++;
  }

  has(cluster: number): boolean {
    if (cluster < 0 || cluster >= this.clusterCount) return false;
    const region = Math.floor(cluster / CLUSTERS_PER_REGION);
    const bits = this.bitmaps[region];
    if (bits === undefined) return false;
    const inRegion = cluster - region * CLUSTERS_PER_REGION;
    return (bits[inRegion >>> WORD_SHIFT]! & (1 << (inRegion & WORD_MASK))) !== 0;
  }

  /** Allocated clusters in region `region`. */
  countInRegion(region: number): number {
    return this.perRegion[region] ?? 0;
  }

  /** Smallest allocated cluster ≥ `from`, or -1. */
  nextAllocated(from: number): number {
    if (from < 0) from = 0;
    for (let region = Math.floor(from / CLUSTERS_PER_REGION); region < this.regionCount; region++) {
      const bits = this.bitmaps[region];
      if (bits === undefined) continue;
      const base = region * CLUSTERS_PER_REGION;
      const start = Math.max(0, from - base);
      let word = start >>> WORD_SHIFT;
      // Mask off bits below `start` in its word.
      let w = bits[word]! & ~((1 << (start & WORD_MASK)) - 1);
      for (;;) {
        if (w !== 0) return base + (word << WORD_SHIFT) + lowestBit(w);
        if (++word >= WORDS_PER_REGION) break;
        w = bits[word]!;
      }
    }
    return -1;
  }

  /** Calls `fn` for every allocated cluster in ascending order. */
  forEachCluster(fn: (cluster: number) => void): void {
    for (let region = 0; region < this.regionCount; region++) this.forEachClusterInRegion(region, fn);
  }

  /** Calls `fn` for every allocated cluster of one region, ascending. */
  forEachClusterInRegion(region: number, fn: (cluster: number) => void): void {
    const bits = this.bitmaps[region];
    if (bits === undefined) return;
    const base = region * CLUSTERS_PER_REGION;
    for (let word = 0; word < WORDS_PER_REGION; word++) {
      let w = bits[word]!;
      while (w !== 0) {
        fn(base + (word << WORD_SHIFT) + lowestBit(w));
        w &= w - 1;
      }
    }
  }

  /** Ascending indices of the regions (L2 tables) that hold data. */
  usedRegionIndices(): number[] {
    const out: number[] = [];
    for (let region = 0; region < this.regionCount; region++) if (this.perRegion[region]! > 0) out.push(region);
    return out;
  }

  /**
   * Number of distinct groups `cluster / groupClusters` that hold data — e.g. VMDK grain tables
   * of 512 grains. Word-wise when the group is a whole number of bitmap words within a region.
   */
  countUsedGroups(groupClusters: number): number {
    if (!Number.isSafeInteger(groupClusters) || groupClusters <= 0) throw new RangeError(`invalid group size ${groupClusters}`);
    if (groupClusters % BITS_PER_WORD === 0 && CLUSTERS_PER_REGION % groupClusters === 0) {
      const groupWords = groupClusters / BITS_PER_WORD;
      let used = 0;
      for (const bits of this.bitmaps) {
        if (bits === undefined) continue;
        for (let g = 0; g < WORDS_PER_REGION; g += groupWords) {
          for (let w = g; w < g + groupWords; w++) {
            if (bits[w] !== 0) {
              used++;
              break;
            }
          }
        }
      }
      return used;
    }
    let used = 0;
    let lastGroup = -1;
    this.forEachCluster((c) => {
      const g = Math.floor(c / groupClusters);
      if (g !== lastGroup) {
        used++;
        lastGroup = g;
      }
    });
    return used;
  }

  /** Allocated clusters strictly below `cluster` (rank), counting whole regions then words. */
  rank(cluster: number): number {
    const region = Math.floor(cluster / CLUSTERS_PER_REGION);
    let n = 0;
    for (let r = 0; r < region && r < this.regionCount; r++) n += this.perRegion[r]!;
    const bits = this.bitmaps[region];
    if (bits === undefined) return n;
    const inRegion = cluster - region * CLUSTERS_PER_REGION;
    const word = inRegion >>> WORD_SHIFT;
    for (let w = 0; w < word; w++) n += popcount(bits[w]!);
    const partial = inRegion & WORD_MASK;
    if (partial > 0) n += popcount(bits[word]! & ((1 << partial) - 1));
    return n;
  }
}

export interface AllocationMapResult extends ImageWriteResult, AllocationStats {
  map: AllocationMap;
}

/**
 * A DiskImageWriter that produces no image: it records which 64 KiB clusters of the delivered
 * data are non-zero. `finish()` reports `imageSize: 0`; `bytesWritten` counts the guest bytes
 * covered by allocated clusters (clipped to the virtual size), `zeroBytesSkipped` the delivered
 * bytes that were not.
 */
export class AllocationMapBuilder implements DiskImageWriter {
  readonly map: AllocationMap;
  private readonly aligner: ClusterAligner;

  constructor(virtualSize: number) {
    this.map = new AllocationMap(virtualSize);
    this.aligner = new ClusterAligner({
      blockSize: CLUSTER_SIZE,
      limit: virtualSize,
      sink: async (first, data) => this.record(first, data),
    });
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.aligner.push(offset, data);
  }

  async finish(): Promise<AllocationMapResult> {
    await this.aligner.flush();
    const stored = allocatedGuestBytes(this.map);
    return {
      ...this.map.stats,
      map: this.map,
      bytesWritten: stored,
      zeroBytesSkipped: Math.max(0, this.aligner.bytesDelivered - stored),
      imageSize: 0,
    };
  }

  private record(first: number, data: Buffer): void {
    for (let at = 0, c = first; at < data.length; at += CLUSTER_SIZE, c++) {
      if (!isAllZero(data.subarray(at, at + CLUSTER_SIZE))) this.map.add(c);
    }
  }
}

/** Guest bytes covered by allocated clusters, the partial last cluster counted to the disk end. */
export function allocatedGuestBytes(map: AllocationMap): number {
  let bytes = map.count * CLUSTER_SIZE;
  const last = map.clusterCount - 1;
  if (last >= 0 && map.has(last)) bytes -= map.clusterCount * CLUSTER_SIZE - map.virtualSize;
  return bytes;
}
