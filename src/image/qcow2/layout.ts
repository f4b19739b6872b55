/**
 * qcow2 layout math and table contents of the files we write — pure functions, no I/O. The
 * format itself (magic, header codec, entry bits) is format.ts, shared with the reader.
 *
 * Shared by the two qcow2 writers and by `measure`, so that "the size `measure` predicts" and
 * "the size a writer produces" are the same computation (see docs/output-formats.md §1.6):
 *
 *  - `qcow2FullyAllocatedSize` / `qcow2RequiredSize` reproduce `qemu-img measure -O qcow2`
 *    (qemu counts every L2 table of the virtual size, used or not);
 *  - `qcow2ExactFileSize` is the exact length of the files OUR writers produce: header cluster,
 *    L1 table, only the L2 tables that map data, the data clusters, and the refcount blocks +
 *    table sized by the refcount fixed point (§1.6).
 *
 * Fixed parameters of every image we write: 64 KiB clusters (cluster_bits 16, §1.7), 16-bit
 * refcounts (refcount_order 4, §1.5), no backing file, no snapshots, no encryption, no header
 * extensions besides the end-of-extensions marker (§1.2). Every L1/L2 entry carries the COPIED
 * flag (bit 63) because every refcount is exactly 1 (§1.4, §1.8).
 *
 * Offsets are JS numbers: exact up to 2^53 bytes, far beyond any L1 qemu accepts (§1.3).
 */
import { CLUSTER_SIZE, imageVirtualSize } from '../types';
import {
  QCOW2_MAX_L1_BYTES,
  QCOW2_REFCOUNT_ORDER,
  QCOW2_TABLE_ENTRY_BYTES,
  encodeQcow2Header,
  setQcow2MappingEntry,
  setQcow2RefcountTableEntry,
  type Qcow2HeaderFields,
  type Qcow2Version,
} from './format';

// ---- constants of the files we write (docs/output-formats.md §1.2, §1.4, §1.5) -----------------

/** 64 KiB: the project-wide CLUSTER_SIZE (a unit test pins format.ts's `1 << QCOW2_CLUSTER_BITS` to it). */
export const QCOW2_CLUSTER_SIZE = CLUSTER_SIZE;
/** Entries per L2 table, i.e. guest clusters mapped by one L2 table: 8192 (§1.4). */
export const QCOW2_L2_ENTRIES = QCOW2_CLUSTER_SIZE / QCOW2_TABLE_ENTRY_BYTES;
/** u64 entries per cluster of the L1 table or of the refcount table: 8192 (§1.5, §1.6). */
export const QCOW2_ENTRIES_PER_TABLE_CLUSTER = QCOW2_CLUSTER_SIZE / QCOW2_TABLE_ENTRY_BYTES;
export const QCOW2_REFCOUNT_BITS = 1 << QCOW2_REFCOUNT_ORDER;
export const QCOW2_REFCOUNT_BYTES = QCOW2_REFCOUNT_BITS / 8;
/** Counters per refcount block: 32768, so one block covers 2 GiB of file (§1.5). */
export const QCOW2_REFCOUNTS_PER_BLOCK = (QCOW2_CLUSTER_SIZE * 8) / QCOW2_REFCOUNT_BITS;

/** qemu-img's `compat` values: 1.1 = version 3 (default), 0.10 = version 2. */
export const QCOW2_COMPATS = ['1.1', '0.10'] as const;
export type Qcow2Compat = (typeof QCOW2_COMPATS)[number];

/** compat=0.10 → version 2, compat=1.1 (qemu's default) → version 3 (§1.2). */
export function qcow2Version(compat: Qcow2Compat = '1.1'): Qcow2Version {
  return compat === '0.10' ? 2 : 3;
}

// ---- geometry (§1.4, §1.6) ----------------------------------------------------------------------

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

function roundUp(a: number, multiple: number): number {
  return ceilDiv(a, multiple) * multiple;
}

function assertVirtualSize(virtualSize: number): void {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new RangeError(`invalid virtual size ${virtualSize}`);
}

/** Guest clusters covering the virtual size (the last one may be partial). */
export function qcow2GuestClusters(virtualSize: number): number {
  assertVirtualSize(virtualSize);
  return ceilDiv(virtualSize, QCOW2_CLUSTER_SIZE);
}

