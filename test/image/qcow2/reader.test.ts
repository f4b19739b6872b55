/**
 * qcow2 reader without external tools: round trips through the project's own qcow2 writers,
 * hand-made broken headers, and the streamDiskImage pump over a mock reader.
 */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { ImageFormatError } from '../../../src/errors';
import { AllocationMapBuilder } from '../../../src/image/allocation-map';
import { streamDiskImage } from '../../../src/image/disk-reader';
import type { DiskExtent, DiskReader } from '../../../src/io/disk';
import { openDiskImage, Qcow2Reader } from '../../../src/image/qcow2/reader';
import { Qcow2StreamWriter } from '../../../src/image/qcow2/stream-writer';
import { RawReader } from '../../../src/image/raw/reader';
import { makeTmp, MemoryDiskWriter, openFileTarget } from '../../ova/_helpers';

const KiB = 1024;

let tmp: ReturnType<typeof makeTmp>;
beforeAll(() => {
  tmp = makeTmp('qcow2u-');
});
afterAll(() => tmp.cleanup());

async function writeQcow2(file: string, disk: Buffer): Promise<void> {
  const b = new AllocationMapBuilder(disk.length);
  await b.write(0, disk);
  const { map } = await b.finish();
  const { target, close } = openFileTarget(file);
  try {
    const w = new Qcow2StreamWriter(target, { virtualSize: disk.length, map });
    await w.write(0, disk);
    await w.finish();
  } finally {
    close();
  }
}

function header(fields: { version?: number; clusterBits?: number; size?: number; crypt?: number; l1Size?: number; l1Offset?: number; incompat?: number }): Buffer {
  const h = Buffer.alloc(512);
  h.writeUInt32BE(0x514649fb, 0);
  h.writeUInt32BE(fields.version ?? 3, 4);
  h.writeUInt32BE(fields.clusterBits ?? 16, 20);
  h.writeUInt32BE(0, 24);
  h.writeUInt32BE(fields.size ?? 1 << 20, 28);
  h.writeUInt32BE(fields.crypt ?? 0, 32);
  h.writeUInt32BE(fields.l1Size ?? 1, 36);
  h.writeUInt32BE(fields.l1Offset ?? 512, 44);
  h.writeUInt32BE(fields.incompat ?? 0, 76);
  h.writeUInt32BE(104, 100);
  return h;
}

