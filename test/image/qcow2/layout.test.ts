/**
 * qcow2 layout math (docs/output-formats.md §1.2, §1.4-§1.6, §1.9-§1.10), checked against the spec text and
 * against `qemu-img measure`.
 */
import { CLUSTER_SIZE } from '../../../src/image/types';
import { AllocationMap } from '../../../src/image/allocation-map';
import {
  QCOW2_CLUSTER_SIZE,
  QCOW2_L2_ENTRIES,
  QCOW2_REFCOUNTS_PER_BLOCK,
  encodeQcow2L1Table,
  encodeQcow2RefcountTable,
  fillQcow2L2Table,
  fillQcow2RefcountBlock,
  qcow2EndPlacement,
  qcow2ExactFileSize,
  qcow2FrontPlacement,
  qcow2FullyAllocatedSize,
  qcow2Geometry,
  qcow2L1Clusters,
  qcow2L1Entries,
  qcow2RefcountMetadata,
  qcow2RequiredSize,
} from '../../../src/image/qcow2/layout';
import { QCOW2_CLUSTER_BITS } from '../../../src/image/qcow2/format';
import { GiB, MiB, qemuMeasure } from '../oracle';

const cs = QCOW2_CLUSTER_SIZE;

describe('qcow2 constants (§1.2, §1.4, §1.5)', () => {
  test('64 KiB clusters, 8192 L2 entries, 32768 16-bit refcounts per block', () => {
    expect(1 << QCOW2_CLUSTER_BITS).toBe(CLUSTER_SIZE);
    expect(QCOW2_CLUSTER_SIZE).toBe(65536);
    expect(QCOW2_L2_ENTRIES).toBe(8192);
    expect(QCOW2_REFCOUNTS_PER_BLOCK).toBe(32768);
  });
});

describe('refcount fixed point (§1.6)', () => {
  test('a handful of clusters needs one block and one table cluster', () => {
    expect(qcow2RefcountMetadata(1)).toEqual({ blocks: 1, table: 1 });
    expect(qcow2RefcountMetadata(100)).toEqual({ blocks: 1, table: 1 });
  });

  test('blocks and table count themselves: 32766 clusters + 2 fit one block, 32767 do not', () => {
    expect(qcow2RefcountMetadata(32766)).toEqual({ blocks: 1, table: 1 });
    expect(qcow2RefcountMetadata(32767)).toEqual({ blocks: 2, table: 1 });
  });

  test('the result is a fixed point: blocks cover everything including blocks and table', () => {
    for (const clusters of [0, 1, 32765, 32766, 32767, 65533, 65534, 65535, 8192 * 32768 - 8200, 8192 * 32768]) {
      const { blocks, table } = qcow2RefcountMetadata(clusters);
      const total = clusters + blocks + table;
      expect(blocks).toBe(Math.ceil(total / QCOW2_REFCOUNTS_PER_BLOCK));
      expect(table).toBe(Math.ceil(blocks / 8192));
    }
  });

  test('a table spills into a second cluster after 8192 blocks', () => {
    expect(qcow2RefcountMetadata(8192 * 32768).table).toBe(2);
  });
});

describe('qemu-img measure equality (§1.6)', () => {
  // 1G/10G/100G are the documented [LOCAL] values; the odd sizes exercise rounding.
  const sizes = [0, 512, 65536 + 512, 1 * GiB, 10 * GiB, 100 * GiB, 3_000_000_000, 5 * GiB + 3 * 512, 2 * 1024 * GiB + 65536];

  test('documented values: 1G, 10G, 100G', () => {
    expect(qcow2RequiredSize(1 * GiB)).toBe(393216);
    expect(qcow2FullyAllocatedSize(1 * GiB)).toBe(1074135040);
    expect(qcow2RequiredSize(10 * GiB)).toBe(1900544);
    expect(qcow2FullyAllocatedSize(10 * GiB)).toBe(10739318784);
    expect(qcow2RequiredSize(100 * GiB)).toBe(16646144);
    expect(qcow2FullyAllocatedSize(100 * GiB)).toBe(107390828544);
  });

  test.each(sizes.flatMap((size) => [[size, '1.1'] as const, [size, '0.10'] as const]))('size %d compat %s matches qemu-img measure', (size, compat) => {
    const measured = qemuMeasure(size, compat);
    expect(qcow2RequiredSize(size)).toBe(measured.required);
    expect(qcow2FullyAllocatedSize(size)).toBe(measured['fully-allocated']);
  });

  test('required size grows by one cluster per allocated data cluster', () => {
    expect(qcow2RequiredSize(10 * GiB, 100) - qcow2RequiredSize(10 * GiB)).toBe(100 * cs);
  });
});

