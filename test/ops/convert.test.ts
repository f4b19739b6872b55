/**
 * convertXva end to end on real files: golden round trips (source raw -> XVA -> xva2img ->
 * identical bytes), sparse output checked through allocated blocks, and the .part discipline.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertXva, type ConvertOptions } from '../../src/ops/convert';
import { NameAllocator } from '../../src/output/naming';
import { PartFile } from '../../src/output/part-file';
import { FLUSH_BEHIND_BYTES, type ImageWritePolicy } from '../../src/output/write-policy';
import { independentXva, pseudoRandom } from '../helpers/independent';

const MiB = 1024 * 1024;
let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'convert-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function disk(size: number, seed: number): Buffer {
  const d = pseudoRandom(size, seed);
  // Holes: a whole absent MiB and zero 4 KiB blocks inside present chunks.
  if (size >= 4 * MiB) d.fill(0, 2 * MiB, 3 * MiB);
  d.fill(0, 64 * 1024, 64 * 1024 + 3 * 4096);
  return d;
}

test('raw output is sparse: absent chunks and zero 4 KiB blocks are holes', async () => {
  const d0 = disk(6 * MiB, 11);
  const xva = path.join(dir, 'vm.xva');
  fs.writeFileSync(xva, independentXva({ style: 'xapi', vmName: 'web01', disks: [{ ref: 'Ref:50', userdevice: '0', image: d0 }] }));
  const out = path.join(dir, 'out');
  const summary = await convertXva(xva, { outDir: out });
  const file = path.join(out, 'web01-0.raw');
  expect(summary.disks[0]!.path).toBe(file);
  expect(fs.readFileSync(file).equals(d0)).toBe(true);
  const st = fs.statSync(file);
  expect(st.size).toBe(6 * MiB);
  // 1 MiB absent + 12 KiB of zero blocks were never written: allocated < size - 1 MiB.
  expect(st.blocks * 512).toBeLessThanOrEqual(6 * MiB - MiB - 12 * 1024);
  expect(summary.disks[0]!.bytesWritten).toBe(5 * MiB - 12 * 1024);
  expect(fs.readdirSync(out)).toEqual(['web01-0.raw']);
});

test('an existing output is refused before reading data, and kept; --force replaces it', async () => {
  const d0 = disk(2 * MiB, 12);
  const xva = path.join(dir, 'vm.xva');
  fs.writeFileSync(xva, independentXva({ style: 'xapi', vmName: 'web01', disks: [{ ref: 'Ref:50', userdevice: '0', image: d0 }] }));
  const existing = path.join(dir, 'web01-0.raw');
  fs.writeFileSync(existing, 'precious');
  await expect(convertXva(xva, { outDir: dir })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS', exitCode: 4 });
  expect(fs.readFileSync(existing, 'utf8')).toBe('precious');
  expect(fs.readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
  await convertXva(xva, { outDir: dir, force: true });
  expect(fs.readFileSync(existing).equals(d0)).toBe(true);
});

test('a checksum failure leaves no output under the final name and no .part', async () => {
  const d0 = disk(3 * MiB, 13);
  const bytes = independentXva({ style: 'xapi', vmName: 'web01', disks: [{ ref: 'Ref:50', userdevice: '0', image: d0 }] });
  bytes[bytes.indexOf('Ref:50/00000002\0') + 512 + 7]! ^= 0x55;
  const xva = path.join(dir, 'vm.xva');
  fs.writeFileSync(xva, bytes);
  const out = path.join(dir, 'out');
  await expect(convertXva(xva, { outDir: out })).rejects.toMatchObject({ code: 'XVA_BAD_CHECKSUM', exitCode: 3 });
  expect(fs.readdirSync(out)).toEqual([]);
});

/** dir/vm.xva: VM "two", disk 0 (Ref:998) and disk 1 (Ref:1003), as XAPI writes it. */
function writeTwoDiskXva(d0: Buffer, d1: Buffer): string {
  const xva = path.join(dir, 'vm.xva');
  const disks = [
    { ref: 'Ref:998', userdevice: '0', image: d0 },
    { ref: 'Ref:1003', userdevice: '1', image: d1 },
  ];
  fs.writeFileSync(xva, independentXva({ style: 'xapi', vmName: 'two', disks }));
  return xva;
}

test('disk selection and a single output file', async () => {
  const d0 = disk(2 * MiB, 14);
  const d1 = disk(MiB + 512, 15);
  const xva = writeTwoDiskXva(d0, d1);
  await expect(convertXva(xva, { outFile: path.join(dir, 'x.raw') })).rejects.toMatchObject({ code: 'USAGE' });
  const s = await convertXva(xva, { outFile: path.join(dir, 'data.raw'), disks: ['1'] });
  expect(s.disks.map((d) => d.userdevice)).toEqual(['1']);
  expect(fs.readFileSync(path.join(dir, 'data.raw')).equals(d1)).toBe(true);
  await expect(convertXva(xva, { outDir: dir, disks: ['7'] })).rejects.toThrow(/no disk "7"/);
});