describe('Qcow2Reader', () => {
  test('round trip through Qcow2StreamWriter for random sparse disks (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 * 64 * KiB }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 200 * KiB }), fc.integer({ min: 1, max: 255 })), { maxLength: 6 }),
        async (size, fills) => {
          const disk = Buffer.alloc(size);
          for (const [at, len, byte] of fills) disk.fill(byte, at % size, Math.min(size, (at % size) + len));
          const file = path.join(tmp.dir, 'rt.qcow2');
          await writeQcow2(file, disk);
          const r = await Qcow2Reader.open(file);
          try {
            // The image states whole sectors; the tail past the source reads as zeros.
            const stated = Math.ceil(size / 512) * 512;
            expect(r.virtualSize).toBe(stated);
            const w = new MemoryDiskWriter(stated);
            await streamDiskImage(r, w);
            expect(w.buf.subarray(0, size).equals(disk)).toBe(true);
            expect(w.buf.subarray(size).every((b) => b === 0)).toBe(true);
            // odd-sized random reads, including past the end
            const probe = await r.read(size - 1, 3);
            expect(probe[0]).toBe(disk[size - 1]);
            expect(probe.subarray(1).every((b) => b === 0)).toBe(true);
          } finally {
            await r.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  test('allocated extents are the non-zero clusters', async () => {
    const disk = Buffer.alloc(1024 * KiB);
    disk.fill(1, 64 * KiB, 64 * KiB + 10);
    disk.fill(2, 128 * KiB, 200 * KiB);
    disk.fill(3, 900 * KiB, 901 * KiB);
    const file = path.join(tmp.dir, 'ext.qcow2');
    await writeQcow2(file, disk);
    const r = await openDiskImage(file);
    const ext: DiskExtent[] = [];
    for await (const e of r.allocatedExtents()) ext.push(e);
    await r.close();
    expect(ext).toEqual([
      { offset: 64 * KiB, length: 192 * KiB },
      { offset: 896 * KiB, length: 64 * KiB },
    ]);
  });

  test.each([
    ['bad magic', Buffer.from('not a qcow2 image at all, just text........................................................')],
    ['version 4', header({ version: 4 })],
    ['cluster_bits 8', header({ clusterBits: 8 })],
    ['cluster_bits 22', header({ clusterBits: 22 })],
    ['encryption', header({ crypt: 1 })],
    ['L1 too small', header({ size: 1 << 30, l1Size: 1, clusterBits: 9 })],
    ['corrupt bit', header({ incompat: 2 })],
    ['unknown incompatible bit', header({ incompat: 64 })],
    ['L1 beyond the file', header({ l1Offset: 1 << 20 })],
  ])('refuses %s with ImageFormatError', async (_name, bytes) => {
    const file = path.join(tmp.dir, 'bad.qcow2');
    writeFileSync(file, Buffer.concat([bytes, Buffer.alloc(Math.max(0, 1024 - bytes.length))]));
    await expect(Qcow2Reader.open(file)).rejects.toBeInstanceOf(ImageFormatError);
  });

  test('raw files: whole file is one extent, reads past the end are zeros; VMDK/VHD inputs refused', async () => {
    const file = path.join(tmp.dir, 'r.raw');
    writeFileSync(file, Buffer.from('hello'));
    const r = await openDiskImage(file);
    expect(r).toBeInstanceOf(RawReader);
    expect((await r.read(3, 4)).toString('latin1')).toBe('lo\u0000\u0000');
    await r.close();
    writeFileSync(file, Buffer.concat([Buffer.from('KDMV'), Buffer.alloc(508)]));
    await expect(openDiskImage(file)).rejects.toThrow(/VMDK input/);
    await expect(openDiskImage(path.join(tmp.dir, 'missing.raw'))).rejects.toMatchObject({ code: 'INPUT_UNREADABLE', exitCode: 2 }); // as a missing XVA
  });
});

describe('streamDiskImage', () => {
  /** A reader with given extents over a buffer. */
  function mockReader(data: Buffer, extents: DiskExtent[]): DiskReader {
    return {
      name: 'mock',
      format: 'raw',
      virtualSize: data.length,
      async readInto(buf, offset) {
        buf.fill(0);
        data.copy(buf, 0, offset, Math.min(data.length, offset + buf.length));
      },
      async read(offset, length) {
        const b = Buffer.alloc(length);
        await this.readInto(b, offset);
        return b;
      },
      async *allocatedExtents() {
        yield* extents;
      },
      async close() {},
    };
  }

  test('skips zero blocks, aligns them to the 64 KiB grid, writes ascending, sees only extents', async () => {
    const data = Buffer.alloc(1024 * KiB);
    data.fill(9, 70 * KiB, 75 * KiB); // inside cluster 1
    data.fill(8, 300 * KiB, 301 * KiB); // cluster 4
    data.fill(7, 900 * KiB, 901 * KiB); // outside every extent: never read
    const w = new MemoryDiskWriter(data.length);
    await streamDiskImage(mockReader(data, [{ offset: 10 * KiB, length: 500 * KiB }]), w, { chunkSize: 128 * KiB });
    expect(w.writes).toEqual([
      [64 * KiB, 64 * KiB],
      [256 * KiB, 64 * KiB],
    ]);
    expect(w.buf.subarray(0, 800 * KiB).equals(data.subarray(0, 800 * KiB))).toBe(true);
    expect(w.buf[900 * KiB]).toBe(0);
  });
});
