/**
 * In-place conversions through the library (convertXva with `targets` / `noCreate`) into
 * preallocated files, and the option and size rules checked before a byte is written.
 * Real block devices: test/cli/block-devices.integ.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PATTERN, patternFile } from '../helpers/devices';
import { spawnSync } from 'node:child_process';
import { qcow2FullyAllocatedSize } from '../../src/image/qcow2/layout';
import { convertXva } from '../../src/ops/convert';
import { checkInPlaceCapacity, checkInPlaceOptions, parseTargetSpecs, Qcow2SizeUnknown } from '../../src/ops/in-place-plan';
import { measureXva } from '../../src/ops/measure';
import { itWithTools } from '../helpers/system-tools';
import { makeXvaFile, MiB } from '../helpers/xva-fixtures';

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'in-place-plan-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const patterned = (name: string, size: number): string => patternFile(dir, name, size);

describe('option checks (before the input is opened)', () => {
  it('parses <disk>=<path> and refuses anything else', () => {
    expect(parseTargetSpecs(['0=/dev/vg/a', 'Ref:12=/x=y'])).toEqual([
      { disk: '0', path: '/dev/vg/a' },
      { disk: 'Ref:12', path: '/x=y' },
    ]);
    for (const bad of ['/dev/sdb', '=/dev/sdb', '0=']) expect(() => parseTargetSpecs([bad])).toThrow(/expected <userdevice\|ref>=<path>/);
  });

  it('refuses a disk or a file named twice, a regular file without -n, a missing path, and contradictions', () => {
    const a = patterned('a.img', MiB);
    const link = path.join(dir, 'link.img');
    fs.symlinkSync(a, link);
    const t = (disk: string, p: string) => ({ disk, path: p });
    expect(() => checkInPlaceOptions({ targets: [t('0', a), t('0', patterned('b.img', MiB))], noCreate: true })).toThrow('--target names disk "0" twice');
    expect(() => checkInPlaceOptions({ targets: [t('0', a), t('1', link)], noCreate: true })).toThrow(`${link} and ${a} are the same device or file`);
    expect(() => checkInPlaceOptions({ targets: [t('0', a)] })).toThrow('is a regular file: add -n');
    expect(() => checkInPlaceOptions({ targets: [t('0', path.join(dir, 'none'))] })).toThrow('no such device or file');
    expect(() => checkInPlaceOptions({ targets: [t('0', a)], noCreate: true, disks: ['0'] })).toThrow('drop --disk');
    expect(() => checkInPlaceOptions({ targets: [t('0', a)], noCreate: true, outDir: dir })).toThrow('-o DIR');
    expect(() => checkInPlaceOptions({ targets: [t('0', a)], noCreate: true, format: 'vmdk' })).toThrow('VMDK');
    expect(() => checkInPlaceOptions({ outDir: dir, targetIsZero: true })).toThrow('--target-is-zero applies to');
    expect(() => checkInPlaceOptions({ outFile: path.join(dir, 'new.raw'), noCreate: true })).toThrow('no such file (-n writes into an existing file');
    for (const e of [() => checkInPlaceOptions({ targets: [t('0', a)], noCreate: true })]) expect(e).not.toThrow();
  });

  it('sizes: raw needs the virtual size, qcow2 the measured size, or asks for a measurement', () => {
    const disk = { ref: 'Ref:1', userdevice: '0', virtualSize: 4 * MiB };
    expect(() => checkInPlaceCapacity('raw', disk, '/dev/x', 4 * MiB, undefined)).not.toThrow();
    expect(() => checkInPlaceCapacity('raw', disk, '/dev/x', 4 * MiB - 512, undefined)).toThrow(`/dev/x holds ${4 * MiB - 512} bytes, less than the ${4 * MiB} bytes of the disk's virtual size (disk 0)`);
    const full = qcow2FullyAllocatedSize(4 * MiB);
    expect(() => checkInPlaceCapacity('qcow2', disk, '/dev/x', full, undefined)).not.toThrow();
    expect(() => checkInPlaceCapacity('qcow2', disk, '/dev/x', full - 1, undefined)).toThrow(Qcow2SizeUnknown);
    expect(() => checkInPlaceCapacity('qcow2', disk, '/dev/x', 400_000, 393_216)).not.toThrow();
    expect(() => checkInPlaceCapacity('qcow2', disk, '/dev/x', 393_215, 393_216)).toThrow('of the measured qcow2 image');
  });
});

describe('convertXva in place', () => {
  it('writes several disks into their preallocated files in one pass; only the named ones', async () => {
    const fx = await makeXvaFile(dir, {
      vmName: 'multi',
      disks: [{ size: 2 * MiB }, { size: 3 * MiB, fill: [{ offset: MiB, length: 100_000 }] }, { size: MiB }],
    });
    const f0 = patterned('d0.img', 2 * MiB);
    const f1 = patterned('d1.img', 4 * MiB);
    const s = await convertXva(fx.path, { targets: [{ disk: '1', path: f1 }, { disk: '0', path: f0 }], noCreate: true });
    expect(s.disks.map((d) => [d.userdevice, d.path])).toEqual([['0', f0], ['1', f1]]);
    expect(s.unselectedDisks).toEqual(['2']);
    expect(fs.readFileSync(f0).equals(fx.disks[0]!.expected)).toBe(true);
    const got1 = fs.readFileSync(f1);
    expect(got1.subarray(0, 3 * MiB).equals(fx.disks[1]!.expected)).toBe(true);
    expect(got1.subarray(3 * MiB).every((b) => b === PATTERN)).toBe(true);
    expect(s.disks[1]!.inPlace).toEqual({ kind: 'file', size: 4 * MiB, zeroBytesWritten: 3 * MiB - s.disks[1]!.bytesWritten, holesSkipped: false });
  });

  itWithTools('qemu-img')('qcow2 into a file smaller than a fully allocated image: measured first, exactly that size is enough', async () => {
    const fx = await makeXvaFile(dir, { vmName: 'q', disks: [{ size: 8 * MiB, fill: [{ offset: 3 * MiB, length: 200_000 }] }] });
    const { disks } = await measureXva(fx.path, { format: 'qcow2' });
    const needed = disks[0]!.requiredSize;
    expect(needed).toBeLessThan(qcow2FullyAllocatedSize(8 * MiB));
    const f = patterned('q.img', needed);
    const s = await convertXva(fx.path, { outFile: f, noCreate: true, format: 'qcow2' });
    expect(s.disks[0]).toMatchObject({ imageSize: needed, inPlace: { kind: 'file', size: needed } });
    expect(spawnSync('qemu-img', ['check', '-f', 'qcow2', f]).status).toBe(0);
    const raw = path.join(dir, 'src.raw');
    fs.writeFileSync(raw, fx.disks[0]!.expected);
    expect(spawnSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', f, raw]).status).toBe(0);
  });

  it('a failure after writing started says the file keeps what was written', async () => {
    const fx = await makeXvaFile(dir, { vmName: 'bad', disks: [{ size: 2 * MiB, fill: [{ offset: 0, length: 2 * MiB }] }] });
    // Corrupt the second chunk's data: the first MiB is written, then the checksum fails.
    const xva = fs.readFileSync(fx.path);
    const at = xva.indexOf(Buffer.from('Ref:11/00000001\0'));
    expect(at).toBeGreaterThan(0);
    xva[at + 512 + 100]! ^= 0xff;
    fs.writeFileSync(fx.path, xva);
    const f = patterned('bad.img', 2 * MiB);
    await expect(convertXva(fx.path, { outFile: f, noCreate: true })).rejects.toThrow(`${f} keeps what was written before the failure (written in place, there is no .part)`);
    expect(fs.statSync(f).size).toBe(2 * MiB);
  });
});
