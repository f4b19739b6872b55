/**
 * qcow2 output, checked by the real oracle (qemu-img check / compare / info, qemu-io).
 *
 * Two writers produce qcow2 (docs/output-formats.md §1):
 *  - Qcow2Writer: one pass onto a seekable file, layout "end" (§1.9);
 *  - Qcow2StreamWriter: onto a pipe, layout "front" (§1.10), after a first pass that builds the
 *    AllocationMap.
 * Both must give images that qemu-img finds consistent (no errors, no leaks), that read back as
 * the source, whose size is exactly qcow2ExactFileSize, for v3 (compat 1.1) and v2 (compat 0.10).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AllocationMapBuilder } from '../../../src/image/allocation-map';
import { QCOW2_CLUSTER_SIZE, qcow2ExactFileSize, type Qcow2Compat } from '../../../src/image/qcow2/layout';
import { Qcow2StreamWriter } from '../../../src/image/qcow2/stream-writer';
import { Qcow2Writer, type Qcow2WriteResult } from '../../../src/image/qcow2/writer';
import {
  GiB,
  KiB,
  MiB,
  fileSize,
  makeFastTmpDir,
  makeTmpDir,
  openFileTarget,
  openPipeTarget,
  pattern,
  qemuCheck,
  qemuCompare,
  qemuInfo,
  qemuReadPattern,
  removeDir,
  run,
  writeRaw,
  type DiskSource,
} from '../oracle';

const cs = QCOW2_CLUSTER_SIZE;

let dir: string;
beforeAll(() => {
  dir = makeTmpDir();
});
afterAll(() => removeDir(dir));

type Layout = 'end' | 'front';

/** Writes `src` as qcow2 to `file` with the writer for `layout`. */
async function writeQcow2(layout: Layout, compat: Qcow2Compat, src: DiskSource, file: string): Promise<Qcow2WriteResult> {
  if (layout === 'end') {
    const out = openFileTarget(file);
    try {
      const writer = new Qcow2Writer(out.target, { virtualSize: src.virtualSize, compat });
      for (const w of src.writes) await writer.write(w.offset, w.data);
      return await writer.finish();
    } finally {
      out.close();
    }
  }
  // Pass 1: allocation map. Pass 2: stream through a pipe.
  const builder = new AllocationMapBuilder(src.virtualSize);
  for (const w of src.writes) await builder.write(w.offset, w.data);
  const { map } = await builder.finish();
  const pipe = openPipeTarget(file);
  const writer = new Qcow2StreamWriter(pipe.target, { virtualSize: src.virtualSize, map, compat });
  for (const w of src.writes) await writer.write(w.offset, w.data);
  const result = await writer.finish();
  await pipe.done();
  return result;
}

/** The oracle: consistent, identical to the raw, right format/size, exact file length. */
function expectValidQcow2(file: string, raw: string, src: DiskSource, compat: Qcow2Compat, result: Qcow2WriteResult): void {
  const check = qemuCheck(file);
  expect({ status: check.status, corruptions: check.corruptions, leaks: check.leaks, errors: check.checkErrors }).toEqual({ status: 0, corruptions: 0, leaks: 0, errors: 0 });
  const cmp = qemuCompare(raw, file, 'qcow2');
  expect(cmp.stdout + cmp.stderr).toContain('Images are identical');
  expect(cmp.status).toBe(0);
  const info = qemuInfo(file, 'qcow2');
  expect(info.format).toBe('qcow2');
  // qemu counts whole sectors: an odd size is stated rounded up (the tail reads as zeros).
  expect(info['virtual-size']).toBe(Math.ceil(src.virtualSize / 512) * 512);
  expect(info['format-specific']?.data['compat']).toBe(compat);
  const g = result.geometry;
  expect(fileSize(file)).toBe(result.imageSize);
  expect(result.imageSize).toBe(qcow2ExactFileSize(src.virtualSize, g.dataClusters, g.l2Tables));
}

