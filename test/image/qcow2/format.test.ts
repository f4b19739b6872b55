/**
 * The qcow2 on-disk format module (docs/output-formats.md §1.2, §1.4, §1.11): the header codec our
 * writers and the reader share, and the L1/L2 entry encodings.
 */
import { ImageFormatError } from '../../../src/errors';
import { QCOW2_CLUSTER_SIZE } from '../../../src/image/qcow2/layout';
import {
  decodeQcow2CompressedEntry,
  decodeQcow2Header,
  encodeQcow2Header,
  qcow2EntryHostOffset,
  setQcow2MappingEntry,
} from '../../../src/image/qcow2/format';
import { GiB } from '../oracle';

const cs = QCOW2_CLUSTER_SIZE;

describe('qcow2 header (§1.2)', () => {
  const fields = { virtualSize: 5 * GiB + 512, l1Size: 11, l1TableOffset: 7 * cs, refcountTableOffset: 9 * cs, refcountTableClusters: 1 };

  test('version 3: 104-byte header, refcount_order 4, then an 8-byte end-of-extensions marker', () => {
    const h = encodeQcow2Header({ version: 3, ...fields });
    expect(h.length).toBe(104 + 8);
    expect(h.subarray(0, 4)).toEqual(Buffer.from([0x51, 0x46, 0x49, 0xfb]));
    expect(h.readUInt32BE(4)).toBe(3);
    expect(h.readUInt32BE(20)).toBe(16); // cluster_bits
    expect(h.readUInt32BE(96)).toBe(4); // refcount_order
    expect(h.readUInt32BE(100)).toBe(104); // header_length
    expect(h.subarray(72, 96).every((b) => b === 0)).toBe(true); // no feature bits (never dirty/corrupt)
    expect(h.subarray(104).every((b) => b === 0)).toBe(true); // end of extensions
    expect(decodeQcow2Header(h)).toMatchObject({ version: 3, clusterBits: 16, refcountOrder: 4, headerLength: 104, incompatibleFeatures: 0, ...fields });
  });

  test('version 2 (compat 0.10): exactly 72 header bytes', () => {
    const h = encodeQcow2Header({ version: 2, ...fields });
    expect(h.length).toBe(72 + 8);
    expect(h.readUInt32BE(4)).toBe(2);
    expect(h.subarray(72).every((b) => b === 0)).toBe(true);
    expect(decodeQcow2Header(h)).toMatchObject({ version: 2, ...fields });
  });

  test('u64 fields hold values beyond 32 bits', () => {
    const h = encodeQcow2Header({ version: 3, ...fields, virtualSize: 2 ** 44 + 512 * 3 });
    expect(h.readBigUInt64BE(24)).toBe(BigInt(2 ** 44 + 512 * 3));
  });
});

describe('qcow2 header decoding refuses what the reader cannot read (§1.11)', () => {
  const v3 = (): Buffer => encodeQcow2Header({ version: 3, virtualSize: GiB, l1Size: 2, l1TableOffset: cs, refcountTableOffset: 2 * cs, refcountTableClusters: 1 });

  test.each<[string, (h: Buffer) => Buffer, string]>([
    ['a short buffer', (h) => h.subarray(0, 71), 'not a qcow2 image (bad magic or truncated header)'],
    ['version 4', (h) => (h.writeUInt32BE(4, 4), h), 'unsupported qcow2 version 4 (2 and 3 are supported)'],
    ['cluster_bits 22', (h) => (h.writeUInt32BE(22, 20), h), 'invalid cluster_bits 22'],
    ['a size past 2^53', (h) => (h.writeUInt32BE(0x200000, 24), h), 'virtual size is too large (20000040000000)'],
    ['encryption', (h) => (h.writeUInt32BE(1, 32), h), 'encrypted qcow2 images are not supported'],
    ['a v3 header cut at 100 bytes', (h) => h.subarray(0, 100), 'truncated qcow2 v3 header'],
    ['the corrupt bit', (h) => (h.writeUInt32BE(2, 76), h), 'qcow2 image is marked corrupt (repair it with `qemu-img check -r all`)'],
    ['header_length 100', (h) => (h.writeUInt32BE(100, 100), h), 'invalid header_length 100'],
    ['compression type 2', (h) => (h.writeUInt32BE(8, 76), h.writeUInt32BE(112, 100), (h[104] = 2), h), 'unknown compression type 2'],
  ])('%s', (_name, damage, message) => {
    let err: unknown;
    try {
      decodeQcow2Header(damage(v3()), '/images/x.qcow2');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ImageFormatError);
    expect(err).toMatchObject({ message, location: { input: '/images/x.qcow2' } });
  });

  test('the dirty bit and zstd compression pass: reading can still use the image', () => {
    const h = v3();
    h.writeUInt32BE(1 | 8, 76);
    h.writeUInt32BE(112, 100);
    h[104] = 1;
    expect(decodeQcow2Header(h)).toMatchObject({ incompatibleFeatures: 9, headerLength: 112, compressionType: 1 });
  });
});

describe('L1/L2 entries (§1.4)', () => {
  test('a mapping entry carries COPIED and reads back as its host offset', () => {
    const table = Buffer.alloc(16);
    setQcow2MappingEntry(table, 1, 2 ** 40 + 3 * cs);
    expect(table.readBigUInt64BE(8)).toBe((1n << 63n) | BigInt(2 ** 40 + 3 * cs));
    expect(qcow2EntryHostOffset(table, 1, 'L2 table offset')).toBe(2 ** 40 + 3 * cs);
    expect(qcow2EntryHostOffset(table, 0, 'L2 table offset')).toBe(0);
  });

  test('a compressed descriptor with 64 KiB clusters: 54 offset bits, then extra sectors', () => {
    const entry = (1n << 62n) | (3n << 54n) | 1000n;
    const { host, csize } = decodeQcow2CompressedEntry(Number(entry >> 32n), Number(entry & 0xffffffffn), 16);
    expect(host).toBe(1000);
    expect(csize).toBe(4 * 512 - (1000 % 512));
  });
});
