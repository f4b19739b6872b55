/**
 * Direct I/O of image files: which writes bypass the page cache (aligned offset and lengths,
 * pieces in our aligned memories), that everything else still lands where it belongs, the
 * fallback when the file system refuses, and the part file's second descriptor.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allocAligned } from '../../src/io/aligned-buffer';
import { PartFile } from '../../src/output/part-file';
import { FileTarget } from '../../src/output/targets';

/** Set by a test: writev on this descriptor fails with EINVAL, as a file system without O_DIRECT would. */
let refuseFd: number | undefined;
let refused = 0;
jest.mock('node:fs', () => {
  const actual = jest.requireActual('node:fs') as typeof import('node:fs');
  return {
    ...actual,
    writev: (fd: number, ...rest: unknown[]) => {
      if (fd !== refuseFd) return (actual.writev as (...a: unknown[]) => void)(fd, ...rest);
      refused++;
      const cb = rest[rest.length - 1] as (err: NodeJS.ErrnoException) => void;
      process.nextTick(() => cb(Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' })));
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dio-'));
});
afterEach(() => {
  refuseFd = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

function aligned(size: number, fill: number, misalign = 0): Buffer {
  const b = allocAligned(size + misalign).subarray(misalign, misalign + size);
  b.fill(fill);
  return b;
}

/**
 * A target whose "direct" descriptor is a second, separate file: what was routed where is then
 * visible in the files themselves.
 */
function routedTarget(): { t: FileTarget; cached: () => Buffer; direct: () => Buffer; close: () => void } {
  const cachedFile = path.join(dir, 'cached.bin');
  const directFile = path.join(dir, 'direct.bin');
  const fd = fs.openSync(cachedFile, 'w+');
  const dfd = fs.openSync(directFile, 'w+');
  return {
    t: new FileTarget(fd, 'out', 0, dfd),
    cached: () => fs.readFileSync(cachedFile),
    direct: () => fs.readFileSync(directFile),
    close: () => {
      fs.closeSync(fd);
      fs.closeSync(dfd);
    },
  };
}

describe('which writes go direct', () => {
  it('aligned pieces of our aligned memory at a 4 KiB offset go direct', async () => {
    const r = routedTarget();
    await r.t.pwritev([aligned(4096, 1), aligned(8192, 2)], 4096);
    await r.t.pwrite(aligned(65536, 3), 65536);
    expect(r.cached().length).toBe(0);
    const d = r.direct();
    expect(d.length).toBe(131072);
    expect(d.subarray(4096, 8192).every((b) => b === 1)).toBe(true);
    expect(d.subarray(8192, 16384).every((b) => b === 2)).toBe(true);
    expect(d.subarray(65536).every((b) => b === 3)).toBe(true);
    r.close();
  });

  it.each([
    ['an offset that is not a multiple of 4 KiB', [aligned(4096, 1)], 512],
    ['a piece whose length is not a multiple of 4 KiB', [aligned(4096, 1), aligned(1000, 2)], 0],
    ['a piece that is not 512-byte aligned in memory', [aligned(4096, 1, 8)], 0],
    ['a piece from an ordinary Buffer', [Buffer.alloc(4096, 1)], 0],
  ])('%s goes through the page cache', async (_what, pieces, at) => {
    const r = routedTarget();
    await r.t.pwritev(pieces as Buffer[], at as number);
    expect(r.direct().length).toBe(0);
    expect(r.cached().subarray(at as number).equals(Buffer.concat(pieces as Buffer[]))).toBe(true);
    r.close();
  });

  it('when the file system refuses a direct write (EINVAL), it and all later ones use the page cache', async () => {
    const r = routedTarget();
    refuseFd = (r.t as unknown as { directFd?: number }).directFd;
    await r.t.pwritev([aligned(4096, 7)], 0);
    expect(r.t.direct).toBe(false);
    await r.t.pwritev([aligned(4096, 8)], 4096);
    expect(refused).toBe(1);
    expect(r.cached().equals(Buffer.concat([Buffer.alloc(4096, 7), Buffer.alloc(4096, 8)]))).toBe(true);
    r.close();
  });

  it('other errors of a direct write are output errors naming the file', async () => {
    const fd = fs.openSync(path.join(dir, 'a.bin'), 'w+');
    const readOnly = fs.openSync(path.join(dir, 'a.bin'), 'r');
    const t = new FileTarget(fd, 'the-image.raw', 0, readOnly);
    await expect(t.pwritev([aligned(4096, 1)], 0)).rejects.toThrow(/the-image\.raw/);
    fs.closeSync(fd);
    fs.closeSync(readOnly);
  });
});

describe('PartFile with direct I/O', () => {
  it('writes the same bytes with and without O_DIRECT and closes both descriptors', async () => {
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    const contents: Buffer[] = [];
    for (const directIo of [true, false]) {
      const part = await PartFile.create(path.join(dir, `img-${directIo}.raw`), false, { directIo });
      if (directIo && fs.constants.O_DIRECT) expect(part.target.direct).toBe(true); // ext4/xfs/btrfs temp dirs
      await part.target.truncate(3 * 65536 + 100);
      await part.target.pwritev([aligned(65536, 0xaa)], 65536);
      await part.target.pwrite(Buffer.from('header'), 0);
      await part.target.pwrite(Buffer.alloc(100, 0xbb), 3 * 65536);
      await part.commit(true);
      contents.push(fs.readFileSync(path.join(dir, `img-${directIo}.raw`)));
    }
    expect(contents[0]!.equals(contents[1]!)).toBe(true);
    expect(contents[0]!.subarray(65536, 131072).every((b) => b === 0xaa)).toBe(true);
    expect(contents[0]!.subarray(0, 6).toString()).toBe('header');
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore);
  });

  it('abort removes the part file and closes both descriptors', async () => {
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    const part = await PartFile.create(path.join(dir, 'gone.raw'), false, { directIo: true });
    await part.target.pwritev([aligned(4096, 1)], 0);
    part.abortSync();
    expect(fs.existsSync(part.partPath)).toBe(false);
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore);
  });
});
