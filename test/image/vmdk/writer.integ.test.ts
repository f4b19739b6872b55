/**
 * streamOptimized VMDK output (docs/output-formats.md §2), written through a pipe and checked by the real
 * oracle (qemu-img info / compare / check) and by walking the stream the way a sequential
 * reader (ESXi, ovftool, VirtualBox) would.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { AllocationMapBuilder } from '../../../src/image/allocation-map';
import { vmdkExactStoredSize, vmdkGrainTableCount, vmdkUpperBoundSize } from '../../../src/image/vmdk/size';
import { VMDK_MAX_GRAIN_SECTORS } from '../../../src/image/vmdk/stored-zlib';
import { VmdkWriter, type VmdkWriteResult, type VmdkWriterOptions } from '../../../src/image/vmdk/writer';
import { GiB, KiB, MiB, fileSize, makeTmpDir, openFileTarget, openPipeTarget, pattern, qemuCheck, qemuCompare, qemuInfo, removeDir, writeRaw, type DiskSource } from '../oracle';

const SECTOR = 512;
const GRAIN = 64 * KiB;

let dir: string;
beforeAll(() => {
  dir = makeTmpDir();
});
afterAll(() => removeDir(dir));

async function writeVmdk(src: DiskSource, file: string, options: Omit<VmdkWriterOptions, 'virtualSize'> = {}): Promise<VmdkWriteResult> {
  const pipe = openPipeTarget(file);
  const writer = new VmdkWriter(pipe.target, { virtualSize: src.virtualSize, ...options });
  for (const w of src.writes) await writer.write(w.offset, w.data);
  const result = await writer.finish();
  await pipe.done();
  return result;
}

interface WalkedStream {
  grains: { lba: number; sector: number; data: Buffer }[];
  grainTables: { index: number; sector: number }[];
  gdSector: number;
  gd: number[];
}

/**
 * Reads the file front to back as a streaming consumer does and checks every structural rule of
 * §2.2: header with GD_AT_END, markers on sector boundaries, grains in ascending LBA order, a GT
 * after each group, then GD, footer (header with the real gdOffset) and EOS as the last sectors.
 */
function walkStream(file: string, virtualSize: number): WalkedStream {
  const buf = fs.readFileSync(file);
  expect(buf.length % SECTOR).toBe(0);
  const head = buf.subarray(0, SECTOR);
  expect(head.toString('latin1', 0, 4)).toBe('KDMV');
  expect(head.readUInt32LE(8)).toBe(0x30001);
  expect(head.readBigUInt64LE(56)).toBe(0xffffffffffffffffn);
  const overHead = Number(head.readBigUInt64LE(64));
  const descriptor = buf.toString('utf8', SECTOR, 21 * SECTOR).replace(/\0+$/, '');
  expect(descriptor).toContain('createType="streamOptimized"');

  const out: WalkedStream = { grains: [], grainTables: [], gdSector: -1, gd: [] };
  let pos = overHead * SECTOR;
  let lastLba = -1;
  let groupOfPendingGrains = -1;
  for (;;) {
    const sector = pos / SECTOR;
    const value = Number(buf.readBigUInt64LE(pos));
    const size = buf.readUInt32LE(pos + 8);
    if (size !== 0) {
      // Grain marker: LBA, compressed size, zlib stream; padded to a sector.
      expect(value).toBeGreaterThan(lastLba);
      expect(value % 128).toBe(0);
      lastLba = value;
      const data = zlib.inflateSync(buf.subarray(pos + 12, pos + 12 + size));
      expect(data.length).toBe(GRAIN); // every grain inflates to a whole grain (VirtualBox rule)
      out.grains.push({ lba: value, sector, data });
      const group = Math.floor(value / 128 / 512);
      expect(groupOfPendingGrains === -1 || groupOfPendingGrains === group).toBe(true);
      groupOfPendingGrains = group;
      const sectors = Math.ceil((12 + size) / SECTOR);
      expect(sectors).toBeLessThanOrEqual(VMDK_MAX_GRAIN_SECTORS);
      pos += sectors * SECTOR;
      continue;
    }
    const type = buf.readUInt32LE(pos + 12);
    expect(buf.subarray(pos + 16, pos + SECTOR).every((b) => b === 0)).toBe(true);
    if (type === 1) {
      // GT marker: 4 sectors of grain table follow; it covers the grains just written.
      expect(value).toBe(4);
      expect(groupOfPendingGrains).toBeGreaterThanOrEqual(0);
      const gt = buf.subarray(pos + SECTOR, pos + 5 * SECTOR);
      const inGroup = out.grains.filter((g) => Math.floor(g.lba / 128 / 512) === groupOfPendingGrains);
      for (const g of inGroup) expect(gt.readUInt32LE(((g.lba / 128) % 512) * 4)).toBe(g.sector);
      const entries = Array.from({ length: 512 }, (_, i) => gt.readUInt32LE(i * 4)).filter((e) => e !== 0);
      expect(entries.length).toBe(inGroup.length);
      out.grainTables.push({ index: groupOfPendingGrains, sector: sector + 1 });
      groupOfPendingGrains = -1;
      pos += 5 * SECTOR;
      continue;
    }
    // Anything else must be the GD marker, and after it the footer and EOS — nothing more.
    expect(groupOfPendingGrains).toBe(-1);
    expect(type).toBe(2);
    const gdSectors = Math.ceil((vmdkGrainTableCount(virtualSize) * 4) / SECTOR);
    expect(value).toBe(gdSectors);
    out.gdSector = sector + 1;
    out.gd = Array.from({ length: vmdkGrainTableCount(virtualSize) }, (_, i) => buf.readUInt32LE(pos + SECTOR + i * 4));
    pos += (1 + gdSectors) * SECTOR;
    break;
  }
  // The file ends with exactly [footer marker][footer][EOS] (docs/output-formats.md §2.5: qemu reads size-1536).
  expect(buf.length - pos).toBe(3 * SECTOR);
  const footerMarker = buf.subarray(pos, pos + SECTOR);
  expect(Number(footerMarker.readBigUInt64LE(0))).toBe(1);
  expect(footerMarker.readUInt32LE(8)).toBe(0);
  expect(footerMarker.readUInt32LE(12)).toBe(3);
  const footer = buf.subarray(pos + SECTOR, pos + 2 * SECTOR);
  expect(footer.toString('latin1', 0, 4)).toBe('KDMV');
  expect(Number(footer.readBigUInt64LE(56))).toBe(out.gdSector);
  expect(Buffer.compare(footer.subarray(0, 56), head.subarray(0, 56))).toBe(0);
  expect(buf.subarray(pos + 2 * SECTOR).every((b) => b === 0)).toBe(true); // EOS
  // GD entries point at the GTs written, 0 for groups without grains.
  const expectedGd = new Array<number>(out.gd.length).fill(0);
  for (const gt of out.grainTables) expectedGd[gt.index] = gt.sector;
  expect(out.gd).toEqual(expectedGd);
  return out;
}

