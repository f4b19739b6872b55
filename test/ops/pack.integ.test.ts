/**
 * pack against real tools: qcow2 backing chains made by qemu-img, GNU tar / bsdtar listing the
 * archive in XAPI's order.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertXva } from '../../src/ops/convert';
import { packXva } from '../../src/ops/pack';
import { KiB, makeXvaFile, MiB, randomBytes, sparseDisk } from '../helpers/xva-fixtures';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pack-integ-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function file(name: string, data?: Buffer): string {
  const p = path.join(dir, name);
  if (data) fs.writeFileSync(p, data);
  return p;
}

/**
 * base.raw (4 MiB random) <- mid.qcow2 (diff clusters only) <- top.qcow2 (diff clusters only,
 * 6 MiB, larger than its backing). Each overlay is made by `qemu-img convert` of a raw diff
 * (zero areas stay unallocated) and `qemu-img rebase -u` onto its backing: no qemu-io needed.
 */
function makeChain(): { top: string; expected: Buffer } {
  file('base.raw', randomBytes(4 * MiB, 7));
  const mid = sparseDisk({ size: 4 * MiB, seed: 8, fill: [{ offset: 64 * KiB, length: 128 * KiB }, { offset: 3 * MiB, length: 64 * KiB }] });
  file('mid-diff.raw', mid);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', 'mid-diff.raw', 'mid.qcow2']);
  sh('qemu-img', ['rebase', '-u', '-b', 'base.raw', '-F', 'raw', 'mid.qcow2']);
  const top = sparseDisk({ size: 6 * MiB, seed: 9, fill: [{ offset: 0, length: 4 * KiB }, { offset: 128 * KiB, length: 64 * KiB }, { offset: 5 * MiB, length: 100 * KiB }] });
  file('top-diff.raw', top);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', 'top-diff.raw', 'top.qcow2']);
  sh('qemu-img', ['rebase', '-u', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2']);
  const info = JSON.parse(sh('qemu-img', ['info', '--output=json', '--backing-chain', 'top.qcow2'])) as Array<{ filename: string; format: string }>;
  expect(info.map((i) => [path.basename(i.filename), i.format])).toEqual([
    ['top.qcow2', 'qcow2'],
    ['mid.qcow2', 'qcow2'],
    ['base.raw', 'raw'],
  ]);
  sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', 'top.qcow2', 'expected.raw']);
  return { top: file('top.qcow2'), expected: fs.readFileSync(file('expected.raw')) };
}

test('qcow2 with a backing chain (qcow2 <- qcow2 <- raw) packs to what qemu-img reads', async () => {
  const { top, expected } = makeChain();
  expect(expected.length).toBe(6 * MiB);
  const plain = file('plain.raw', sparseDisk({ size: 2 * MiB + 512, seed: 3, fill: [{ offset: MiB, length: 5000 }] }));
  for (const [compression, checksum] of [
    ['zstd', 'xxh64'],
    ['gzip', 'sha1'],
  ] as const) {
    const out = file(`chain-${compression}.xva`);
    const s = await packXva({ disks: [top, plain], vm: { name: 'chain' }, output: out, compression, checksum });
    expect(s.disks.map((d) => [d.format, d.virtualSize])).toEqual([
      ['qcow2', 6 * MiB],
      ['raw', 2 * MiB + 512],
    ]);
    const conv = await convertXva(out, { outDir: file(`conv-${compression}`) });
    expect(fs.readFileSync(conv.disks[0]!.path!).equals(expected)).toBe(true);
    expect(fs.readFileSync(conv.disks[1]!.path!).equals(fs.readFileSync(plain))).toBe(true);
  }
});

test('qemu-img can read the converted-back qcow2 image byte for byte (qcow2 -> xva -> qcow2)', async () => {
  const { top, expected } = makeChain();
  const out = file('q.xva');
  await packXva({ disks: [top], output: out });
  const conv = await convertXva(out, { outDir: file('q'), format: 'qcow2' });
  sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', conv.disks[0]!.path!, 'back.raw']);
  expect(fs.readFileSync(file('back.raw')).equals(expected)).toBe(true);
});

/** `tar -tvf` names (last column) of an archive. */
function tarNames(tool: string, args: string[]): string[] {
  return sh(tool, args)
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/).pop()!);
}

test('GNU tar and bsdtar list ova.xml first, then disks in string order, each chunk followed by its checksum', async () => {
  // 12 disks: refs Ref:000..Ref:011 (string order = argument order); disk 1 has a skipped zero chunk.
  const disks = Array.from({ length: 12 }, (_, i) =>
    file(`d${i}.raw`, sparseDisk({ size: i === 1 ? 3 * MiB : 512 * KiB, seed: i + 1, fill: [{ offset: 0, length: 512 }] })),
  );
  for (const tarFormat of ['ustar', 'xapi'] as const) {
    for (const checksum of ['xxh64', 'sha1'] as const) {
      const out = file(`t-${tarFormat}-${checksum}.xva`);
      await packXva({ disks, output: out, tarFormat, checksum });
      const ext = checksum === 'xxh64' ? '.xxhash' : '.checksum';
      const expected = ['ova.xml'];
      disks.forEach((_, i) => {
        const ref = `Ref:${String(i).padStart(3, '0')}`;
        const counters = i === 1 ? [0, 2] : [0]; // chunk 1 of disk 1 is all zeros: skipped
        for (const c of counters) expected.push(`${ref}/${String(c).padStart(8, '0')}`, `${ref}/${String(c).padStart(8, '0')}${ext}`);
      });
      expect(tarNames('tar', ['-tvf', out])).toEqual(expected);
      expect(tarNames('bsdtar', ['-tvf', out])).toEqual(expected);
      // Exactly 1024 zero bytes at the end, size a multiple of 512 (XO's validity check).
      const bytes = fs.readFileSync(out);
      expect(bytes.length % 512).toBe(0);
      expect(bytes.subarray(bytes.length - 1024).every((b) => b === 0)).toBe(true);
      // GNU tar extracts it and the data matches.
      const x = file(`x-${tarFormat}-${checksum}`);
      fs.mkdirSync(x);
      sh('tar', ['-xf', out, '-C', x]);
      expect(fs.readFileSync(path.join(x, 'Ref:001', '00000002')).equals(fs.readFileSync(disks[1]!).subarray(2 * MiB))).toBe(true);
      const sum = fs.readFileSync(path.join(x, 'Ref:001', `00000002${ext}`), 'latin1');
      expect(sum).toMatch(checksum === 'xxh64' ? /^[0-9A-F]{16}$/ : /^[0-9a-f]{40}$/);
    }
  }
  // String order, not numeric: a repack of a source with Ref:998 and Ref:1003 lists Ref:1003 first.
  await makeXvaFile(dir, {
    fileName: 'src.xva.gz',
    compression: 'gzip',
    disks: [
      { ref: 'Ref:998', userdevice: 0, size: MiB },
      { ref: 'Ref:1003', userdevice: 1, size: MiB },
    ],
  });
  const repacked = file('repacked.xva.zst');
  await packXva({ from: file('src.xva.gz'), output: repacked });
  const zstdTar = sh('bash', ['-c', `zstd -dc ${repacked} | tar -tvf -`]).split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).pop());
  expect(zstdTar).toEqual(['ova.xml', 'Ref:1003/00000000', 'Ref:1003/00000000.xxhash', 'Ref:998/00000000', 'Ref:998/00000000.xxhash']);
});