const scenarios: Record<string, () => DiskSource> = {
  'a small disk with unaligned writes, zero chunks and partial clusters': () => ({
    virtualSize: 16 * MiB,
    writes: [
      { offset: 777, data: pattern(1000, 1) }, // inside cluster 0
      { offset: 70_000, data: pattern(200_000, 2) }, // starts mid-cluster, spans 4 clusters
      { offset: 1 * MiB, data: Buffer.alloc(MiB) }, // all zero: never allocated
      { offset: 3 * MiB, data: pattern(MiB, 3) }, // aligned 1 MiB chunk
      { offset: 4 * MiB, data: Buffer.concat([Buffer.alloc(cs), pattern(cs, 4), Buffer.alloc(cs)]) }, // zero clusters around data
      { offset: 5 * MiB + 3, data: pattern(5, 5) }, // tiny write
      { offset: 5 * MiB + 9, data: pattern(cs, 6) }, // adjacent to the previous one, crossing a cluster
      { offset: 16 * MiB - 512, data: pattern(512, 7) }, // last sector
    ],
  }),
  'a virtual size that is not a multiple of 64 KiB, with data in the partial last cluster': () => ({
    virtualSize: 10 * MiB + 3 * 512,
    writes: [
      { offset: 0, data: pattern(512, 8) },
      { offset: 10 * MiB, data: pattern(3 * 512, 9) },
    ],
  }),
  'a virtual size that is not a multiple of 512, with data in its last 57 bytes': () => ({
    virtualSize: 20_983_865,
    writes: [
      { offset: 0, data: pattern(4096, 15) },
      { offset: 20_983_865 - 57, data: pattern(57, 16) },
    ],
  }),
  'a 0-byte disk': () => ({ virtualSize: 0, writes: [] }),
  'a disk that received no data at all': () => ({ virtualSize: 100 * MiB, writes: [] }),
  'a sparse disk > 4 GiB: several L2 tables, writes crossing L2 boundaries': () => ({
    virtualSize: 6 * GiB + 7 * 512,
    writes: [
      { offset: 0, data: pattern(64 * KiB, 10) },
      { offset: 512 * MiB - 30_000, data: pattern(100_000, 11) }, // crosses the L2 table boundary at 512 MiB
      { offset: 2 * GiB - 100, data: pattern(300, 12) },
      { offset: 4 * GiB + 3, data: pattern(MiB, 13) }, // beyond 32-bit offsets
      { offset: 6 * GiB, data: pattern(7 * 512, 14) }, // the partial last cluster
    ],
  }),
};

describe.each([['1.1' as const], ['0.10' as const]])('qcow2 compat %s', (compat) => {
  describe.each(Object.keys(scenarios))('%s', (name) => {
    const src = scenarios[name]!();
    let raw: string;
    const results: Partial<Record<Layout, Qcow2WriteResult>> = {};
    beforeAll(() => {
      raw = path.join(dir, `${name.length}-${compat}.raw`);
      writeRaw(raw, src);
    });

    test.each([['end' as const], ['front' as const]])('layout %s: qemu-img check/compare/info pass, size is exact', async (layout) => {
      const file = path.join(dir, `${name.length}-${compat}-${layout}.qcow2`);
      try {
        const result = await writeQcow2(layout, compat, src, file);
        results[layout] = result;
        expectValidQcow2(file, raw, src, compat, result);
      } finally {
        fs.rmSync(file, { force: true });
      }
    });

    test('both layouts store the same clusters and have the same size', () => {
      expect(results.end && results.front).toBeTruthy();
      expect(results.front!.imageSize).toBe(results.end!.imageSize);
      expect(results.front!.geometry).toEqual(results.end!.geometry);
    });

    afterAll(() => fs.rmSync(raw, { force: true }));
  });
});