/** `l1_size`: L1 entries needed to cover the virtual size (§1.4). 0 for a 0-byte disk. */
export function qcow2L1Entries(virtualSize: number): number {
  return ceilDiv(qcow2GuestClusters(virtualSize), QCOW2_L2_ENTRIES);
}

/** `L1c`: whole clusters occupied by the L1 table (§1.6). */
export function qcow2L1Clusters(virtualSize: number): number {
  return ceilDiv(qcow2L1Entries(virtualSize) * QCOW2_TABLE_ENTRY_BYTES, QCOW2_CLUSTER_SIZE);
}

export interface RefcountMetadata {
  /** Refcount blocks needed. */
  blocks: number;
  /** Clusters of the refcount table. */
  table: number;
}

/**
 * The refcount fixed point of §1.6 (`qcow2_refcount_metadata_size`, non-generous): how many
 * refcount blocks and refcount-table clusters are needed to count `clusters` other clusters
 * *plus themselves*. Converges in a few iterations (each step can only grow the result).
 */
export function qcow2RefcountMetadata(clusters: number): RefcountMetadata {
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  do {
    last = n;
    blocks = ceilDiv(clusters + table + blocks, QCOW2_REFCOUNTS_PER_BLOCK);
    table = ceilDiv(blocks, QCOW2_ENTRIES_PER_TABLE_CLUSTER);
    n = clusters + blocks + table;
  } while (n !== last);
  return { blocks, table };
}

/**
 * `qemu-img measure -O qcow2 --size N` "fully allocated size" (`qcow2_calc_prealloc_size`, §1.6):
 * header + all L2 tables + L1 rounded to whole clusters + refcounts + every data cluster.
 */
export function qcow2FullyAllocatedSize(virtualSize: number): number {
  assertVirtualSize(virtualSize);
  const aligned = roundUp(virtualSize, QCOW2_CLUSTER_SIZE);
  let meta = QCOW2_CLUSTER_SIZE; // header cluster
  const l2Entries = roundUp(aligned / QCOW2_CLUSTER_SIZE, QCOW2_L2_ENTRIES);
  meta += l2Entries * QCOW2_TABLE_ENTRY_BYTES;
  const l1Entries = roundUp((l2Entries * QCOW2_TABLE_ENTRY_BYTES) / QCOW2_CLUSTER_SIZE, QCOW2_ENTRIES_PER_TABLE_CLUSTER);
  meta += l1Entries * QCOW2_TABLE_ENTRY_BYTES;
  const { blocks, table } = qcow2RefcountMetadata((meta + aligned) / QCOW2_CLUSTER_SIZE);
  meta += (blocks + table) * QCOW2_CLUSTER_SIZE;
  return meta + aligned;
}

/**
 * `qemu-img measure` "required size" (`qcow2_measure`, §1.6): the fully allocated size minus the
 * (cluster-rounded) virtual size plus the data clusters that are actually allocated. With
 * `allocatedClusters = 0` this is what `measure --size N` prints.
 */
export function qcow2RequiredSize(virtualSize: number, allocatedClusters = 0): number {
  const aligned = roundUp(virtualSize, QCOW2_CLUSTER_SIZE);
  return qcow2FullyAllocatedSize(virtualSize) - aligned + allocatedClusters * QCOW2_CLUSTER_SIZE;
}

/** Cluster counts of an image as our writers lay it out (either layout, §1.9/§1.10). */
export interface Qcow2Geometry {
  virtualSize: number;
  l1Entries: number;
  l1Clusters: number;
  /** L2 tables written (one per L1 index that maps at least one data cluster). */
  l2Tables: number;
  dataClusters: number;
  refcountBlocks: number;
  refcountTableClusters: number;
  /** All clusters of the file, header included; every one has refcount 1. */
  totalClusters: number;
}