describe('exact size of our files (§1.6)', () => {
  test('3 GiB with 302 data clusters in all 6 L2 tables: (1 + 1 + 6 + 302 + 1 + 1) clusters', () => {
    // docs/output-formats.md §1.6 quotes 20512768 bytes for this example; that number is qemu's "required"
    // (fully allocated - 3 GiB + 302 clusters), not the exact formula, which gives 312 clusters.
    expect(qcow2ExactFileSize(3 * GiB, 302, 6)).toBe(312 * cs);
    expect(qcow2RequiredSize(3 * GiB, 302)).toBe(20512768);
  });

  test('0-byte disk: header + refcount block + table, no L1 cluster', () => {
    expect(qcow2L1Entries(0)).toBe(0);
    expect(qcow2L1Clusters(0)).toBe(0);
    expect(qcow2ExactFileSize(0, 0, 0)).toBe(3 * cs);
  });

  test('never larger than qemu-img measure "required" for the same data', () => {
    for (const [size, d, u] of [
      [1 * GiB, 0, 0],
      [10 * GiB, 5000, 15],
      [100 * GiB, 100, 100],
    ] as const) {
      expect(qcow2ExactFileSize(size, d, u)).toBeLessThanOrEqual(qcow2RequiredSize(size, d));
    }
  });

  test('a fully allocated disk written by us has the qemu fully-allocated size minus the L1 round-up', () => {
    const size = 10 * GiB;
    const d = size / cs;
    const u = d / QCOW2_L2_ENTRIES;
    expect(qcow2ExactFileSize(size, d, u)).toBe(qcow2FullyAllocatedSize(size));
  });

  test('inconsistent counts are rejected', () => {
    expect(() => qcow2Geometry(1 * MiB, 17, 1)).toThrow(RangeError); // only 16 clusters exist
    expect(() => qcow2Geometry(1 * GiB, 5, 0)).toThrow(RangeError); // data needs an L2 table
    expect(() => qcow2Geometry(1 * GiB, 5, 3)).toThrow(RangeError); // 2 L1 entries only
  });
});

describe('placement (§1.9 end, §1.10 front)', () => {
  const g = qcow2Geometry(5 * GiB, 40, 3);

  test('end: header, data, L2, L1, refcount blocks, refcount table', () => {
    const p = qcow2EndPlacement(g);
    expect(p).toEqual({ layout: 'end', dataCluster: 1, l2Cluster: 41, l1Cluster: 44, refcountBlockCluster: 45, refcountTableCluster: 46 });
    expect(p.refcountTableCluster + g.refcountTableClusters).toBe(g.totalClusters);
  });

  test('front: header, L1, refcount table, refcount blocks, L2, data', () => {
    const p = qcow2FrontPlacement(g);
    expect(p).toEqual({ layout: 'front', l1Cluster: 1, refcountTableCluster: 2, refcountBlockCluster: 3, l2Cluster: 4, dataCluster: 7 });
    expect(p.dataCluster + g.dataClusters).toBe(g.totalClusters);
  });
});

describe('table encodings (§1.4, §1.5)', () => {
  const COPIED = 0x8000_0000;
  const map = AllocationMap.fromClusters(3 * GiB, [5, 6, 8192 * 2 + 1]);
  const g = qcow2Geometry(map.virtualSize, map.count, map.usedRegions);
  const p = qcow2FrontPlacement(g);

  test('L1 entries point at the used L2 tables, with COPIED; unused entries are 0', () => {
    const l1 = encodeQcow2L1Table(g, p, map);
    expect(l1.length).toBe(cs);
    expect(l1.readUInt32BE(0)).toBe(COPIED);
    expect(l1.readUInt32BE(4)).toBe(p.l2Cluster * cs);
    expect(l1.readBigUInt64BE(8)).toBe(0n);
    expect(l1.readBigUInt64BE(16)).toBe(BigInt(p.l2Cluster + 1) * BigInt(cs) | (1n << 63n));
  });

  test('L2 entries map guest clusters to consecutive host data clusters, with COPIED', () => {
    const table = Buffer.alloc(cs);
    const next = fillQcow2L2Table(table, map, 0, 100);
    expect(next).toBe(102);
    expect(table.readBigUInt64BE(5 * 8)).toBe(100n * BigInt(cs) | (1n << 63n));
    expect(table.readBigUInt64BE(6 * 8)).toBe(101n * BigInt(cs) | (1n << 63n));
    expect(table.readBigUInt64BE(7 * 8)).toBe(0n);
  });

  test('refcount blocks hold 16-bit big-endian 1 for clusters 0 … total-1 and 0 after', () => {
    const block = Buffer.alloc(cs, 0xee);
    fillQcow2RefcountBlock(block, 0, 3);
    expect([...block.subarray(0, 8)]).toEqual([0, 1, 0, 1, 0, 1, 0, 0]);
    expect(block.subarray(6).every((b) => b === 0)).toBe(true);
    fillQcow2RefcountBlock(block, 1, QCOW2_REFCOUNTS_PER_BLOCK + 2);
    expect(block.readUInt16BE(0)).toBe(1);
    expect(block.readUInt16BE(2)).toBe(1);
    expect(block.readUInt16BE(4)).toBe(0);
  });

  test('refcount table entries point at the blocks (no flags)', () => {
    const t = encodeQcow2RefcountTable(g, p);
    expect(t.length).toBe(g.refcountTableClusters * cs);
    expect(t.readBigUInt64BE(0)).toBe(BigInt(p.refcountBlockCluster * cs));
    expect(t.readBigUInt64BE(8)).toBe(0n);
  });
});
