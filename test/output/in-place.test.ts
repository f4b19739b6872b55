/**
 * Writing in place (output/in-place.ts), on regular files standing in for devices: the target
 * never writes past its capacity and never changes the length, opening refuses what is not a
 * device or file, and the raw writer writes zeros over holes unless the target reads as zeros.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PATTERN, patternFile } from '../helpers/devices';
import { RawWriter } from '../../src/image/raw/writer';
import { deviceNumbers, InPlaceOutput, inPlaceKindOf, keptInPlaceNote } from '../../src/output/in-place';

const MiB = 1024 * 1024;
let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'in-place-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const patterned = (name: string, size: number): string => patternFile(dir, name, size);

describe('InPlaceOutput', () => {
  it('opens an existing file without truncating it; its capacity is its length', async () => {
    const p = patterned('disk.img', 3 * MiB);
    const out = InPlaceOutput.open(p);
    expect(out).toMatchObject({ kind: 'file', capacity: 3 * MiB });
    expect(out.target.holesReadAsZero).toBe(false);
    await out.commit();
    expect(fs.statSync(p).size).toBe(3 * MiB);
  });

  it('refuses a missing path and a directory, creating nothing', () => {
    expect(() => InPlaceOutput.open(path.join(dir, 'nope.img'))).toThrow(/no such device or file/);
    expect(fs.existsSync(path.join(dir, 'nope.img'))).toBe(false);
    expect(() => InPlaceOutput.open(dir)).toThrow(/not a block device or a regular file/);
  });

  it('never writes past the capacity and never changes the length', async () => {
    const p = patterned('disk.img', MiB);
    const out = InPlaceOutput.open(p, { targetIsZero: true });
    expect(out.target.holesReadAsZero).toBe(true);
    await out.target.pwrite(Buffer.alloc(4096, 1), MiB - 4096);
    await expect(out.target.pwrite(Buffer.alloc(4096, 1), MiB - 2048)).rejects.toMatchObject({ code: 'OUTPUT_NO_SPACE', exitCode: 4 });
    await out.target.truncate(4096); // only checks that 4096 bytes fit
    await expect(out.target.truncate(MiB + 1)).rejects.toThrow(`the image needs ${MiB + 1} bytes, more than its ${MiB}`);
    await out.commit();
    const got = fs.readFileSync(p);
    expect(got.length).toBe(MiB);
    expect(got.subarray(MiB - 4096).every((b) => b === 1)).toBe(true);
    expect(got.subarray(0, MiB - 4096).every((b) => b === PATTERN)).toBe(true);
  });

  it('abort keeps what was written', async () => {
    const p = patterned('disk.img', MiB);
    const out = InPlaceOutput.open(p);
    await out.target.pwrite(Buffer.alloc(512, 7), 0);
    await out.abort();
    expect(fs.readFileSync(p)[0]).toBe(7);
  });
});

describe('helpers', () => {
  it('decodes Linux device numbers (glibc encoding)', () => {
    expect(deviceNumbers(0x700)).toEqual({ major: 7, minor: 0 }); // /dev/loop0
    expect(deviceNumbers(0x10303)).toEqual({ major: 259, minor: 3 }); // nvme partition
    expect(deviceNumbers(0xfd00)).toEqual({ major: 253, minor: 0 }); // dm-0
    expect(deviceNumbers(0x100800)).toEqual({ major: 8, minor: 256 });
  });

  it('tells block devices, files, missing paths and others apart', () => {
    expect(inPlaceKindOf(patterned('f', 1))).toBe('file');
    expect(inPlaceKindOf(path.join(dir, 'missing'))).toBe('missing');
    expect(inPlaceKindOf(dir)).toBe('other');
  });

  it('says which targets keep what was written', () => {
    expect(keptInPlaceNote([], 'so far')).toBe('');
    expect(keptInPlaceNote(['/dev/a', '/dev/b'], 'so far')).toBe('; /dev/a, /dev/b keep what was written so far (written in place, there is no .part)');
  });
});

describe('RawWriter onto a target whose holes may hold anything', () => {
  /** 5 MiB disk: data at 0-64 KiB, a zero block inside, data at 3 MiB; the rest holes. */
  async function writeDisk(out: InPlaceOutput): Promise<{ disk: Buffer; res: Awaited<ReturnType<RawWriter['finish']>> }> {
    const disk = Buffer.alloc(5 * MiB);
    disk.fill(1, 0, 64 * 1024);
    disk.fill(0, 8192, 12288);
    disk.fill(2, 3 * MiB, 3 * MiB + 4096);
    const w = new RawWriter(out.target, disk.length);
    await w.write(0, disk.subarray(0, MiB));
    await w.write(3 * MiB, disk.subarray(3 * MiB, 4 * MiB)); // a 2 MiB gap before, a 1 MiB one after
    const res = await w.finish();
    await out.commit();
    return { disk, res };
  }

  it('writes zeros over every hole, in place; the bytes after the disk stay', async () => {
    const p = patterned('dev.img', 6 * MiB);
    const { disk, res } = await writeDisk(InPlaceOutput.open(p));
    const got = fs.readFileSync(p);
    expect(got.subarray(0, 5 * MiB).equals(disk)).toBe(true);
    expect(got.subarray(5 * MiB).every((b) => b === PATTERN)).toBe(true);
    const data = 64 * 1024 - 4096 + 4096;
    expect(res).toEqual({ bytesWritten: data, zeroBytesSkipped: 0, zeroBytesWritten: 5 * MiB - data, imageSize: 5 * MiB });
  });

  it('with targetIsZero, leaves the holes unwritten', async () => {
    const p = patterned('dev.img', 5 * MiB);
    const { disk, res } = await writeDisk(InPlaceOutput.open(p, { targetIsZero: true }));
    const got = fs.readFileSync(p);
    expect(got.subarray(0, 8192).equals(disk.subarray(0, 8192))).toBe(true);
    expect(got.subarray(8192, 12288).every((b) => b === PATTERN)).toBe(true); // a zero block: skipped
    expect(got.subarray(MiB, 3 * MiB).every((b) => b === PATTERN)).toBe(true);
    expect(got.subarray(3 * MiB, 3 * MiB + 4096).equals(disk.subarray(3 * MiB, 3 * MiB + 4096))).toBe(true);
    expect(res.zeroBytesWritten).toBe(0);
  });
});