/** §1.6 "exact size for our own writer": base = 1 + L1c + U + D, plus the refcount fixed point. */
export function qcow2Geometry(virtualSize: number, allocatedClusters: number, usedL2Tables: number): Qcow2Geometry {
  const guestClusters = qcow2GuestClusters(virtualSize);
  const l1Entries = qcow2L1Entries(virtualSize);
  if (!Number.isSafeInteger(allocatedClusters) || allocatedClusters < 0 || allocatedClusters > guestClusters) {
    throw new RangeError(`allocated clusters ${allocatedClusters} out of range 0..${guestClusters}`);
  }
  if (!Number.isSafeInteger(usedL2Tables) || usedL2Tables < 0 || usedL2Tables > l1Entries || usedL2Tables > allocatedClusters || (allocatedClusters > 0 && usedL2Tables === 0)) {
    throw new RangeError(`used L2 tables ${usedL2Tables} inconsistent with ${allocatedClusters} clusters / ${l1Entries} L1 entries`);
  }
  const l1Clusters = qcow2L1Clusters(virtualSize);
  const base = 1 + l1Clusters + usedL2Tables + allocatedClusters;
  const { blocks, table } = qcow2RefcountMetadata(base);
  return {
    virtualSize,
    l1Entries,
    l1Clusters,
    l2Tables: usedL2Tables,
    dataClusters: allocatedClusters,
    refcountBlocks: blocks,
    refcountTableClusters: table,
    totalClusters: base + blocks + table,
  };
}

/** Exact byte size of the qcow2 file both our writers produce for this allocation. */
export function qcow2ExactFileSize(virtualSize: number, allocatedClusters: number, usedL2Tables: number): number {
  return qcow2Geometry(virtualSize, allocatedClusters, usedL2Tables).totalClusters * QCOW2_CLUSTER_SIZE;
}

// ---- table contents (§1.4, §1.5) ----------------------------------------------------------------

/**
 * Fills `block` (one cluster) as refcount block number `blockIndex` for an image whose clusters
 * `0 … totalClusters-1` all have refcount 1 and every later cluster 0 (§1.5, §1.9).
 */
export function fillQcow2RefcountBlock(block: Buffer, blockIndex: number, totalClusters: number): void {
  const first = blockIndex * QCOW2_REFCOUNTS_PER_BLOCK;
  const counted = Math.max(0, Math.min(QCOW2_REFCOUNTS_PER_BLOCK, totalClusters - first));
  block.fill(0);
  const ones = counted * QCOW2_REFCOUNT_BYTES;
  // A 16-bit big-endian 1 is the byte pair 00 01; write it to every counted slot.
  for (let at = 1; at < ones; at += QCOW2_REFCOUNT_BYTES) block[at] = 1;
}

// ---- placement of the structures in the file (§1.9, §1.10) --------------------------------------

/** First cluster index of every structure; each structure is contiguous. */
export interface Qcow2Placement {
  layout: 'end' | 'front';
  /** First cluster of the L1 table (0 when the table is empty, as qemu does for a 0-byte disk). */
  l1Cluster: number;
  /** First of the `l2Tables` L2 clusters, in ascending L1-index order. */
  l2Cluster: number;
  /** First of the `dataClusters` data clusters, in ascending guest order. */
  dataCluster: number;
  refcountBlockCluster: number;
  refcountTableCluster: number;
}

/**
 * Layout "end" (§1.9), for a seekable file written in one pass:
 * `[header][data …][L2 …][L1][refcount blocks][refcount table]`, header written last.
 */
export function qcow2EndPlacement(g: Qcow2Geometry): Qcow2Placement {
  const dataCluster = 1;
  const l2Cluster = dataCluster + g.dataClusters;
  const l1Cluster = l2Cluster + g.l2Tables;
  const refcountBlockCluster = l1Cluster + g.l1Clusters;
  const refcountTableCluster = refcountBlockCluster + g.refcountBlocks;
  return { layout: 'end', l1Cluster: g.l1Clusters > 0 ? l1Cluster : 0, l2Cluster, dataCluster, refcountBlockCluster, refcountTableCluster };
}

/**
 * Layout "front" (§1.10), for a pipe, all metadata known up front:
 * `[header][L1][refcount table][refcount blocks][L2 …][data …]`.
 */