test('--disk is a set: a disk named twice (by userdevice, ref or uuid) is written once, under its own name', async () => {
  const d0 = disk(2 * MiB, 16);
  const xva = writeTwoDiskXva(d0, disk(MiB, 17));
  for (const disks of [['0', '0'], ['0', 'Ref:998'], ['Ref:998', '0', 'Ref:998']]) {
    const out = path.join(dir, `out-${disks.join('+')}`);
    const names = new NameAllocator();
    const s = await convertXva(xva, { outDir: out, disks, names });
    expect(s.disks.map((d) => [d.userdevice, d.path])).toEqual([['0', path.join(out, 'two-0.raw')]]);
    expect(s.unselectedDisks).toEqual(['1']);
    expect(fs.readdirSync(out)).toEqual(['two-0.raw']);
    expect(fs.readFileSync(path.join(out, 'two-0.raw')).equals(d0)).toBe(true);
    // nothing else was claimed: the next conversion of this VM into the same directory gets -2, not -3
    expect(names.allocate('two-0', 'raw')).toBe('two-0-2.raw');
  }
  // and it is one disk for a single output file
  await convertXva(xva, { outFile: path.join(dir, 'one.raw'), disks: ['0', 'Ref:998'] });
  expect(fs.readFileSync(path.join(dir, 'one.raw')).equals(d0)).toBe(true);
});

test('a shared NameAllocator: a failed conversion gives back the names it left nothing under', async () => {
  const d0 = disk(3 * MiB, 18);
  const bytes = independentXva({ style: 'xapi', vmName: 'web01', disks: [{ ref: 'Ref:50', userdevice: '0', image: d0 }] });
  const xva = path.join(dir, 'vm.xva');
  fs.writeFileSync(xva, bytes);
  const cut = path.join(dir, 'cut.xva');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.indexOf('Ref:50/00000001\0')));
  const out = path.join(dir, 'out');
  const names = new NameAllocator();
  await expect(convertXva(cut, { outDir: out, names })).rejects.toMatchObject({ code: 'TAR_TRUNCATED' });
  expect(fs.readdirSync(out)).toEqual([]);
  const s = await convertXva(xva, { outDir: out, names });
  expect(s.disks[0]!.path).toBe(path.join(out, 'web01-0.raw'));
  // web01-0.raw stays taken (it was written); nothing else is
  expect(names.allocate('web01-0', 'raw')).toBe('web01-0-2.raw');
  expect(names.allocate('web01-0', 'raw')).toBe('web01-0-3.raw');
});

test('a file that existed before the run is refused, not sidestepped: its name is not taken by the failed conversion', async () => {
  const xva = path.join(dir, 'vm.xva');
  fs.writeFileSync(xva, independentXva({ style: 'xapi', vmName: 'web01', disks: [{ ref: 'Ref:50', userdevice: '0', image: disk(MiB, 19) }] }));
  fs.writeFileSync(path.join(dir, 'web01-0.raw'), 'precious');
  const names = new NameAllocator();
  for (let i = 0; i < 2; i++) {
    // a second input of this VM is refused the same way (it gets no -2 from the first one's failure)
    await expect(convertXva(xva, { outDir: dir, names })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
  }
  expect(fs.readFileSync(path.join(dir, 'web01-0.raw'), 'utf8')).toBe('precious');
  expect(names.allocate('web01-0', 'raw')).toBe('web01-0.raw');
});

test('directIo true (default) and false (--no-direct-io) write the same raw and qcow2 images', async () => {
  // Sizes that leave unaligned tails (a short last chunk), so both write paths are taken.
  const d0 = disk(3 * MiB + 4096 + 512, 21);
  const xva = path.join(dir, 'dio.xva');
  fs.writeFileSync(xva, independentXva({ style: 'xapi', vmName: 'dio', disks: [{ ref: 'Ref:60', userdevice: '0', image: d0 }] }));
  for (const format of ['raw', 'qcow2'] as const) {
    const outs = [];
    for (const directIo of [true, false]) {
      const outFile = path.join(dir, `dio-${directIo}.${format}`);
      await convertXva(xva, { outFile, format, directIo, force: true });
      outs.push(fs.readFileSync(outFile));
    }
    expect(outs[0]!.equals(outs[1]!)).toBe(true);
    if (format === 'raw') expect(outs[0]!.equals(d0)).toBe(true);
  }
});

test('images go through the page cache with writeback started behind the writer; direct I/O only when asked', async () => {
  const d0 = disk(2 * MiB, 22);
  const xva = path.join(dir, 'policy.xva');
  fs.writeFileSync(xva, independentXva({ style: 'xapi', vmName: 'policy', disks: [{ ref: 'Ref:61', userdevice: '0', image: d0 }] }));
  const create = jest.spyOn(PartFile, 'create');
  try {
    const cases: Array<[ConvertOptions, ImageWritePolicy]> = [
      [{}, { directIo: false, flushBehindBytes: FLUSH_BEHIND_BYTES }],
      [{ sync: false }, { directIo: false, flushBehindBytes: 0 }],
      [{ directIo: false }, { directIo: false, flushBehindBytes: FLUSH_BEHIND_BYTES }],
      [{ directIo: true }, { directIo: true, flushBehindBytes: FLUSH_BEHIND_BYTES }],
      [{ sync: false, directIo: true }, { directIo: true, flushBehindBytes: 0 }],
    ];
    for (const [options, policy] of cases) {
      create.mockClear();
      await convertXva(xva, { ...options, outFile: path.join(dir, 'policy.raw'), force: true });
      expect(create.mock.calls[0]![2]).toEqual(policy);
      expect(fs.readFileSync(path.join(dir, 'policy.raw')).equals(d0)).toBe(true);
    }
  } finally {
    create.mockRestore();
  }
});

test('sync: false (--no-sync) skips the flush but still renames a complete, verified image', async () => {
  const d0 = disk(2 * MiB + 512, 16);
  const xva = path.join(dir, 'vm.xva');
  fs.writeFileSync(xva, independentXva({ style: 'xapi', vmName: 'fast', disks: [{ ref: 'Ref:50', userdevice: '0', image: d0 }] }));
  const s = await convertXva(xva, { outDir: dir, sync: false });
  expect(fs.readFileSync(s.disks[0]!.path!).equals(d0)).toBe(true);
  expect(fs.readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
});