describe('details of the files', () => {
  test('the sparse > 4 GiB disk uses 6 of 13 L2 tables and only 24 data clusters', async () => {
    const src = scenarios['a sparse disk > 4 GiB: several L2 tables, writes crossing L2 boundaries']!();
    const file = path.join(dir, 'detail.qcow2');
    try {
      const r = await writeQcow2('end', '1.1', src, file);
      // clusters 0 | 8191, 8192, 8193 | 32767, 32768 | 65536…65552 | 98304
      // L2 tables (8192 clusters each) 0, 1, 3, 4, 8, 12
      expect(r.geometry.dataClusters).toBe(24);
      expect(r.geometry.l2Tables).toBe(6);
      expect(r.geometry.l1Entries).toBe(13);
      expect(r.bytesWritten).toBe(r.geometry.dataClusters * cs - (cs - 7 * 512));
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  test('layout end: the header is the last thing written; cluster 0 holds it and nothing else', async () => {
    const file = path.join(dir, 'hdr.qcow2');
    try {
      await writeQcow2('end', '1.1', { virtualSize: MiB, writes: [{ offset: 0, data: pattern(MiB, 1) }] }, file);
      const head = fs.readFileSync(file).subarray(0, cs);
      expect(head.readUInt32BE(0)).toBe(0x514649fb);
      expect(head.subarray(112).every((b) => b === 0)).toBe(true);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  test('the stream writer rejects data in a cluster the first pass saw as zero (source changed)', async () => {
    const builder = new AllocationMapBuilder(4 * MiB);
    await builder.write(0, pattern(cs, 1));
    const { map } = await builder.finish();
    const pipe = openPipeTarget(path.join(dir, 'changed.qcow2'));
    const writer = new Qcow2StreamWriter(pipe.target, { virtualSize: 4 * MiB, map });
    await writer.write(0, pattern(cs, 1));
    await expect(writer.write(2 * MiB, pattern(cs, 2))).rejects.toMatchObject({ code: 'XVA_BAD_ENTRY' });
    await expect(writer.finish()).rejects.toMatchObject({ code: 'XVA_BAD_ENTRY' }); // the writer stays failed
    await pipe.abort();
  });

  test('…also when the changed data is a partial cluster only seen at finish()', async () => {
    const map = (await new AllocationMapBuilder(4 * MiB).finish()).map;
    const pipe = openPipeTarget(path.join(dir, 'changed2.qcow2'));
    const writer = new Qcow2StreamWriter(pipe.target, { virtualSize: 4 * MiB, map });
    await writer.write(2 * MiB + 5, pattern(10, 2));
    await expect(writer.finish()).rejects.toMatchObject({ code: 'XVA_BAD_ENTRY' });
    await pipe.abort();
  });

  test('the stream writer writes mapped clusters even when they arrive as zeros or not at all', async () => {
    const virtualSize = 4 * MiB;
    const map = (await (async () => {
      const b = new AllocationMapBuilder(virtualSize);
      await b.write(0, pattern(3 * cs, 1));
      await b.write(2 * MiB, pattern(cs, 2));
      return b.finish();
    })()).map;
    const file = path.join(dir, 'authoritative.qcow2');
    const raw = path.join(dir, 'authoritative.raw');
    // Second pass delivers only cluster 1 (others: zeros or nothing).
    const src: DiskSource = { virtualSize, writes: [{ offset: 0, data: Buffer.concat([Buffer.alloc(cs), pattern(cs, 3)]) }] };
    try {
      writeRaw(raw, src);
      const pipe = openPipeTarget(file);
      const writer = new Qcow2StreamWriter(pipe.target, { virtualSize, map });
      for (const w of src.writes) await writer.write(w.offset, w.data);
      const r = await writer.finish();
      await pipe.done();
      expect(r.geometry.dataClusters).toBe(4);
      expect(fileSize(file)).toBe(qcow2ExactFileSize(virtualSize, 4, 1));
      expectValidQcow2(file, raw, src, '1.1', r);
    } finally {
      fs.rmSync(file, { force: true });
      fs.rmSync(raw, { force: true });
    }
  });
});

describe('a file larger than 2 GiB needs a second refcount block (§1.5)', () => {
  // 2 GiB + 64 MiB of non-zero data: 33792 data clusters (+ metadata) > 32768 refcounts per block.
  const virtualSize = 3 * GiB;
  const chunks = (2 * GiB + 64 * MiB) / MiB;
  const fillOf = (i: number) => (i % 250) + 1;
  let bigDir: string;
  beforeAll(() => {
    bigDir = makeFastTmpDir(6 * GiB);
  });
  afterAll(() => removeDir(bigDir));

  async function feedBig(writer: { write(o: number, d: Buffer): Promise<void> }): Promise<void> {
    const chunk = Buffer.alloc(MiB);
    for (let i = 0; i < chunks; i++) {
      chunk.fill(fillOf(i)); // the buffer is ours again once write() resolves
      await writer.write(i * MiB, chunk);
    }
  }

  test.each([['end' as const], ['front' as const]])('layout %s', async (layout) => {
    const file = path.join(bigDir, `big-${layout}.qcow2`);
    try {
      let result: Qcow2WriteResult;
      if (layout === 'end') {
        const out = openFileTarget(file);
        const writer = new Qcow2Writer(out.target, { virtualSize });
        await feedBig(writer);
        result = await writer.finish();
        out.close();
      } else {
        const builder = new AllocationMapBuilder(virtualSize);
        await feedBig(builder);
        const { map } = await builder.finish();
        const pipe = openPipeTarget(file);
        const writer = new Qcow2StreamWriter(pipe.target, { virtualSize, map });
        await feedBig(writer);
        result = await writer.finish();
        await pipe.done();
      }
      expect(result.geometry.refcountBlocks).toBe(2);
      expect(result.geometry.l2Tables).toBe(5);
      expect(fileSize(file)).toBe(qcow2ExactFileSize(virtualSize, chunks * 16, 5));
      const check = qemuCheck(file);
      expect({ status: check.status, corruptions: check.corruptions, leaks: check.leaks }).toEqual({ status: 0, corruptions: 0, leaks: 0 });
      for (const i of [0, 1, 2047, 2048, chunks - 1]) {
        const r = qemuReadPattern(file, 'qcow2', fillOf(i), i * MiB, MiB);
        expect(r.stdout).not.toContain('Pattern verification failed');
        expect(r.status).toBe(0);
      }
      const tail = qemuReadPattern(file, 'qcow2', 0, chunks * MiB, virtualSize - chunks * MiB);
      expect(tail.stdout).not.toContain('Pattern verification failed');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});

describe('size compared with qemu-img convert -O qcow2', () => {
  test('a realistic 64 MiB disk (random, text-like and zero regions) is within 1% of qemu-img', async () => {
    const virtualSize = 64 * MiB;
    const writes = [];
    for (let i = 0; i < 64; i++) {
      const kind = (i * 7) % 5;
      let data: Buffer;
      if (kind === 0) data = Buffer.alloc(MiB); // empty chunk
      else if (kind === 1) data = pattern(MiB, i); // random
      else if (kind === 2) data = Buffer.from('lorem ipsum dolor sit amet '.repeat(40_000)).subarray(0, MiB); // compressible
      else if (kind === 3) data = Buffer.concat([pattern(300 * KiB, i), Buffer.alloc(MiB - 300 * KiB)]); // half empty
      else continue; // never delivered (a hole in the source)
      writes.push({ offset: i * MiB, data });
    }
    const src: DiskSource = { virtualSize, writes };
    const raw = path.join(dir, 'realistic.raw');
    const ours = path.join(dir, 'realistic.qcow2');
    const theirs = path.join(dir, 'realistic-qemu.qcow2');
    try {
      writeRaw(raw, src);
      const result = await writeQcow2('end', '1.1', src, ours);
      expectValidQcow2(ours, raw, src, '1.1', result);
      const conv = run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, theirs]);
      expect(conv.status).toBe(0);
      const ratio = fileSize(ours) / fileSize(theirs);
      expect(ratio).toBeGreaterThan(0.99);
      expect(ratio).toBeLessThan(1.01);
    } finally {
      for (const f of [raw, ours, theirs]) fs.rmSync(f, { force: true });
    }
  });
});
