/**
 * Page-cache writes of a FileTarget go out in pieces that never cover a whole 2 MiB-aligned
 * range of the file (see pageCacheRoom in src/output/targets.ts: such a write gets a 2 MiB
 * folio, which on VMs with free page reporting faults in the host page by page). Pieces end at
 * odd MiB boundaries; the bytes on disk are exactly what was written; direct writes are not split.
 */
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allocAligned } from '../../src/input/aligned-buffer';
import { FileTarget } from '../../src/output/targets';

const MiB = 1 << 20;

/** Every system call's [position, position + bytes) per descriptor, as the kernel would see it. */
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

/** True when [at, at + bytes) contains some [2k MiB, 2k+2 MiB) entirely. */
function coversAligned2MiB(at: number, bytes: number): boolean {
  const first = Math.ceil(at / (2 * MiB)) * 2 * MiB;
  return first + 2 * MiB <= at + bytes;
}

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function target(): { t: FileTarget; fd: number; file: string } {
  const file = path.join(dir, 'img');
  const fd = fs.openSync(file, 'w+');
  return { t: new FileTarget(fd, 'img', 0), fd, file };
}

test('a 5 MiB pwritev from 0 goes out as [0,1) [1,3) [3,5) MiB', async () => {
  const { t, fd, file } = target();
  const data = pattern(5 * MiB, 1);
  await t.pwritev([data.subarray(0, 3 * MiB), data.subarray(3 * MiB)], 0);
  fs.closeSync(fd);
  expect(calls.map((c) => [c.at / MiB, c.bytes / MiB])).toEqual([[0, 1], [1, 2], [3, 2]]);
  expect(fs.readFileSync(file).equals(data)).toBe(true);
});

test('a 4 MiB pwrite at 2 MiB is split at 3 MiB and 5 MiB', async () => {
  const { t, fd } = target();
  await t.pwrite(pattern(4 * MiB, 2), 2 * MiB);
  fs.closeSync(fd);
  expect(calls.map((c) => [c.at / MiB, c.bytes / MiB])).toEqual([[2, 1], [3, 2], [5, 1]]);
});

test('small writes inside one piece are single calls', async () => {
  const { t, fd } = target();
  await t.pwrite(pattern(65536, 3), 4096);
  await t.write(pattern(512, 4)); // at the target's own position (0: pwrite does not move it)
  fs.closeSync(fd);
  expect(calls.map((c) => c.bytes)).toEqual([65536, 512]);
});

test('any mix of pieces and positions: no call covers an aligned 2 MiB range, and the file holds exactly the data', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 6 * MiB }),
      fc.array(fc.integer({ min: 1, max: 3 * MiB }), { minLength: 1, maxLength: 4 }),
      async (at, sizes) => {
        calls.length = 0;
        const { t, fd, file } = target();
        try {
          const pieces = sizes.map((n, i) => pattern(n, i + at));
          await t.pwritev(pieces, at);
          const total = sizes.reduce((a, b) => a + b, 0);
          expect(calls.reduce((n, c) => n + c.bytes, 0)).toBe(total);
          for (const c of calls) {
            expect(coversAligned2MiB(c.at, c.bytes)).toBe(false);
            expect(c.bytes).toBeLessThanOrEqual(2 * MiB);
          }
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