function expectValidVmdk(file: string, raw: string, src: DiskSource, result: VmdkWriteResult): WalkedStream {
  const info = qemuInfo(file, 'vmdk');
  expect(info.format).toBe('vmdk');
  expect(info['format-specific']?.data['create-type']).toBe('streamOptimized');
  expect(info['virtual-size']).toBe(src.virtualSize);
  const cmp = qemuCompare(raw, file, 'vmdk');
  expect(cmp.stdout + cmp.stderr).toContain('Images are identical');
  expect(cmp.status).toBe(0);
  const check = qemuCheck(file, 'vmdk');
  expect(check.status).toBe(0);
  expect(fileSize(file)).toBe(result.imageSize);
  expect(result.imageSize).toBeLessThanOrEqual(vmdkUpperBoundSize(src.virtualSize, result.grains));
  const walked = walkStream(file, src.virtualSize);
  expect(walked.grains.length).toBe(result.grains);
  expect(walked.grainTables.length).toBe(result.grainTables);
  return walked;
}

const scenarios: Record<string, () => DiskSource> = {
  'a small disk with unaligned writes and zero chunks': () => ({
    virtualSize: 16 * MiB,
    writes: [
      { offset: 777, data: pattern(1000, 1) },
      { offset: 70_000, data: pattern(200_000, 2) },
      { offset: 1 * MiB, data: Buffer.alloc(MiB) },
      { offset: 3 * MiB, data: Buffer.from('compressible text '.repeat(60_000)).subarray(0, MiB) },
      { offset: 4 * MiB, data: Buffer.concat([Buffer.alloc(GRAIN), pattern(GRAIN, 4), Buffer.alloc(GRAIN)]) },
      { offset: 16 * MiB - 512, data: pattern(512, 7) },
    ],
  }),
  'a capacity that is not a multiple of the grain size, data in the last grain': () => ({
    virtualSize: 10 * MiB + 3 * 512,
    writes: [
      { offset: 0, data: pattern(512, 8) },
      { offset: 10 * MiB, data: pattern(3 * 512, 9) },
    ],
  }),
  'a 0-byte disk': () => ({ virtualSize: 0, writes: [] }),
  'a disk that received no data at all': () => ({ virtualSize: 100 * MiB, writes: [] }),
  'a sparse disk > 4 GiB: many grain tables, most of them absent': () => ({
    virtualSize: 6 * GiB + 7 * 512,
    writes: [
      { offset: 0, data: pattern(64 * KiB, 10) },
      { offset: 32 * MiB - 30_000, data: pattern(100_000, 11) }, // crosses the first GT boundary
      { offset: 4 * GiB + 3, data: pattern(MiB, 13) },
      { offset: 6 * GiB, data: pattern(7 * 512, 14) },
    ],
  }),
};

