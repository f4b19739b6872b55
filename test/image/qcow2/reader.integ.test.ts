/**
 * The qcow2 reader against images made by qemu-img / qemu-io: collapsed chains must read
 * byte-identical to `qemu-img convert -O raw` of the top image.
 */
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { streamDiskImage } from '../../../src/image/disk-reader';
import type { DiskExtent } from '../../../src/io/disk';
import { openDiskImage, Qcow2Reader } from '../../../src/image/qcow2/reader';
import { ImageFormatError } from '../../../src/errors';
import { hasTool, itUnless, itWithTools } from '../../helpers/system-tools';
import { makeTmp, MemoryDiskWriter, qemuIo, run, runStatus } from '../../ova/_helpers';

const withQemu = itWithTools('qemu-img', 'qemu-io');
const withQemuZstd = itUnless(qemuZstdUnusable());

/** Why qemu-img cannot make qcow2 images with compression_type=zstd here, or null when it can. */
function qemuZstdUnusable(): string | null {
  if (!hasTool('qemu-img')) return 'needs qemu-img on the PATH';
  const probe = makeTmp('qcow2-zstd-probe-');
  try {
    const r = runStatus('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', 'z.qcow2', '1M'], probe.dir);
    return r.status === 0 ? null : `needs a qemu-img built with zstd (${r.stderr.trim()})`;
  } finally {
    probe.cleanup();
  }
}

const MiB = 1024 * 1024;

async function collapse(file: string): Promise<Buffer> {
  const reader = await openDiskImage(file);
  try {
    const w = new MemoryDiskWriter(reader.virtualSize);
    await streamDiskImage(reader, w);
    // Also check plain random reads agree with the streamed view.
    const direct = await reader.read(0, reader.virtualSize);
    expect(direct.equals(w.buf)).toBe(true);
    return w.buf;
  } finally {
    await reader.close();
  }
}

function qemuRaw(file: string, dir: string): Buffer {
  const out = path.join(dir, `ref-${path.basename(file)}.raw`);
  run('qemu-img', ['convert', '-O', 'raw', file, out]);
  return readFileSync(out);
}

/** Ranges where qemu-img map reports data (merged). */
function qemuDataRanges(file: string): DiskExtent[] {
  const map = JSON.parse(run('qemu-img', ['map', '--output=json', file])) as Array<{ start: number; length: number; data: boolean }>;
  const out: DiskExtent[] = [];
  for (const m of map) {
    if (!m.data) continue;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === m.start) last.length += m.length;
    else out.push({ offset: m.start, length: m.length });
  }
  return out;
}

async function extentsOf(file: string): Promise<DiskExtent[]> {
  const r = await openDiskImage(file);
  const out: DiskExtent[] = [];
  for await (const e of r.allocatedExtents()) out.push(e);
  await r.close();
  return out;
}

