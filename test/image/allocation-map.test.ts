/**
 * AllocationMap / AllocationMapBuilder: which 64 KiB guest clusters hold data.
 */
import fc from 'fast-check';
import { AllocationMap, AllocationMapBuilder, CLUSTERS_PER_REGION } from '../../src/image/allocation-map';
import { CLUSTER_SIZE } from '../../src/image/types';
import { GiB, MiB, pattern } from './oracle';

const TiB = 1024 * GiB;

describe('AllocationMap', () => {
  test('regions are the span of one qcow2 L2 table: 8192 clusters = 512 MiB', () => {
    expect(CLUSTERS_PER_REGION * CLUSTER_SIZE).toBe(512 * MiB);
  });

  test('counts clusters and used regions; adding twice is idempotent', () => {
    const map = new AllocationMap(3 * GiB);
    for (const c of [0, 1, 8191, 8192, 8192, 40000]) map.add(c);
    expect(map.count).toBe(5);
    expect(map.usedRegions).toBe(3);
    expect(map.usedRegionIndices()).toEqual([0, 1, 4]);
    expect(map.countInRegion(0)).toBe(3);
    expect(map.has(8191)).toBe(true);
    expect(map.has(8193)).toBe(false);
    expect(map.stats).toEqual({ virtualSize: 3 * GiB, allocatedClusters: 5, usedL2Tables: 3 });
  });

  test('clusters outside the disk are rejected', () => {
    const map = new AllocationMap(MiB + 1); // 17 clusters, the last one partial
    map.add(16);
    expect(() => map.add(17)).toThrow(RangeError);
    expect(() => map.add(-1)).toThrow(RangeError);
  });

  test('a sparse 2 TiB disk costs a few KiB; even a full one only 4 MiB of bitmaps', () => {
    const map = new AllocationMap(2 * TiB);
    for (let i = 0; i < 100; i++) map.add(i * 300_007);
    expect(map.memoryBytes).toBeLessThan(200 * 1024);
    // Fully allocated: one 1 KiB bitmap per 512 MiB region.
    expect((2 * TiB) / (512 * MiB) * 1024).toBe(4 * MiB);
  });

  test('property: iteration, nextAllocated, rank and group counts agree with a plain set', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 3 * CLUSTERS_PER_REGION - 1 }), { maxLength: 300 }), (clusters) => {
        const map = AllocationMap.fromClusters(3 * CLUSTERS_PER_REGION * CLUSTER_SIZE, clusters);
        const sorted = [...clusters].sort((a, b) => a - b);
        const seen: number[] = [];
        map.forEachCluster((c) => seen.push(c));
        expect(seen).toEqual(sorted);
        // nextAllocated walks the same sequence.
        const walked: number[] = [];
        for (let c = map.nextAllocated(0); c >= 0; c = map.nextAllocated(c + 1)) walked.push(c);
        expect(walked).toEqual(sorted);
        sorted.forEach((c, i) => expect(map.rank(c)).toBe(i));
        for (const group of [512, 100, 8192]) {
          expect(map.countUsedGroups(group)).toBe(new Set(sorted.map((c) => Math.floor(c / group))).size);
        }
        expect(map.usedRegions).toBe(new Set(sorted.map((c) => Math.floor(c / CLUSTERS_PER_REGION))).size);
      }),
      { numRuns: 100 },
    );
  });
});

describe('AllocationMapBuilder (the measure pass)', () => {
  test('records exactly the non-zero 64 KiB clusters of what was delivered', async () => {
    const b = new AllocationMapBuilder(8 * MiB);
    const chunk = Buffer.alloc(MiB);
    pattern(10, 1).copy(chunk, 3 * CLUSTER_SIZE + 5); // cluster 3 of chunk 0
    await b.write(0, chunk);
    await b.write(2 * MiB + 100, pattern(1, 2)); // unaligned single byte: cluster 32
    await b.write(5 * MiB, Buffer.alloc(MiB)); // zeros: nothing
    const r = await b.finish();
    const clusters: number[] = [];
    r.map.forEachCluster((c) => clusters.push(c));
    expect(clusters).toEqual([3, 32]);
    expect(r.allocatedClusters).toBe(2);
    expect(r.usedL2Tables).toBe(1);
    expect(r.bytesWritten).toBe(2 * CLUSTER_SIZE);
    expect(r.zeroBytesSkipped).toBe(2 * MiB + 1 - 2 * CLUSTER_SIZE);
    expect(r.imageSize).toBe(0);
  });

  test('the partial last cluster counts only up to the end of the disk', async () => {
    const b = new AllocationMapBuilder(CLUSTER_SIZE + 512);
    await b.write(CLUSTER_SIZE, pattern(512, 3));
    const r = await b.finish();
    expect(r.allocatedClusters).toBe(1);
    expect(r.bytesWritten).toBe(512);
  });
});
