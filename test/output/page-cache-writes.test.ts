/**
 * Page-cache writes of a FileTarget (output/write-policy.ts): no write(2) covers more than
 * PAGE_CACHE_PIECE_BYTES, and pieces are aligned to that size in the file (the kernel sizes a
 * new page-cache folio by the write that creates it, and large folios fault page by page on VMs
 * that report free memory to their host). Data in shared memory is written by the writer
 * thread, other data through the thread pool; either way the file holds exactly what was
 * written. Direct writes are not split.
 */
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allocAligned } from '../../src/io/aligned-buffer';
import { PartFile } from '../../src/output/part-file';
import { FileTarget } from '../../src/output/targets';
import { PAGE_CACHE_PIECE_BYTES } from '../../src/output/write-policy';
import { allShared, writerThread } from '../../src/output/writer-thread';

const KiB = 1024;
const MiB = 1 << 20;
const PIECE = PAGE_CACHE_PIECE_BYTES;

/** Every system call's [position, position + bytes) per descriptor, as the kernel would see it (this thread's calls). */
const calls: Array<{ fd: number; at: number; bytes: number }> = [];
jest.mock('node:fs', () => {
  const actual = jest.requireActual('node:fs') as typeof import('node:fs');
  return {
    ...actual,
    writev: (fd: number, list: Uint8Array[], at: number, cb: (...a: unknown[]) => void) => {
      calls.push({ fd, at, bytes: list.reduce((n, b) => n + b.length, 0) });
      actual.writev(fd, list, at, cb as never);
    },
    write: (fd: number, data: Uint8Array, off: number, len: number, at: number, cb: (...a: unknown[]) => void) => {
      calls.push({ fd, at, bytes: len });
      actual.write(fd, data, off, len, at, cb as never);
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcw-'));
  calls.length = 0;
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Ordinary (unshared) bytes: written through the thread pool, where the calls are seen. */
function pattern(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The same bytes in shared memory (as the reader's chunk buffers): written by the writer thread. */
function sharedPattern(size: number, seed: number): Buffer {
  const b = allocAligned(size);
  pattern(size, seed).copy(b);
  return b;
}

function target(): { t: FileTarget; fd: number; file: string } {
  const file = path.join(dir, 'img');
  const fd = fs.openSync(file, 'w+');
  return { t: new FileTarget(fd, 'img', 0), fd, file };
}

test('chunk buffers are shared memory, which the writer thread can write from', () => {
  expect(allShared([allocAligned(MiB), allocAligned(4096)])).toBe(true);
  expect(allShared([allocAligned(MiB), Buffer.alloc(4096)])).toBe(false);
  expect(writerThread()).toBeDefined();
});

test(`a 1 MiB pwritev from 0 goes out as ${MiB / PIECE} aligned pieces`, async () => {
  const { t, fd, file } = target();
  const data = pattern(MiB, 1);
  await t.pwritev([data.subarray(0, 300 * KiB), data.subarray(300 * KiB)], 0);
  fs.closeSync(fd);
  expect(calls.map((c) => [c.at, c.bytes])).toEqual(Array.from({ length: MiB / PIECE }, (_, i) => [i * PIECE, PIECE]));
  expect(fs.readFileSync(file).equals(data)).toBe(true);
});

test('a write that starts inside a piece ends at the piece boundary first', async () => {
  const { t, fd } = target();
  await t.pwrite(pattern(PIECE, 2), 4096);
  fs.closeSync(fd);
  expect(calls.map((c) => [c.at, c.bytes])).toEqual([[4096, PIECE - 4096], [PIECE, 4096]]);
});

test('small writes inside one piece are single calls', async () => {
  const { t, fd } = target();
  await t.pwrite(pattern(65536, 3), 4096);
  await t.write(pattern(512, 4)); // at the target's own position (0: pwrite does not move it)
  fs.closeSync(fd);
  expect(calls.map((c) => c.bytes)).toEqual([65536, 512]);
});

test('any mix of pieces and positions, shared or not: no call crosses a piece boundary, and the file holds exactly the data', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 6 * MiB }),
      fc.array(fc.integer({ min: 1, max: 3 * MiB }), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      async (at, sizes, shared) => {
        calls.length = 0;
        const { t, fd, file } = target();
        try {
          const pieces = sizes.map((n, i) => (shared ? sharedPattern : pattern)(n, i + at));
          await t.pwritev(pieces, at);
          const total = sizes.reduce((a, b) => a + b, 0);
          // Shared pieces are written by the writer thread, whose calls this mock does not see.
          expect(calls.reduce((n, c) => n + c.bytes, 0)).toBe(shared ? 0 : total);
          for (const c of calls) expect(Math.floor(c.at / PIECE)).toBe(Math.floor((c.at + c.bytes - 1) / PIECE));
          const onDisk = Buffer.alloc(total);
          fs.readSync(fd, onDisk, 0, total, at);
          expect(onDisk.equals(Buffer.concat(pieces))).toBe(true);
        } finally {
          fs.closeSync(fd);
          fs.rmSync(file);
        }
      },
    ),
    { numRuns: 25 },
  );
});

test('a failed write by the writer thread is an output error naming the file', async () => {
  const file = path.join(dir, 'ro');
  fs.writeFileSync(file, '');
  const fd = fs.openSync(file, 'r'); // not open for writing: EBADF
  const t = new FileTarget(fd, 'the-image.raw', 0);
  await expect(t.pwritev([sharedPattern(8192, 5)], 0)).rejects.toThrow(/^the-image\.raw: EBADF/);
  fs.closeSync(fd);
});

test('aborting a part file waits for its writes in flight before closing it (its descriptor number must not be reused under them)', async () => {
  const part = await PartFile.create(path.join(dir, 'aborted.raw'), false);
  let settled = false;
  const write = part.target.pwritev([sharedPattern(16 * MiB, 6)], 0).then(
    () => (settled = true),
    () => (settled = true),
  );
  await part.abort();
  expect(settled).toBe(true);
  expect(fs.existsSync(part.partPath)).toBe(false);
  await write;
});

test('direct writes are not split (they do not use the page cache)', async () => {
  const file = path.join(dir, 'img');
  const fd = fs.openSync(file, 'w+');
  const dfd = fs.openSync(file, 'r+'); // stands in for the O_DIRECT descriptor
  const t = new FileTarget(fd, 'img', 0, dfd);
  const data = allocAligned(4 * MiB);
  data.fill(7);
  await t.pwritev([data], 2 * MiB);
  fs.closeSync(fd);
  fs.closeSync(dfd);
  expect(calls).toEqual([{ fd: dfd, at: 2 * MiB, bytes: 4 * MiB }]);
});