export function qcow2FrontPlacement(g: Qcow2Geometry): Qcow2Placement {
  const l1Cluster = 1;
  const refcountTableCluster = l1Cluster + g.l1Clusters;
  const refcountBlockCluster = refcountTableCluster + g.refcountTableClusters;
  const l2Cluster = refcountBlockCluster + g.refcountBlocks;
  const dataCluster = l2Cluster + g.l2Tables;
  return { layout: 'front', l1Cluster: g.l1Clusters > 0 ? l1Cluster : 0, l2Cluster, dataCluster, refcountBlockCluster, refcountTableCluster };
}

/**
 * The final header for a geometry + placement. The size is the guest size in whole sectors
 * (`imageVirtualSize`): qemu would hide a partial last sector. The cluster counts do not change
 * (a cluster is 128 sectors), so neither does the file size.
 */
export function qcow2HeaderFor(version: Qcow2Version, g: Qcow2Geometry, p: Qcow2Placement): Qcow2HeaderFields {
  return {
    version,
    virtualSize: imageVirtualSize(g.virtualSize),
    l1Size: g.l1Entries,
    l1TableOffset: p.l1Cluster * QCOW2_CLUSTER_SIZE,
    refcountTableOffset: p.refcountTableCluster * QCOW2_CLUSTER_SIZE,
    refcountTableClusters: g.refcountTableClusters,
  };
}

/** Cluster 0 in full: header + end-of-extensions marker, zero padded. */
export function encodeQcow2HeaderCluster(h: Qcow2HeaderFields): Buffer {
  const cluster = Buffer.alloc(QCOW2_CLUSTER_SIZE);
  encodeQcow2Header(h).copy(cluster);
  return cluster;
}

/** What the L2 tables need to know about the allocation (an AllocationMap satisfies it). */
export interface Qcow2ClusterSource {
  /** Regions of QCOW2_L2_ENTRIES guest clusters. */
  readonly regionCount: number;
  countInRegion(region: number): number;
  /** Ascending allocated clusters of one region. */
  forEachClusterInRegion(region: number, fn: (cluster: number) => void): void;
}

/**
 * The L1 table (`l1Clusters` whole clusters): entry r points at the r-th *used* L2 table, which
 * sits at cluster `p.l2Cluster + (number of used regions before r)`; unused entries are 0.
 */
export function encodeQcow2L1Table(g: Qcow2Geometry, p: Qcow2Placement, source: Qcow2ClusterSource): Buffer {
  const l1 = Buffer.alloc(g.l1Clusters * QCOW2_CLUSTER_SIZE);
  let nextL2 = p.l2Cluster;
  for (let region = 0; region < source.regionCount; region++) {
    if (source.countInRegion(region) === 0) continue;
    setQcow2MappingEntry(l1, region, nextL2 * QCOW2_CLUSTER_SIZE);
    nextL2++;
  }
  return l1;
}

/**
 * Fills `table` (one cluster) as the L2 table of `region`, whose first allocated cluster is stored
 * at host cluster `firstHostCluster` and the following ones right after it (data clusters are
 * stored in ascending guest order in both layouts). Returns the next free data host cluster.
 */
export function fillQcow2L2Table(table: Buffer, source: Qcow2ClusterSource, region: number, firstHostCluster: number): number {
  table.fill(0);
  const base = region * QCOW2_L2_ENTRIES;
  let host = firstHostCluster;
  source.forEachClusterInRegion(region, (cluster) => {
    setQcow2MappingEntry(table, cluster - base, host * QCOW2_CLUSTER_SIZE);
    host++;
  });
  return host;
}

/** The refcount table (`refcountTableClusters` clusters) pointing at the contiguous blocks. */
export function encodeQcow2RefcountTable(g: Qcow2Geometry, p: Qcow2Placement): Buffer {
  const table = Buffer.alloc(g.refcountTableClusters * QCOW2_CLUSTER_SIZE);
  for (let i = 0; i < g.refcountBlocks; i++) setQcow2RefcountTableEntry(table, i, (p.refcountBlockCluster + i) * QCOW2_CLUSTER_SIZE);
  return table;
}

/** Largest virtual size whose L1 table qemu accepts. */
export const QCOW2_MAX_VIRTUAL_SIZE = (QCOW2_MAX_L1_BYTES / QCOW2_TABLE_ENTRY_BYTES) * QCOW2_L2_ENTRIES * QCOW2_CLUSTER_SIZE;
