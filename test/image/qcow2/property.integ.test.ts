/**
 * Property: for any sparse disk, both qcow2 writers (layout end via Qcow2Writer, layout front via
 * AllocationMapBuilder + Qcow2StreamWriter) produce images that qemu-img finds consistent, that
 * read back identical to the raw disk, and whose size is exactly qcow2ExactFileSize.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { AllocationMapBuilder } from '../../../src/image/allocation-map';
import { qcow2ExactFileSize } from '../../../src/image/qcow2/layout';
import { Qcow2StreamWriter } from '../../../src/image/qcow2/stream-writer';
import { Qcow2Writer } from '../../../src/image/qcow2/writer';
import { CLUSTER_SIZE } from '../../../src/image/types';
import { MiB, fileSize, makeTmpDir, openFileTarget, openPipeTarget, pattern, qemuCheck, qemuCompare, removeDir, writeRaw, type DiskSource, type SourceWrite } from '../oracle';

const cs = CLUSTER_SIZE;

/** A random disk: size in sectors (up to ~1.5 GiB: up to 3 L2 tables) and a few touched clusters. */
const diskArb = fc
  .record({
    sectors: fc.integer({ min: 1, max: (1536 * MiB) / 512 }),
    touched: fc.uniqueArray(
      fc.record({
        at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        start: fc.integer({ min: 0, max: cs - 1 }),
        length: fc.integer({ min: 1, max: 3 * cs }),
        zero: fc.boolean(),
      }),
      { maxLength: 25, selector: (t) => t.at },
    ),
  })
  .map(({ sectors, touched }): DiskSource => {
    const virtualSize = sectors * 512;
    const clusters = Math.ceil(virtualSize / cs);
    const writes: SourceWrite[] = [];
    let end = 0;
    const sorted = [...touched].sort((a, b) => a.at - b.at);
    sorted.forEach((t, i) => {
      const offset = Math.max(end, Math.floor(t.at * clusters) * cs + t.start);
      const length = Math.min(t.length, virtualSize - offset);
      if (length <= 0) return;
      writes.push({ offset, data: t.zero ? Buffer.alloc(length) : pattern(length, i + 1) });
      end = offset + length;
    });
    return { virtualSize, writes };
  });

let dir: string;
beforeAll(() => {
  dir = makeTmpDir('xva2img-prop-');
});
afterAll(() => removeDir(dir));

test('random sparse disks: both qcow2 writers match the raw disk under qemu-img', async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(diskArb, fc.constantFrom('1.1' as const, '0.10' as const), async (src, compat) => {
      const id = n++;
      const raw = path.join(dir, `${id}.raw`);
      const end = path.join(dir, `${id}-end.qcow2`);
      const front = path.join(dir, `${id}-front.qcow2`);
      try {
        writeRaw(raw, src);

        const out = openFileTarget(end);
        const w1 = new Qcow2Writer(out.target, { virtualSize: src.virtualSize, compat });
        for (const w of src.writes) await w1.write(w.offset, w.data);
        const r1 = await w1.finish();
        out.close();

        const builder = new AllocationMapBuilder(src.virtualSize);
        for (const w of src.writes) await builder.write(w.offset, w.data);
        const { map } = await builder.finish();
        const pipe = openPipeTarget(front);
        const w2 = new Qcow2StreamWriter(pipe.target, { virtualSize: src.virtualSize, map, compat });
        for (const w of src.writes) await w2.write(w.offset, w.data);
        const r2 = await w2.finish();
        await pipe.done();

        const exact = qcow2ExactFileSize(src.virtualSize, map.count, map.usedRegions);
        expect([fileSize(end), fileSize(front), r1.imageSize, r2.imageSize]).toEqual([exact, exact, exact, exact]);
        for (const file of [end, front]) {
          const check = qemuCheck(file);
          expect({ status: check.status, corruptions: check.corruptions, leaks: check.leaks }).toEqual({ status: 0, corruptions: 0, leaks: 0 });
          expect(qemuCompare(raw, file, 'qcow2').status).toBe(0);
        }
      } finally {
        for (const f of [raw, end, front]) fs.rmSync(f, { force: true });
      }
    }),
    { numRuns: 15 },
  );
});
