/**
 * streamOptimized VMDK building blocks (docs/output-formats.md §2.1-§2.4): header, descriptor, stored
 * deflate grains and the size math used by `measure`.
 */
import * as zlib from 'node:zlib';
import { AllocationMap } from '../../../src/image/allocation-map';
import { encodeVmdkHeader, vmdkCapacitySectors, vmdkDescriptor } from '../../../src/image/vmdk/format';
import { vmdkExactStoredSize, vmdkFullyAllocatedSize, vmdkGrainTableCount, vmdkUpperBoundSize } from '../../../src/image/vmdk/size';
import { VMDK_MAX_GRAIN_SECTORS, VMDK_STORED_GRAIN_ZLIB_BYTES, adler32, writeStoredZlib } from '../../../src/image/vmdk/stored-zlib';
import { GiB, MiB, pattern } from '../oracle';

const GRAIN = 65536;

describe('sparse extent header (§2.1)', () => {
  test('leading header: version 3, flags 0x30001, 128-sector grains, GD_AT_END', () => {
    const h = encodeVmdkHeader(10 * MiB + 512);
    expect(h.length).toBe(512);
    expect(h.subarray(0, 4).toString('latin1')).toBe('KDMV');
    expect(h.readUInt32LE(4)).toBe(3);
    expect(h.readUInt32LE(8)).toBe(0x30001);
    expect(h.readBigUInt64LE(12)).toBe(BigInt(vmdkCapacitySectors(10 * MiB + 512)));
    expect(h.readBigUInt64LE(20)).toBe(128n); // grainSize
    expect(h.readBigUInt64LE(28)).toBe(1n); // descriptorOffset
    expect(h.readBigUInt64LE(36)).toBe(20n); // descriptorSize
    expect(h.readUInt32LE(44)).toBe(512); // numGTEsPerGT
    expect(h.readBigUInt64LE(48)).toBe(0n); // rgdOffset
    expect(h.readBigUInt64LE(56)).toBe(0xffffffffffffffffn); // gdOffset = GD_AT_END
    expect(h.readBigUInt64LE(64)).toBe(128n); // overHead: one grain
    expect(h[72]).toBe(0); // uncleanShutdown
    expect([...h.subarray(73, 77)]).toEqual([0x0a, 0x20, 0x0d, 0x0a]);
    expect(h.readUInt16LE(77)).toBe(1); // DEFLATE
    expect(h.subarray(79).every((b) => b === 0)).toBe(true);
  });

  test('footer: the same header with the real gdOffset', () => {
    const lead = encodeVmdkHeader(GiB);
    const foot = encodeVmdkHeader(GiB, 12345);
    expect(foot.readBigUInt64LE(56)).toBe(12345n);
    expect(Buffer.compare(lead.subarray(0, 56), foot.subarray(0, 56))).toBe(0);
    expect(Buffer.compare(lead.subarray(64), foot.subarray(64))).toBe(0);
  });

  test('capacity rounds a partial last sector up', () => {
    expect(vmdkCapacitySectors(1000)).toBe(2);
  });
});

describe('embedded descriptor (§2.3)', () => {
  const text = vmdkDescriptor(20 * GiB, { cid: 0xabc, extentName: 'vm-disk1.vmdk', adapterType: 'lsilogic' });

  test('streamOptimized, no parent, the given CID, one SPARSE extent of the capacity', () => {
    expect(text).toContain('# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\nCID=00000abc\nparentCID=ffffffff\ncreateType="streamOptimized"\n');
    expect(text).toContain(`RW ${(20 * GiB) / 512} SPARSE "vm-disk1.vmdk"`);
  });

  test('DDB: 255 heads, 63 sectors, cylinders from the capacity, qemu toolsVersion', () => {
    expect(text).toContain(`ddb.geometry.cylinders = "${Math.ceil((20 * GiB) / 512 / (255 * 63))}"`);
    expect(text).toContain('ddb.geometry.heads = "255"');
    expect(text).toContain('ddb.geometry.sectors = "63"');
    expect(text).toContain('ddb.adapterType = "lsilogic"');
    expect(text).toContain('ddb.toolsVersion = "2147483647"');
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(20 * 512);
  });

  test('cylinders are capped at 65535; quotes in names cannot break the extent line', () => {
    const big = vmdkDescriptor(2000 * GiB, { cid: 1, extentName: 'a"b\nc.vmdk', adapterType: 'ide' });
    expect(big).toContain('ddb.geometry.cylinders = "65535"');
    expect(big).toContain('SPARSE "a_b_c.vmdk"');
  });
});

describe('stored ("level 0") grains (§2.4)', () => {
  test('a 64 KiB grain is 2 + 2×5 + 65536 + 4 = 65552 zlib bytes → 129 sectors with its marker', () => {
    expect(VMDK_STORED_GRAIN_ZLIB_BYTES).toBe(65552);
    expect(VMDK_MAX_GRAIN_SECTORS).toBe(129);
  });

  test.each([
    ['random', pattern(GRAIN, 7)],
    ['zeros', Buffer.alloc(GRAIN)],
    ['0xff', Buffer.alloc(GRAIN, 0xff)],
  ])('%s grain: a valid zlib (RFC 1950) stream that inflates back to the grain', (_name, grain) => {
    const out = Buffer.alloc(VMDK_STORED_GRAIN_ZLIB_BYTES + 10);
    const n = writeStoredZlib(grain, out, 3);
    expect(n).toBe(VMDK_STORED_GRAIN_ZLIB_BYTES);
    expect(zlib.inflateSync(out.subarray(3, 3 + n))).toEqual(grain);
    // Same size as Node's own level-0 zlib output (docs/output-formats.md [LOCAL]).
    expect(zlib.deflateSync(grain, { level: 0 }).length).toBe(n);
  });

  test('adler32 matches the checksum zlib writes', () => {
    for (const data of [Buffer.alloc(0), Buffer.from('Wikipedia'), pattern(100_000, 3)]) {
      const z = zlib.deflateSync(data);
      expect(adler32(data)).toBe(z.readUInt32BE(z.length - 4));
    }
    expect(adler32(Buffer.from('Wikipedia'))).toBe(0x11e60398);
  });
});

describe('size math for measure (§2.4)', () => {
  // overhead 128 sectors + GD marker + GD sectors + footer marker + footer + EOS
  const fixed = (size: number) => (128 + 1 + Math.ceil((vmdkGrainTableCount(size) * 4) / 512) + 3) * 512;

  test('an empty disk is the overhead, an empty GD, footer and EOS', () => {
    expect(vmdkUpperBoundSize(GiB, 0)).toBe(fixed(GiB));
    expect(vmdkExactStoredSize(GiB, new AllocationMap(GiB))).toBe(fixed(GiB));
  });

  test('stored size: 129 sectors per grain + (marker + 4 sectors) per used grain table', () => {
    const map = AllocationMap.fromClusters(GiB, [0, 1, 511, 512, 10000]); // GTs 0, 1, 19
    expect(vmdkExactStoredSize(GiB, map)).toBe(fixed(GiB) + 5 * 129 * 512 + 3 * 5 * 512);
  });

  test('upper bound assumes one grain table per grain until all tables are used', () => {
    expect(vmdkUpperBoundSize(GiB, 3)).toBe(fixed(GiB) + 3 * 129 * 512 + 3 * 5 * 512);
    const all = GiB / GRAIN;
    expect(vmdkFullyAllocatedSize(GiB)).toBe(fixed(GiB) + all * 129 * 512 + vmdkGrainTableCount(GiB) * 5 * 512);
  });
});