describe('qcow2 reader vs qemu-img', () => {
  let tmp: ReturnType<typeof makeTmp>;
  beforeEach(() => {
    tmp = makeTmp('qcow2r-');
  });
  afterEach(() => tmp.cleanup());

  withQemu('three-layer chain made with qemu-img create -b collapses like qemu-img convert', async () => {
    const dir = tmp.dir;
    run('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '64M'], dir);
    qemuIo(path.join(dir, 'base.qcow2'), 'qcow2', 'write -P 0x11 0 3M', 'write -P 0x12 10M 64k', 'write -P 0x13 40M 1M', 'write -P 0x14 63M 1M');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'mid.qcow2'], dir);
    qemuIo(path.join(dir, 'mid.qcow2'), 'qcow2', 'write -P 0x21 1M 128k', 'write -P 0x22 20M 512', 'write -z 40M 64k');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
    qemuIo(path.join(dir, 'top.qcow2'), 'qcow2', 'write -P 0x31 1M 64k', 'write -z 0 64k', 'write -P 0x32 33M 4k', 'write -P 0x00 63M 1M');

    const top = path.join(dir, 'top.qcow2');
    const ours = await collapse(top);
    expect(ours.equals(qemuRaw(top, dir))).toBe(true);

    const r = (await openDiskImage(top)) as Qcow2Reader;
    expect(r.chainLength).toBe(3);
    expect(r.info.backingFile).toBe('mid.qcow2');
    expect(r.info.backingFormat).toBe('qcow2');
    await r.close();

    // allocated extents: the union of data over the chain, as qemu-img map sees it
    expect(await extentsOf(top)).toEqual(qemuDataRanges(top));
  });

  withQemu('empty overlay reads as its backing file; zero clusters hide the backing data', async () => {
    const dir = tmp.dir;
    run('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '8M'], dir);
    qemuIo(path.join(dir, 'base.qcow2'), 'qcow2', 'write -P 0x5a 0 8M');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
    expect((await collapse(path.join(dir, 'top.qcow2'))).equals(qemuRaw(path.join(dir, 'base.qcow2'), dir))).toBe(true);
    qemuIo(path.join(dir, 'top.qcow2'), 'qcow2', 'write -z 1M 2M');
    const ours = await collapse(path.join(dir, 'top.qcow2'));
    expect(ours.subarray(MiB, 3 * MiB).every((b) => b === 0)).toBe(true);
    expect(ours.equals(qemuRaw(path.join(dir, 'top.qcow2'), dir))).toBe(true);
    expect(await extentsOf(path.join(dir, 'top.qcow2'))).toEqual([
      { offset: 0, length: MiB },
      { offset: 3 * MiB, length: 5 * MiB },
    ]);
  });

  withQemu('mixed cluster sizes, raw backing, backing shorter than the top', async () => {
    const dir = tmp.dir;
    const raw = Buffer.alloc(5 * MiB + 1000);
    for (let i = 0; i < raw.length; i += 4096) raw.fill((i / 4096) & 0xff, i, Math.min(raw.length, i + 100));
    writeFileSync(path.join(dir, 'base.raw'), raw);
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'base.raw', '-F', 'raw', 'mid.qcow2', '9M'], dir);
    qemuIo(path.join(dir, 'mid.qcow2'), 'qcow2', 'write -P 0x77 4100 5000', 'write -P 0x78 7M 8k');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2', '16M'], dir);
    qemuIo(path.join(dir, 'top.qcow2'), 'qcow2', 'write -P 0x99 12M 100k', 'write -P 0x98 5M 4k');
    const top = path.join(dir, 'top.qcow2');
    const ours = await collapse(top);
    expect(ours.length).toBe(16 * MiB);
    expect(ours.equals(qemuRaw(top, dir))).toBe(true);
  });

  withQemu('v2 (compat=0.10) and compressed images', async () => {
    const dir = tmp.dir;
    const raw = Buffer.alloc(3 * MiB);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7) % 251 < 60 ? (i >> 9) & 0xff : 0;
    writeFileSync(path.join(dir, 'src.raw'), raw);
    run('qemu-img', ['convert', '-O', 'qcow2', '-o', 'compat=0.10', 'src.raw', 'v2.qcow2'], dir);
    run('qemu-img', ['convert', '-c', '-O', 'qcow2', 'src.raw', 'comp.qcow2'], dir);
    expect((await collapse(path.join(dir, 'v2.qcow2'))).equals(raw)).toBe(true);
    expect((await collapse(path.join(dir, 'comp.qcow2'))).equals(raw)).toBe(true);
    const v2 = (await openDiskImage(path.join(dir, 'v2.qcow2'))) as Qcow2Reader;
    expect(v2.info.version).toBe(2);
    await v2.close();
  });

  withQemu('relative backing names resolve against the image directory, absolute ones as given', async () => {
    const dir = tmp.dir;
    run('mkdir', ['-p', 'a/b'], dir);
    run('qemu-img', ['create', '-q', '-f', 'qcow2', 'a/base.qcow2', '4M'], dir);
    qemuIo(path.join(dir, 'a/base.qcow2'), 'qcow2', 'write -P 0x42 0 1M');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '../base.qcow2', '-F', 'qcow2', 'top.qcow2'], path.join(dir, 'a/b'));
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', path.join(dir, 'a/base.qcow2'), '-F', 'qcow2', 'abs.qcow2'], dir);
    const expected = qemuRaw(path.join(dir, 'a/base.qcow2'), dir);
    expect((await collapse(path.join(dir, 'a/b/top.qcow2'))).equals(expected)).toBe(true);
    expect((await collapse(path.join(dir, 'abs.qcow2'))).equals(expected)).toBe(true);
    // Through a symlink in another directory: qemu resolves against the link's directory too.
    symlinkSync(path.join(dir, 'a/b/top.qcow2'), path.join(dir, 'link.qcow2'));
    await expect(openDiskImage(path.join(dir, 'link.qcow2'))).rejects.toThrow(/not found/);
  });

  withQemu('refuses loops, missing backing files and unsupported features', async () => {
    const dir = tmp.dir;
    run('qemu-img', ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M'], dir);
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', 'b.qcow2'], dir);
    run('qemu-img', ['rebase', '-u', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2'], dir);
    await expect(openDiskImage(path.join(dir, 'b.qcow2'))).rejects.toThrow(/loops/);

    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'gone.qcow2', '-F', 'qcow2', '-u', 'orphan.qcow2', '1M'], dir);
    await expect(openDiskImage(path.join(dir, 'orphan.qcow2'))).rejects.toThrow(ImageFormatError);

    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', 'ext.qcow2', '1M'], dir);
    await expect(openDiskImage(path.join(dir, 'ext.qcow2'))).rejects.toThrow(/extended L2/);

    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'data_file=ext.data', 'df.qcow2', '1M'], dir);
    await expect(openDiskImage(path.join(dir, 'df.qcow2'))).rejects.toThrow(/external data file/);

    writeFileSync(path.join(dir, 'junk.qcow2'), Buffer.from('QFI\xfb\x00\x00\x00\x07', 'latin1'));
    await expect(Qcow2Reader.open(path.join(dir, 'junk.qcow2'))).rejects.toThrow(/version 7|truncated/);
  });

  withQemuZstd('zstd compression type: plain clusters read, compressed ones are refused clearly', async () => {
    const dir = tmp.dir;
    const raw = Buffer.alloc(1 * MiB, 0x61);
    writeFileSync(path.join(dir, 'src.raw'), raw);
    run('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'z.qcow2'], dir);
    const reader = await openDiskImage(path.join(dir, 'z.qcow2'));
    await expect(reader.read(0, 4096)).rejects.toThrow(/zstd/);
    await reader.close();
  });
});