const modes: [string, Omit<VmdkWriterOptions, 'virtualSize'>][] = [
  ['zlib level 6, two deflate streams on the thread pool', { level: 6, workers: 2 }],
  ['zlib level 1, on the calling thread', { level: 1, workers: 0 }],
  ['stored deflate (level 0)', { level: 0 }],
];

describe.each(Object.keys(scenarios))('VMDK: %s', (name) => {
  const src = scenarios[name]!();
  let raw: string;
  beforeAll(() => {
    raw = path.join(dir, `${name.length}.raw`);
    writeRaw(raw, src);
  });
  afterAll(() => fs.rmSync(raw, { force: true }));

  test.each(modes)('%s: qemu-img info/compare/check pass, the stream is well formed', async (_mode, options) => {
    const file = path.join(dir, `${name.length}-${options.level}.vmdk`);
    try {
      const result = await writeVmdk(src, file, { ...options, cid: 0x1234abcd });
      if (src.virtualSize === 0) {
        // qemu skips extent lines with 0 sectors, so it cannot open ANY 0-capacity VMDK — not even
        // the streamOptimized file `qemu-img create -f vmdk ... 0` makes. Only the structure is
        // checkable here.
        expect(walkStream(file, 0)).toMatchObject({ grains: [], grainTables: [], gd: [] });
        expect(fileSize(file)).toBe(result.imageSize);
      } else {
        expectValidVmdk(file, raw, src, result);
      }
      if (options.level === 0) {
        const builder = new AllocationMapBuilder(src.virtualSize);
        for (const w of src.writes) await builder.write(w.offset, w.data);
        const { map } = await builder.finish();
        expect(result.imageSize).toBe(vmdkExactStoredSize(src.virtualSize, map));
      }
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});

describe('VMDK details', () => {
  test('the CID is injectable and the output is then deterministic', async () => {
    const src = scenarios['a small disk with unaligned writes and zero chunks']!();
    const a = path.join(dir, 'a.vmdk');
    const b = path.join(dir, 'b.vmdk');
    try {
      await writeVmdk(src, a, { cid: 0xcafe, workers: 2 });
      await writeVmdk(src, b, { cid: 0xcafe, workers: 0 });
      expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
      expect(fs.readFileSync(a).toString('latin1', 512, 21 * 512)).toContain('CID=0000cafe');
      expect(qemuInfo(a, 'vmdk')['format-specific']?.data['cid']).toBe(0xcafe);
    } finally {
      fs.rmSync(a, { force: true });
      fs.rmSync(b, { force: true });
    }
  });

  test('incompressible grains never take more than the stored encoding (129 sectors)', async () => {
    const src: DiskSource = { virtualSize: 4 * MiB, writes: [{ offset: 0, data: pattern(4 * MiB, 99) }] };
    const file = path.join(dir, 'random.vmdk');
    const raw = path.join(dir, 'random.raw');
    try {
      writeRaw(raw, src);
      const result = await writeVmdk(src, file, { level: 9, workers: 0 });
      const walked = expectValidVmdk(file, raw, src, result);
      expect(walked.grains.length).toBe(64);
      expect(result.imageSize).toBeLessThanOrEqual(vmdkUpperBoundSize(src.virtualSize, 64));
    } finally {
      fs.rmSync(file, { force: true });
      fs.rmSync(raw, { force: true });
    }
  });

  test('a seekable file target works too (writes are still strictly sequential)', async () => {
    const src = scenarios['a capacity that is not a multiple of the grain size, data in the last grain']!();
    const file = path.join(dir, 'file.vmdk');
    const raw = path.join(dir, 'file.raw');
    const out = openFileTarget(file);
    try {
      writeRaw(raw, src);
      const writer = new VmdkWriter(out.target, { virtualSize: src.virtualSize });
      for (const w of src.writes) await writer.write(w.offset, w.data);
      const result = await writer.finish();
      out.close();
      expectValidVmdk(file, raw, src, result);
    } finally {
      fs.rmSync(file, { force: true });
      fs.rmSync(raw, { force: true });
    }
  });

  test('bytesWritten / zeroBytesSkipped account for stored and skipped data', async () => {
    const src: DiskSource = { virtualSize: 2 * MiB, writes: [{ offset: 0, data: Buffer.concat([pattern(GRAIN, 1), Buffer.alloc(MiB - GRAIN)]) }] };
    const file = path.join(dir, 'acct.vmdk');
    try {
      const r = await writeVmdk(src, file, { workers: 0 });
      expect(r.bytesWritten).toBe(GRAIN);
      expect(r.zeroBytesSkipped).toBe(MiB - GRAIN);
      expect(r.grains).toBe(1);
      expect(r.grainTables).toBe(1);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});
