/**
 * ClusterAligner: arbitrary ascending writes in, whole aligned blocks out.
 */
import fc from 'fast-check';
import { ClusterAligner } from '../../src/image/cluster-aligner';
import { XvaError } from '../../src/errors';

const BS = 16; // a tiny block size keeps the byte-level expectations readable

interface Emitted {
  block: number;
  bytes: Buffer;
  /** The emitted data is a view of a buffer the caller pushed (no copy). */
  zeroCopy: boolean;
}

function recorder(blockSize: number, limit: number) {
  const emitted: Emitted[] = [];
  const pushed: Buffer[] = [];
  const aligner = new ClusterAligner({
    blockSize,
    limit,
    sink: async (first, data) => {
      expect(data.length % blockSize).toBe(0);
      const zeroCopy = pushed.some(
        (p) => p.buffer === data.buffer && data.byteOffset >= p.byteOffset && data.byteOffset + data.length <= p.byteOffset + p.length,
      );
      for (let i = 0; i < data.length / blockSize; i++) {
        emitted.push({ block: first + i, bytes: Buffer.from(data.subarray(i * blockSize, (i + 1) * blockSize)), zeroCopy });
      }
    },
  });
  const push = (offset: number, data: Buffer) => {
    pushed.push(data);
    return aligner.push(offset, data);
  };
  return { aligner, emitted, push };
}

function bytes(n: number, start: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => ((start + i) % 255) + 1));
}

describe('ClusterAligner', () => {
  test('aligned whole blocks pass through as one run without copying', async () => {
    const { aligner, emitted, push } = recorder(BS, 1000);
    const data = bytes(4 * BS, 0);
    await push(2 * BS, data);
    await aligner.flush();
    expect(emitted.map((e) => e.block)).toEqual([2, 3, 4, 5]);
    expect(emitted.every((e) => e.zeroCopy)).toBe(true);
    expect(Buffer.concat(emitted.map((e) => e.bytes))).toEqual(data);
  });

  test('a partial block is held until it completes; gaps inside a block read as zeros', async () => {
    const { emitted, push } = recorder(BS, 1000);
    await push(3, bytes(2, 0)); // block 0, bytes 3-4
    expect(emitted).toHaveLength(0);
    await push(10, bytes(6, 50)); // completes block 0 (bytes 10-15), gap 5-9 stays zero
    expect(emitted).toHaveLength(1);
    const expected = Buffer.alloc(BS);
    bytes(2, 0).copy(expected, 3);
    bytes(6, 50).copy(expected, 10);
    expect(emitted[0]).toEqual({ block: 0, bytes: expected, zeroCopy: false });
  });

  test('a write spanning head, whole blocks and tail is split; only head and tail are copied', async () => {
    const { aligner, emitted, push } = recorder(BS, 1000);
    const data = bytes(5 + 3 * BS + 7, 9);
    await push(BS - 5, data);
    await aligner.flush();
    expect(emitted.map((e) => [e.block, e.zeroCopy])).toEqual([
      [0, false],
      [1, true],
      [2, true],
      [3, true],
      [4, false],
    ]);
    const disk = Buffer.concat(emitted.map((e) => e.bytes));
    expect(disk.subarray(BS - 5, BS - 5 + data.length)).toEqual(data);
    expect(disk.subarray(BS - 5 + data.length).every((b) => b === 0)).toBe(true);
  });

  test('a pending block is emitted before a later write moves past it', async () => {
    const { emitted, push } = recorder(BS, 1000);
    await push(0, bytes(4, 0));
    await push(5 * BS, bytes(BS, 0));
    expect(emitted.map((e) => e.block)).toEqual([0, 5]);
  });

  test('the block holding the end of the disk is emitted zero padded once its last byte arrives', async () => {
    const limit = 3 * BS + 5;
    const { emitted, push } = recorder(BS, limit);
    await push(3 * BS, bytes(5, 0));
    expect(emitted).toHaveLength(1);
    expect(emitted[0]!.block).toBe(3);
    expect(emitted[0]!.bytes).toEqual(Buffer.concat([bytes(5, 0), Buffer.alloc(BS - 5)]));
  });

  test('zero bytes past the end are dropped; non-zero bytes past the end are an error', async () => {
    const { aligner, emitted, push } = recorder(BS, 2 * BS);
    await push(BS, Buffer.concat([bytes(BS, 0), Buffer.alloc(40)]));
    await aligner.flush();
    expect(emitted.map((e) => e.block)).toEqual([1]);
    const other = recorder(BS, 2 * BS);
    await expect(other.push(BS, bytes(2 * BS, 0))).rejects.toMatchObject({ code: 'XVA_DATA_PAST_END' });
  });

  test('writes must be ascending and non-overlapping', async () => {
    const { push } = recorder(BS, 1000);
    await push(100, bytes(10, 0));
    await push(110, bytes(1, 0)); // adjacent is fine
    const err = await push(105, bytes(1, 0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XvaError);
    expect(err).toMatchObject({ code: 'XVA_CHUNK_ORDER' });
  });

  test('never-touched blocks are never emitted; flush on an idle aligner is a no-op', async () => {
    const { aligner, emitted } = recorder(BS, 1000);
    await aligner.flush();
    expect(emitted).toHaveLength(0);
  });

  test('property: emitted blocks reassemble exactly the written disk, each block once, ascending', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 70 })), { maxLength: 12 }),
        async (blockSize, steps) => {
          // Build ascending writes from (gap, length) steps.
          let pos = 0;
          const writes = steps.map(([gap, len], i) => {
            const w = { offset: pos + gap, data: bytes(len, i * 7) };
            pos = w.offset + len;
            return w;
          });
          const limit = pos + 3;
          const { aligner, emitted, push } = recorder(blockSize, limit);
          for (const w of writes) await push(w.offset, w.data);
          await aligner.flush();
          const expected = Buffer.alloc(Math.ceil(limit / blockSize) * blockSize);
          for (const w of writes) w.data.copy(expected, w.offset);
          const got = Buffer.alloc(expected.length);
          let last = -1;
          for (const e of emitted) {
            expect(e.block).toBeGreaterThan(last);
            last = e.block;
            e.bytes.copy(got, e.block * blockSize);
          }
          expect(got).toEqual(expected);
          // Exactly the blocks that some write touched are emitted.
          const touched = new Set<number>();
          for (const w of writes) for (let b = Math.floor(w.offset / blockSize); b * blockSize < w.offset + w.data.length; b++) touched.add(b);
          expect(emitted.map((e) => e.block)).toEqual([...touched].sort((a, b) => a - b));
        },
      ),
      { numRuns: 200 },
    );
  });
});
