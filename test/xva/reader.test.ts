/**
 * The reader against XVAs from a second, independent producer (test/helpers/independent_xva.py)
 * in the three styles seen in the wild: XAPI (V7 headers, keep-alives), Xen Orchestra (ustar,
 * padded chunks), xva-img (mode 0, SHA-1, partial tail dropped).
 */
import { readXva } from '../../src/xva/reader';
import type { DiskInfo } from '../../src/xva/metadata/model';
import { ChecksumError, XvaFormatError } from '../../src/errors';
import { bufferSource } from '../helpers/sources';
import { MemoryWriter } from '../helpers/memory-writer';
import { independentXva, pseudoRandom } from '../helpers/independent';

const MiB = 1024 * 1024;

/** A disk with data, a zero MiB inside (absent chunk), and a present-but-partly-zero chunk. */
function sampleDisk(size: number, seed: number): Buffer {
  const d = pseudoRandom(size, seed);
  if (size > 3 * MiB) d.fill(0, MiB, 2 * MiB); // a whole zero chunk: left out by the writer
  d.fill(0, 0, 4096); // zeros inside a present chunk
  return d;
}

async function readAll(xva: Buffer, opts: Parameters<typeof readXva>[2] = {}) {
  const writers = new Map<string, MemoryWriter>();
  const result = await readXva(
    bufferSource(xva),
    {
      openDisk: (d: DiskInfo) => {
        const w = new MemoryWriter(d.virtualSize);
        writers.set(d.userdevice, w);
        return w;
      },
    },
    opts,
  );
  return { result, writers };
}

describe('XAPI-style archives', () => {
  test.each(['xxh64', 'sha1'] as const)('%s: multi-disk in string order, keep-alives, odd size', async (checksum) => {
    const d0 = sampleDisk(5 * MiB + 3 * 512, 1);
    const d1 = sampleDisk(2 * MiB, 2);
    const xva = independentXva({
      style: 'xapi',
      checksum,
      disks: [
        { ref: 'Ref:998', userdevice: '0', image: d0, keepaliveBefore: [1, 3] },
        { ref: 'Ref:1003', userdevice: '1', image: d1 },
      ],
    });
    const { result, writers } = await readAll(xva);
    expect(result.checksum).toBe(checksum);
    expect(result.metadata.streamedRefs).toEqual(['Ref:1003', 'Ref:998']);
    expect(writers.get('0')!.bytes.equals(d0)).toBe(true);
    expect(writers.get('1')!.bytes.equals(d1)).toBe(true);
    const s0 = result.disks.find((d) => d.ref === 'Ref:998')!;
    expect(s0.keepAlives).toBe(2);
    expect(result.warnings).toEqual([]);
  });

  test('an all-zero disk is just its first and last chunk', async () => {
    const zero = Buffer.alloc(3 * MiB);
    const { result, writers } = await readAll(independentXva({ style: 'xapi', disks: [{ ref: 'Ref:1', userdevice: '0', image: zero }] }));
    expect(writers.get('0')!.bytes.equals(zero)).toBe(true);
    expect(result.disks[0]!.chunks).toBe(2);
  });

  test('a checksum mismatch names the chunk and both digests', async () => {
    const d0 = sampleDisk(2 * MiB, 3);
    const xva = independentXva({ style: 'xapi', disks: [{ ref: 'Ref:7', userdevice: '0', image: d0 }] });
    // Flip a byte inside the data of Ref:7/00000001: find its header by name.
    const at = xva.indexOf('Ref:7/00000001\0');
    xva[at + 512 + 100]! ^= 0xff;
    await expect(readAll(xva)).rejects.toThrow(ChecksumError);
    await expect(readAll(xva)).rejects.toThrow(/^Ref:7\/00000001: XXH64 mismatch \(expected [0-9A-F]{16}, got [0-9A-F]{16}\)$/);
    const warned = await readAll(xva, { onBadChunk: 'warn' });
    expect(warned.result.badChunks).toEqual([expect.objectContaining({ entry: 'Ref:7/00000001', offset: MiB, action: 'kept' })]);
    const zeroed = await readAll(xva, { onBadChunk: 'zero' });
    expect(zeroed.writers.get('0')!.bytes.subarray(MiB).equals(Buffer.alloc(MiB))).toBe(true);
  });
});

describe('other producers', () => {
  test('Xen Orchestra style: ustar headers, padded chunks, virtual_size rounded up', async () => {
    const d0 = sampleDisk(7 * MiB + 4096, 4);
    const { result, writers } = await readAll(independentXva({ style: 'xo', disks: [{ ref: 'Ref:000', userdevice: '0', image: d0 }] }));
    const w = writers.get('0')!;
    expect(w.virtualSize).toBe(8 * MiB);
    expect(w.bytes.subarray(0, d0.length).equals(d0)).toBe(true);
    expect(result.warnings).toEqual([]);
  });

  test('xva-img style: mode 0, SHA-1, trailing partial MiB dropped -> zero-filled with a warning', async () => {
    const d0 = sampleDisk(3 * MiB + 1024, 5);
    const { result, writers } = await readAll(independentXva({ style: 'xvaimg', disks: [{ ref: 'Ref:3', userdevice: '0', image: d0 }] }));
    const w = writers.get('0')!;
    expect(w.bytes.subarray(0, 3 * MiB).equals(d0.subarray(0, 3 * MiB))).toBe(true);
    expect(w.bytes.subarray(3 * MiB).equals(Buffer.alloc(1024))).toBe(true);
    expect(result.checksum).toBe('sha1');
    expect(result.warnings.join('\n')).toMatch(/zero-filled/);
  });
});

describe('structure errors name the place', () => {
  const good = (): Buffer => independentXva({ style: 'xapi', disks: [{ ref: 'Ref:9', userdevice: '0', image: sampleDisk(2 * MiB, 6) }] });

  test('truncated mid-chunk', async () => {
    const xva = good();
    const cut = xva.subarray(0, xva.indexOf('Ref:9/00000001\0') + 512 + 1000);
    await expect(readAll(cut)).rejects.toMatchObject({ code: 'TAR_TRUNCATED' });
  });

  test('truncated at an entry boundary before the disk is complete', async () => {
    const xva = good();
    const cut = xva.subarray(0, xva.indexOf('Ref:9/00000001\0'));
    await expect(readAll(cut)).rejects.toMatchObject({ code: 'TAR_TRUNCATED' });
  });

  test('a bad tar header checksum reports the header offset', async () => {
    const xva = good();
    const at = xva.indexOf('Ref:9/00000001\0');
    xva[at + 130]! ^= 1; // inside the size field
    await expect(readAll(xva)).rejects.toMatchObject({ code: 'TAR_BAD_HEADER', location: { offset: at } });
  });

  test('ova.xml not first', async () => {
    const xva = good();
    const bad = Buffer.concat([xva.subarray(xva.indexOf('Ref:9/00000000\0'))]);
    await expect(readAll(bad)).rejects.toMatchObject({ code: 'XVA_NO_OVA_XML' });
  });

  test('a chunk without its checksum file', async () => {
    const xva = good();
    const sum = xva.indexOf('Ref:9/00000000.xxhash\0');
    const withoutSum = Buffer.concat([xva.subarray(0, sum), xva.subarray(sum + 1024)]);
    await expect(readAll(withoutSum)).rejects.toMatchObject({ code: 'XVA_MISSING_CHECKSUM' });
  });

  test('garbage bytes are not a tar archive', async () => {
    await expect(readAll(Buffer.alloc(4096, 0x41))).rejects.toBeInstanceOf(XvaFormatError);
  });
});
